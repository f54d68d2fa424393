//! High dynamic range reconstruction as DAPS defines it (daps.md §8): `A(x) = clip(alpha x, -1, 1)`,
//! alpha = 2: an over-exposed image whose bright and dark parts saturate.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// DAPS's exposure factor.
pub const ALPHA: f64 = 2.0;
/// The largest exposure factor accepted.
pub const MAX_ALPHA: f64 = 64.0;

/// The HDR operator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hdr {
    alpha: f64,
}

impl Hdr {
    /// The operator with exposure factor `alpha`.
    ///
    /// # Errors
    /// `alpha` outside `[1, MAX_ALPHA]`.
    pub fn new(alpha: f64) -> Result<Self> {
        if !(1.0..=MAX_ALPHA).contains(&alpha) {
            return Err(Error::parameter("hdr alpha", alpha, format!("must be in [1, {MAX_ALPHA}]")));
        }
        Ok(Hdr { alpha })
    }

    /// The exposure factor.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// `clip(alpha x, -1, 1)`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut y = x.clone();
        y.data_mut().iter_mut().for_each(|v| *v = (self.alpha * *v as f64).clamp(-1.0, 1.0) as f32);
        y
    }

    /// `J(x)^T v = alpha v` where `|alpha x| < 1`, 0 where the pixel saturates.
    ///
    /// # Errors
    /// `v` not shaped like `x`.
    pub fn vjp(&self, x: &Tensor, v: &Tensor) -> Result<Tensor> {
        if v.shape() != x.shape() {
            return Err(Error::mismatch("cotangent", &v.shape(), &x.shape()));
        }
        let mut g = v.clone();
        g.data_mut().iter_mut().zip(x.data()).for_each(|(g, &x)| {
            *g = if (self.alpha * x as f64).abs() < 1.0 { (self.alpha * *g as f64) as f32 } else { 0.0 };
        });
        Ok(g)
    }

    /// `argmin_x (A(x) - y)^2 + rho (x - z)^2`, exactly, per pixel: the best of the linear
    /// piece's minimiser (clamped to `|x| <= 1/alpha`) and the two saturated pieces' (`x = z`
    /// clamped to beyond `+-1/alpha`).
    ///
    /// # Errors
    /// Shapes that differ.
    pub fn data_solve(&self, y: &Tensor, z: &Tensor, rho: f64) -> Result<Tensor> {
        if y.shape() != z.shape() {
            return Err(Error::mismatch("measurement", &y.shape(), &z.shape()));
        }
        let (a, k) = (self.alpha, 1.0 / self.alpha);
        let mut x = z.clone();
        x.data_mut().iter_mut().zip(y.data()).for_each(|(x, &y)| {
            let (z, y) = (*x as f64, y as f64);
            let cost = |v: f64| ((a * v).clamp(-1.0, 1.0) - y).powi(2) + rho * (v - z).powi(2);
            let inner = ((a * y + rho * z) / (a * a + rho)).clamp(-k, k);
            let cands = [inner, z.max(k), z.min(-k)];
            let best = cands.iter().copied().fold(inner, |b, c| if cost(c) < cost(b) { c } else { b });
            *x = best as f32;
        });
        Ok(x)
    }

    /// A starting image: `y / alpha`, in [-1, 1].
    pub fn init_estimate(&self, y: &Tensor) -> Tensor {
        let mut x = y.clone();
        x.data_mut().iter_mut().for_each(|v| *v = (*v as f64 / self.alpha).clamp(-1.0, 1.0) as f32);
        x
    }
}
