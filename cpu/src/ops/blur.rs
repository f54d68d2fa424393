//! Blur as DPS applies it: reflect-pad by `k/2` (PyTorch's `ReflectionPad2d`, edge not repeated),
//! then per-channel correlation with the kernel ("valid"), so the output keeps the image size.
//! Small kernels are applied directly, large ones by FFT (the same numbers to rounding).

use super::kernels::Kernel;
use super::linalg::cg;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use rayon::prelude::*;
use rustfft::num_complex::Complex64;
use rustfft::{Fft, FftPlanner};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Kernels up to this size are applied directly, larger ones by FFT.
pub const DIRECT_MAX: usize = 21;

/// Which implementation applies the blur.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Direct correlation.
    Direct,
    /// FFT.
    Fft,
    /// Direct up to [`DIRECT_MAX`], FFT above.
    Auto,
}

/// PyTorch's reflect index for `i` in `[-pad, n + pad)`.
#[inline]
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    (if i < 0 {
        -i
    } else if i >= n {
        2 * (n - 1) - i
    } else {
        i
    }) as usize
}

/// The blur operator: one kernel for the batch, or one per image. FFT plans and kernel spectra
/// are made once per image size and kept.
pub struct Blur {
    kernels: Vec<Kernel>,
    plans: Mutex<PlanCache>,
}

/// Every kernel's FFT plans, by image size `(h, w)`.
type PlanCache = HashMap<(usize, usize), Arc<Vec<KernelPlans>>>;

impl Clone for Blur {
    fn clone(&self) -> Self {
        Blur { kernels: self.kernels.clone(), plans: Mutex::default() }
    }
}

impl std::fmt::Debug for Blur {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blur").field("kernels", &self.kernels).finish_non_exhaustive()
    }
}

/// A 2-D FFT of one grid size: row and column plans, forward and inverse.
pub(crate) struct Grid {
    h: usize,
    w: usize,
    rows: [Arc<dyn Fft<f64>>; 2],
    cols: [Arc<dyn Fft<f64>>; 2],
}

impl Grid {
    pub(crate) fn new(planner: &mut FftPlanner<f64>, h: usize, w: usize) -> Self {
        let rows = [planner.plan_fft_forward(w), planner.plan_fft_inverse(w)];
        let cols = [planner.plan_fft_forward(h), planner.plan_fft_inverse(h)];
        Grid { h, w, rows, cols }
    }

    /// 2-D FFT of a row-major `h x w` complex plane, in place (normalised when inverse).
    pub(crate) fn fft2(&self, data: &mut [Complex64], inverse: bool) {
        let (h, w) = (self.h, self.w);
        let (fr, fc) = (&self.rows[usize::from(inverse)], &self.cols[usize::from(inverse)]);
        let mut scratch = vec![Complex64::default(); fr.get_inplace_scratch_len().max(fc.get_inplace_scratch_len())];
        for row in data.chunks_mut(w) {
            fr.process_with_scratch(row, &mut scratch[..fr.get_inplace_scratch_len()]);
        }
        let mut col = vec![Complex64::default(); h];
        for j in 0..w {
            for i in 0..h {
                col[i] = data[i * w + j];
            }
            fc.process_with_scratch(&mut col, &mut scratch[..fc.get_inplace_scratch_len()]);
            for i in 0..h {
                data[i * w + j] = col[i];
            }
        }
        if inverse {
            let s = 1.0 / (h * w) as f64;
            data.iter_mut().for_each(|v| *v *= s);
        }
    }

    /// The kernel's spectrum on this grid, the kernel placed at (0, 0) shifted by `-shift`.
    fn kernel_spectrum(&self, k: &Kernel, shift: usize) -> Vec<Complex64> {
        let (hh, ww) = (self.h, self.w);
        let mut kf = vec![Complex64::default(); hh * ww];
        for a in 0..k.size {
            for b in 0..k.size {
                let i = (a + hh - shift % hh) % hh;
                let j = (b + ww - shift % ww) % ww;
                kf[i * ww + j] += Complex64::new(k.data[a * k.size + b] as f64, 0.0);
            }
        }
        self.fft2(&mut kf, false);
        kf
    }
}

