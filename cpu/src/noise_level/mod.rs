//! The measurement noise `sigma_y` estimated from the measurement alone.
//!
//! Patch PCA (Chen, Zhu and Heng 2015): the covariance of all `p x p x C` patches of the
//! measurement has the image's structure in a few large eigenvalues and white noise spread
//! evenly over all of them, so the smallest eigenvalues whose mean equals their median give
//! `sigma^2`. Chosen by measurement on CelebA dev faces (`README.md`, "Unknown noise"): the
//! wavelet MAD and Laplacian estimators read the faces' fine detail as noise (floors of 0.016 to
//! 0.07 against this estimator's 0.002 to 0.013), and spatial leave-one-out fits were worse still.
//!
//! Three refinements: patches whose mean lies within `3 sigma` of the clipping bounds are left
//! out (clipped noise is smaller); the small-sample bias of the eigenvalues is removed by running
//! the same estimator on seeded white noise over the same patches; and for inpainting only
//! observed pixels are used, with the covariance of partly observed patches found by EM where
//! too few patches are whole (random masks).

mod pca;

pub use pca::{chen_sigma, covariance, em_covariance, sym_eigenvalues};

use crate::error::{Error, Result};
use crate::ops::{Op, Task};
use crate::tensor::Tensor;
use diffinv_core::NoiseStream;
use rayon::prelude::*;

/// The estimator's reading of noise-free x4 super-resolution measurements of faces (the median
/// over 20 dev faces): their fine detail at a quarter of the resolution looks like noise of this
/// level, so it is removed in quadrature from SR estimates.
pub const SR_SIGNAL_FLOOR: f64 = 0.0117;

/// The most patches a covariance is made from (larger images are sampled on a coarser grid).
const MAX_PATCHES: usize = 16384;
/// The most partly observed patches the EM covariance uses.
const MAX_EM_PATCHES: usize = 4096;
/// EM iterations for partly observed patches: a rough pass that finds the clipping margin, then
/// the estimate (EM converges slowly in the noise directions when most entries are missing:
/// on 70 %-missing faces the smallest eigenvalues settle after about 60 iterations).
const EM_ROUGH: usize = 20;
const EM_ITERATIONS: usize = 60;
/// White-noise draws that calibrate the small-sample bias.
const CALIBRATION_DRAWS: usize = 2;
/// The seed of the calibration noise (fixed: the estimate is a function of the image).
const CALIBRATION_SEED: u64 = 0x006e_6f69_7365;

/// What an estimate used.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoiseEstimate {
    /// The estimated `sigma_y`, in the [-1, 1] units of the tensors.
    pub sigma: f64,
    /// The patch side of the estimate.
    pub patch: usize,
    /// Patches used.
    pub patches: usize,
    /// Whether partly observed patches were combined by EM (sparse masks).
    pub em: bool,
}

/// Estimates `sigma_y` of image `i` of the measurement `y` of `op` (see the module docs).
///
/// # Errors
/// [`Error::Shape`] when the image (or its observed part) is too small to estimate from: fewer
/// than about 40 pixels, or an inpainting mask that observes almost nothing.
pub fn estimate(y: &Tensor, op: &Op, i: usize) -> Result<NoiseEstimate> {
    if matches!(op, Op::PhaseRetrieval(_)) {
        return Err(no_image());
    }
    let observed = match op {
        Op::Mask(m) => {
            let mi = m.image(if m.n() == 1 { 0 } else { i });
            let hw = y.h() * y.w();
            if mi.len() != y.c() * hw {
                return Err(Error::shape("measurement", &y.shape(), "does not match its operator's mask".to_string()));
            }
            Some((0..hw).map(|p| (0..y.c()).all(|c| mi[c * hw + p] > 0.5)).collect::<Vec<bool>>())
        }
        _ => None,
    };
    let floor = if matches!(op, Op::Resize(_)) { SR_SIGNAL_FLOOR } else { 0.0 };
    estimate_image(y.image(i), [y.c(), y.h(), y.w()], observed.as_deref(), floor)
}

fn no_image() -> Error {
    Error::parameter("noise", "auto", "needs an image-like measurement; give phase retrieval's level (--noise SIGMA)")
}

/// The default pixel-wise observation of a task's measurement when no operator is at hand:
/// for inpainting, pixels at the hole value 0 in every channel are missing.
pub fn observed_by_value(img: &[f32], [c, h, w]: [usize; 3]) -> Vec<bool> {
    let hw = h * w;
    (0..hw).map(|p| (0..c).any(|ch| img[ch * hw + p].abs() > 1.0 / 255.0)).collect()
}

