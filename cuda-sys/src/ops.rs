//! The measurement operators on the GPU. Inpainting masks (and the identity) run as kernels;
//! blur and resize run their exact CPU operators on a host copy (one transfer each way per
//! call, small next to a UNet pass), so every task of the CPU backend works here with the same
//! numbers.

use crate::backend::CudaBackend;
use crate::device::Arg::*;
use crate::error::{Error, Result};
use crate::tensor::GpuTensor;
use diffinv_core::{Operator, Shape};
use diffinv_cpu::ops::Op;
use diffinv_cpu::Tensor;

/// A CPU operator with its mask uploaded.
pub struct GpuOp<'a> {
    op: &'a Op,
    mask: Option<GpuTensor>,
}

impl<'a> GpuOp<'a> {
    /// Wraps `op`, uploading its mask when it has one.
    pub fn new(b: &CudaBackend<'_>, op: &'a Op) -> Result<Self> {
        let mask = match op {
            Op::Mask(m) => Some(GpuTensor::upload(b.gpu(), m)?),
            _ => None,
        };
        Ok(GpuOp { op, mask })
    }

    /// `f` on a host copy of `x`, uploaded into `out`.
    fn on_host(
        &self,
        b: &CudaBackend<'_>,
        x: &GpuTensor,
        out: &mut GpuTensor,
        f: impl Fn(&Tensor) -> diffinv_cpu::Result<Tensor>,
    ) -> Result<()> {
        let h = x.download(b.gpu())?;
        *out = GpuTensor::upload(b.gpu(), &f(&h)?)?;
        Ok(())
    }

    /// `out = m x` (the mask is its own adjoint).
    fn masked(&self, b: &CudaBackend<'_>, m: &GpuTensor, x: &GpuTensor, out: &mut GpuTensor) -> Result<()> {
        let sm = self.mask_stride(m, x)?;
        if out.shape != x.shape {
            *out = GpuTensor::zeros(b.gpu(), x.shape)?;
        }
        let l = x.image_len();
        b.gpu().launch_planes("mask_mul", l, x.shape[0], 1, &[P(out.p()), P(x.p()), P(m.p()), L(sm), I(l as i32)])
    }

    /// `A x` or `A^T x` (the mask and the identity are self-adjoint; `host` is the CPU's
    /// operator for the rest).
    fn apply(
        &self,
        b: &CudaBackend<'_>,
        x: &GpuTensor,
        out: &mut GpuTensor,
        host: impl Fn(&Tensor) -> diffinv_cpu::Result<Tensor>,
    ) -> Result<()> {
        match (&self.mask, self.op) {
            (Some(m), _) => self.masked(b, m, x, out),
            (None, Op::Identity) => {
                *out = GpuTensor::zeros(b.gpu(), x.shape)?;
                b.gpu().copy(&x.buf, 0, &mut out.buf, 0, x.len())
            }
            _ => self.on_host(b, x, out, host),
        }
    }

    fn mask_stride(&self, m: &GpuTensor, x: &GpuTensor) -> Result<i64> {
        if m.image_len() != x.image_len() || (m.shape[0] != 1 && m.shape[0] != x.shape[0]) {
            return Err(Error::Shape(format!("mask {:?} does not fit images {:?}", m.shape, x.shape)));
        }
        Ok(if m.shape[0] == 1 { 0 } else { m.image_len() as i64 })
    }
}

impl<'g> Operator<CudaBackend<'g>> for GpuOp<'_> {
    fn measurement_shape(&self, x: Shape) -> Shape {
        self.op.measurement_shape(x)
    }

    fn forward(&self, b: &mut CudaBackend<'g>, x: &GpuTensor, out: &mut GpuTensor) -> Result<()> {
        self.apply(b, x, out, |h| self.op.forward(h))
    }

    fn adjoint(&self, b: &mut CudaBackend<'g>, y: &GpuTensor, out: &mut GpuTensor) -> Result<()> {
        self.apply(b, y, out, |h| self.op.adjoint(h))
    }

    fn data_solve(
        &self,
        b: &mut CudaBackend<'g>,
        y: &GpuTensor,
        z: &GpuTensor,
        rho: f64,
        out: &mut GpuTensor,
    ) -> Result<()> {
        if !rho.is_finite() || rho <= 0.0 {
            return Err(Error::Shape(format!("data solve needs rho > 0, got {rho}")));
        }
        match &self.mask {
            Some(m) => {
                let sm = self.mask_stride(m, z)?;
                if out.shape != z.shape {
                    *out = GpuTensor::zeros(b.gpu(), z.shape)?;
                }
                let l = z.image_len();
                let args = [P(out.p()), P(y.p()), P(z.p()), P(m.p()), L(sm), D(rho), I(l as i32)];
                b.gpu().launch_planes("mask_solve", l, z.shape[0], 1, &args)
            }
            None => {
                let (yh, zh) = (y.download(b.gpu())?, z.download(b.gpu())?);
                *out = GpuTensor::upload(b.gpu(), &self.op.data_solve(&yh, &zh, rho)?)?;
                Ok(())
            }
        }
    }

    fn init_estimate(&self, b: &mut CudaBackend<'g>, y: &GpuTensor, out: &mut GpuTensor) -> Result<()> {
        self.on_host(b, y, out, |h| self.op.init_estimate(h))
    }

    fn mask(&self) -> Option<&GpuTensor> {
        self.mask.as_ref()
    }
}
