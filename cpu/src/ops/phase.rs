//! Fourier phase retrieval as DAPS defines it (daps.md §7): `A(x) = |F_c P (x/2 + 1/2)|` per
//! channel, `P` zero padding by `oversample/8` of the side on every edge (the padded grid is
//! twice the side at the default oversampling 2), `F_c = fftshift . fft2(ortho) . ifftshift`.
//! DPS pads `x` itself (mid-grey padding); diffinv follows DAPS, so the two measurements differ.

use super::blur::Grid;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use rayon::prelude::*;
use rustfft::num_complex::Complex64;
use rustfft::FftPlanner;
use std::sync::{Arc, Mutex};

/// The spectra of the last image `forward` saw, by plane, with that image: DAPS's Langevin step
/// and DPS's guidance call `vjp` at the point `forward` just transformed.
type SpectrumCache = Arc<Mutex<Option<(Vec<f32>, Arc<Vec<Vec<Complex64>>>)>>>;

/// DAPS's and DPS's oversampling.
pub const OVERSAMPLE: f64 = 2.0;
/// The largest oversampling accepted (a padded side of 3x the image).
pub const MAX_OVERSAMPLE: f64 = 8.0;

/// The phase retrieval operator for `h x w` images.
#[derive(Clone)]
pub struct PhaseRetrieval {
    h: usize,
    w: usize,
    ph: usize,
    pw: usize,
    grid: Arc<Grid>,
    cache: SpectrumCache,
}

impl std::fmt::Debug for PhaseRetrieval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhaseRetrieval").field("image", &(self.h, self.w)).field("pad", &(self.ph, self.pw)).finish()
    }
}

/// `out[(i + sh) % h][(j + sw) % w] = a[i][j]` (NumPy's `roll`).
fn roll2(a: &[Complex64], h: usize, w: usize, sh: usize, sw: usize) -> Vec<Complex64> {
    let mut out = vec![Complex64::default(); a.len()];
    for i in 0..h {
        let oi = (i + sh) % h;
        for j in 0..w {
            out[oi * w + (j + sw) % w] = a[i * w + j];
        }
    }
    out
}

impl PhaseRetrieval {
    /// The operator for `h x w` images padded by `int(oversample/8 * side)` on each edge.
    ///
    /// # Errors
    /// An oversampling outside `(0, MAX_OVERSAMPLE]` or an empty image.
    pub fn new(h: usize, w: usize, oversample: f64) -> Result<Self> {
        if !(oversample > 0.0 && oversample <= MAX_OVERSAMPLE) {
            return Err(Error::parameter("oversample", oversample, format!("must be in (0, {MAX_OVERSAMPLE}]")));
        }
        if h == 0 || w == 0 {
            return Err(Error::shape("image", &[h, w], "is empty"));
        }
        let (ph, pw) = ((oversample / 8.0 * h as f64) as usize, (oversample / 8.0 * w as f64) as usize);
        let grid = Grid::new(&mut FftPlanner::new(), h + 2 * ph, w + 2 * pw);
        Ok(PhaseRetrieval { h, w, ph, pw, grid: Arc::new(grid), cache: SpectrumCache::default() })
    }

    /// The measurement's plane size `(h + 2 pad_h, w + 2 pad_w)`.
    pub fn padded(&self) -> (usize, usize) {
        (self.h + 2 * self.ph, self.w + 2 * self.pw)
    }

    fn check(&self, x: &Tensor, what: &str, hw: (usize, usize)) -> Result<()> {
        if (x.h(), x.w()) != hw {
            return Err(Error::shape(what, &x.shape(), format!("phase retrieval needs {}x{} planes", hw.0, hw.1)));
        }
        Ok(())
    }

    /// `Z = F_c P (x/2 + 1/2)` of one image plane.
    fn spectrum(&self, plane: &[f32]) -> Vec<Complex64> {
        let (hh, ww) = self.padded();
        let mut u = vec![Complex64::default(); hh * ww];
        for i in 0..self.h {
            for j in 0..self.w {
                u[(i + self.ph) * ww + j + self.pw] = Complex64::new(0.5 * plane[i * self.w + j] as f64 + 0.5, 0.0);
            }
        }
        let mut z = roll2(&u, hh, ww, hh - hh / 2, ww - ww / 2);
        self.grid.fft2(&mut z, false);
        let s = 1.0 / ((hh * ww) as f64).sqrt();
        z.iter_mut().for_each(|v| *v *= s);
        roll2(&z, hh, ww, hh / 2, ww / 2)
    }

    /// `C Re F_c^H v` (`C` the central crop), into an image plane scaled by `scale`.
    fn back(&self, v: Vec<Complex64>, scale: f64, out: &mut [f32]) {
        let (hh, ww) = self.padded();
        let mut u = roll2(&v, hh, ww, hh - hh / 2, ww - ww / 2);
        self.grid.fft2(&mut u, true);
        let u = roll2(&u, hh, ww, hh / 2, ww / 2);
        let s = scale * ((hh * ww) as f64).sqrt();
        for i in 0..self.h {
            for j in 0..self.w {
                out[i * self.w + j] = (s * u[(i + self.ph) * ww + j + self.pw].re) as f32;
            }
        }
    }