/// [`estimate`] for a task given by name: inpainting holes are found by value
/// ([`observed_by_value`]).
///
/// # Errors
/// As [`estimate`].
pub fn estimate_for_task(y: &Tensor, task: Task, i: usize) -> Result<NoiseEstimate> {
    if task == Task::PhaseRetrieval {
        return Err(no_image());
    }
    let shape = [y.c(), y.h(), y.w()];
    let observed = task.is_inpainting().then(|| observed_by_value(y.image(i), shape));
    let floor = if task == Task::Sr4 { SR_SIGNAL_FLOOR } else { 0.0 };
    estimate_image(y.image(i), shape, observed.as_deref(), floor)
}

/// The estimate for one `C x H x W` image with an optional per-pixel observation mask, less a
/// known signal floor (in quadrature).
///
/// # Errors
/// As [`estimate`].
pub fn estimate_image(img: &[f32], shape: [usize; 3], observed: Option<&[bool]>, floor: f64) -> Result<NoiseEstimate> {
    let [c, h, w] = shape;
    let too_small = |why: &str| Error::shape("measurement", &[1, c, h, w], why.to_string());
    if img.len() != c * h * w || observed.is_some_and(|o| o.len() != h * w) {
        return Err(too_small("does not match its observation mask"));
    }
    let grid = Grid { img, c, h, w, observed };
    // Whole patches of every side that has enough of them, the least contaminated (smallest)
    // estimate; a sparse mask, without enough whole 4 x 4 patches, goes to EM instead.
    let four = grid.full_patch_estimate(4);
    let best = if observed.is_some() && four.is_none() {
        grid.em_estimate(3).or_else(|| grid.em_estimate(4)).or_else(|| grid.em_estimate(2))
    } else {
        let smaller = [2, 3].into_iter().filter_map(|p| grid.full_patch_estimate(p));
        smaller.chain(four).min_by(|a, b| a.sigma.total_cmp(&b.sigma))
    };
    let mut e = best.ok_or_else(|| too_small("too few (observed) pixels to estimate the noise from"))?;
    e.sigma = (e.sigma * e.sigma - floor * floor).max(0.0).sqrt();
    Ok(e)
}

struct Grid<'a> {
    img: &'a [f32],
    c: usize,
    h: usize,
    w: usize,
    observed: Option<&'a [bool]>,
}

