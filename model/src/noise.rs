//! Step noise drawn on the host for every backend: image `i` of a batch from its own
//! counter-based stream, in parallel chunks whose split does not change the numbers.

use diffinv_core::NoiseStream;
use rayon::prelude::*;

/// Floats per parallel chunk.
const CHUNK: usize = 1 << 14;

/// Fills `out` (`rngs.len()` images of equal length, back to back) with standard normal noise,
/// image `i` drawn from `rngs[i]` (whose position advances past the draws).
///
/// # Panics
/// When `out` is not a whole number of images (callers check the batch first).
pub fn randn_images(rngs: &mut [NoiseStream], out: &mut [f32]) {
    if rngs.is_empty() {
        return;
    }
    assert!(out.len().is_multiple_of(rngs.len()), "randn_images: {} floats for {} images", out.len(), rngs.len());
    let l = out.len() / rngs.len();
    for (rng, img) in rngs.iter_mut().zip(out.chunks_mut(l.max(1))) {
        let start = rng.reserve(l);
        let r = *rng;
        img.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| r.fill_normal_from(start + (c * CHUNK) as u64, o));
    }
}
