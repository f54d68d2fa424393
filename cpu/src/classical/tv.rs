//! Isotropic total variation, channel by channel: `TV(x) = sum sqrt(dx^2 + dy^2)` with forward
//! differences (zero across the last row/column), its smoothed gradient, and its proximal
//! operator by Chambolle's (2004) projection algorithm.

use rayon::prelude::*;

/// Forward differences of an `h x w` plane: `(dx, dy)`, zero at the last column/row.
fn grad(x: &[f32], h: usize, w: usize, dx: &mut [f32], dy: &mut [f32]) {
    for i in 0..h {
        for j in 0..w {
            let k = i * w + j;
            dx[k] = if j + 1 < w { x[k + 1] - x[k] } else { 0.0 };
            dy[k] = if i + 1 < h { x[k + w] - x[k] } else { 0.0 };
        }
    }
}

/// `div = -grad^T`.
fn div(px: &[f32], py: &[f32], h: usize, w: usize, out: &mut [f32]) {
    for i in 0..h {
        for j in 0..w {
            let k = i * w + j;
            let a = if j + 1 < w { px[k] } else { 0.0 } - if j > 0 { px[k - 1] } else { 0.0 };
            let b = if i + 1 < h { py[k] } else { 0.0 } - if i > 0 { py[k - w] } else { 0.0 };
            out[k] = a + b;
        }
    }
}

/// `sum sqrt(dx^2 + dy^2 + eps^2)` over all planes (`eps = 0`: the exact isotropic TV).
pub fn value(x: &[f32], h: usize, w: usize, eps: f64) -> f64 {
    x.par_chunks(h * w)
        .map(|p| {
            let (mut dx, mut dy) = (vec![0.0; h * w], vec![0.0; h * w]);
            grad(p, h, w, &mut dx, &mut dy);
            dx.iter().zip(&dy).map(|(a, b)| ((*a as f64).powi(2) + (*b as f64).powi(2) + eps * eps).sqrt()).sum::<f64>()
        })
        .sum()
}

/// The gradient of the smoothed TV (`eps > 0`) into `g`.
pub fn gradient(x: &[f32], h: usize, w: usize, eps: f64, g: &mut [f32]) {
    g.par_chunks_mut(h * w).zip(x.par_chunks(h * w)).for_each(|(gp, p)| {
        let (mut dx, mut dy) = (vec![0.0; h * w], vec![0.0; h * w]);
        grad(p, h, w, &mut dx, &mut dy);
        for (a, b) in dx.iter_mut().zip(dy.iter_mut()) {
            let n = ((*a as f64).powi(2) + (*b as f64).powi(2) + eps * eps).sqrt() as f32;
            *a /= n;
            *b /= n;
        }
        // d/dx sum |grad x| = grad^T (grad x/|grad x|) = -div(...)
        div(&dx, &dy, h, w, gp);
        gp.iter_mut().for_each(|v| *v = -*v);
    });
}

/// `prox_{lambda TV}(z) = argmin_x 1/2 ||x - z||^2 + lambda TV(x)`, per plane, by Chambolle's
/// projection algorithm (`iters` steps of size 1/4; stops early when the dual moves < 1e-5).
pub fn prox(z: &[f32], h: usize, w: usize, lambda: f64, iters: usize, out: &mut [f32]) {
    if lambda <= 0.0 {
        out.copy_from_slice(z);
        return;
    }
    let tau = 0.25f32;
    let l = lambda as f32;
    out.par_chunks_mut(h * w).zip(z.par_chunks(h * w)).for_each(|(xo, zp)| {
        let n = h * w;
        let (mut px, mut py) = (vec![0.0f32; n], vec![0.0f32; n]);
        let (mut d, mut gx, mut gy) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
        for _ in 0..iters {
            div(&px, &py, h, w, &mut d);
            d.iter_mut().zip(zp).for_each(|(d, z)| *d -= z / l);
            grad(&d, h, w, &mut gx, &mut gy);
            let mut moved = 0.0f32;
            for k in 0..n {
                let nrm = 1.0 + tau * (gx[k] * gx[k] + gy[k] * gy[k]).sqrt();
                let (nx, ny) = ((px[k] + tau * gx[k]) / nrm, (py[k] + tau * gy[k]) / nrm);
                moved = moved.max((nx - px[k]).abs().max((ny - py[k]).abs()));
                px[k] = nx;
                py[k] = ny;
            }
            if moved < 1e-5 {
                break;
            }
        }
        div(&px, &py, h, w, &mut d);
        for k in 0..n {
            xo[k] = zp[k] - l * d[k];
        }
    });
}