impl Grid<'_> {
    /// Top-left corners of the `p x p` patches on a grid of step `step`.
    fn corners(&self, p: usize, step: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let (ny, nx) = ((self.h + 1).saturating_sub(p), (self.w + 1).saturating_sub(p));
        (0..ny).step_by(step).flat_map(move |y| (0..nx).step_by(step).map(move |x| (y, x)))
    }

    /// The step that keeps the patch count under `max`.
    fn step(&self, p: usize, max: usize) -> usize {
        let n = (self.h + 1).saturating_sub(p) * (self.w + 1).saturating_sub(p);
        (1..).find(|s| n.div_ceil(s * s) <= max).unwrap_or(1)
    }

    fn observed_count(&self, y: usize, x: usize, p: usize) -> usize {
        self.observed
            .map_or(p * p, |o| (0..p).map(|dy| (0..p).filter(|&dx| o[(y + dy) * self.w + x + dx]).count()).sum())
    }

    /// The patch at `(y, x)` of `src` (the image or a noise field of its shape), channel-major.
    fn patch(&self, src: &[f32], y: usize, x: usize, p: usize, out: &mut Vec<f64>) {
        out.clear();
        let hw = self.h * self.w;
        for ch in 0..self.c {
            for dy in 0..p {
                let row = ch * hw + (y + dy) * self.w + x;
                out.extend(src[row..row + p].iter().map(|&v| v as f64));
            }
        }
    }

    /// Seeded white noise of the image's shape, draw `k`.
    fn white_noise(&self, k: usize) -> Vec<f32> {
        let mut v = vec![0.0f32; self.img.len()];
        NoiseStream::new(CALIBRATION_SEED, k as u64).fill_normal_from(0, &mut v);
        v
    }

    /// Patch PCA over the whole patches of side `p`, if there are enough of them.
    fn full_patch_estimate(&self, p: usize) -> Option<NoiseEstimate> {
        let d = p * p * self.c;
        let step = self.step(p, MAX_PATCHES);
        let corners: Vec<(usize, usize)> =
            self.corners(p, step).filter(|&(y, x)| self.observed_count(y, x, p) == p * p).collect();
        if corners.len() < 2 * d + 2 {
            return None;
        }
        let rows = |src: &[f32], at: &[(usize, usize)]| -> Vec<Vec<f64>> {
            at.par_iter()
                .map(|&(y, x)| {
                    let mut v = Vec::with_capacity(d);
                    self.patch(src, y, x, p, &mut v);
                    v
                })
                .collect()
        };
        let sigma_of = |rs: &mut dyn Iterator<Item = &[f64]>| chen_sigma(&sym_eigenvalues(&covariance(rs, d), d));
        let all = rows(self.img, &corners);
        let kept = unclipped(&corners, &all, sigma_of(&mut all.iter().map(Vec::as_slice)), 2 * d + 2);
        let raw = sigma_of(&mut kept.iter().map(|&k| all[k].as_slice()));
        let at: Vec<(usize, usize)> = kept.iter().map(|&k| corners[k]).collect();
        let bias = (0..CALIBRATION_DRAWS)
            .map(|k| sigma_of(&mut rows(&self.white_noise(k), &at).iter().map(Vec::as_slice)))
            .sum::<f64>()
            / CALIBRATION_DRAWS as f64;
        Some(NoiseEstimate { sigma: raw / bias.max(1e-12), patch: p, patches: at.len(), em: false })
    }

    /// Patch PCA over partly observed patches (at least `p` observed pixels), the covariance
    /// by EM.
    fn em_estimate(&self, p: usize) -> Option<NoiseEstimate> {
        let o = self.observed?;
        let d = p * p * self.c;
        let step = self.step(p, MAX_EM_PATCHES);
        let corners: Vec<(usize, usize)> =
            self.corners(p, step).filter(|&(y, x)| self.observed_count(y, x, p) >= p).collect();
        if corners.len() < 2 * d + 2 {
            return None;
        }
        let masks: Vec<Vec<bool>> = corners
            .iter()
            .map(|&(y, x)| {
                (0..self.c)
                    .flat_map(|_| (0..p).flat_map(move |dy| (0..p).map(move |dx| o[(y + dy) * self.w + x + dx])))
                    .collect()
            })
            .collect();
        let rows = |src: &[f32]| -> Vec<Vec<f64>> {
            corners
                .iter()
                .map(|&(y, x)| {
                    let mut v = Vec::with_capacity(d);
                    self.patch(src, y, x, p, &mut v);
                    v
                })
                .collect()
        };
        let sigma_of = |rs: &[Vec<f64>], ms: &[Vec<bool>], iterations: usize| {
            chen_sigma(&sym_eigenvalues(&em_covariance(rs, ms, d, iterations), d))
        };
        let all = rows(self.img);
        let means: Vec<f64> = all
            .iter()
            .zip(&masks)
            .map(|(r, m)| {
                let (s, n) = r.iter().zip(m).filter(|(_, &m)| m).fold((0.0, 0usize), |(s, n), (v, _)| (s + v, n + 1));
                s / n.max(1) as f64
            })
            .collect();
        let rough = sigma_of(&all, &masks, EM_ROUGH);
        let keep: Vec<usize> = (0..all.len()).filter(|&k| means[k].abs() < 1.0 - 2.0 * rough).collect();
        let keep = if keep.len() >= 2 * d + 2 { keep } else { (0..all.len()).collect() };
        let pick = |rs: &[Vec<f64>]| -> Vec<Vec<f64>> { keep.iter().map(|&k| rs[k].clone()).collect() };
        let kept_masks: Vec<Vec<bool>> = keep.iter().map(|&k| masks[k].clone()).collect();
        let raw = sigma_of(&pick(&all), &kept_masks, EM_ITERATIONS);
        let bias = sigma_of(&pick(&rows(&self.white_noise(0))), &kept_masks, EM_ITERATIONS);
        Some(NoiseEstimate { sigma: raw / bias.max(1e-12), patch: p, patches: keep.len(), em: true })
    }
}

/// Indices of the patches whose mean is at least `3 sigma` inside the clipping bounds [-1, 1]
/// (all of them when fewer than `min` would remain).
fn unclipped(corners: &[(usize, usize)], rows: &[Vec<f64>], sigma: f64, min: usize) -> Vec<usize> {
    let keep: Vec<usize> = (0..corners.len())
        .filter(|&k| {
            let m = rows[k].iter().sum::<f64>() / rows[k].len() as f64;
            m.abs() < 1.0 - 3.0 * sigma
        })
        .collect();
    if keep.len() >= min {
        keep
    } else {
        (0..corners.len()).collect()
    }
}
