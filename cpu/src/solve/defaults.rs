//! Default parameters of each method and task, for the shipped 64 px model (tuned on the
//! CelebA dev faces; see the README's table for how).

use super::Method;
use crate::ops::Task;

/// A method's defaults for one task.
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    /// Chain length.
    pub steps: usize,
    /// DPS step size (at 1000 steps) or DiffPIR noise mix.
    pub zeta: f64,
    /// ALD anneal factor, SDEdit data step, DiffPIR data weight.
    pub lambda: f64,
    /// SDEdit start.
    pub t0: usize,
}

impl Defaults {
    /// The defaults of `method` on `task`.
    pub fn for_task(method: Method, task: Task) -> Defaults {
        let inpaint = task.is_inpainting();
        match method {
            Method::Dps => Defaults {
                steps: 1000,
                zeta: if inpaint { 0.5 } else { 1.0 },
                lambda: 0.0,
                t0: 0,
            },
            Method::Ald => Defaults {
                steps: 1000,
                zeta: 0.0,
                lambda: if inpaint { 0.005 } else { 0.001 },
                t0: 0,
            },
            Method::Sdedit => Defaults {
                steps: 1000,
                zeta: 0.0,
                lambda: 1.0,
                t0: 500,
            },
            Method::Diffpir => Defaults {
                steps: 100,
                zeta: 1.0,
                lambda: if inpaint { 7.0 } else { 1.0 },
                t0: 0,
            },
        }
    }
}

/// DPS's step size on a chain of `steps` out of `total`: each respaced step stands for
/// `total/steps` original ones, so the gradient step grows in proportion.
pub fn dps_zeta_for_steps(zeta_full: f64, steps: usize, total: usize) -> f64 {
    zeta_full * total as f64 / steps as f64
}
