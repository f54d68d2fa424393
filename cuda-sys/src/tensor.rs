//! Batched NCHW f32 tensors in device memory.

use crate::device::{DBuf, Gpu};
use crate::error::{Error, Result};
use diffinv_core::Shape;

/// A batch of images (N, C, H, W) on the GPU.
pub struct GpuTensor {
    pub(crate) buf: DBuf,
    pub(crate) shape: Shape,
}

impl GpuTensor {
    /// A zero tensor.
    ///
    /// # Errors
    /// The allocation fails.
    pub fn zeros(gpu: &Gpu, shape: Shape) -> Result<Self> {
        Ok(GpuTensor { buf: gpu.zeros(shape.iter().product())?, shape })
    }

    /// Uploads `data` (row-major NCHW of `shape`).
    ///
    /// # Errors
    /// `data` does not have the shape's length, or the copy fails.
    pub fn from_host(gpu: &Gpu, shape: Shape, data: &[f32]) -> Result<Self> {
        if data.len() != shape.iter().product::<usize>() {
            return Err(Error::shape(
                "upload",
                &shape,
                format!("needs {} values, got {}", shape.iter().product::<usize>(), data.len()),
            ));
        }
        Ok(GpuTensor { buf: gpu.upload(data)?, shape })
    }

    /// Downloads the elements (row-major NCHW).
    ///
    /// # Errors
    /// The copy fails.
    pub fn to_host(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        gpu.download(&self.buf, self.len())
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements per image.
    pub fn image_len(&self) -> usize {
        self.shape[1] * self.shape[2] * self.shape[3]
    }

    pub(crate) fn p(&self) -> u64 {
        self.buf.p()
    }
}

/// An error unless `a` and `b` have the same shape.
pub(crate) fn same(a: &GpuTensor, b: &GpuTensor, what: &str) -> Result<()> {
    if a.shape == b.shape {
        Ok(())
    } else {
        Err(Error::shape(what, &a.shape, format!("must match {:?}", b.shape)))
    }
}
