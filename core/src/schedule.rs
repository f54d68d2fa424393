//! Noise schedules and the per-step constants of a (possibly respaced) chain.
//!
//! Everything here is computed in f64, as guided-diffusion does with numpy, and
//! handed to the update math as scalars.

/// How the betas of the base (training) chain are laid out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BetaSchedule {
    /// `beta_i = start + i (end - start)/(T - 1)`, scaled by `1000/T` as guided-diffusion does.
    Linear {
        /// beta at i = 0 (before the 1000/T scaling).
        start: f64,
        /// beta at i = T - 1 (before the 1000/T scaling).
        end: f64,
    },
    /// diffusers' `scaled_linear`: `beta_i = (sqrt(start) + i (sqrt(end) - sqrt(start))/(T - 1))^2`,
    /// not rescaled by `T`.
    ScaledLinear {
        /// beta at i = 0.
        start: f64,
        /// beta at i = T - 1.
        end: f64,
    },
    /// improved-DDPM cosine: `abar(t) = cos(((t/T + s)/(1 + s)) pi/2)^2`, betas capped at 0.999.
    Cosine {
        /// The offset `s` (0.008 in the paper).
        s: f64,
    },
}

impl BetaSchedule {
    /// DDPM's linear schedule, 1e-4 .. 0.02: the one both shipped and DPS models use.
    pub const LINEAR: Self = BetaSchedule::Linear { start: 1e-4, end: 0.02 };
    /// improved-DDPM's cosine schedule with `s = 0.008`.
    pub const COSINE: Self = BetaSchedule::Cosine { s: 0.008 };

    /// Writes the betas of a `T = out.len()` step chain.
    pub fn fill_betas(&self, out: &mut [f64]) {
        let t = out.len();
        match *self {
            BetaSchedule::Linear { start, end } => {
                let scale = 1000.0 / t as f64;
                linspace(scale * start, scale * end, out);
            }
            BetaSchedule::ScaledLinear { start, end } => {
                linspace(libm::sqrt(start), libm::sqrt(end), out);
                out.iter_mut().for_each(|b| *b *= *b);
            }
            BetaSchedule::Cosine { s } => {
                let f = |u: f64| {
                    let c = libm::cos((u + s) / (1.0 + s) * core::f64::consts::FRAC_PI_2);
                    c * c
                };
                for (i, b) in out.iter_mut().enumerate() {
                    let t1 = i as f64 / t as f64;
                    let t2 = (i + 1) as f64 / t as f64;
                    *b = (1.0 - f(t2) / f(t1)).min(0.999);
                }
            }
        }
    }
}

/// numpy's `linspace(start, stop, n)`: `start + i*step`, with the last element exactly `stop`.
fn linspace(start: f64, stop: f64, out: &mut [f64]) {
    let n = out.len();
    if n == 0 {
        return;
    }
    if n == 1 {
        out[0] = start;
        return;
    }
    let step = (stop - start) / (n - 1) as f64;
    for (i, v) in out.iter_mut().enumerate() {
        *v = i as f64 * step + start;
    }
    out[n - 1] = stop;
}

/// `abar_i = prod_{j <= i} (1 - beta_j)`, accumulated left to right as numpy's cumprod does.
pub fn alphas_cumprod(betas: &[f64], out: &mut [f64]) {
    assert_eq!(betas.len(), out.len(), "alphas_cumprod: length mismatch");
    let mut acc = 1.0;
    for (b, o) in betas.iter().zip(out.iter_mut()) {
        acc *= 1.0 - b;
        *o = acc;
    }
}

/// How the reverse process's variance is chosen (guided-diffusion `ModelVarType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarianceKind {
    /// The posterior variance `beta~_t` (DDPM's "fixed small").
    FixedSmall,
    /// `beta_t`, with step 0 replaced by the posterior variance of step 1 ("fixed large").
    FixedLarge,
    /// The model's extra channels `v` interpolate between the two logs ("learned range").
    LearnedRange,
}

/// The constants of one step of a chain, as guided-diffusion's `GaussianDiffusion` builds them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCoefs {
    /// The step's position in the chain (0 = the cleanest).
    pub index: usize,
    /// The original timestep the model is called with.
    pub t: usize,
    /// beta of this step (respaced betas for respaced chains).
    pub beta: f64,
    /// `abar_t`.
    pub abar: f64,
    /// `abar_{t-1}` (1 at index 0).
    pub abar_prev: f64,
    /// The posterior variance `beta (1 - abar_prev)/(1 - abar)`.
    pub posterior_variance: f64,
    /// `log` of the posterior variance, with index 0 taking index 1's value.
    pub posterior_log_variance_clipped: f64,
    /// `log` of the fixed-large variance.
    pub log_variance_large: f64,
    /// Posterior mean coefficient of `x_0`.
    pub coef1: f64,
    /// Posterior mean coefficient of `x_t`.
    pub coef2: f64,
}

