//! Solving an inverse problem end to end: the methods of the paper (DPS, Score-ALD, SDEdit),
//! DiffPIR, and the classical baselines, with their tuned defaults, over the core's loops.

mod daps;
mod defaults;
mod schedule;

pub use daps::{daps_config, DAPS_LANGEVIN_STEPS, DAPS_TAU};
pub use defaults::{dps_zeta_for_steps, hqs_tv_schedule, interpolate, Defaults, LEVELS};
pub use schedule::Schedule;

use crate::classical::Denoiser;
use crate::error::{Error, Result};
use crate::ops::{Op, Task};
use crate::tensor::Tensor;
use diffinv_core::diffusion::start_from_measurement;
use diffinv_core::rng::streams;
use diffinv_core::sampler::{
    self, AldConfig, DapsConfig, DiffpirConfig, DpsConfig, Monitor, SampleError, SdeditConfig, Stats,
};
use diffinv_core::{Backend, Chain, NoiseStream, Operator};
use diffinv_model::{DiffusionSettings, UNetConfig};

/// A restoration method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Diffusion posterior sampling (Chung et al. 2023).
    Dps,
    /// Score-based annealed Langevin dynamics (Jalal et al. 2021).
    Ald,
    /// SDEdit (Meng et al. 2022) with the measurement-consistency steps of the seed paper.
    Sdedit,
    /// DiffPIR (Zhu et al. 2023).
    DiffPir,
    /// Decoupled annealing posterior sampling (Zhang et al. 2025).
    Daps,
    /// Adam on the TV-regularised objective.
    AdamTv,
    /// Half-quadratic splitting with the TV prox.
    HqsTv,
    /// ADMM with the TV prox.
    AdmmTv,
    /// Plug-and-play HQS with a CNN denoiser (FFDNet by default, DPIR's schedule).
    HqsDncnn,
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 9] = [
        Method::Dps,
        Method::Ald,
        Method::Sdedit,
        Method::DiffPir,
        Method::Daps,
        Method::AdamTv,
        Method::HqsTv,
        Method::AdmmTv,
        Method::HqsDncnn,
    ];

    /// The method's name (`dps`, `hqs-tv`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Method::Dps => "dps",
            Method::Ald => "ald",
            Method::Sdedit => "sdedit",
            Method::DiffPir => "diffpir",
            Method::Daps => "daps",
            Method::AdamTv => "adam-tv",
            Method::HqsTv => "hqs-tv",
            Method::AdmmTv => "admm-tv",
            Method::HqsDncnn => "hqs-dncnn",
        }
    }

    /// Whether the method samples with the diffusion model.
    pub fn is_diffusion(self) -> bool {
        matches!(self, Method::Dps | Method::Ald | Method::Sdedit | Method::DiffPir | Method::Daps)
    }

    /// Whether the method runs with a nonlinear operator on `task`, or why not.
    ///
    /// # Errors
    /// [`Error::Parameter`] naming the method and the task.
    pub fn check_task(self, task: Task) -> Result<()> {
        if !task.is_nonlinear() {
            return Ok(());
        }
        if !self.is_diffusion() {
            return Err(Error::parameter(
                "method",
                self.name(),
                format!("needs a linear operator (its proximal / normal solves), and {} is nonlinear", task.name()),
            ));
        }
        if self == Method::Sdedit && task == Task::PhaseRetrieval {
            return Err(Error::parameter(
                "method",
                "sdedit",
                "starts from an image made from the measurement, and phase retrieval's magnitudes give none",
            ));
        }
        Ok(())
    }

    /// Parses a name.
    ///
    /// # Errors
    /// [`Error::Parameter`] for an unknown name (listing the known ones).
    pub fn parse(s: &str) -> Result<Method> {
        Method::ALL.iter().copied().find(|m| m.name() == s).ok_or_else(|| {
            Error::parameter(
                "method",
                format!("'{s}'"),
                format!("must be one of {}", Method::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")),
            )
        })
    }
}

/// User overrides of a method's parameters; `None` takes the tuned default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    /// Respaced chain length (diffusion methods) or iterations (classical ones).
    pub steps: Option<usize>,
    /// Step size of DPS's gradient, or DiffPIR's noise mix.
    pub zeta: Option<f64>,
    /// Score-ALD's anneal factor, SDEdit's data step, DiffPIR's data weight, the TV weight, or
    /// the plug-and-play weight.
    pub lambda: Option<f64>,
    /// SDEdit's starting timestep.
    pub t0: Option<usize>,
    /// DAPS: Euler steps of the ODE per annealing level.
    pub ode_steps: Option<usize>,
    /// DAPS: Langevin steps per annealing level.
    pub langevin_steps: Option<usize>,
    /// DAPS: the Langevin step size at the first level.
    pub lr: Option<f64>,
    /// DAPS: the likelihood's scale `tau`.
    pub tau: Option<f64>,
    /// DAPS: the last level's Langevin steps without their noise (default true; false is the
    /// official sampler, whose output keeps that noise).
    pub quiet_last: Option<bool>,
}

