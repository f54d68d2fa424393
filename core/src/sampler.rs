//! The sampler and solver loops (methods.md §4, §5, §7, §8, §9, §11), written once against
//! [`Backend`] and [`Operator`], so the same loop drives the CPU and the CUDA backend.
//!
//! Every loop walks a [`Chain`] from a start index down to 0, calls `monitor` after every step
//! (returning `false` cancels), and stops with [`SampleError::NonFinite`] or
//! [`SampleError::Diverged`] instead of producing a black image when the iterate blows up.

use crate::backend::{Backend, Operator};
use crate::rng::NoiseStream;
use crate::schedule::{Chain, StepCoefs, VarianceKind};
use crate::update::{ald_weight, diffpir_rho};

/// Iterates larger than this (in [-1, 1] image units) are treated as divergence.
pub const DIVERGENCE_LIMIT: f64 = 1.0e3;

/// Observes a running loop.
pub trait Monitor {
    /// Called after step `done` of `total`; return `false` to cancel the run.
    fn step(&mut self, done: usize, total: usize) -> bool;

    /// Called just before [`Monitor::step`] with the loop's current estimate of the clean image
    /// (a live preview); the default ignores it. Reading it ([`Backend::read_f32`]) costs a
    /// device transfer, so a watcher reads only the steps it shows.
    ///
    /// # Errors
    /// The backend's, from reading the estimate.
    fn estimate<B: Backend>(
        &mut self,
        _b: &mut B,
        _x0: &B::Tensor,
        _done: usize,
        _total: usize,
    ) -> Result<(), B::Error> {
        Ok(())
    }
}

impl Monitor for () {
    fn step(&mut self, _: usize, _: usize) -> bool {
        true
    }
}

impl<F: FnMut(usize, usize) -> bool> Monitor for F {
    fn step(&mut self, done: usize, total: usize) -> bool {
        self(done, total)
    }
}

/// Why a loop stopped early.
#[derive(Debug)]
pub enum SampleError<E> {
    /// The backend failed.
    Backend(E),
    /// The iterate holds a NaN or an infinity.
    NonFinite {
        /// The method that was running.
        method: &'static str,
        /// The original timestep of the step.
        t: usize,
    },
    /// The iterate grew past [`DIVERGENCE_LIMIT`].
    Diverged {
        /// The method that was running.
        method: &'static str,
        /// The original timestep of the step.
        t: usize,
        /// The largest |x| seen.
        max_abs: f64,
    },
    /// The monitor asked to stop.
    Cancelled,
    /// A parameter is out of its range.
    BadParameter {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: f64,
        /// The rule it breaks.
        reason: &'static str,
    },
}

impl<E> From<E> for SampleError<E> {
    fn from(e: E) -> Self {
        SampleError::Backend(e)
    }
}

impl<E: core::fmt::Display> core::fmt::Display for SampleError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SampleError::Backend(e) => write!(f, "{e}"),
            SampleError::NonFinite { method, t } => {
                write!(f, "{method}: the iterate became NaN or infinite at step t={t}")
            }
            SampleError::Diverged { method, t, max_abs } => write!(
                f,
                "{method}: the iterate diverged at step t={t} (max |x| = {max_abs:.3e}); try a smaller step size"
            ),
            SampleError::Cancelled => write!(f, "cancelled"),
            SampleError::BadParameter { name, value, reason } => write!(f, "{name} {reason}, got {value}"),
        }
    }
}

/// What a loop did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Network evaluations per image.
    pub nfe: usize,
    /// Network input-gradients (vector-Jacobian products) per image.
    pub vjps: usize,
}

type Res<B> = Result<Stats, SampleError<<B as Backend>::Error>>;

fn guard<B: Backend>(b: &mut B, x: &B::Tensor, method: &'static str, t: usize) -> Result<(), SampleError<B::Error>> {
    let m = b.max_abs(x)?;
    if !m.is_finite() {
        return Err(SampleError::NonFinite { method, t });
    }
    if m > DIVERGENCE_LIMIT {
        return Err(SampleError::Diverged { method, t, max_abs: m });
    }
    Ok(())
}

