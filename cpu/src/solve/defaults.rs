//! Default parameters of each method and task, for the shipped 64 px model (tuned on CelebA
//! dev faces 009541-009548; the README records the sweeps).

use super::Method;
use crate::ops::Task;

/// A method's defaults for one task.
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    /// Chain length (diffusion methods) or iterations (classical ones).
    pub steps: usize,
    /// DPS step size (at 1000 steps) or DiffPIR's noise mix.
    pub zeta: f64,
    /// ALD anneal factor, SDEdit data step, DiffPIR data weight, TV weight, or PnP lambda.
    pub lambda: f64,
    /// SDEdit's starting timestep.
    pub t0: usize,
    /// HQS-TV's initial penalty (grown by 1.3 per iteration) or ADMM-TV's fixed penalty.
    pub mu: f64,
    /// Adam-TV's learning rate.
    pub lr: f64,
}

const BASE: Defaults = Defaults { steps: 1000, zeta: 0.0, lambda: 0.0, t0: 0, mu: 0.0, lr: 0.0 };

impl Defaults {
    /// The defaults of `method` on `task`.
    pub fn for_task(method: Method, task: Task) -> Defaults {
        let inpaint = task.is_inpainting();
        match method {
            Method::Dps => Defaults { zeta: if inpaint { 0.5 } else { 1.0 }, ..BASE },
            // x4 SR needs a 60x stronger data step than deblurring: A^T A of the 4x4 average has
            // norm 1/16, and 0.001 left the samples off the measurement (13 dB, README sweep).
            Method::Ald => Defaults {
                lambda: match task {
                    _ if inpaint => 0.005,
                    Task::Sr4 => 0.06,
                    _ => 0.001,
                },
                ..BASE
            },
            Method::Sdedit => Defaults { lambda: 1.0, t0: 500, ..BASE },
            Method::DiffPir => Defaults { steps: 100, zeta: 1.0, lambda: if inpaint { 3.0 } else { 1.0 }, ..BASE },
            Method::AdamTv => Defaults { steps: 500, lambda: 0.02, lr: 0.01, ..BASE },
            Method::HqsTv => Defaults { steps: 40, lambda: 0.02, mu: 0.1, ..BASE },
            Method::AdmmTv => Defaults { steps: 100, lambda: 0.02, mu: 1.0, ..BASE },
            Method::HqsDncnn => Defaults { steps: if inpaint { 40 } else { 8 }, lambda: 0.23, ..BASE },
        }
    }
}

/// DPS's step size on a chain of `steps` out of `total`: each respaced step stands for
/// `total/steps` original ones, so the gradient step grows in proportion.
pub fn dps_zeta_for_steps(zeta_full: f64, steps: usize, total: usize) -> f64 {
    zeta_full * total as f64 / steps as f64
}
