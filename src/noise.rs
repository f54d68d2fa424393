//! The measurement noise level estimated from a measurement alone.

use crate::error::Result;
use crate::image::to_tensor;
use diffinv_cpu::ops::Task;
use ndarray::ArrayView3;

/// Estimates the noise level `sigma_y` ([-1, 1] units, as [`crate::Restorer::noise`] takes it)
/// of a measurement of `task` (`H x W x 3` in [0, 1], as [`crate::Restorer::measure`] makes
/// it), from the measurement alone.
///
/// Patch PCA with a white-noise calibration (`diffinv::cpu::noise_level`): accurate to a few
/// per cent from `sigma_y = 0.025` up on faces, within 0.01 below. Inpainting holes are the
/// pixels that are 0 in every channel of `y` (0.5 in these units); a known mask is better used
/// through [`crate::Restorer::estimate_noise`]. Super-resolution measurements have the
/// estimator's reading of clean low-resolution faces removed.
///
/// ```
/// use diffinv::{Restorer, Task};
/// let clean = diffinv::image::load("assets/samples/009521.png")?;
/// let y = Restorer::classical().task(Task::Denoise).noise(0.1).seed(3).measure(clean.view())?;
/// let sigma = diffinv::estimate_noise(y.view(), Task::Denoise)?;
/// assert!((sigma - 0.1).abs() < 0.015, "{sigma}");
/// # Ok::<(), diffinv::Error>(())
/// ```
///
/// # Errors
/// An image with too few (observed) pixels to estimate from (fewer than about 40).
pub fn estimate_noise(y: ArrayView3<'_, f32>, task: Task) -> Result<f64> {
    let t = to_tensor(y)?;
    Ok(diffinv_cpu::noise_level::estimate_for_task(&t, task, 0)?.sigma.min(diffinv_cpu::ops::MAX_NOISE))
}
