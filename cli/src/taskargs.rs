//! Operator options shared by `restore`, `degrade` and `eval`.

use crate::args::{f64_in, odd_in, positive_up_to, usize_in};
use crate::common::{CliError, Result};
use clap::Args;
use diffinv::cpu::image_io::load_gray;
use diffinv::cpu::ops::hdr::MAX_ALPHA;
use diffinv::cpu::ops::kernels::from_image;
use diffinv::cpu::ops::mask::BoxSpec;
use diffinv::cpu::ops::phase::MAX_OVERSAMPLE;
use diffinv::cpu::ops::poisson::DEFAULT_RATE;
use diffinv::cpu::ops::{MAX_BLUR_STD, MAX_NOISE};
use diffinv::{NoiseModel, Restorer, Task, TaskParams};
use std::path::PathBuf;

/// How the measurement operator is built.
#[derive(Args, Clone, Debug)]
pub struct OpArgs {
    /// The task: inpaint-box, inpaint-random, deblur-gauss, deblur-motion, sr4, denoise,
    /// phase-retrieval, hdr (the last two nonlinear: diffusion methods only, not sdedit on
    /// phase retrieval).
    #[arg(long)]
    pub task: String,
    /// Inpainting mask image (white = observed).
    #[arg(long, value_name = "PNG")]
    pub mask: Option<PathBuf>,
    /// A fixed box hole `X,Y,SIZE` (default: a seeded random position).
    #[arg(long = "box", value_name = "X,Y,SIZE")]
    pub box_spec: Option<String>,
    /// Fraction of pixels missing for inpaint-random, in [0, 1].
    #[arg(long, value_name = "P", value_parser = f64_in(0.0, 1.0))]
    pub missing: Option<f64>,
    /// Blur kernel image (grayscale, normalised to sum 1).
    #[arg(long, value_name = "PNG")]
    pub kernel: Option<PathBuf>,
    /// Gaussian blur std in pixels, in (0, 256] (default 3.0 * size/256).
    #[arg(long, value_name = "S", value_parser = positive_up_to(MAX_BLUR_STD))]
    pub blur_std: Option<f64>,
    /// Blur kernel side: odd, up to 1023 and below twice the image side (default 61 * size/256).
    #[arg(long, value_name = "K", value_parser = odd_in(1023))]
    pub kernel_size: Option<usize>,
    /// Motion blur intensity in [0, 1].
    #[arg(long, value_name = "I", value_parser = f64_in(0.0, 1.0))]
    pub intensity: Option<f64>,
    /// Super-resolution factor, 1..=16 (dividing the image side).
    #[arg(long, value_name = "F", value_parser = usize_in(1, 16))]
    pub scale: Option<usize>,
    /// Measurement noise sigma_y in [-1, 1] units, in [0, 1], or `auto`: estimated from the
    /// measurement (the default for a measurement file; simulating one defaults to 0.05).
    #[arg(long, value_name = "SIGMA|auto", value_parser = noise_arg)]
    pub noise: Option<Noise>,
    /// `gaussian` (default: additive, --noise) or `poisson` (photon counts at --rate; DPS and
    /// DAPS then use the Poisson likelihood, the other methods a Gaussian of equal variance).
    #[arg(long, value_name = "MODEL", value_parser = ["gaussian", "poisson"])]
    pub noise_model: Option<String>,
    /// Poisson photon rate: counts per unit intensity in [0, 1] units, in [1, 1e7] (default
    /// 400 = 1/0.05^2).
    #[arg(long, value_name = "R", value_parser = f64_in(POISSON_RATE.0, POISSON_RATE.1))]
    pub rate: Option<f64>,
    /// Phase retrieval's oversampling, in (0, 8] (default 2: the padded side is twice the image's).
    #[arg(long, value_name = "S", value_parser = positive_up_to(MAX_OVERSAMPLE))]
    pub oversample: Option<f64>,
    /// HDR's exposure factor alpha in [1, 64] (default 2): y = clip(alpha x, -1, 1).
    #[arg(long, value_name = "A", value_parser = f64_in(1.0, MAX_ALPHA))]
    pub hdr_alpha: Option<f64>,
}

const POISSON_RATE: (f64, f64) = diffinv::cpu::ops::poisson::RATE_RANGE;

/// `--noise`: a level or `auto`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Noise {
    /// Estimated from the measurement.
    Auto,
    /// Given.
    Level(f64),
}

/// The noise level simulated when none is given.
pub const DEFAULT_NOISE: f64 = 0.05;

fn noise_arg(s: &str) -> std::result::Result<Noise, String> {
    if s.trim() == "auto" {
        return Ok(Noise::Auto);
    }
    f64_in(0.0, MAX_NOISE)(s).map(Noise::Level).map_err(|e| format!("{e} or 'auto'"))
}