    /// Every plane of the batch in parallel: `f(input plane index, output plane)`.
    fn per_plane(&self, shape: [usize; 4], f: impl Fn(usize, &mut [f32]) + Sync) -> Result<Tensor> {
        let mut out = Tensor::zeros(shape);
        let len = shape[2] * shape[3];
        out.data_mut().par_chunks_mut(len).enumerate().for_each(|(p, o)| f(p, o));
        Ok(out)
    }

    /// Every plane's spectrum `Z` of `x`, from the cache when `x` is the image the last call
    /// transformed.
    fn spectra(&self, x: &Tensor) -> Arc<Vec<Vec<Complex64>>> {
        if let Some((seen, z)) = self.cache.lock().expect("cache lock").as_ref() {
            if seen.as_slice() == x.data() {
                return Arc::clone(z);
            }
        }
        let len = self.h * self.w;
        let z: Arc<Vec<Vec<Complex64>>> =
            Arc::new(x.data().par_chunks(len).map(|plane| self.spectrum(plane)).collect());
        *self.cache.lock().expect("cache lock") = Some((x.data().to_vec(), Arc::clone(&z)));
        z
    }

    /// `A(x) = |Z|`.
    ///
    /// # Errors
    /// Images of another size than the operator's.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x, "image", (self.h, self.w))?;
        let (hh, ww) = self.padded();
        let z = self.spectra(x);
        self.per_plane([x.n(), x.c(), hh, ww], |p, o| {
            o.iter_mut().zip(&z[p]).for_each(|(o, z)| *o = z.norm() as f32);
        })
    }

    /// `J(x)^T v = 1/2 C Re F_c^H [v . Z/|Z|]` (0 where `Z = 0`).
    ///
    /// # Errors
    /// Shapes that do not fit the operator.
    pub fn vjp(&self, x: &Tensor, v: &Tensor) -> Result<Tensor> {
        self.check(x, "image", (self.h, self.w))?;
        self.check(v, "cotangent", self.padded())?;
        if (v.n(), v.c()) != (x.n(), x.c()) {
            return Err(Error::mismatch("cotangent", &v.shape(), &x.shape()));
        }
        let plen = v.h() * v.w();
        let zs = self.spectra(x);
        self.per_plane(x.shape(), |p, o| {
            let mut z = zs[p].clone();
            let vp = &v.data()[p * plen..(p + 1) * plen];
            z.iter_mut().zip(vp).for_each(|(z, &v)| {
                let m = z.norm();
                *z = if m > 0.0 { *z * (v as f64 / m) } else { Complex64::default() };
            });
            self.back(z, 0.5, o);
        })
    }

    /// The zero-phase back-projection `2 C Re F_c^H y - 1` (what the magnitudes alone say).
    ///
    /// # Errors
    /// A measurement of another size than the operator's.
    pub fn back_projection(&self, y: &Tensor) -> Result<Tensor> {
        self.check(y, "measurement", self.padded())?;
        let plen = y.h() * y.w();
        let mut x = self.per_plane([y.n(), y.c(), self.h, self.w], |p, o| {
            let v = y.data()[p * plen..(p + 1) * plen].iter().map(|&v| Complex64::new(v as f64, 0.0)).collect();
            self.back(v, 2.0, o);
        })?;
        x.data_mut().iter_mut().for_each(|v| *v -= 1.0);
        Ok(x)
    }

    /// The data subproblem `argmin ||A(x) - y||^2 + rho ||x - z||^2` approximately: it has no
    /// closed form (|.| is not linear), so DiffPIR's proximal step runs [`PROX_STEPS`] gradient
    /// steps from `z` with step `1/(1/2 + 2 rho)` (the data term's curvature is at most 1/2).
    ///
    /// # Errors
    /// Shapes that do not fit.
    pub fn data_solve(&self, y: &Tensor, z: &Tensor, rho: f64) -> Result<Tensor> {
        let mut x = z.clone();
        let step = 1.0 / (0.5 + 2.0 * rho);
        for _ in 0..PROX_STEPS {
            let mut r = self.forward(&x)?;
            r.data_mut().iter_mut().zip(y.data()).for_each(|(r, y)| *r -= y);
            let g = self.vjp(&x, &r)?;
            x.data_mut().iter_mut().zip(g.data().iter().zip(z.data())).for_each(|(x, (&g, &z))| {
                let grad = 2.0 * g as f64 + 2.0 * rho * (*x as f64 - z as f64);
                *x = (*x as f64 - step * grad) as f32;
            });
        }
        Ok(x)
    }
}

/// The image side whose padded side is `padded` at `oversample` (`None` if none is).
pub fn image_side(padded: usize, oversample: f64) -> Option<usize> {
    let pad = |s: usize| (oversample / 8.0 * s as f64) as usize;
    (1..=padded).find(|&s| s + 2 * pad(s) == padded)
}

/// Gradient steps of phase retrieval's approximate proximal solve.
pub const PROX_STEPS: usize = 20;
