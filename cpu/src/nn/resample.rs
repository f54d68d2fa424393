//! Nearest-neighbour x2 upsampling and 2x2 average pooling, with their adjoints.

use rayon::prelude::*;

/// `y[c, 2i+a, 2j+b] = x[c, i, j]` for `planes` planes of `h x w`.
pub fn upsample2(x: &[f32], planes: usize, h: usize, w: usize, y: &mut [f32]) {
    let (oh, ow) = (2 * h, 2 * w);
    y[..planes * oh * ow].par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).for_each(|(yp, xp)| {
        for i in 0..h {
            let src = &xp[i * w..(i + 1) * w];
            for a in 0..2 {
                let row = &mut yp[(2 * i + a) * ow..(2 * i + a + 1) * ow];
                for (j, &v) in src.iter().enumerate() {
                    row[2 * j] = v;
                    row[2 * j + 1] = v;
                }
            }
        }
    });
}

/// Adjoint of [`upsample2`]: `x[c, i, j] (+)= sum_{a,b} y[c, 2i+a, 2j+b]`.
pub fn upsample2_adjoint(gy: &[f32], planes: usize, h: usize, w: usize, gx: &mut [f32], accumulate: bool) {
    let ow = 2 * w;
    gx[..planes * h * w].par_chunks_mut(h * w).zip(gy.par_chunks(4 * h * w)).for_each(|(xp, yp)| {
        for i in 0..h {
            for j in 0..w {
                let s = yp[2 * i * ow + 2 * j]
                    + yp[2 * i * ow + 2 * j + 1]
                    + yp[(2 * i + 1) * ow + 2 * j]
                    + yp[(2 * i + 1) * ow + 2 * j + 1];
                let o = &mut xp[i * w + j];
                *o = if accumulate { *o + s } else { s };
            }
        }
    });
}

/// 2x2 average pooling with stride 2 (odd trailing rows/columns dropped, as PyTorch does).
pub fn avgpool2(x: &[f32], planes: usize, h: usize, w: usize, y: &mut [f32]) {
    let (oh, ow) = (h / 2, w / 2);
    y[..planes * oh * ow].par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).for_each(|(yp, xp)| {
        for i in 0..oh {
            for j in 0..ow {
                yp[i * ow + j] = 0.25
                    * (xp[2 * i * w + 2 * j]
                        + xp[2 * i * w + 2 * j + 1]
                        + xp[(2 * i + 1) * w + 2 * j]
                        + xp[(2 * i + 1) * w + 2 * j + 1]);
            }
        }
    });
}

/// Adjoint of [`avgpool2`] (input size `h x w`).
pub fn avgpool2_adjoint(gy: &[f32], planes: usize, h: usize, w: usize, gx: &mut [f32], accumulate: bool) {
    let (oh, ow) = (h / 2, w / 2);
    gx[..planes * h * w].par_chunks_mut(h * w).zip(gy.par_chunks(oh * ow)).for_each(|(xp, yp)| {
        if !accumulate {
            xp.fill(0.0);
        }
        for i in 0..oh {
            for j in 0..ow {
                let v = 0.25 * yp[i * ow + j];
                xp[2 * i * w + 2 * j] += v;
                xp[2 * i * w + 2 * j + 1] += v;
                xp[(2 * i + 1) * w + 2 * j] += v;
                xp[(2 * i + 1) * w + 2 * j + 1] += v;
            }
        }
    });
}