/// The most ODE steps per DAPS level.
pub const MAX_ODE_STEPS: usize = 100;
/// The most Langevin steps per DAPS level.
pub const MAX_LANGEVIN_STEPS: usize = 10_000;

/// The most iterations a classical method may be asked for.
pub const MAX_ITERS: usize = 1_000_000;

impl Settings {
    /// Checks every given value's range for `method` (before anything is allocated).
    ///
    /// # Errors
    /// [`Error::Parameter`] naming the value.
    pub fn check(&self, method: Method) -> Result<()> {
        let in_range = |name: &str, v: Option<f64>| match v {
            Some(v) if !(0.0..=MAX_WEIGHT).contains(&v) => {
                Err(Error::parameter(name, v, format!("must be a number in [0, {MAX_WEIGHT:e}]")))
            }
            _ => Ok(()),
        };
        in_range("zeta", self.zeta)?;
        in_range("lambda", self.lambda)?;
        if let Some(v) = self.lr.filter(|v| !(*v > 0.0 && *v <= 1.0)) {
            return Err(Error::parameter("lr", v, "must be in (0, 1]"));
        }
        if let Some(v) = self.tau.filter(|v| !(*v > 0.0 && *v <= 100.0)) {
            return Err(Error::parameter("tau", v, "must be in (0, 100]"));
        }
        if let Some(v) = self.ode_steps.filter(|v| !(1..=MAX_ODE_STEPS).contains(v)) {
            return Err(Error::parameter("ode_steps", v, format!("must be in 1..={MAX_ODE_STEPS}")));
        }
        if let Some(v) = self.langevin_steps.filter(|v| *v > MAX_LANGEVIN_STEPS) {
            return Err(Error::parameter("langevin_steps", v, format!("must be in 0..={MAX_LANGEVIN_STEPS}")));
        }
        if let Some(z) = self.zeta {
            if method == Method::DiffPir && z > 1.0 {
                return Err(Error::parameter("zeta", z, "must be in [0, 1] for diffpir"));
            }
        }
        if let Some(s) = self.steps {
            if s == 0 {
                return Err(Error::parameter("steps", s, "must be at least 1"));
            }
            if !method.is_diffusion() && s > MAX_ITERS {
                return Err(Error::parameter("steps", s, format!("must be in 1..={MAX_ITERS} for {}", method.name())));
            }
        }
        Ok(())
    }
}

/// The largest step size or regularisation weight accepted (far above any useful value; bounds
/// what a typo can do).
pub const MAX_WEIGHT: f64 = 1e6;