/// `r = A(x) - y` and `g = J_A(x)^T r`, the gradient of `||A(x) - y||^2 / 2` (every loop's data
/// step; nonlinear operators through their vector-Jacobian product).
fn data_gradient<B: Backend, A: Operator<B> + ?Sized>(
    b: &mut B,
    op: &A,
    y: &B::Tensor,
    x: &B::Tensor,
    r: &mut B::Tensor,
    g: &mut B::Tensor,
) -> Result<(), B::Error> {
    op.forward(b, x, r)?;
    b.axpy(-1.0, y, r)?;
    op.vjp(b, x, r, g)
}

/// Shows `estimate` to the monitor, then reports the step (cancelling on `false`).
fn tick<B: Backend>(
    b: &mut B,
    monitor: &mut impl Monitor,
    done: usize,
    total: usize,
    estimate: &B::Tensor,
) -> Result<(), SampleError<B::Error>> {
    monitor.estimate(b, estimate, done, total)?;
    if monitor.step(done, total) {
        Ok(())
    } else {
        Err(SampleError::Cancelled)
    }
}

/// The scratch tensors every loop uses.
struct Scratch<T> {
    out: T,
    x0: T,
    next: T,
    z: T,
}

impl<T> Scratch<T> {
    fn new<B: Backend<Tensor = T>>(b: &mut B, x: &T) -> Result<Self, B::Error> {
        let s = b.shape(x);
        Ok(Scratch {
            out: b.zeros([s[0], b.model_out_channels(), s[2], s[3]])?,
            x0: b.zeros(s)?,
            next: b.zeros(s)?,
            z: b.zeros(s)?,
        })
    }
}

/// Draws the step noise (none at step 0) and writes `next = posterior_mean + sigma z`.
fn p_sample<B: Backend>(
    b: &mut B,
    s: &mut Scratch<B::Tensor>,
    x: &B::Tensor,
    c: &StepCoefs,
    rngs: &mut [NoiseStream],
) -> Result<(), B::Error> {
    let kind = b.variance();
    if c.index > 0 {
        b.randn(rngs, &mut s.z)?;
        b.posterior_sample(&s.x0, x, &s.out, c, kind, Some(&s.z), &mut s.next)
    } else {
        b.posterior_sample(&s.x0, x, &s.out, c, kind, None, &mut s.next)
    }
}

fn check_start<E>(chain: &Chain<'_>, start: usize) -> Result<(), SampleError<E>> {
    if start >= chain.len() {
        Err(SampleError::BadParameter { name: "start", value: start as f64, reason: "must be a step of the chain" })
    } else {
        Ok(())
    }
}

/// Ancestral DDPM (`ddim_eta = None`) or DDIM sampling from chain index `start` down to 0;
/// `x` holds `x_t` at `start` on entry and the sample on return. `rngs` holds one step-noise
/// stream per image.
pub fn reverse<B: Backend>(
    b: &mut B,
    chain: &Chain<'_>,
    start: usize,
    ddim_eta: Option<f64>,
    x: &mut B::Tensor,
    rngs: &mut [NoiseStream],
    monitor: &mut impl Monitor,
) -> Res<B> {
    check_start(chain, start)?;
    let mut s = Scratch::new(b, x)?;
    let mut eps = b.zeros(b.shape(x))?;
    let method = if ddim_eta.is_some() { "ddim" } else { "ddpm" };
    for k in (0..=start).rev() {
        let c = chain.coefs(k);
        b.model(x, c.t, &mut s.out)?;
        b.predict_x0(x, &s.out, &c, true, &mut s.x0)?;
        match ddim_eta {
            Some(eta) => {
                b.eps_from_x0(x, &s.x0, &c, &mut eps)?;
                let z = if eta > 0.0 && k > 0 {
                    b.randn(rngs, &mut s.z)?;
                    Some(&s.z)
                } else {
                    None
                };
                b.ddim_step(&s.x0, &eps, z, c.abar, c.abar_prev, eta, &mut s.next)?;
            }
            None => p_sample(b, &mut s, x, &c, rngs)?,
        }
        core::mem::swap(x, &mut s.next);
        guard(b, x, method, c.t)?;
        tick(b, monitor, start + 1 - k, start + 1, &s.x0)?;
    }
    Ok(Stats { nfe: start + 1, vjps: 0 })
}

