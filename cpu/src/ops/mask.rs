//! Inpainting masks (1 = observed): a box, random missing pixels, or a user's mask image.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use diffinv_core::NoiseStream;

/// A square hole at `(x, y)` (column, row of its top-left corner) of side `size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoxSpec {
    /// Column of the top-left corner.
    pub x: usize,
    /// Row of the top-left corner.
    pub y: usize,
    /// Side.
    pub size: usize,
}

/// A box of side `size` at a seeded random position at least `margin` from every border.
pub fn random_box(h: usize, w: usize, size: usize, margin: usize, rng: &mut NoiseStream) -> Result<BoxSpec> {
    if size.checked_add(margin.saturating_mul(2)).is_none_or(|n| n > h.min(w)) {
        return Err(Error::parameter("box size", size, format!("with a {margin} px margin must fit a {h}x{w} image")));
    }
    let pick = |n: usize, rng: &mut NoiseStream| {
        margin + ((rng.next_uniform() * (n - size - 2 * margin + 1) as f64) as usize).min(n - size - 2 * margin)
    };
    let y = pick(h, rng);
    let x = pick(w, rng);
    Ok(BoxSpec { x, y, size })
}

/// The mask (`1 x c x h x w`) with `b`'s square set to 0.
pub fn box_mask(c: usize, h: usize, w: usize, b: BoxSpec) -> Result<Tensor> {
    if b.size == 0 || b.x.checked_add(b.size).is_none_or(|e| e > w) || b.y.checked_add(b.size).is_none_or(|e| e > h) {
        return Err(Error::parameter(
            "box",
            format!("{},{},{}", b.x, b.y, b.size),
            format!("must be a non-empty square inside the {h}x{w} image"),
        ));
    }
    let mut m = Tensor::full([1, c, h, w], 1.0);
    for ch in 0..c {
        for i in b.y..b.y + b.size {
            m.data_mut()[(ch * h + i) * w + b.x..(ch * h + i) * w + b.x + b.size].fill(0.0);
        }
    }
    Ok(m)
}

/// A mask with exactly `floor(missing * h * w)` pixels missing (all channels together), chosen
/// uniformly without replacement (as DPS's `random` mask does).
pub fn random_mask(c: usize, h: usize, w: usize, missing: f64, rng: &mut NoiseStream) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&missing) {
        return Err(Error::parameter("missing", missing, "must be in [0, 1]"));
    }
    let n = h * w;
    let k = (missing * n as f64) as usize;
    let mut idx: Vec<usize> = (0..n).collect();
    // Partial Fisher-Yates: the first k entries become a uniform sample.
    for i in 0..k {
        let j = i + ((rng.next_uniform() * (n - i) as f64) as usize).min(n - i - 1);
        idx.swap(i, j);
    }
    let mut m = Tensor::full([1, c, h, w], 1.0);
    for &p in &idx[..k] {
        for ch in 0..c {
            m.data_mut()[ch * n + p] = 0.0;
        }
    }
    Ok(m)
}

/// A mask from a grayscale image in [0, 1]: white (>= 0.5) = observed.
pub fn mask_from_gray(gray: &[f32], c: usize, h: usize, w: usize) -> Tensor {
    let mut m = Tensor::zeros([1, c, h, w]);
    for ch in 0..c {
        for (o, &g) in m.data_mut()[ch * h * w..(ch + 1) * h * w].iter_mut().zip(gray) {
            *o = if g >= 0.5 { 1.0 } else { 0.0 };
        }
    }
    m
}
