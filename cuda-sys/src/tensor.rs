//! Batched NCHW f32 tensors in device memory.

use crate::device::{DBuf, Gpu};
use crate::error::{Error, Result};
use diffinv_core::Shape;
use diffinv_cpu::Tensor;

/// A batch of images (N, C, H, W) on the GPU.
pub struct GpuTensor {
    pub(crate) buf: DBuf,
    pub(crate) shape: Shape,
}

impl GpuTensor {
    /// A zero tensor.
    pub fn zeros(gpu: &Gpu, shape: Shape) -> Result<Self> {
        Ok(GpuTensor { buf: gpu.zeros(shape.iter().product())?, shape })
    }

    /// Uploads a host tensor.
    pub fn upload(gpu: &Gpu, t: &Tensor) -> Result<Self> {
        Ok(GpuTensor { buf: gpu.upload(t.data())?, shape: t.shape() })
    }

    /// Downloads to a host tensor.
    pub fn download(&self, gpu: &Gpu) -> Result<Tensor> {
        let v = gpu.download(&self.buf, self.len())?;
        Ok(Tensor::from_vec(self.shape, v)?)
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
        Err(Error::Shape(format!("{what}: shapes {:?} and {:?} differ", a.shape, b.shape)))
    }
}