/// What a run used and did.
#[derive(Clone, Debug)]
pub struct Output {
    /// The restored batch.
    pub x: Tensor,
    /// Network evaluations per image.
    pub nfe: usize,
    /// Network input-gradients per image.
    pub vjps: usize,
    /// The parameters used, by name.
    pub params: Vec<(&'static str, f64)>,
}

/// One noise stream per image of the batch.
pub fn streams_for(seed: u64, kind: u64, first: u64, n: usize) -> Vec<NoiseStream> {
    (0..n as u64).map(|i| NoiseStream::new(seed, streams::for_image(kind, first + i))).collect()
}

/// A diffusion method with its parameters resolved from the settings and the tuned defaults.
pub struct Plan {
    /// The method.
    pub method: Method,
    /// The (respaced) schedule.
    pub schedule: Schedule,
    /// Shape of the restored batch.
    pub shape: [usize; 4],
    /// DPS's step size or DiffPIR's noise mix.
    pub zeta: f64,
    /// Score-ALD's anneal factor, SDEdit's data step or DiffPIR's data weight.
    pub lambda: f64,
    /// SDEdit's starting timestep.
    pub t0: usize,
    /// The measurement noise.
    pub sigma_y: f64,
    /// The parameters used, by name (for reports).
    pub params: Vec<(&'static str, f64)>,
    /// Whether the chain starts from the measurement where its noise reaches `sigma_y`
    /// (denoising with DPS, Score-ALD and DiffPIR) instead of from pure noise at its top.
    pub from_measurement: bool,
    /// DAPS's settings (its `steps` are annealing levels on the unrespaced chain).
    pub daps: Option<DapsConfig>,
}

impl Plan {
    /// Resolves `method`'s parameters for `task` on a batch of images of `shape` (NCHW; any
    /// height and width: a backend that tiles the model runs other sizes than the model's) of
    /// the model `cfg` trained with `diffusion`.
    ///
    /// # Errors
    /// [`Error::Parameter`] for a setting out of its range or a classical method,
    /// [`Error::Shape`] for another channel count than the model's.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &UNetConfig,
        diffusion: &DiffusionSettings,
        method: Method,
        task: Task,
        settings: &Settings,
        sigma_y: f64,
        shape: [usize; 4],
    ) -> Result<Plan> {
        if !method.is_diffusion() {
            return Err(Error::parameter("method", method.name(), "is not a diffusion method"));
        }
        settings.check(method)?;
        method.check_task(task)?;
        if !(0.0..=crate::ops::MAX_NOISE).contains(&sigma_y) {
            return Err(Error::parameter("noise", sigma_y, format!("must be in [0, {}]", crate::ops::MAX_NOISE)));
        }
        let d = Defaults::for_task(method, task, sigma_y);
        let total = diffusion.steps;
        // The tables are for 1000-step models: a model with fewer steps runs all of them by default.
        let steps = settings.steps.unwrap_or(d.steps.min(total));
        if steps == 0 || steps > total {
            return Err(Error::parameter("steps", steps, format!("must be in 1..={total}")));
        }
        let spacing = (steps != total && method != Method::Daps).then(|| steps.to_string());
        let schedule = Schedule::new(diffusion, spacing.as_deref())?;
        if shape[1] != cfg.in_channels || shape.contains(&0) {
            return Err(Error::shape("image", &shape, format!("the model takes {} channels", cfg.in_channels)));
        }
        let (mut zeta, mut lambda, mut t0, mut daps) = (0.0, 0.0, 0, None);
        let params = match method {
            Method::Dps => {
                zeta = settings.zeta.unwrap_or_else(|| dps_zeta_for_steps(d.zeta, steps, total));
                vec![("steps", steps as f64), ("zeta", zeta)]
            }
            Method::Ald => {
                // Like DPS's zeta, the anneal factor grows with the steps a respaced step stands for.
                lambda = settings.lambda.unwrap_or(d.lambda * total as f64 / steps as f64);
                vec![("steps", steps as f64), ("lambda", lambda)]
            }
            Method::Sdedit => {
                // The default start is a fraction of a 1000-step chain; the same fraction of this one.
                let scaled = (d.t0 as f64 * total as f64 / 1000.0).round() as usize;
                t0 = settings.t0.unwrap_or(scaled.min(total - 1));
                if t0 >= total {
                    return Err(Error::parameter("t0", t0, format!("must be below {total}")));
                }
                lambda = settings.lambda.unwrap_or(d.lambda);
                vec![("steps", steps as f64), ("t0", t0 as f64), ("lambda", lambda)]
            }
            Method::DiffPir => {
                lambda = settings.lambda.unwrap_or(d.lambda);
                zeta = settings.zeta.unwrap_or(d.zeta);
                vec![("steps", steps as f64), ("lambda", lambda), ("zeta", zeta)]
            }
            Method::Daps => {
                let c = daps_config(task, settings, steps);
                daps = Some(c);
                vec![
                    ("levels", c.levels as f64),
                    ("ode_steps", c.ode_steps as f64),
                    ("langevin_steps", c.langevin_steps as f64),
                    ("lr", c.lr),
                    ("tau", c.tau),
                ]
            }
            _ => unreachable!("checked above"),
        };
        let from_measurement = task == Task::Denoise && !matches!(method, Method::Sdedit | Method::Daps);
        Ok(Plan { method, schedule, shape, zeta, lambda, t0, sigma_y, params, from_measurement, daps })
    }