/// One kernel's FFT data for one image size: the reflect-padded grid with the kernel's
/// spectrum, and the image grid with the circular (centred) spectrum.
struct KernelPlans {
    padded: Grid,
    padded_spectrum: Vec<Complex64>,
    plain: Grid,
    circular_spectrum: Vec<Complex64>,
}

impl KernelPlans {
    fn new(planner: &mut FftPlanner<f64>, k: &Kernel, h: usize, w: usize) -> Self {
        let padded = Grid::new(planner, h + k.size - 1, w + k.size - 1);
        let plain = Grid::new(planner, h, w);
        let padded_spectrum = padded.kernel_spectrum(k, 0);
        let circular_spectrum = plain.kernel_spectrum(k, k.size / 2);
        KernelPlans { padded, padded_spectrum, plain, circular_spectrum }
    }
}

impl Blur {
    /// A blur with one kernel for every image, or one per image of the batch.
    pub fn new(kernels: Vec<Kernel>) -> Result<Self> {
        if kernels.is_empty() || kernels.iter().any(|k| k.size % 2 == 0 || k.data.len() != k.size * k.size) {
            let k = kernels.iter().find(|k| k.size % 2 == 0 || k.data.len() != k.size * k.size);
            let shape = k.map_or(vec![0], |k| vec![k.size, k.data.len() / k.size.max(1)]);
            return Err(Error::shape("blur kernel", &shape, "must be square with an odd side"));
        }
        Ok(Blur { kernels, plans: Mutex::default() })
    }

    /// Every kernel's FFT plans and spectra for `h x w` images, made on first use.
    fn plans(&self, h: usize, w: usize) -> Arc<Vec<KernelPlans>> {
        let mut cache = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry((h, w))
            .or_insert_with(|| {
                let mut planner = FftPlanner::new();
                Arc::new(self.kernels.iter().map(|k| KernelPlans::new(&mut planner, k, h, w)).collect())
            })
            .clone()
    }

