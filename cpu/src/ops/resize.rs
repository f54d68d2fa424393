//! Super-resolution's operator: MATLAB-style antialiased bicubic downsampling (DPS's `Resizer`),
//! separable, so `A = W_h (.) W_w^T` per channel with dense `W`s; its adjoint; the closed-form
//! solve `(A^T A + rho I)^{-1}` from the eigendecompositions of `W^T W`; and the bicubic
//! upsampling used to show a measurement as an image.

use super::linalg::sym_eigen;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::sync::OnceLock;

/// MATLAB's cubic kernel (a = -0.5).
fn cubic(x: f64) -> f64 {
    let a = x.abs();
    let (a2, a3) = (a * a, a * a * a);
    if a <= 1.0 {
        1.5 * a3 - 2.5 * a2 + 1.0
    } else if a <= 2.0 {
        -0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0
    } else {
        0.0
    }
}

/// The `out x in` resampling matrix of MATLAB's `imresize` (bicubic, antialiased when
/// shrinking, symmetric boundary), as DPS's `Resizer.contributions` computes it.
pub fn resize_matrix(input: usize, output: usize) -> Vec<f64> {
    let scale = output as f64 / input as f64;
    let aa = scale < 1.0;
    let width = if aa { 4.0 / scale } else { 4.0 };
    let kern = |x: f64| if aa { scale * cubic(scale * x) } else { cubic(x) };
    let p = width.ceil() as isize + 2;
    let mut m = vec![0.0f64; output * input];
    for o in 0..output {
        let shifted = (o + 1) as f64 - (output as f64 - input as f64 * scale) / 2.0;
        let u = shifted / scale + 0.5 * (1.0 - 1.0 / scale);
        let left = (u - width / 2.0).floor() as isize;
        let idx: Vec<isize> = (0..p).map(|j| left + j - 1).collect();
        let w: Vec<f64> = idx.iter().map(|&i| kern(u - i as f64 - 1.0)).collect();
        let s: f64 = w.iter().sum();
        let s = if s == 0.0 { 1.0 } else { s };
        for (&i, &wv) in idx.iter().zip(&w) {
            // Mirror boundary: 0..n-1, n-1..0, repeating.
            let period = 2 * input as isize;
            let r = i.rem_euclid(period);
            let src = if r < input as isize { r } else { period - 1 - r } as usize;
            m[o * input + src] += wv / s;
        }
    }
    m
}

struct Eig {
    qh: Vec<f64>,
    lh: Vec<f64>,
    qw: Vec<f64>,
    lw: Vec<f64>,
}

/// Downsampling by an integer factor.
pub struct Resize {
    /// The factor.
    pub factor: usize,
    h: usize,
    w: usize,
    wh: Vec<f64>,
    ww: Vec<f64>,
    eig: OnceLock<Eig>,
}

impl std::fmt::Debug for Resize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resize(x{} of {}x{})", self.factor, self.h, self.w)
    }
}

impl Clone for Resize {
    fn clone(&self) -> Self {
        Resize {
            factor: self.factor,
            h: self.h,
            w: self.w,
            wh: self.wh.clone(),
            ww: self.ww.clone(),
            eig: OnceLock::new(),
        }
    }
}

/// `C = A B` for row-major f64 matrices (`m x k` times `k x n`), with optional transposes.
fn matmul(a: &[f64], ta: bool, b: &[f64], tb: bool, m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for p in 0..k {
            let av = if ta { a[p * m + i] } else { a[i * k + p] };
            if av == 0.0 {
                continue;
            }
            for j in 0..n {
                c[i * n + j] += av * if tb { b[j * k + p] } else { b[p * n + j] };
            }
        }
    }
    c
}

impl Resize {
    /// Downsampling of `h x w` images by `factor`.
    pub fn new(h: usize, w: usize, factor: usize) -> Result<Self> {
        if factor == 0 || !h.is_multiple_of(factor) || !w.is_multiple_of(factor) {
            return Err(Error::parameter("scale", factor, format!("must divide the image size {h}x{w}")));
        }
        Ok(Resize {
            factor,
            h,
            w,
            wh: resize_matrix(h, h / factor),
            ww: resize_matrix(w, w / factor),
            eig: OnceLock::new(),
        })
    }

