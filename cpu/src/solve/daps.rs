//! DAPS's settings per task (daps.md §6): the official pixel-space FFHQ-256 configs, whose
//! step sizes act per pixel (masks and normalised blurs have the same curvature at any image
//! size), so they carry over to the 64 px model; docs/tuning.md has the check on dev faces.

use super::Settings;
use crate::ops::Task;
use diffinv_core::sampler::DapsConfig;

/// `tau` of every official task config: a tuned likelihood weight (0.01 against data with
/// sigma_y = 0.05), not the noise level.
pub const DAPS_TAU: f64 = 0.01;

/// `tau` for `task` on the 64 px model. The 256 px configs' 0.01 over-fits the noise of a
/// 64 px blur: its kernel (std 0.75 px) passes frequencies a 3 px blur at 256 px removes, so
/// the 50x over-weighted likelihood pulls the noise of `y` into the result (Gaussian
/// deblurring on dev faces 009541-2, DAPS-100: 27.0 dB at 0.01, 29.5 at 0.02, 29.1 at 0.03,
/// 28.3 at 0.04; SR x4 is best at 0.01, box inpainting indifferent; docs/tuning.md).
fn tau(task: Task) -> f64 {
    match task {
        Task::DeblurGauss | Task::DeblurMotion | Task::Denoise => 0.02,
        _ => DAPS_TAU,
    }
}
/// Langevin steps per level (`N_L`, every official task config).
pub const DAPS_LANGEVIN_STEPS: usize = 100;

/// The first level's Langevin step size `lr` of the official config of `task` (denoising has
/// none: Gaussian deblurring's, the identity having the same curvature as a normalised blur).
fn lr(task: Task) -> f64 {
    match task {
        Task::PhaseRetrieval => 5e-5,
        Task::Hdr => 2e-5,
        Task::DeblurGauss | Task::Sr4 | Task::InpaintRandom | Task::Denoise => 1e-4,
        Task::DeblurMotion | Task::InpaintBox => 5e-5,
    }
}

/// DAPS's configuration for `task` (one deviation from the official code by default: the last
/// level's Langevin steps run without their noise, so the output is not left with it: +0.6 dB
/// on Gaussian deblurring, +0.2 on x4 SR, +0.1 on phase retrieval, DAPS-100 on dev faces;
/// `quiet_last: Some(false)` restores the official sampler) with `levels` annealing levels (DAPS-1K: 200 levels x 5
/// ODE steps, the default; DAPS-100: 50 x 2, the official latent presets' structure), the
/// user's overrides applied.
pub fn daps_config(task: Task, s: &Settings, levels: usize) -> DapsConfig {
    DapsConfig {
        levels,
        ode_steps: s.ode_steps.unwrap_or(5),
        langevin_steps: s.langevin_steps.unwrap_or(DAPS_LANGEVIN_STEPS),
        lr: s.lr.unwrap_or_else(|| lr(task)),
        lr_min_ratio: 0.01,
        tau: s.tau.unwrap_or_else(|| tau(task)),
        sigma_max: 100.0,
        sigma_min: 0.1,
        sigma_ode_end: 0.01,
        quiet_last: s.quiet_last.unwrap_or(true),
    }
}