    /// The plans of image `i`'s kernel.
    fn plan<'p>(&self, plans: &'p [KernelPlans], i: usize) -> &'p KernelPlans {
        &plans[if self.kernels.len() == 1 { 0 } else { i }]
    }

    /// The kernel of image `i`.
    pub fn kernel(&self, i: usize) -> &Kernel {
        &self.kernels[if self.kernels.len() == 1 { 0 } else { i }]
    }

    fn check(&self, x: &Tensor) -> Result<()> {
        if self.kernels.len() != 1 && self.kernels.len() != x.n() {
            return Err(Error::shape(
                "blur input",
                &x.shape(),
                format!("{} kernels for this batch", self.kernels.len()),
            ));
        }
        for i in 0..x.n() {
            let p = self.kernel(i).size / 2;
            if p >= x.h() || p >= x.w() {
                let k = self.kernel(i).size;
                return Err(Error::shape(
                    "blur input",
                    &x.shape(),
                    format!("a {k}x{k} kernel needs images larger than {p}x{p} (reflect padding)"),
                ));
            }
        }
        Ok(())
    }

    /// `y = A x`.
    pub fn forward(&self, x: &Tensor, m: Method) -> Result<Tensor> {
        self.check(x)?;
        let mut y = Tensor::zeros(x.shape());
        let (c, h, w) = (x.c(), x.h(), x.w());
        let hw = h * w;
        let plans = self.plans(h, w);
        y.data_mut().par_chunks_mut(hw).enumerate().for_each(|(ic, yc)| {
            let k = self.kernel(ic / c);
            let xc = &x.data()[ic * hw..(ic + 1) * hw];
            if use_fft(m, k) {
                fft_forward(xc, h, w, k, self.plan(&plans, ic / c), yc)
            } else {
                direct_forward(xc, h, w, k, yc)
            }
        });
        Ok(y)
    }

    /// `x = A^T y`.
    pub fn adjoint(&self, y: &Tensor, m: Method) -> Result<Tensor> {
        self.check(y)?;
        let mut x = Tensor::zeros(y.shape());
        let (c, h, w) = (y.c(), y.h(), y.w());
        let hw = h * w;
        let plans = self.plans(h, w);
        x.data_mut().par_chunks_mut(hw).enumerate().for_each(|(ic, xc)| {
            let k = self.kernel(ic / c);
            let yc = &y.data()[ic * hw..(ic + 1) * hw];
            let q = if use_fft(m, k) {
                fft_adjoint_padded(yc, h, w, k, self.plan(&plans, ic / c))
            } else {
                direct_adjoint_padded(yc, h, w, k)
            };
            fold(&q, h, w, k.size, xc);
        });
        Ok(x)
    }

    /// `(A_c^T A_c + rho I)^{-1} b` for the circular-boundary blur `A_c` (exact for periodic
    /// images; the preconditioner of [`Blur::data_solve`]).
    pub fn circular_solve(&self, b: &Tensor, rho: f64) -> Result<Tensor> {
        self.check(b)?;
        let mut out = Tensor::zeros(b.shape());
        let (c, h, w) = (b.c(), b.h(), b.w());
        let hw = h * w;
        let plans = self.plans(h, w);
        out.data_mut().par_chunks_mut(hw).enumerate().for_each(|(ic, oc)| {
            circular_solve_plane(&b.data()[ic * hw..(ic + 1) * hw], self.plan(&plans, ic / c), rho, oc);
        });
        Ok(out)
    }

    /// `argmin_x ||A x - y||^2 + rho ||x - z||^2` by conjugate gradient on the exact (reflect-padded)
    /// operator, preconditioned by the circular solve; converges in a few iterations.
    pub fn data_solve(&self, y: &Tensor, z: &Tensor, rho: f64) -> Result<Tensor> {
        let aty = self.adjoint(y, Method::Auto)?;
        let mut rhs = aty;
        rhs.data_mut().iter_mut().zip(z.data()).for_each(|(r, z)| *r += rho as f32 * z);
        let mut x = self.circular_solve(&rhs, rho)?;
        let (c, h, w) = (y.c(), y.h(), y.w());
        let hw = h * w;
        let plans = self.plans(h, w);
        let planes: Vec<(usize, &mut [f32])> = x.data_mut().chunks_mut(hw).enumerate().collect();
        planes.into_par_iter().for_each(|(ic, xc)| {
            let (k, kp) = (self.kernel(ic / c), self.plan(&plans, ic / c));
            let b = &rhs.data()[ic * hw..(ic + 1) * hw];
            let mut apply = |v: &[f32], out: &mut [f32]| {
                let mut t = vec![0.0f32; hw];
                let q = if k.size <= DIRECT_MAX {
                    direct_forward(v, h, w, k, &mut t);
                    direct_adjoint_padded(&t, h, w, k)
                } else {
                    fft_forward(v, h, w, k, kp, &mut t);
                    fft_adjoint_padded(&t, h, w, k, kp)
                };
                out.fill(0.0);
                fold(&q, h, w, k.size, out);
                out.iter_mut().zip(v).for_each(|(o, v)| *o += rho as f32 * v);
            };
            let mut pre = |r: &[f32], z: &mut [f32]| circular_solve_plane(r, kp, rho, z);
            cg(&mut apply, Some(&mut pre), b, xc, 1e-6, 100);
        });
        Ok(x)
    }
}

fn use_fft(m: Method, k: &Kernel) -> bool {
    match m {
        Method::Direct => false,
        Method::Fft => true,
        Method::Auto => k.size > DIRECT_MAX,
    }
}

/// Adds the padded-domain `q` back onto the image through the reflection (the pad's adjoint).
fn fold(q: &[f64], h: usize, w: usize, ks: usize, x: &mut [f32]) {
    let (p, hp, wp) = (ks / 2, h + ks - 1, w + ks - 1);
    for pi in 0..hp {
        let ri = reflect(pi as isize - p as isize, h);
        for pj in 0..wp {
            x[ri * w + reflect(pj as isize - p as isize, w)] += q[pi * wp + pj] as f32;
        }
    }
}

/// The reflect-padded plane, `(h + k - 1) x (w + k - 1)`.
fn padded(x: &[f32], h: usize, w: usize, ks: usize) -> Vec<f32> {
    let (p, hp, wp) = (ks / 2, h + ks - 1, w + ks - 1);
    let mut out = vec![0.0f32; hp * wp];
    for pi in 0..hp {
        let ri = reflect(pi as isize - p as isize, h);
        for pj in 0..wp {
            out[pi * wp + pj] = x[ri * w + reflect(pj as isize - p as isize, w)];
        }
    }
    out
}