impl StepCoefs {
    /// `sqrt(1/abar)`, guided-diffusion's `sqrt_recip_alphas_cumprod`.
    #[inline]
    pub fn sqrt_recip_abar(&self) -> f64 {
        libm::sqrt(1.0 / self.abar)
    }
    /// `sqrt(1/abar - 1)`, guided-diffusion's `sqrt_recipm1_alphas_cumprod`.
    #[inline]
    pub fn sqrt_recipm1_abar(&self) -> f64 {
        libm::sqrt(1.0 / self.abar - 1.0)
    }
    /// `sqrt(1 - abar)`, the noise level of `x_t`.
    #[inline]
    pub fn sqrt_one_minus_abar(&self) -> f64 {
        libm::sqrt(1.0 - self.abar)
    }
    /// The log-variance of the step for a fixed variance kind (learned range needs `v`).
    #[inline]
    pub fn fixed_log_variance(&self, kind: VarianceKind) -> f64 {
        match kind {
            VarianceKind::FixedLarge => self.log_variance_large,
            _ => self.posterior_log_variance_clipped,
        }
    }
}

/// Errors of the schedule and respacing functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleError {
    /// The chain's slices have different lengths or are empty.
    Length,
    /// The respacing specification could not be parsed.
    BadSpec,
    /// A section asks for more steps than it has.
    SectionTooSmall {
        /// The section's size.
        size: usize,
        /// The steps asked for.
        count: usize,
    },
    /// No stride gives exactly the requested number of DDIM steps.
    NoDdimStride {
        /// The requested step count.
        steps: usize,
    },
    /// The output buffer is too short.
    BufferTooSmall {
        /// How many entries are needed.
        needed: usize,
    },
    /// Timesteps must be strictly increasing and inside the base chain.
    BadTimesteps,
}

impl core::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ScheduleError::Length => write!(f, "schedule slices are empty or of different lengths"),
            ScheduleError::BadSpec => write!(
                f,
                "bad respacing spec: expected a step count (\"100\"), section counts (\"25,25,25,25\") or \"ddimN\""
            ),
            ScheduleError::SectionTooSmall { size, count } => {
                write!(f, "cannot take {count} steps from a section of {size} steps")
            }
            ScheduleError::NoDdimStride { steps } => {
                write!(f, "no integer stride gives exactly {steps} DDIM steps")
            }
            ScheduleError::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} entries needed")
            }
            ScheduleError::BadTimesteps => {
                write!(f, "timesteps must be strictly increasing and inside the base chain")
            }
        }
    }
}

/// A chain of diffusion steps: the original timestep of each step, its beta and its `abar`.
///
/// The base chain is `steps = 0..T`; a respaced chain keeps a subset (see [`crate::respace`]).
#[derive(Clone, Copy, Debug)]
pub struct Chain<'a> {
    steps: &'a [usize],
    betas: &'a [f64],
    abar: &'a [f64],
}

impl<'a> Chain<'a> {
    /// A chain from its timesteps (ascending), betas and cumulative products.
    pub fn new(steps: &'a [usize], betas: &'a [f64], abar: &'a [f64]) -> Result<Self, ScheduleError> {
        if steps.is_empty() || steps.len() != betas.len() || steps.len() != abar.len() {
            return Err(ScheduleError::Length);
        }
        if steps.windows(2).any(|w| w[0] >= w[1]) {
            return Err(ScheduleError::BadTimesteps);
        }
        Ok(Chain { steps, betas, abar })
    }

    /// Number of steps.
    #[inline]
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Always false: a chain has at least one step.
    #[inline]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The original timesteps, ascending.
    #[inline]
    pub fn steps(&self) -> &'a [usize] {
        self.steps
    }

    /// The betas.
    #[inline]
    pub fn betas(&self) -> &'a [f64] {
        self.betas
    }

    /// The cumulative products `abar`.
    #[inline]
    pub fn abar(&self) -> &'a [f64] {
        self.abar
    }

    /// The index of the last step whose original timestep is `<= t` (for starting a chain at `t`).
    pub fn index_at_or_below(&self, t: usize) -> Option<usize> {
        match self.steps.binary_search(&t) {
            Ok(i) => Some(i),
            Err(0) => None,
            Err(i) => Some(i - 1),
        }
    }

    fn posterior_variance_at(&self, k: usize) -> f64 {
        let abar_prev = if k == 0 { 1.0 } else { self.abar[k - 1] };
        self.betas[k] * (1.0 - abar_prev) / (1.0 - self.abar[k])
    }

    /// The constants of step `k`.
    pub fn coefs(&self, k: usize) -> StepCoefs {
        let beta = self.betas[k];
        let abar = self.abar[k];
        let abar_prev = if k == 0 { 1.0 } else { self.abar[k - 1] };
        let alpha = 1.0 - beta;
        let var = self.posterior_variance_at(k);
        // guided-diffusion clips the log at step 0 (variance 0) with step 1's value.
        let var1 = if self.len() > 1 { self.posterior_variance_at(1) } else { beta };
        let logvar_clipped = if k == 0 { libm::log(var1) } else { libm::log(var) };
        let log_large = if k == 0 { libm::log(var1) } else { libm::log(beta) };
        StepCoefs {
            index: k,
            t: self.steps[k],
            beta,
            abar,
            abar_prev,
            posterior_variance: var,
            posterior_log_variance_clipped: logvar_clipped,
            log_variance_large: log_large,
            coef1: beta * libm::sqrt(abar_prev) / (1.0 - abar),
            coef2: (1.0 - abar_prev) * libm::sqrt(alpha) / (1.0 - abar),
        }
    }
}