/// One-shot denoising: `out = x0_hat(x_t)` at original timestep `c.t` (unclipped when `!clip`).
pub fn denoise_one_shot<B: Backend>(
    b: &mut B,
    c: &StepCoefs,
    x_t: &B::Tensor,
    clip: bool,
    out: &mut B::Tensor,
) -> Res<B> {
    let s = b.shape(x_t);
    let mut mo = b.zeros([s[0], b.model_out_channels(), s[2], s[3]])?;
    b.model(x_t, c.t, &mut mo)?;
    b.predict_x0(x_t, &mo, c, clip, out)?;
    Ok(Stats { nfe: 1, vjps: 0 })
}

/// SDEdit settings (methods.md §7).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SdeditConfig {
    /// The original timestep to noise the initial estimate to.
    pub t0: usize,
    /// Step size of the data-fidelity step on `x0_hat` (non-mask operators); 0 turns it off.
    pub lambda: f64,
}

/// SDEdit: noise `x` (the initial estimate from the measurement) to `t0` with the `init` noise
/// streams, then run the reverse chain; inpainting re-imposes the noised measurement at every
/// step (RePaint's blend), other operators take a gradient step on `x0_hat`.
#[allow(clippy::too_many_arguments)]
pub fn sdedit<B: Backend, A: Operator<B> + ?Sized>(
    b: &mut B,
    chain: &Chain<'_>,
    op: &A,
    y: &B::Tensor,
    cfg: &SdeditConfig,
    x: &mut B::Tensor,
    init_rngs: &mut [NoiseStream],
    rngs: &mut [NoiseStream],
    monitor: &mut impl Monitor,
) -> Res<B> {
    let start = chain.index_at_or_below(cfg.t0).ok_or(SampleError::BadParameter {
        name: "t0",
        value: cfg.t0 as f64,
        reason: "must not be below the chain's first step",
    })?;
    let mut s = Scratch::new(b, x)?;
    let shape = b.shape(x);
    let c0 = chain.coefs(start);
    b.randn(init_rngs, &mut s.z)?;
    b.q_sample(x, &s.z, c0.abar, &mut s.next)?;
    core::mem::swap(x, &mut s.next);
    let ys = b.shape(y);
    let mut ax = b.zeros(ys)?;
    let mut g = b.zeros(shape)?;
    let mut yt = b.zeros(ys)?;
    for k in (0..=start).rev() {
        let c = chain.coefs(k);
        b.model(x, c.t, &mut s.out)?;
        b.predict_x0(x, &s.out, &c, true, &mut s.x0)?;
        if op.mask().is_none() && cfg.lambda > 0.0 {
            data_gradient(b, op, y, &s.x0, &mut ax, &mut g)?;
            b.axpy(-cfg.lambda, &g, &mut s.x0)?;
            b.clamp(&mut s.x0, -1.0, 1.0)?;
        }
        p_sample(b, &mut s, x, &c, rngs)?;
        if let Some(mask) = op.mask() {
            // M q_sample(y, t-1) + (1 - M) x_{t-1}; at the last step abar_prev = 1 gives y.
            b.randn(rngs, &mut s.z)?;
            b.q_sample(y, &s.z, c.abar_prev, &mut yt)?;
            // Blended into `z` (free once `yt` is drawn), so `x0` keeps the estimate for the preview.
            b.mask_blend(&s.next, &yt, mask, &mut s.z)?;
            core::mem::swap(&mut s.z, &mut s.next);
        }
        core::mem::swap(x, &mut s.next);
        guard(b, x, "sdedit", c.t)?;
        tick(b, monitor, start + 1 - k, start + 1, &s.x0)?;
    }
    Ok(Stats { nfe: start + 1, vjps: 0 })
}

/// Score-ALD settings (methods.md §8).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AldConfig {
    /// The per-task anneal factor `lambda`.
    pub lambda: f64,
    /// The measurement noise `sigma_y`.
    pub sigma_y: f64,
    /// The largest multiplier of `A^T (A x - y)` per step (`2 lambda/(2 (sigma_y^2 + gamma^2))`
    /// is capped here); 1 is a full projection step for masks and normalised blurs, beyond which
    /// the iterate overshoots `y`. `f64::INFINITY` leaves the rule uncapped.
    pub max_step: f64,
}

