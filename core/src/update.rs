//! The update rules of the samplers and solvers (methods.md §4, §7-9, §11) over slices.

use crate::float::Float;

#[inline]
fn check(a: usize, b: usize, what: &str) {
    assert!(a == b, "{what}: slice lengths differ ({a} vs {b})");
}

/// DDIM's noise scale `eta sqrt((1 - abar_prev)/(1 - abar)) sqrt(1 - abar/abar_prev)`.
pub fn ddim_sigma(abar: f64, abar_prev: f64, eta: f64) -> f64 {
    if eta == 0.0 {
        // Also keeps the deterministic step usable in the inverting direction (abar_prev < abar).
        return 0.0;
    }
    eta * libm::sqrt((1.0 - abar_prev) / (1.0 - abar)) * libm::sqrt(1.0 - abar / abar_prev)
}

/// The coefficients of a DDIM step `x0 x0 + eps eps + z z`, computed once for every backend.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdimCoefs {
    /// `sqrt(abar_prev)`.
    pub x0: f64,
    /// `sqrt(1 - abar_prev - s^2)`.
    pub eps: f64,
    /// The noise scale `s` ([`ddim_sigma`]); 0 when deterministic.
    pub z: f64,
}

impl DdimCoefs {
    /// The step from `abar` to `abar_prev` with noise `eta`.
    pub fn new(abar: f64, abar_prev: f64, eta: f64) -> Self {
        let s = ddim_sigma(abar, abar_prev, eta);
        DdimCoefs { x0: libm::sqrt(abar_prev), eps: libm::sqrt((1.0 - abar_prev - s * s).max(0.0)), z: s }
    }
}

/// One DDIM step: `sqrt(abar_prev) x0 + sqrt(1 - abar_prev - s^2) eps + s z`.
/// With `eta = 0` (so `z` is unused) the step is deterministic.
pub fn ddim_step<F: Float>(x0: &[F], eps: &[F], z: Option<&[F]>, abar: f64, abar_prev: f64, eta: f64, out: &mut [F]) {
    check(x0.len(), eps.len(), "ddim_step");
    check(x0.len(), out.len(), "ddim_step");
    let k = DdimCoefs::new(abar, abar_prev, eta);
    let (a, b, s) = (F::from_f64(k.x0), F::from_f64(k.eps), k.z);
    match z {
        Some(z) if s > 0.0 => {
            check(x0.len(), z.len(), "ddim_step");
            let s = F::from_f64(s);
            for (((o, &x), &e), &z) in out.iter_mut().zip(x0).zip(eps).zip(z) {
                *o = a * x + b * e + s * z;
            }
        }
        _ => {
            for ((o, &x), &e) in out.iter_mut().zip(x0).zip(eps) {
                *o = a * x + b * e;
            }
        }
    }
}

/// One Langevin step `x + (eta/2) score + sqrt(eta) z`, in place.
pub fn langevin_step<F: Float>(x: &mut [F], score: &[F], z: &[F], eta: f64) {
    check(x.len(), score.len(), "langevin_step");
    check(x.len(), z.len(), "langevin_step");
    let h = F::from_f64(0.5 * eta);
    let s = F::from_f64(libm::sqrt(eta));
    for ((x, &g), &z) in x.iter_mut().zip(score).zip(z) {
        *x += h * g + s * z;
    }
}

/// Score-ALD's weight on the likelihood gradient: `lambda/(2 (sigma_y^2 + gamma^2))`.
pub fn ald_weight(lambda: f64, sigma_y: f64, gamma: f64) -> f64 {
    lambda / (2.0 * (sigma_y * sigma_y + gamma * gamma))
}

/// `x -= w grad`: the likelihood step of Score-ALD (`w` from [`ald_weight`], `grad` of
/// `||A x - y||^2`) and of DPS (`w = zeta`, `grad` of `||y - A x0_hat||`).
pub fn guidance_step<F: Float>(x: &mut [F], grad: &[F], w: f64) {
    check(x.len(), grad.len(), "guidance_step");
    let w = F::from_f64(w);
    for (x, &g) in x.iter_mut().zip(grad) {
        *x -= w * g;
    }
}

/// SDEdit/RePaint inpainting blend: `out = M y_t + (1 - M) x` (mask 1 = observed).
pub fn mask_blend<F: Float>(x: &[F], y_t: &[F], mask: &[F], out: &mut [F]) {
    check(x.len(), y_t.len(), "mask_blend");
    check(x.len(), mask.len(), "mask_blend");
    check(x.len(), out.len(), "mask_blend");
    for (((o, &x), &y), &m) in out.iter_mut().zip(x).zip(y_t).zip(mask) {
        *o = m * y + (F::ONE - m) * x;
    }
}

