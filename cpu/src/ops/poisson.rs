//! Poisson (shot) noise: the measurement model `y01 = Poisson(R clamp(A(x)01, 0, 1)) / R` in
//! [0, 1] units (`x01 = (x + 1)/2`, DPS's Poisson option with `R` for its `255 rate`), and the
//! weighted least squares that DPS's and DAPS's likelihoods use for it (daps.md §9).

use super::Op;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use diffinv_core::rng::streams;
use diffinv_core::NoiseStream;

/// The smallest and largest photon rate accepted (counts per unit intensity).
pub const RATE_RANGE: (f64, f64) = (1.0, 1.0e7);
/// The rate whose noise at full intensity has std 0.05 in [0, 1] units (`1/0.05^2`).
pub const DEFAULT_RATE: f64 = 400.0;

/// How the measurement is corrupted.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum NoiseModel {
    /// Additive white Gaussian noise of a given `sigma_y`.
    #[default]
    Gaussian,
    /// Photon counting at `rate` counts per unit intensity.
    Poisson {
        /// Counts per unit intensity in [0, 1] units.
        rate: f64,
    },
}

impl NoiseModel {
    /// Checks the rate's range.
    ///
    /// # Errors
    /// A rate outside [`RATE_RANGE`].
    pub fn check(self) -> Result<()> {
        if let NoiseModel::Poisson { rate } = self {
            let (lo, hi) = RATE_RANGE;
            if !(lo..=hi).contains(&rate) {
                return Err(Error::parameter("rate", rate, format!("must be in [{lo}, {hi:e}]")));
            }
        }
        Ok(())
    }
}

/// A Poisson draw of mean `lam` (>= 0): multiplication of uniforms below 30, Hörmann's PTRS
/// transformed rejection above (W. Hörmann, "The transformed rejection method for generating
/// Poisson random variables", 1993).
pub fn sample(lam: f64, rng: &mut NoiseStream) -> f64 {
    if lam <= 0.0 {
        return 0.0;
    }
    if lam < 30.0 {
        let (l, mut p, mut k) = (libm::exp(-lam), 1.0, 0.0);
        loop {
            p *= rng.next_uniform();
            if p <= l {
                return k;
            }
            k += 1.0;
        }
    }
    let (slam, loglam) = (lam.sqrt(), lam.ln());
    let b = 0.931 + 2.53 * slam;
    let a = -0.059 + 0.02483 * b;
    let inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
    let vr = 0.9277 - 3.6224 / (b - 2.0);
    loop {
        let u = rng.next_uniform() - 0.5;
        let v = rng.next_uniform();
        let us = 0.5 - u.abs();
        let k = ((2.0 * a / us + b) * u + lam + 0.43).floor();
        if us >= 0.07 && v <= vr {
            return k;
        }
        if k < 0.0 || (us < 0.013 && v > us) {
            continue;
        }
        if v.ln() + inv_alpha.ln() - (a / (us * us) + b).ln() <= -lam + k * loglam - libm::lgamma(k + 1.0) {
            return k;
        }
    }
}

/// `y = 2 Poisson(R clamp((A x + 1)/2, 0, 1))/R - 1`, clamped to [-1, 1] as DPS does; each
/// image draws from its measurement stream.
///
/// # Errors
/// A rate out of range, or the operator's errors (phase retrieval's magnitudes are no image:
/// refused).
pub fn measure(op: &Op, x: &Tensor, rate: f64, seed: u64, first: u64) -> Result<Tensor> {
    NoiseModel::Poisson { rate }.check()?;
    if matches!(op, Op::PhaseRetrieval(_)) {
        return Err(Error::parameter(
            "noise model",
            "poisson",
            "needs an image-domain measurement, not phase retrieval's",
        ));
    }
    let mut y = op.forward(x)?;
    for i in 0..y.n() {
        let mut rng = NoiseStream::new(seed, streams::for_image(streams::MEASUREMENT, first + i as u64));
        y.image_mut(i).iter_mut().for_each(|v| {
            let k = sample(rate * ((*v as f64 + 1.0) / 2.0).clamp(0.0, 1.0), &mut rng);
            *v = (2.0 * k / rate - 1.0).clamp(-1.0, 1.0) as f32;
        });
    }
    Ok(y)
}

/// The Gaussian level with the same mean variance as Poisson noise of `rate` on `y`:
/// `2 sqrt(mean(y01)/R)` in [-1, 1] units (what the methods without a Poisson likelihood
/// assume).
pub fn equivalent_sigma(y: &Tensor, rate: f64) -> f64 {
    let n = y.data().len().max(1) as f64;
    let mean = y.data().iter().map(|&v| ((v as f64 + 1.0) / 2.0).clamp(0.0, 1.0)).sum::<f64>() / n;
    2.0 * (mean / rate).sqrt()
}

/// The floor on `y01` in the Poisson weights. The variance read from a noisy count is itself
/// noisy and biased low where counts are few (a dark pixel that drew few photons gets a huge
/// weight and pulls the fit down), and DPS's code divides by `|y_j|`, infinite at zero counts.
/// Swept with DPS-250 on Gaussian deblurring at rate 400 (dev faces 009542-3, mean PSNR): one
/// count (1/R) 30.86 dB, 0.05 31.26, **0.15 32.03**, 0.3 32.00, no weighting 31.83.
pub const WEIGHT_FLOOR: f64 = 0.15;

/// The square roots of the weights of the Poisson likelihood's least squares: `w_j` inversely
/// proportional to the variance `y01_j / R`, with `y01_j` floored at [`WEIGHT_FLOOR`],
/// normalised to mean 1 per image so that a method's Gaussian step size keeps its scale.
pub fn sqrt_weights(y: &Tensor) -> Tensor {
    let mut w = y.clone();
    for i in 0..w.n() {
        let img = w.image_mut(i);
        img.iter_mut().for_each(|v| *v = (1.0 / ((*v as f64 + 1.0) / 2.0).max(WEIGHT_FLOOR)) as f32);
        let mean = img.iter().map(|&v| v as f64).sum::<f64>() / img.len().max(1) as f64;
        img.iter_mut().for_each(|v| *v = (*v as f64 / mean).sqrt() as f32);
    }
    w
}

/// The operator and measurement of the Poisson likelihood: `(sqrt(W) A, sqrt(W) y)`, so that
/// `||A'(x) - y'||^2 = sum_j w_j (A(x)_j - y_j)^2`.
///
/// # Errors
/// Shapes that do not fit.
pub fn weighted(op: &Op, y: &Tensor) -> Result<(Op, Tensor)> {
    let w = sqrt_weights(y);
    let mut yw = y.clone();
    yw.data_mut().iter_mut().zip(w.data()).for_each(|(y, w)| *y *= w);
    Ok((Op::Weighted(Box::new(op.clone()), w), yw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_have_the_poisson_mean_and_variance() {
        for lam in [0.5, 4.0, 29.0, 31.0, 400.0] {
            let mut rng = NoiseStream::new(7, 1);
            let n = 40_000;
            let d: Vec<f64> = (0..n).map(|_| sample(lam, &mut rng)).collect();
            let mean = d.iter().sum::<f64>() / n as f64;
            let var = d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            let se = (lam / n as f64).sqrt();
            assert!((mean - lam).abs() < 5.0 * se, "lam {lam}: mean {mean}");
            assert!((var / lam - 1.0).abs() < 0.05, "lam {lam}: var {var}");
            assert!(d.iter().all(|v| *v >= 0.0 && v.fract() == 0.0));
        }
    }
}