/// Score-ALD: the unconditional DDPM step, then
/// `x -= lambda/(2 (sigma_y^2 + gamma_t^2)) grad ||A x_t - y||^2` with `gamma_t = sqrt(1 - abar_t)`.
/// `x` holds `x_T` on entry.
#[allow(clippy::too_many_arguments)]
pub fn ald<B: Backend, A: Operator<B> + ?Sized>(
    b: &mut B,
    chain: &Chain<'_>,
    op: &A,
    y: &B::Tensor,
    cfg: &AldConfig,
    x: &mut B::Tensor,
    rngs: &mut [NoiseStream],
    monitor: &mut impl Monitor,
) -> Res<B> {
    let mut s = Scratch::new(b, x)?;
    let mut ax = b.zeros(b.shape(y))?;
    let mut g = b.zeros(b.shape(x))?;
    let n = chain.len();
    for k in (0..n).rev() {
        let c = chain.coefs(k);
        b.model(x, c.t, &mut s.out)?;
        b.predict_x0(x, &s.out, &c, true, &mut s.x0)?;
        p_sample(b, &mut s, x, &c, rngs)?;
        data_gradient(b, op, y, x, &mut ax, &mut g)?;
        let w = (2.0 * ald_weight(cfg.lambda, cfg.sigma_y, c.sqrt_one_minus_abar())).min(cfg.max_step);
        b.axpy(-w, &g, &mut s.next)?;
        core::mem::swap(x, &mut s.next);
        guard(b, x, "ald", c.t)?;
        tick(b, monitor, n - k, n, &s.x0)?;
    }
    Ok(Stats { nfe: n, vjps: 0 })
}

/// DPS settings (methods.md §9).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpsConfig {
    /// The step size `zeta` on the gradient of the (non-squared) residual norm.
    pub zeta: f64,
}

/// One DPS step's intermediate results, for tests against the reference.
pub struct DpsStepOut<'s, T> {
    /// The model output.
    pub model_out: &'s T,
    /// `x0_hat` before the clip.
    pub x0_raw: &'s T,
    /// The clipped `x0_hat`.
    pub x0: &'s T,
    /// The unconditional sample `x'_{t-1}`.
    pub sample: &'s T,
    /// `grad_{x_t} ||y - A x0_hat||` (per image).
    pub grad: &'s T,
    /// `||y - A x0_hat||` per image.
    pub norms: &'s [f64],
}

/// The scratch of a DPS run; reused across steps.
pub struct DpsWork<T> {
    s: Scratch<T>,
    x0_raw: T,
    ax: T,
    g: T,
    cot: T,
    gx: T,
    norms: [f64; MAX_BATCH],
}

/// The largest batch the DPS loop's per-image norms support.
pub const MAX_BATCH: usize = 64;

impl<T> DpsWork<T> {
    /// Scratch for iterates shaped like `x` and measurements shaped like `y`.
    pub fn new<B: Backend<Tensor = T>>(b: &mut B, x: &T, y: &T) -> Result<Self, SampleError<B::Error>> {
        let shape = b.shape(x);
        if shape[0] > MAX_BATCH {
            return Err(SampleError::BadParameter {
                name: "batch",
                value: shape[0] as f64,
                reason: "must be at most MAX_BATCH (64) for DPS",
            });
        }
        let s = Scratch::new(b, x)?;
        let cot = b.zeros(b.shape(&s.out))?;
        Ok(DpsWork {
            x0_raw: b.zeros(shape)?,
            ax: b.zeros(b.shape(y))?,
            g: b.zeros(shape)?,
            gx: b.zeros(shape)?,
            cot,
            s,
            norms: [0.0; MAX_BATCH],
        })
    }
}