impl OpArgs {
    /// The parsed task.
    pub fn task(&self) -> Result<Task> {
        Task::parse(&self.task).map_err(|e| CliError::usage(e.to_string()))
    }

    /// Task parameters from the options (checked against the task).
    pub fn params(&self) -> Result<TaskParams> {
        let task = self.task()?;
        let mut p = TaskParams::default();
        let only = |ok: bool, opt: &str| -> Result<()> {
            if ok {
                Ok(())
            } else {
                Err(CliError::usage(format!("{opt} does not apply to --task {}", task.name())))
            }
        };
        if let Some(b) = &self.box_spec {
            only(task == Task::InpaintBox, "--box")?;
            let v: Vec<usize> = b
                .split(',')
                .map(|s| s.trim().parse::<usize>().ok().filter(|&v| v <= 65_535))
                .collect::<Option<_>>()
                .filter(|v: &Vec<usize>| v.len() == 3)
                .ok_or_else(|| CliError::usage(format!("--box '{b}': expected X,Y,SIZE, each in 0..=65535")))?;
            p.box_spec = Some(BoxSpec { x: v[0], y: v[1], size: v[2] });
        }
        if let Some(m) = self.missing {
            only(task == Task::InpaintRandom, "--missing")?;
            p.missing = Some(m);
        }
        if let Some(path) = &self.mask {
            only(task.is_inpainting(), "--mask")?;
            if self.box_spec.is_some() {
                return Err(CliError::usage("--mask and --box cannot be combined"));
            }
            let (_, _, g) = load_gray(path)?;
            p.mask_gray = Some(g);
        }
        let blur = matches!(task, Task::DeblurGauss | Task::DeblurMotion);
        if let Some(path) = &self.kernel {
            only(blur, "--kernel")?;
            let (h, w, g) = load_gray(path)?;
            if h != w {
                return Err(CliError::runtime(format!("{}: kernel image must be square, got {w}x{h}", path.display())));
            }
            p.kernel = Some(from_image(&g, h).ok_or_else(|| {
                CliError::runtime(format!("{}: kernel must have an odd side and a positive sum", path.display()))
            })?);
        }
        if let Some(s) = self.blur_std {
            only(task == Task::DeblurGauss, "--blur-std")?;
            p.blur_std = Some(s);
        }
        if let Some(k) = self.kernel_size {
            only(blur, "--kernel-size")?;
            p.kernel_size = Some(k);
        }
        if let Some(i) = self.intensity {
            only(task == Task::DeblurMotion, "--intensity")?;
            p.intensity = Some(i);
        }
        if let Some(s) = self.scale {
            only(task == Task::Sr4, "--scale")?;
            p.scale = Some(s);
        }
        if let Some(s) = self.oversample {
            only(task == Task::PhaseRetrieval, "--oversample")?;
            p.oversample = Some(s);
        }
        if let Some(s) = self.hdr_alpha {
            only(task == Task::Hdr, "--hdr-alpha")?;
            p.hdr_alpha = Some(s);
        }
        Ok(p)
    }

    /// The noise model from `--noise-model` and `--rate`.
    pub fn noise_model(&self) -> Result<NoiseModel> {
        match (self.noise_model.as_deref(), self.rate) {
            (Some("poisson"), rate) => {
                if self.noise.is_some() {
                    return Err(CliError::usage("--noise sets Gaussian noise; Poisson noise is set by --rate"));
                }
                if self.task()? == Task::PhaseRetrieval {
                    return Err(CliError::usage(
                        "--noise-model poisson needs an image-domain measurement, not phase retrieval's magnitudes",
                    ));
                }
                Ok(NoiseModel::Poisson { rate: rate.unwrap_or(DEFAULT_RATE) })
            }
            (_, Some(_)) => Err(CliError::usage("--rate applies to --noise-model poisson")),
            _ => Ok(NoiseModel::Gaussian),
        }
    }

    /// The level a simulated measurement gets (`--noise auto` has nothing to simulate).
    pub fn simulated_noise(&self) -> Result<f64> {
        match self.noise {
            None => Ok(DEFAULT_NOISE),
            Some(Noise::Level(v)) => Ok(v),
            Some(Noise::Auto) => Err(CliError::usage(
                "--noise auto estimates the level of a measurement file; simulating a measurement needs a number",
            )),
        }
    }

    /// `r` set up for this task, its operator options and noise level: the simulated level, or
    /// for a measurement file the given one or else an estimate.
    pub fn apply<'m>(&self, r: Restorer<'m>, params: &TaskParams, simulated: bool) -> Result<Restorer<'m>> {
        let r = r.task(self.task()?).params(params.clone()).noise_model(self.noise_model()?);
        Ok(match (simulated, self.noise) {
            (true, _) => r.noise(self.simulated_noise()?),
            (false, Some(Noise::Level(v))) => r.noise(v),
            (false, _) => r.noise_auto(),
        })
    }
}