    /// The low-resolution size.
    pub fn low(&self) -> (usize, usize) {
        (self.h / self.factor, self.w / self.factor)
    }

    fn check(&self, x: &Tensor, h: usize, w: usize) -> Result<()> {
        if x.h() != h || x.w() != w {
            return Err(Error::shape("SR input", &x.shape(), format!("the operator was built for {h}x{w}")));
        }
        Ok(())
    }

    fn planes(x: &Tensor, f: impl Fn(&[f64]) -> Vec<f64> + Sync, oh: usize, ow: usize) -> Tensor {
        use rayon::prelude::*;
        let hw = x.h() * x.w();
        let mut out = Tensor::zeros([x.n(), x.c(), oh, ow]);
        out.data_mut().par_chunks_mut(oh * ow).zip(x.data().par_chunks(hw)).for_each(|(o, p)| {
            let v: Vec<f64> = p.iter().map(|&v| v as f64).collect();
            o.iter_mut().zip(f(&v)).for_each(|(o, v)| *o = v as f32);
        });
        out
    }

    /// `y = W_h x W_w^T`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x, self.h, self.w)?;
        let (oh, ow) = self.low();
        let (h, w) = (self.h, self.w);
        Ok(Self::planes(
            x,
            |p| matmul(&matmul(&self.wh, false, p, false, oh, h, w), false, &self.ww, true, oh, w, ow),
            oh,
            ow,
        ))
    }

    /// `x = W_h^T y W_w`.
    pub fn adjoint(&self, y: &Tensor) -> Result<Tensor> {
        let (oh, ow) = self.low();
        self.check(y, oh, ow)?;
        let (h, w) = (self.h, self.w);
        Ok(Self::planes(
            y,
            |p| matmul(&matmul(&self.wh, true, p, false, h, oh, ow), false, &self.ww, false, h, ow, w),
            h,
            w,
        ))
    }

    fn eig(&self) -> &Eig {
        self.eig.get_or_init(|| {
            let (oh, ow) = self.low();
            let sh = matmul(&self.wh, true, &self.wh, false, self.h, oh, self.h);
            let sw = matmul(&self.ww, true, &self.ww, false, self.w, ow, self.w);
            let (lh, qh) = sym_eigen(&sh, self.h);
            let (lw, qw) = sym_eigen(&sw, self.w);
            Eig { qh, lh, qw, lw }
        })
    }

    /// `(A^T A + rho I)^{-1} b`, exactly, through `W^T W = Q L Q^T` per dimension.
    pub fn solve(&self, b: &Tensor, rho: f64) -> Result<Tensor> {
        self.check(b, self.h, self.w)?;
        let e = self.eig();
        let (h, w) = (self.h, self.w);
        Ok(Self::planes(
            b,
            |p| {
                let mut t = matmul(&matmul(&e.qh, true, p, false, h, h, w), false, &e.qw, false, h, w, w);
                for i in 0..h {
                    for j in 0..w {
                        t[i * w + j] /= e.lh[i] * e.lw[j] + rho;
                    }
                }
                matmul(&matmul(&e.qh, false, &t, false, h, h, w), false, &e.qw, true, h, w, w)
            },
            h,
            w,
        ))
    }

    /// Bicubic upsampling of a measurement back to `h x w` (MATLAB `imresize`).
    pub fn upsample(&self, y: &Tensor) -> Result<Tensor> {
        let (oh, ow) = self.low();
        self.check(y, oh, ow)?;
        let (h, w) = (self.h, self.w);
        let (uh, uw) = (resize_matrix(oh, h), resize_matrix(ow, w));
        Ok(Self::planes(y, |p| matmul(&matmul(&uh, false, p, false, h, oh, ow), false, &uw, true, h, ow, w), h, w))
    }
}