/// One DPS step at chain step `c` with the given step noise `z` (None at step 0): computes
/// `next = x'_{t-1} - zeta grad_{x_t} ||y - A x0_hat(x_t)||` and returns the intermediates.
/// `next` must not alias `x`.
#[allow(clippy::too_many_arguments)]
pub fn dps_step<'w, B: Backend, A: Operator<B> + ?Sized>(
    b: &mut B,
    c: &StepCoefs,
    op: &A,
    y: &B::Tensor,
    zeta: f64,
    x: &B::Tensor,
    z: Option<&B::Tensor>,
    w: &'w mut DpsWork<B::Tensor>,
    next: &mut B::Tensor,
) -> Result<DpsStepOut<'w, B::Tensor>, B::Error> {
    let n = b.shape(x)[0];
    let kind: VarianceKind = b.variance();
    let tape = b.model_for_grad(x, c.t, &mut w.s.out)?;
    b.predict_x0(x, &w.s.out, c, false, &mut w.x0_raw)?;
    b.copy(&w.x0_raw, &mut w.s.x0)?;
    b.clamp(&mut w.s.x0, -1.0, 1.0)?;
    b.posterior_sample(&w.s.x0, x, &w.s.out, c, kind, z, &mut w.s.next)?;
    // d||A(x0) - y||/d x0 = J^T (A(x0) - y)/||A(x0) - y||, per image (J = A for linear A).
    data_gradient(b, op, y, &w.s.x0, &mut w.ax, &mut w.g)?;
    b.norms(&w.ax, &mut w.norms[..n])?;
    let mut inv = [0.0; MAX_BATCH];
    for (i, &nm) in inv.iter_mut().zip(&w.norms[..n]) {
        *i = if nm > 0.0 { 1.0 / nm } else { 0.0 };
    }
    b.scale_images(&mut w.g, &inv[..n])?;
    b.clip_gradient(&w.x0_raw, &mut w.g)?;
    // x0_raw = sqrt(1/abar) x_t - sqrt(1/abar - 1) eps(x_t).
    b.embed_channels(&w.g, -c.sqrt_recipm1_abar(), &mut w.cot)?;
    b.model_vjp(tape, &w.cot, &mut w.gx)?;
    b.axpy(c.sqrt_recip_abar(), &w.g, &mut w.gx)?;
    b.axpby(1.0, &w.s.next, -zeta, &w.gx, next)?;
    Ok(DpsStepOut {
        model_out: &w.s.out,
        x0_raw: &w.x0_raw,
        x0: &w.s.x0,
        sample: &w.s.next,
        grad: &w.gx,
        norms: &w.norms[..n],
    })
}

/// DPS as the official code runs it: the DDPM step with the clipped `x0_hat`, then a step of
/// `zeta` down the gradient of `||y - A x0_hat||` (not squared, per image) through the network.
/// `x` holds `x_T` on entry.
#[allow(clippy::too_many_arguments)]
pub fn dps<B: Backend, A: Operator<B> + ?Sized>(
    b: &mut B,
    chain: &Chain<'_>,
    op: &A,
    y: &B::Tensor,
    cfg: &DpsConfig,
    x: &mut B::Tensor,
    rngs: &mut [NoiseStream],
    monitor: &mut impl Monitor,
) -> Res<B> {
    let mut w = DpsWork::new(b, x, y)?;
    let mut z = b.zeros(b.shape(x))?;
    let mut next = b.zeros(b.shape(x))?;
    let n = chain.len();
    for k in (0..n).rev() {
        let c = chain.coefs(k);
        let zr = if k > 0 {
            b.randn(rngs, &mut z)?;
            Some(&z)
        } else {
            None
        };
        dps_step(b, &c, op, y, cfg.zeta, x, zr, &mut w, &mut next)?;
        core::mem::swap(x, &mut next);
        guard(b, x, "dps", c.t)?;
        tick(b, monitor, n - k, n, &w.s.x0)?;
    }
    Ok(Stats { nfe: n, vjps: n })
}

/// DiffPIR settings (methods.md §11).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiffpirConfig {
    /// Weight `lambda` of the data term's proximity `rho_t = lambda sigma_y^2/sigma_t^2`.
    pub lambda: f64,
    /// Noise mixing `zeta` in [0, 1] (1 = fully fresh noise).
    pub zeta: f64,
    /// The measurement noise `sigma_y`.
    pub sigma_y: f64,
}

