//! A batch of images in NCHW f32: the tensor every CPU kernel reads and writes.

use crate::error::{Error, Result};
use diffinv_core::Shape;

/// An owned NCHW f32 tensor.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Tensor {
    shape: Shape,
    data: Vec<f32>,
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: Shape) -> Self {
        Tensor { shape, data: vec![0.0; shape.iter().product()] }
    }

    /// A tensor filled with `v`.
    pub fn full(shape: Shape, v: f32) -> Self {
        Tensor { shape, data: vec![v; shape.iter().product()] }
    }

    /// Wraps `data` (row-major NCHW); errors when the length does not match the shape.
    pub fn from_vec(shape: Shape, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::shape("tensor", &shape, format!("needs {n} values, got {}", data.len())));
        }
        Ok(Tensor { shape, data })
    }

    /// The shape (N, C, H, W).
    #[inline]
    pub fn shape(&self) -> Shape {
        self.shape
    }
    /// Batch size.
    #[inline]
    pub fn n(&self) -> usize {
        self.shape[0]
    }
    /// Channels.
    #[inline]
    pub fn c(&self) -> usize {
        self.shape[1]
    }
    /// Height.
    #[inline]
    pub fn h(&self) -> usize {
        self.shape[2]
    }
    /// Width.
    #[inline]
    pub fn w(&self) -> usize {
        self.shape[3]
    }
    /// Elements per image (C*H*W).
    #[inline]
    pub fn image_len(&self) -> usize {
        self.shape[1] * self.shape[2] * self.shape[3]
    }
    /// All elements.
    #[inline]
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    /// All elements, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
    /// The data as the vector the shared walker's CPU buffers are.
    pub(crate) fn vec(&self) -> &Vec<f32> {
        &self.data
    }
    /// The data vector, mutable (its length must not change).
    pub(crate) fn vec_mut(&mut self) -> &mut Vec<f32> {
        &mut self.data
    }
    /// Consumes the tensor into its data.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }
    /// Image `i` of the batch.
    #[inline]
    pub fn image(&self, i: usize) -> &[f32] {
        let l = self.image_len();
        &self.data[i * l..(i + 1) * l]
    }
    /// Image `i` of the batch, mutable.
    #[inline]
    pub fn image_mut(&mut self, i: usize) -> &mut [f32] {
        let l = self.image_len();
        &mut self.data[i * l..(i + 1) * l]
    }
    /// Changes the shape in place, reusing the allocation (contents are unspecified afterwards
    /// only where the size grew: new elements are zero).
    pub fn resize(&mut self, shape: Shape) {
        self.shape = shape;
        self.data.resize(shape.iter().product(), 0.0);
    }
    /// A copy of images `start..start + count`.
    pub fn slice_batch(&self, start: usize, count: usize) -> Tensor {
        let l = self.image_len();
        Tensor {
            shape: [count, self.shape[1], self.shape[2], self.shape[3]],
            data: self.data[start * l..(start + count) * l].to_vec(),
        }
    }
    /// Concatenates tensors of equal image shape along the batch.
    pub fn stack(parts: &[&Tensor]) -> Result<Tensor> {
        let first = parts.first().ok_or_else(|| Error::shape("stack", &[0], "needs at least one tensor"))?;
        let mut data = Vec::new();
        let mut n = 0;
        for p in parts {
            if p.shape[1..] != first.shape[1..] {
                return Err(Error::mismatch("stacked tensor", &p.shape, &first.shape));
            }
            data.extend_from_slice(&p.data);
            n += p.shape[0];
        }
        Ok(Tensor { shape: [n, first.shape[1], first.shape[2], first.shape[3]], data })
    }
    /// The largest |x| (NaN if any element is NaN).
    pub fn max_abs(&self) -> f32 {
        let mut m = 0.0f32;
        for &v in &self.data {
            if v.is_nan() {
                return f32::NAN;
            }
            m = m.max(v.abs());
        }
        m
    }
}
