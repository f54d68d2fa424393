//! The forward process and the conversions between `x_0`, `eps` and the score (methods.md §2-3),
//! as functions over caller-provided slices. Scalars come in as f64 and are rounded once.

use crate::float::Float;
use crate::schedule::StepCoefs;

#[inline]
fn check(a: usize, b: usize, what: &str) {
    assert!(a == b, "{what}: slice lengths differ ({a} vs {b})");
}

/// The coefficients `(sqrt(abar), sqrt(1 - abar))` of `q_sample`.
pub fn q_sample_coefs(abar: f64) -> (f64, f64) {
    (libm::sqrt(abar), libm::sqrt(1.0 - abar))
}

/// Where a reverse chain starts from a measurement `y = x_0 + sigma_y n` (Gaussian denoising):
/// the first step `k` of the chain's `abar` whose noise-to-signal ratio `(1 - abar)/abar`
/// reaches `sigma_y^2` (the last step if none does), with the coefficients `(a, c)` that make
/// `x_t = a y + c z` distributed exactly as `q(x_t | x_0)` there: `a = sqrt(abar)`,
/// `c = sqrt(1 - abar - abar sigma_y^2)` (the noise `y` lacks).
pub fn start_from_measurement(abar: &[f64], sigma_y: f64) -> (usize, f64, f64) {
    let s2 = sigma_y * sigma_y;
    let k = abar.iter().position(|&a| (1.0 - a) >= a * s2).unwrap_or(abar.len().saturating_sub(1));
    let a = abar.get(k).copied().unwrap_or(1.0);
    (k, libm::sqrt(a), libm::sqrt((1.0 - a - a * s2).max(0.0)))
}

/// `x_t = sqrt(abar) x_0 + sqrt(1 - abar) z`.
pub fn q_sample<F: Float>(x0: &[F], noise: &[F], abar: f64, out: &mut [F]) {
    check(x0.len(), noise.len(), "q_sample");
    check(x0.len(), out.len(), "q_sample");
    let (a, s) = q_sample_coefs(abar);
    let (a, s) = (F::from_f64(a), F::from_f64(s));
    for ((o, &x), &z) in out.iter_mut().zip(x0).zip(noise) {
        *o = a * x + s * z;
    }
}

/// The model's estimate of `x_0`: `sqrt(1/abar) x_t - sqrt(1/abar - 1) eps` (guided-diffusion's
/// form, equal to `(x_t - sqrt(1 - abar) eps)/sqrt(abar)`), clipped to [-1, 1] when `clip`.
pub fn predict_x0<F: Float>(x_t: &[F], eps: &[F], c: &StepCoefs, clip: bool, out: &mut [F]) {
    check(x_t.len(), eps.len(), "predict_x0");
    check(x_t.len(), out.len(), "predict_x0");
    let a = F::from_f64(c.sqrt_recip_abar());
    let b = F::from_f64(c.sqrt_recipm1_abar());
    for ((o, &x), &e) in out.iter_mut().zip(x_t).zip(eps) {
        let v = a * x - b * e;
        *o = if clip { v.clamp_to(-F::ONE, F::ONE) } else { v };
    }
}

/// `eps_from_x0` as one linear combination `(x_t coefficient, x_0 coefficient)`.
pub fn eps_from_x0_coefs(c: &StepCoefs) -> (f64, f64) {
    let inv_b = 1.0 / c.sqrt_recipm1_abar();
    (c.sqrt_recip_abar() * inv_b, -inv_b)
}

/// `eps = (sqrt(1/abar) x_t - x_0)/sqrt(1/abar - 1)`, the noise that explains `x_t` given `x_0`.
pub fn eps_from_x0<F: Float>(x_t: &[F], x0: &[F], c: &StepCoefs, out: &mut [F]) {
    check(x_t.len(), x0.len(), "eps_from_x0");
    check(x_t.len(), out.len(), "eps_from_x0");
    let a = F::from_f64(c.sqrt_recip_abar());
    let inv_b = F::from_f64(1.0 / c.sqrt_recipm1_abar());
    for ((o, &x), &x0) in out.iter_mut().zip(x_t).zip(x0) {
        *o = (a * x - x0) * inv_b;
    }
}

/// The score `grad log p(x_t) = -eps/sqrt(1 - abar)`.
pub fn score_from_eps<F: Float>(eps: &[F], abar: f64, out: &mut [F]) {
    check(eps.len(), out.len(), "score_from_eps");
    let s = F::from_f64(-1.0 / libm::sqrt(1.0 - abar));
    for (o, &e) in out.iter_mut().zip(eps) {
        *o = s * e;
    }
}

/// The posterior mean `coef1 x_0 + coef2 x_t` of `q(x_{t-1} | x_t, x_0)`.
pub fn posterior_mean<F: Float>(x0: &[F], x_t: &[F], c: &StepCoefs, out: &mut [F]) {
    check(x0.len(), x_t.len(), "posterior_mean");
    check(x0.len(), out.len(), "posterior_mean");
    let c1 = F::from_f64(c.coef1);
    let c2 = F::from_f64(c.coef2);
    for ((o, &a), &b) in out.iter_mut().zip(x0).zip(x_t) {
        *o = c1 * a + c2 * b;
    }
}

/// The bounds `(log(beta), logvar_clipped)` the learned range interpolates between.
pub fn learned_range_bounds(c: &StepCoefs) -> (f64, f64) {
    (libm::log(c.beta), c.posterior_log_variance_clipped)
}

/// The learned-range log-variance of one element: `frac log(beta) + (1 - frac) logvar_clipped`,
/// `frac = (v + 1)/2`.
#[inline]
pub fn learned_range_log_variance<F: Float>(v: F, c: &StepCoefs) -> F {
    let (max_log, min_log) = learned_range_bounds(c);
    let (max_log, min_log) = (F::from_f64(max_log), F::from_f64(min_log));
    let frac = (v + F::ONE) * F::from_f64(0.5);
    frac * max_log + (F::ONE - frac) * min_log
}

/// The standard deviation `exp(logvar/2)` of a fixed log-variance.
pub fn fixed_sigma(log_variance: f64) -> f64 {
    libm::exp(0.5 * log_variance)
}

/// `out = mean + exp(logvar/2) z` with a fixed log-variance; `z = None` adds no noise (step 0).
pub fn sample_fixed<F: Float>(mean: &[F], log_variance: f64, z: Option<&[F]>, out: &mut [F]) {
    check(mean.len(), out.len(), "sample_fixed");
    match z {
        None => out.copy_from_slice(mean),
        Some(z) => {
            check(mean.len(), z.len(), "sample_fixed");
            let s = F::from_f64(fixed_sigma(log_variance));
            for ((o, &m), &z) in out.iter_mut().zip(mean).zip(z) {
                *o = m + s * z;
            }
        }
    }
}

/// `out = mean + exp(logvar(v)/2) z` with the learned-range variance from the model's `v`.
pub fn sample_learned_range<F: Float>(mean: &[F], v: &[F], c: &StepCoefs, z: Option<&[F]>, out: &mut [F]) {
    check(mean.len(), out.len(), "sample_learned_range");
    check(mean.len(), v.len(), "sample_learned_range");
    match z {
        None => out.copy_from_slice(mean),
        Some(z) => {
            check(mean.len(), z.len(), "sample_learned_range");
            let half = F::from_f64(0.5);
            for (((o, &m), &v), &z) in out.iter_mut().zip(mean).zip(v).zip(z) {
                *o = m + (half * learned_range_log_variance(v, c)).exp() * z;
            }
        }
    }
}