/// DiffPIR: `x0_hat`, then the data proximal step `argmin ||y - A x||^2 + rho_t ||x - x0_hat||^2`,
/// then re-noise to the previous step. No network gradients. `x` holds `x_T` on entry.
#[allow(clippy::too_many_arguments)]
pub fn diffpir<B: Backend, A: Operator<B> + ?Sized>(
    b: &mut B,
    chain: &Chain<'_>,
    op: &A,
    y: &B::Tensor,
    cfg: &DiffpirConfig,
    x: &mut B::Tensor,
    rngs: &mut [NoiseStream],
    monitor: &mut impl Monitor,
) -> Res<B> {
    if !(0.0..=1.0).contains(&cfg.zeta) {
        return Err(SampleError::BadParameter {
            name: "zeta",
            value: cfg.zeta,
            reason: "must be in [0, 1] for DiffPIR",
        });
    }
    let mut s = Scratch::new(b, x)?;
    let mut x0t = b.zeros(b.shape(x))?;
    let n = chain.len();
    for k in (0..n).rev() {
        let c = chain.coefs(k);
        b.model(x, c.t, &mut s.out)?;
        b.predict_x0(x, &s.out, &c, true, &mut s.x0)?;
        let rho = diffpir_rho(cfg.lambda, cfg.sigma_y, c.abar);
        op.data_solve(b, y, &s.x0, rho, &mut x0t)?;
        if k == 0 {
            b.copy(&x0t, &mut s.next)?;
            b.clamp(&mut s.next, -1.0, 1.0)?;
        } else {
            b.randn(rngs, &mut s.z)?;
            b.diffpir_step(&x0t, x, Some(&s.z), c.abar, c.abar_prev, cfg.zeta, &mut s.next)?;
        }
        core::mem::swap(x, &mut s.next);
        guard(b, x, "diffpir", c.t)?;
        tick(b, monitor, n - k, n, &x0t)?;
    }
    Ok(Stats { nfe: n, vjps: 0 })
}

/// DAPS settings (daps.md §2-§6; the official main code's structure).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DapsConfig {
    /// Annealing levels `N_A`.
    pub levels: usize,
    /// Euler steps of the probability-flow ODE per level (network evaluations per level).
    pub ode_steps: usize,
    /// Langevin steps on `x0` per level `N_L`.
    pub langevin_steps: usize,
    /// Langevin step size at the first level.
    pub lr: f64,
    /// The last level's step size over the first's.
    pub lr_min_ratio: f64,
    /// The likelihood's scale: the data term is `||A(x0) - y||^2 / tau^2` (a tuned weight, not
    /// the noise level).
    pub tau: f64,
    /// The first annealing level.
    pub sigma_max: f64,
    /// The last annealing level before 0.
    pub sigma_min: f64,
    /// Where each level's ODE ends (its `x0` estimate carries this much noise).
    pub sigma_ode_end: f64,
    /// The last level's Langevin steps without their noise (gradient steps towards the mode of
    /// its target rather than a sample of it).
    pub quiet_last: bool,
}

impl DapsConfig {
    fn check<E>(&self) -> Result<(), SampleError<E>> {
        let bad = |name, value: f64, reason| Err(SampleError::BadParameter { name, value, reason });
        if self.levels == 0 {
            return bad("levels", 0.0, "must be at least 1");
        }
        if self.ode_steps == 0 {
            return bad("ode_steps", 0.0, "must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", self.lr, "must be positive");
        }
        if !(self.lr_min_ratio.is_finite() && self.lr_min_ratio > 0.0 && self.lr_min_ratio <= 1.0) {
            return bad("lr_min_ratio", self.lr_min_ratio, "must be in (0, 1]");
        }
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return bad("tau", self.tau, "must be positive");
        }
        if !(self.sigma_ode_end > 0.0 && self.sigma_min >= self.sigma_ode_end && self.sigma_max > self.sigma_min) {
            return bad("sigma_max", self.sigma_max, "must exceed sigma_min, which must reach sigma_ode_end > 0");
        }
        if !self.sigma_max.is_finite() {
            return bad("sigma_max", self.sigma_max, "must be finite");
        }
        Ok(())
    }
}

/// The scratch of [`daps`]'s denoiser calls.
struct Denoise<T> {
    out: T,
    xin: T,
}

/// `d = D(z; sigma_k) = z - sigma_k eps(sqrt(abar_k) z, t_k)`: the model's `x0` estimate from a
/// VE state at chain step `k`.
fn ve_denoise<B: Backend>(
    b: &mut B,
    chain: &Chain<'_>,
    k: usize,
    z: &B::Tensor,
    w: &mut Denoise<B::Tensor>,
    d: &mut B::Tensor,
) -> Result<(), B::Error> {
    let c = chain.coefs(k);
    b.axpby(libm::sqrt(c.abar), z, 0.0, z, &mut w.xin)?;
    b.model(&w.xin, c.t, &mut w.out)?;
    b.predict_x0(&w.xin, &w.out, &c, false, d)
}