fn direct_forward(x: &[f32], h: usize, w: usize, k: &Kernel, y: &mut [f32]) {
    let ks = k.size;
    let wp = w + ks - 1;
    let p = padded(x, h, w, ks);
    y.fill(0.0);
    for a in 0..ks {
        for b in 0..ks {
            let kv = k.data[a * ks + b];
            if kv == 0.0 {
                continue;
            }
            for i in 0..h {
                let src = &p[(i + a) * wp + b..(i + a) * wp + b + w];
                y[i * w..(i + 1) * w].iter_mut().zip(src).for_each(|(o, s)| *o += kv * s);
            }
        }
    }
}

/// `A^T` before the reflection fold: the full correlation-adjoint on the padded domain.
fn direct_adjoint_padded(y: &[f32], h: usize, w: usize, k: &Kernel) -> Vec<f64> {
    let ks = k.size;
    let (hp, wp) = (h + ks - 1, w + ks - 1);
    let mut q = vec![0.0f64; hp * wp];
    for a in 0..ks {
        for b in 0..ks {
            let kv = k.data[a * ks + b] as f64;
            if kv == 0.0 {
                continue;
            }
            for i in 0..h {
                let dst = &mut q[(i + a) * wp + b..(i + a) * wp + b + w];
                dst.iter_mut().zip(&y[i * w..(i + 1) * w]).for_each(|(o, s)| *o += kv * *s as f64);
            }
        }
    }
    q
}

fn fft_forward(x: &[f32], h: usize, w: usize, k: &Kernel, kp: &KernelPlans, y: &mut [f32]) {
    let ks = k.size;
    let wp = w + ks - 1;
    // Circular correlation on the padded grid equals the valid correlation where no index wraps.
    let mut p: Vec<Complex64> = padded(x, h, w, ks).into_iter().map(|v| Complex64::new(v as f64, 0.0)).collect();
    kp.padded.fft2(&mut p, false);
    p.iter_mut().zip(&kp.padded_spectrum).for_each(|(a, b)| *a *= b.conj());
    kp.padded.fft2(&mut p, true);
    for i in 0..h {
        for j in 0..w {
            y[i * w + j] = p[i * wp + j].re as f32;
        }
    }
}

fn fft_adjoint_padded(y: &[f32], h: usize, w: usize, k: &Kernel, kp: &KernelPlans) -> Vec<f64> {
    let ks = k.size;
    let (hp, wp) = (h + ks - 1, w + ks - 1);
    let mut q = vec![Complex64::default(); hp * wp];
    for i in 0..h {
        for j in 0..w {
            q[i * wp + j] = Complex64::new(y[i * w + j] as f64, 0.0);
        }
    }
    kp.padded.fft2(&mut q, false);
    q.iter_mut().zip(&kp.padded_spectrum).for_each(|(a, b)| *a *= b);
    kp.padded.fft2(&mut q, true);
    q.into_iter().map(|v| v.re).collect()
}

fn circular_solve_plane(b: &[f32], kp: &KernelPlans, rho: f64, out: &mut [f32]) {
    let mut bf: Vec<Complex64> = b.iter().map(|&v| Complex64::new(v as f64, 0.0)).collect();
    kp.plain.fft2(&mut bf, false);
    bf.iter_mut().zip(&kp.circular_spectrum).for_each(|(v, kv)| *v /= kv.norm_sqr() + rho);
    kp.plain.fft2(&mut bf, true);
    out.iter_mut().zip(&bf).for_each(|(o, v)| *o = v.re as f32);
}

/// The circular-boundary blur `A_c x` (for testing the closed-form solve).
pub fn circular_forward(x: &[f32], h: usize, w: usize, k: &Kernel) -> Vec<f32> {
    let p = k.size as isize / 2;
    let mut y = vec![0.0f32; h * w];
    for i in 0..h {
        for j in 0..w {
            let mut s = 0.0f64;
            for a in 0..k.size {
                for b in 0..k.size {
                    let ii = (i as isize + a as isize - p).rem_euclid(h as isize) as usize;
                    let jj = (j as isize + b as isize - p).rem_euclid(w as isize) as usize;
                    s += k.data[a * k.size + b] as f64 * x[ii * w + jj] as f64;
                }
            }
            y[i * w + j] = s as f32;
        }
    }
    y
}
