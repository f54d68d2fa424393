//! Owned schedule buffers for the core's `Chain`: the model's base chain, optionally respaced.

use crate::error::{Error, Result};
use diffinv_core::respace::{respaced, Spacing};
use diffinv_core::schedule::{alphas_cumprod, Chain};
use diffinv_model::DiffusionSettings;

/// A chain's timesteps, betas and `abar`.
#[derive(Clone, Debug)]
pub struct Schedule {
    steps: Vec<usize>,
    betas: Vec<f64>,
    abar: Vec<f64>,
}

impl Schedule {
    /// The base chain of `d`, respaced to `spacing` (`"100"`, `"25,25,25,25"`, `"ddim50"`) if given.
    pub fn new(d: &DiffusionSettings, spacing: Option<&str>) -> Result<Self> {
        let t = d.steps;
        let mut betas = vec![0.0; t];
        d.schedule.fill_betas(&mut betas);
        let mut abar = vec![0.0; t];
        alphas_cumprod(&betas, &mut abar);
        let Some(spec) = spacing else {
            return Ok(Schedule { steps: (0..t).collect(), betas, abar });
        };
        let bad = |e: diffinv_core::ScheduleError| Error::parameter("steps", spec, e.to_string());
        let sp = Spacing::parse(spec).map_err(bad)?;
        let mut steps = vec![0; sp.len(t).map_err(bad)?];
        sp.fill(t, &mut steps).map_err(bad)?;
        let (mut b, mut a) = (vec![0.0; steps.len()], vec![0.0; steps.len()]);
        respaced(&abar, &steps, &mut b, &mut a).map_err(bad)?;
        Ok(Schedule { steps, betas: b, abar: a })
    }

    /// The chain over these buffers.
    pub fn chain(&self) -> Chain<'_> {
        Chain::new(&self.steps, &self.betas, &self.abar).expect("schedules are built valid")
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Always false (a schedule has steps).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The `abar` of original timestep `t` on the base chain (for schedules that keep `t`).
    pub fn abar_at(&self, t: usize) -> Option<f64> {
        self.steps.iter().position(|&s| s == t).map(|k| self.abar[k])
    }
}