/// DAPS (Zhang et al. 2025): at each annealing level an ODE estimate `x0_hat` of `x0` from
/// `x_sigma` (no network gradients), Langevin steps on `x0` under
/// `N(x0_hat, sigma^2 I) * exp(-||A(x0) - y||^2 / tau^2)` that touch only the operator's
/// forward map and vector-Jacobian product, then re-noising to the next level. The state is
/// the VE variable `x0 + sigma eps`; `chain` is the model's full (unrespaced) chain, every sigma
/// snapped to its levels ([`crate::anneal`]). `x` holds standard normal noise on entry (scaled
/// to the first level here) and the last Langevin sample on return.
#[allow(clippy::too_many_arguments)]
pub fn daps<B: Backend, A: Operator<B> + ?Sized>(
    b: &mut B,
    chain: &Chain<'_>,
    op: &A,
    y: &B::Tensor,
    cfg: &DapsConfig,
    x: &mut B::Tensor,
    rngs: &mut [NoiseStream],
    monitor: &mut impl Monitor,
) -> Res<B> {
    use crate::anneal::{langevin_lr, level_sigma, poly7, snap, ve_sigma};
    cfg.check()?;
    let abar = chain.abar();
    let sig = |k: usize| ve_sigma(abar[k]);
    let level = |i: usize| {
        let s = level_sigma(cfg.sigma_max, cfg.sigma_min, i, cfg.levels);
        (s > 0.0).then(|| snap(abar, s))
    };
    let shape = b.shape(x);
    let mut w = Denoise { out: b.zeros([shape[0], b.model_out_channels(), shape[2], shape[3]])?, xin: b.zeros(shape)? };
    let (mut z, mut d, mut u, mut tmp, mut g, mut xi) =
        (b.zeros(shape)?, b.zeros(shape)?, b.zeros(shape)?, b.zeros(shape)?, b.zeros(shape)?, b.zeros(shape)?);
    let mut r = b.zeros(b.shape(y))?;
    let first = level(0).expect("level 0 is sigma_max > 0");
    b.axpby(sig(first), x, 0.0, x, &mut tmp)?;
    core::mem::swap(x, &mut tmp);
    let mut nfe = 0;
    for i in 0..cfg.levels {
        let ki = level(i).expect("levels below cfg.levels are positive");
        let s = sig(ki);
        // x0_hat: Euler steps of the probability-flow ODE, dz = (z - D(z))/g dg, from s down to
        // sigma_ode_end (levels that snap to the same network step are one level).
        b.copy(x, &mut z)?;
        let mut k = ki;
        for j in 1..=cfg.ode_steps {
            let kn = snap(abar, poly7(s, cfg.sigma_ode_end, j as f64 / cfg.ode_steps as f64));
            if kn == k {
                continue;
            }
            ve_denoise(b, chain, k, &z, &mut w, &mut d)?;
            let h = (sig(kn) - sig(k)) / sig(k);
            b.axpby(1.0 + h, &z, -h, &d, &mut tmp)?;
            core::mem::swap(&mut z, &mut tmp);
            nfe += 1;
            k = kn;
        }
        // Langevin on x0: u += eta ((x0_hat - u)/s^2 - grad ||A(u) - y||^2 / tau^2) + sqrt(2 eta) xi.
        let eta = langevin_lr(cfg.lr, cfg.lr_min_ratio, i, cfg.levels);
        let (prior, data) = (eta / (s * s), 2.0 * eta / (cfg.tau * cfg.tau));
        b.copy(&z, &mut u)?;
        for _ in 0..cfg.langevin_steps {
            data_gradient(b, op, y, &u, &mut r, &mut g)?;
            b.axpby(1.0 - prior, &u, prior, &z, &mut tmp)?;
            b.axpy(-data, &g, &mut tmp)?;
            b.randn(rngs, &mut xi)?;
            if i + 1 < cfg.levels || !cfg.quiet_last {
                b.axpy(libm::sqrt(2.0 * eta), &xi, &mut tmp)?;
            }
            core::mem::swap(&mut u, &mut tmp);
        }
        guard(b, &u, "daps", chain.coefs(ki).t)?;
        // Re-noise to the next level (the last level's sample is the output).
        match level(i + 1) {
            Some(kn) => {
                b.randn(rngs, &mut xi)?;
                b.axpby(1.0, &u, sig(kn), &xi, x)?;
            }
            None => b.copy(&u, x)?,
        }
        tick(b, monitor, i + 1, cfg.levels, &u)?;
    }
    Ok(Stats { nfe, vjps: 0 })
}