    /// Runs the method on any backend: draws the start from the init streams (SDEdit starts
    /// from `op`'s estimate), runs the core's loop, clamps to [-1, 1]. Images are numbered from
    /// `first` in the run.
    ///
    /// # Errors
    /// The backend's failures, a diverging iterate, or cancellation by `monitor`.
    pub fn run<B: Backend, A: Operator<B> + ?Sized>(
        &self,
        b: &mut B,
        op: &A,
        y: &B::Tensor,
        seed: u64,
        first: u64,
        mon: &mut impl Monitor,
    ) -> std::result::Result<(B::Tensor, Stats), SampleError<B::Error>> {
        let n = self.shape[0];
        let full = self.schedule.chain();
        let mut rngs = streams_for(seed, streams::STEPS, first, n);
        let mut init = streams_for(seed, streams::INIT, first, n);
        let mut x = b.zeros(self.shape)?;
        // Denoising starts where the chain's noise reaches sigma_y, from y itself (an exact draw
        // of x_t given the image), rather than from pure noise: the steps above carry nothing
        // the measurement lacks.
        let k = if self.from_measurement {
            let (k, a, c) = start_from_measurement(full.abar(), self.sigma_y);
            let mut z = b.zeros(self.shape)?;
            b.randn(&mut init, &mut z)?;
            b.axpby(a, y, c, &z, &mut x)?;
            k
        } else {
            if self.method != Method::Sdedit {
                b.randn(&mut init, &mut x)?;
            }
            full.len() - 1
        };
        let chain = Chain::new(&full.steps()[..=k], &full.betas()[..=k], &full.abar()[..=k])
            .expect("a prefix of a valid chain is valid");
        let stats = match self.method {
            Method::Dps => sampler::dps(b, &chain, op, y, &DpsConfig { zeta: self.zeta }, &mut x, &mut rngs, mon)?,
            Method::Ald => {
                let cfg = AldConfig { lambda: self.lambda, sigma_y: self.sigma_y, max_step: 1.0 };
                sampler::ald(b, &chain, op, y, &cfg, &mut x, &mut rngs, mon)?
            }
            Method::Sdedit => {
                op.init_estimate(b, y, &mut x)?;
                let cfg = SdeditConfig { t0: self.t0, lambda: self.lambda };
                sampler::sdedit(b, &chain, op, y, &cfg, &mut x, &mut init, &mut rngs, mon)?
            }
            Method::DiffPir => {
                let cfg = DiffpirConfig { lambda: self.lambda, zeta: self.zeta, sigma_y: self.sigma_y.max(1e-3) };
                sampler::diffpir(b, &chain, op, y, &cfg, &mut x, &mut rngs, mon)?
            }
            Method::Daps => {
                let cfg = self.daps.as_ref().expect("Plan::new sets DAPS's settings");
                sampler::daps(b, &chain, op, y, cfg, &mut x, &mut rngs, mon)?
            }
            _ => unreachable!("Plan::new takes diffusion methods only"),
        };
        b.clamp(&mut x, -1.0, 1.0)?;
        Ok((x, stats))
    }
}

/// The classical baselines: no network, the iteration count in `settings.steps`; `denoiser`
/// is HQS-DnCNN's network (required for it, ignored by the others).
///
/// # Errors
/// [`Error::Parameter`] for a setting out of range or a missing denoiser, operator errors, a
/// diverging iterate, or cancellation by `monitor`.
#[allow(clippy::too_many_arguments)]
pub fn restore_classical(
    method: Method,
    task: Task,
    settings: &Settings,
    denoiser: Option<&Denoiser>,
    op: &Op,
    y: &Tensor,
    sigma_y: f64,
    monitor: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Output> {
    use crate::classical::{self, PnpConfig, TvConfig};
    if method.is_diffusion() {
        return Err(Error::parameter("method", method.name(), "is not a classical method"));
    }
    settings.check(method)?;
    method.check_task(task)?;
    if !op.is_linear() {
        return Err(Error::parameter("method", method.name(), format!("needs a linear operator, not {}", op.name())));
    }
    let d = Defaults::for_task(method, task, sigma_y);
    let iters = settings.steps.unwrap_or(d.steps);
    let lambda = settings.lambda.unwrap_or(d.lambda);
    let tv = TvConfig { lambda, iters, tol: 1e-4 };
    let mut params = vec![("iterations", iters as f64), ("lambda", lambda)];
    let out = match method {
        Method::AdamTv => classical::adam_tv(op, y, &tv, d.lr, 1e-3, monitor)?,
        Method::HqsTv => {
            let (mu0, growth) = hqs_tv_schedule(lambda, iters);
            classical::hqs_tv(op, y, &tv, mu0, growth, monitor)?
        }
        Method::AdmmTv => classical::admm_tv(op, y, &tv, d.mu, monitor)?,
        Method::HqsDncnn => {
            let den = denoiser.ok_or_else(|| Error::parameter("denoiser", "none", "is needed by hqs-dncnn"))?;
            let cfg = PnpConfig { lambda, iters, sigma_start: 49.0 / 255.0 };
            params.push(("sigma_start", cfg.sigma_start));
            classical::hqs_denoiser(op, y, den, &cfg, sigma_y, monitor)?
        }
        _ => unreachable!("diffusion methods are refused above"),
    };
    params[0].1 = out.iters as f64;
    let mut x = out.x;
    x.data_mut().iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
    Ok(Output { x, nfe: 0, vjps: 0, params })
}
