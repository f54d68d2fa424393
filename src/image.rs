//! Images in and out. Programs exchange images as [`ndarray::Array3<f32>`] of `H x W x 3` in
//! `[0, 1]`; the models work on NCHW tensors in `[-1, 1]` (`x = 2 a - 1`). Files are PNG or
//! JPEG, decoded with size limits checked before any pixel is decoded, and written atomically.

use crate::error::{Error, Result};
use diffinv_cpu::image_io::{load_image, save_image, Fit};
use diffinv_cpu::Tensor;
use ndarray::{Array3, ArrayView3};
use std::path::Path;

/// An image file as `H x W x 3` in `[0, 1]` (grayscale replicated, alpha dropped).
///
/// ```
/// let img = diffinv::image::load("assets/samples/009521.png")?;
/// assert_eq!(img.dim(), (64, 64, 3));
/// # Ok::<(), diffinv::Error>(())
/// ```
///
/// # Errors
/// The file cannot be read or decoded, or is larger than the decoder's limits.
pub fn load(path: impl AsRef<Path>) -> Result<Array3<f32>> {
    Ok(from_tensor(&load_image(path.as_ref(), Fit::Any)?, 0))
}

/// [`load`], centre-cropped to a square and resized to `size x size` (Lanczos3).
///
/// ```
/// let img = diffinv::image::load_resized("assets/samples/009521.png", 32)?;
/// assert_eq!(img.dim(), (32, 32, 3));
/// # Ok::<(), diffinv::Error>(())
/// ```
///
/// # Errors
/// As [`load`].
pub fn load_resized(path: impl AsRef<Path>, size: usize) -> Result<Array3<f32>> {
    Ok(from_tensor(&load_image(path.as_ref(), Fit::Resize(size))?, 0))
}

/// Writes `img` (`H x W x 3`, values clipped to `[0, 1]`) as 8-bit PNG (JPEG by extension),
/// atomically: an interrupted write leaves no partial file.
///
/// ```no_run
/// let img = ndarray::Array3::<f32>::from_elem((64, 64, 3), 0.5);
/// diffinv::image::save("grey.png", img.view())?;
/// # Ok::<(), diffinv::Error>(())
/// ```
///
/// # Errors
/// A shape other than `H x W x 3`, or the file cannot be written.
pub fn save(path: impl AsRef<Path>, img: ArrayView3<'_, f32>) -> Result<()> {
    Ok(save_image(path.as_ref(), &to_tensor(img)?, 0)?)
}

/// `img` (`H x W x 3` in `[0, 1]`) as a `1 x 3 x H x W` tensor in `[-1, 1]`.
///
/// ```
/// let img = ndarray::Array3::<f32>::from_elem((4, 5, 3), 1.0);
/// let t = diffinv::image::to_tensor(img.view())?;
/// assert_eq!(t.shape(), [1, 3, 4, 5]);
/// assert!(t.data().iter().all(|&v| v == 1.0));
/// # Ok::<(), diffinv::Error>(())
/// ```
///
/// # Errors
/// A shape other than `H x W x 3` with `H, W > 0`.
pub fn to_tensor(img: ArrayView3<'_, f32>) -> Result<Tensor> {
    let (h, w, c) = img.dim();
    if c != 3 || h == 0 || w == 0 {
        return Err(Error::Cpu(diffinv_cpu::Error::shape("image", &[h, w, c], "must be H x W x 3 with H, W > 0")));
    }
    let mut t = Tensor::zeros([1, 3, h, w]);
    // CHW from HWC: one strided pass per channel (ndarray's own iteration order).
    for (ch, plane) in t.data_mut().chunks_mut(h * w).enumerate() {
        for (o, &v) in plane.iter_mut().zip(img.index_axis(ndarray::Axis(2), ch).iter()) {
            *o = 2.0 * v - 1.0;
        }
    }
    Ok(t)
}

/// Image `i` of a `[-1, 1]` tensor as `H x W x C` in `[0, 1]` (not clipped).
pub fn from_tensor(t: &Tensor, i: usize) -> Array3<f32> {
    let (c, h, w) = (t.c(), t.h(), t.w());
    let x = t.image(i);
    Array3::from_shape_fn((h, w, c), |(y, xx, ch)| 0.5 * (x[(ch * h + y) * w + xx] + 1.0))
}
