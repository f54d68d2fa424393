//! Image quality: PSNR, SSIM (scikit-image's Gaussian SSIM) and LPIPS v0.1 (AlexNet, VGG16).
//! Images are [-1, 1] tensors; PSNR and SSIM are measured on [0, 1] with data range 1.

mod lpips;

pub use lpips::{Lpips, LpipsNet};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

fn unit(v: f32) -> f64 {
    ((v as f64 + 1.0) * 0.5).clamp(0.0, 1.0)
}

fn check(a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::mismatch("compared image", &a.shape(), &b.shape()));
    }
    Ok(())
}

/// PSNR in dB of image `i` of `b` against `a` on [0, 1] (infinite for identical images).
pub fn psnr(a: &Tensor, b: &Tensor, i: usize) -> Result<f64> {
    check(a, b)?;
    let (x, y) = (a.image(i), b.image(i));
    let mse = x.iter().zip(y).map(|(p, q)| (unit(*p) - unit(*q)).powi(2)).sum::<f64>() / x.len() as f64;
    Ok(if mse == 0.0 { f64::INFINITY } else { -10.0 * mse.log10() })
}

/// scipy's 'reflect' boundary (`d c b a | a b c d | d c b a`).
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let p = 2 * n;
    let r = i.rem_euclid(p);
    (if r < n { r } else { p - 1 - r }) as usize
}

/// Separable Gaussian filtering (std 1.5, truncate 3.5: an 11-tap window) with reflect borders.
fn gauss_filter(x: &[f64], h: usize, w: usize) -> Vec<f64> {
    let sigma = 1.5f64;
    let r = (3.5 * sigma + 0.5) as isize;
    let g: Vec<f64> = (-r..=r).map(|k| (-0.5 * (k * k) as f64 / (sigma * sigma)).exp()).collect();
    let s: f64 = g.iter().sum();
    let g: Vec<f64> = g.iter().map(|v| v / s).collect();
    let mut t = vec![0.0; h * w];
    for i in 0..h {
        for j in 0..w {
            t[i * w + j] =
                g.iter().enumerate().map(|(k, gv)| gv * x[i * w + reflect(j as isize + k as isize - r, w)]).sum();
        }
    }
    let mut o = vec![0.0; h * w];
    for i in 0..h {
        for j in 0..w {
            o[i * w + j] =
                g.iter().enumerate().map(|(k, gv)| gv * t[reflect(i as isize + k as isize - r, h) * w + j]).sum();
        }
    }
    o
}

/// SSIM of image `i` of `b` against `a`, as scikit-image's `structural_similarity(...,
/// gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)`: per channel,
/// mean over the map without a 5-pixel border, averaged over channels.
pub fn ssim(a: &Tensor, b: &Tensor, i: usize) -> Result<f64> {
    check(a, b)?;
    let (c, h, w) = (a.c(), a.h(), a.w());
    if h < 11 || w < 11 {
        return Err(Error::shape("SSIM input", &a.shape(), "needs images of at least 11x11"));
    }
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let pad = 5;
    let mut total = 0.0;
    for ch in 0..c {
        let x: Vec<f64> = a.image(i)[ch * h * w..(ch + 1) * h * w].iter().map(|&v| unit(v)).collect();
        let y: Vec<f64> = b.image(i)[ch * h * w..(ch + 1) * h * w].iter().map(|&v| unit(v)).collect();
        let xx: Vec<f64> = x.iter().map(|v| v * v).collect();
        let yy: Vec<f64> = y.iter().map(|v| v * v).collect();
        let xy: Vec<f64> = x.iter().zip(&y).map(|(p, q)| p * q).collect();
        let (ux, uy) = (gauss_filter(&x, h, w), gauss_filter(&y, h, w));
        let (uxx, uyy, uxy) = (gauss_filter(&xx, h, w), gauss_filter(&yy, h, w), gauss_filter(&xy, h, w));
        let mut s = 0.0;
        let mut n = 0usize;
        for r in pad..h - pad {
            for q in pad..w - pad {
                let k = r * w + q;
                let (vx, vy, vxy) = (uxx[k] - ux[k] * ux[k], uyy[k] - uy[k] * uy[k], uxy[k] - ux[k] * uy[k]);
                let num = (2.0 * ux[k] * uy[k] + c1) * (2.0 * vxy + c2);
                let den = (ux[k] * ux[k] + uy[k] * uy[k] + c1) * (vx + vy + c2);
                s += num / den;
                n += 1;
            }
        }
        total += s / n as f64;
    }
    Ok(total / c as f64)
}
