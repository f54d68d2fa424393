//! Blur as DPS applies it: reflect-pad by `k/2` (PyTorch's `ReflectionPad2d`, edge not repeated),
//! then per-channel correlation with the kernel ("valid"), so the output keeps the image size.
//! Small kernels are applied directly, large ones by FFT (the same numbers to rounding).

use super::kernels::Kernel;
use super::linalg::cg;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use rayon::prelude::*;
use rustfft::num_complex::Complex64;
use rustfft::FftPlanner;

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

/// The blur operator: one kernel for the batch, or one per image.
#[derive(Clone, Debug)]
pub struct Blur {
    kernels: Vec<Kernel>,
}

impl Blur {
    /// A blur with one kernel for every image, or one per image of the batch.
    pub fn new(kernels: Vec<Kernel>) -> Result<Self> {
        if kernels.is_empty() || kernels.iter().any(|k| k.size % 2 == 0 || k.data.len() != k.size * k.size) {
            return Err(Error::Config("blur kernels must be square with an odd side".into()));
        }
        Ok(Blur { kernels })
    }

    /// The kernel of image `i`.
    pub fn kernel(&self, i: usize) -> &Kernel {
        &self.kernels[if self.kernels.len() == 1 { 0 } else { i }]
    }

    fn check(&self, x: &Tensor) -> Result<()> {
        if self.kernels.len() != 1 && self.kernels.len() != x.n() {
            return Err(Error::Shape(format!("{} blur kernels for a batch of {}", self.kernels.len(), x.n())));
        }
        for i in 0..x.n() {
            let p = self.kernel(i).size / 2;
            if p >= x.h() || p >= x.w() {
                return Err(Error::Shape(format!(
                    "a {}x{} kernel needs images larger than {}x{} (reflect padding)",
                    self.kernel(i).size,
                    self.kernel(i).size,
                    x.h(),
                    x.w()
                )));
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
        y.data_mut().par_chunks_mut(hw).enumerate().for_each(|(ic, yc)| {
            let k = self.kernel(ic / c);
            let xc = &x.data()[ic * hw..(ic + 1) * hw];
            if use_fft(m, k) {
                fft_forward(xc, h, w, k, yc)
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
        x.data_mut().par_chunks_mut(hw).enumerate().for_each(|(ic, xc)| {
            let k = self.kernel(ic / c);
            let yc = &y.data()[ic * hw..(ic + 1) * hw];
            let q = if use_fft(m, k) { fft_adjoint_padded(yc, h, w, k) } else { direct_adjoint_padded(yc, h, w, k) };
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
        out.data_mut().par_chunks_mut(hw).enumerate().for_each(|(ic, oc)| {
            let k = self.kernel(ic / c);
            circular_solve_plane(&b.data()[ic * hw..(ic + 1) * hw], h, w, k, rho, oc);
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
        let planes: Vec<(usize, &mut [f32])> = x.data_mut().chunks_mut(hw).enumerate().collect();
        planes.into_par_iter().for_each(|(ic, xc)| {
            let k = self.kernel(ic / c);
            let b = &rhs.data()[ic * hw..(ic + 1) * hw];
            let mut apply = |v: &[f32], out: &mut [f32]| {
                let mut t = vec![0.0f32; hw];
                direct_or_fft_forward(v, h, w, k, &mut t);
                let q = if k.size <= DIRECT_MAX {
                    direct_adjoint_padded(&t, h, w, k)
                } else {
                    fft_adjoint_padded(&t, h, w, k)
                };
                out.fill(0.0);
                fold(&q, h, w, k.size, out);
                out.iter_mut().zip(v).for_each(|(o, v)| *o += rho as f32 * v);
            };
            let mut pre = |r: &[f32], z: &mut [f32]| circular_solve_plane(r, h, w, k, rho, z);
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

fn direct_or_fft_forward(x: &[f32], h: usize, w: usize, k: &Kernel, y: &mut [f32]) {
    if k.size <= DIRECT_MAX {
        direct_forward(x, h, w, k, y)
    } else {
        fft_forward(x, h, w, k, y)
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

/// 2-D FFT of a row-major `h x w` complex plane, in place.
fn fft2(data: &mut [Complex64], h: usize, w: usize, inverse: bool) {
    let mut planner = FftPlanner::<f64>::new();
    let (fr, fc) = if inverse {
        (planner.plan_fft_inverse(w), planner.plan_fft_inverse(h))
    } else {
        (planner.plan_fft_forward(w), planner.plan_fft_forward(h))
    };
    for row in data.chunks_mut(w) {
        fr.process(row);
    }
    let mut col = vec![Complex64::default(); h];
    for j in 0..w {
        for i in 0..h {
            col[i] = data[i * w + j];
        }
        fc.process(&mut col);
        for i in 0..h {
            data[i * w + j] = col[i];
        }
    }
    if inverse {
        let s = 1.0 / (h * w) as f64;
        data.iter_mut().for_each(|v| *v *= s);
    }
}

/// The kernel's FFT on an `hh x ww` grid, the kernel placed at (0, 0) shifted by `-shift`.
fn kernel_fft(k: &Kernel, hh: usize, ww: usize, shift: usize) -> Vec<Complex64> {
    let mut kf = vec![Complex64::default(); hh * ww];
    for a in 0..k.size {
        for b in 0..k.size {
            let i = (a + hh - shift % hh) % hh;
            let j = (b + ww - shift % ww) % ww;
            kf[i * ww + j] += Complex64::new(k.data[a * k.size + b] as f64, 0.0);
        }
    }
    fft2(&mut kf, hh, ww, false);
    kf
}

fn fft_forward(x: &[f32], h: usize, w: usize, k: &Kernel, y: &mut [f32]) {
    let ks = k.size;
    let (hp, wp) = (h + ks - 1, w + ks - 1);
    // Circular correlation on the padded grid equals the valid correlation where no index wraps.
    let mut p: Vec<Complex64> = padded(x, h, w, ks).into_iter().map(|v| Complex64::new(v as f64, 0.0)).collect();
    fft2(&mut p, hp, wp, false);
    let kf = kernel_fft(k, hp, wp, 0);
    p.iter_mut().zip(&kf).for_each(|(a, b)| *a *= b.conj());
    fft2(&mut p, hp, wp, true);
    for i in 0..h {
        for j in 0..w {
            y[i * w + j] = p[i * wp + j].re as f32;
        }
    }
}

fn fft_adjoint_padded(y: &[f32], h: usize, w: usize, k: &Kernel) -> Vec<f64> {
    let ks = k.size;
    let (hp, wp) = (h + ks - 1, w + ks - 1);
    let mut q = vec![Complex64::default(); hp * wp];
    for i in 0..h {
        for j in 0..w {
            q[i * wp + j] = Complex64::new(y[i * w + j] as f64, 0.0);
        }
    }
    fft2(&mut q, hp, wp, false);
    let kf = kernel_fft(k, hp, wp, 0);
    q.iter_mut().zip(&kf).for_each(|(a, b)| *a *= b);
    fft2(&mut q, hp, wp, true);
    q.into_iter().map(|v| v.re).collect()
}

fn circular_solve_plane(b: &[f32], h: usize, w: usize, k: &Kernel, rho: f64, out: &mut [f32]) {
    let mut bf: Vec<Complex64> = b.iter().map(|&v| Complex64::new(v as f64, 0.0)).collect();
    fft2(&mut bf, h, w, false);
    let kf = kernel_fft(k, h, w, k.size / 2);
    bf.iter_mut().zip(&kf).for_each(|(v, kv)| *v /= kv.norm_sqr() + rho);
    fft2(&mut bf, h, w, true);
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