/// DPS's gradient through the clip: zero where `|x0_raw| >= 1` (torch's clamp gives 0 there).
pub fn clip_gradient<F: Float>(x0_raw: &[F], grad: &mut [F]) {
    check(x0_raw.len(), grad.len(), "clip_gradient");
    for (g, &x) in grad.iter_mut().zip(x0_raw) {
        // NaN counts as clipped too.
        if x.abs().partial_cmp(&F::ONE) != Some(core::cmp::Ordering::Less) {
            *g = F::ZERO;
        }
    }
}

/// DiffPIR's data-step weight `rho_t = lambda sigma_y^2 / sigma_t^2`, `sigma_t^2 = (1 - abar)/abar`.
pub fn diffpir_rho(lambda: f64, sigma_y: f64, abar: f64) -> f64 {
    lambda * sigma_y * sigma_y * abar / (1.0 - abar)
}

/// The coefficients of a DiffPIR step, computed once for every backend:
/// `eps_hat = ex x_t + e0 x0`, `out = a x0 + b eps_hat + c z`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiffpirCoefs {
    /// `1/sqrt(1 - abar)`.
    pub ex: f64,
    /// `-sqrt(abar)/sqrt(1 - abar)`.
    pub e0: f64,
    /// `sqrt(abar_prev)`.
    pub a: f64,
    /// `sqrt(1 - abar_prev) sqrt(1 - zeta)`.
    pub b: f64,
    /// `sqrt(1 - abar_prev) sqrt(zeta)`.
    pub c: f64,
}

impl DiffpirCoefs {
    /// The step from `abar` to `abar_prev` with noise mix `zeta`.
    pub fn new(abar: f64, abar_prev: f64, zeta: f64) -> Self {
        let inv = 1.0 / libm::sqrt(1.0 - abar);
        let s = libm::sqrt(1.0 - abar_prev);
        DiffpirCoefs {
            ex: inv,
            e0: -libm::sqrt(abar) * inv,
            a: libm::sqrt(abar_prev),
            b: s * libm::sqrt(1.0 - zeta),
            c: s * libm::sqrt(zeta),
        }
    }

    /// The step as one linear combination `(x0, x_t, z)` (for backends that fuse it).
    pub fn linear(&self) -> (f64, f64, f64) {
        (self.a + self.b * self.e0, self.b * self.ex, self.c)
    }
}

/// DiffPIR's step: with `eps_hat = (x_t - sqrt(abar) x0)/sqrt(1 - abar)`,
/// `sqrt(abar_prev) x0 + sqrt(1 - abar_prev) (sqrt(1 - zeta) eps_hat + sqrt(zeta) z)`.
pub fn diffpir_step<F: Float>(
    x0: &[F],
    x_t: &[F],
    z: Option<&[F]>,
    abar: f64,
    abar_prev: f64,
    zeta: f64,
    out: &mut [F],
) {
    check(x0.len(), x_t.len(), "diffpir_step");
    check(x0.len(), out.len(), "diffpir_step");
    let k = DiffpirCoefs::new(abar, abar_prev, zeta);
    let (ex, e0, a) = (F::from_f64(k.ex), F::from_f64(k.e0), F::from_f64(k.a));
    let (b, c) = (F::from_f64(k.b), F::from_f64(k.c));
    match z {
        Some(z) => {
            check(x0.len(), z.len(), "diffpir_step");
            for (((o, &x0), &xt), &z) in out.iter_mut().zip(x0).zip(x_t).zip(z) {
                let eps = ex * xt + e0 * x0;
                *o = a * x0 + b * eps + c * z;
            }
        }
        None => {
            for ((o, &x0), &xt) in out.iter_mut().zip(x0).zip(x_t) {
                let eps = ex * xt + e0 * x0;
                *o = a * x0 + b * eps;
            }
        }
    }
}

/// `out = a x + b y`.
pub fn axpby<F: Float>(a: f64, x: &[F], b: f64, y: &[F], out: &mut [F]) {
    check(x.len(), y.len(), "axpby");
    check(x.len(), out.len(), "axpby");
    let (a, b) = (F::from_f64(a), F::from_f64(b));
    for ((o, &x), &y) in out.iter_mut().zip(x).zip(y) {
        *o = a * x + b * y;
    }
}
