//! The measurement operators on the GPU. Inpainting masks (and the identity) run as kernels;
//! the rest (blur, resize, the initial estimate) run a host implementation on a host copy (one
//! transfer each way per call, small next to a UNet pass), so every task works here with the
//! numbers of the CPU backend.

use crate::backend::CudaBackend;
use crate::device::Arg::*;
use crate::error::{Error, Result};
use crate::tensor::{same, GpuTensor};
use diffinv_core::{Operator, Shape};

/// A host operator's failure.
pub type HostError = Box<dyn std::error::Error + Send + Sync>;

/// A measurement operator's host implementation, which the GPU runs on host copies: each
/// method reads `(shape, data)` and writes a caller-owned `(shape, data)` of the stated shape.
pub trait HostOperator: Sync {
    /// The shape of `A x` for an `x` of shape `x`.
    fn measurement_shape(&self, x: Shape) -> Shape;
    /// `out = A x`.
    ///
    /// # Errors
    /// Shapes the operator does not fit.
    fn forward(&self, x: (Shape, &[f32]), out: (Shape, &mut [f32])) -> std::result::Result<(), HostError>;
    /// `out = A^T y`.
    ///
    /// # Errors
    /// Shapes the operator does not fit.
    fn adjoint(&self, y: (Shape, &[f32]), out: (Shape, &mut [f32])) -> std::result::Result<(), HostError>;
    /// `out = argmin_x ||A x - y||^2 + rho ||x - z||^2`.
    ///
    /// # Errors
    /// Shapes the operator does not fit, `rho <= 0`.
    fn data_solve(
        &self,
        y: (Shape, &[f32]),
        z: (Shape, &[f32]),
        rho: f64,
        out: (Shape, &mut [f32]),
    ) -> std::result::Result<(), HostError>;
    /// A starting image from the measurement.
    ///
    /// # Errors
    /// Shapes the operator does not fit.
    fn init_estimate(&self, y: (Shape, &[f32]), out: (Shape, &mut [f32])) -> std::result::Result<(), HostError>;
    /// `out = J_A(x)^T v` (the adjoint for a linear operator).
    ///
    /// # Errors
    /// Shapes the operator does not fit.
    fn vjp(
        &self,
        x: (Shape, &[f32]),
        v: (Shape, &[f32]),
        out: (Shape, &mut [f32]),
    ) -> std::result::Result<(), HostError> {
        let _ = x;
        self.adjoint(v, out)
    }
    /// Whether the operator is linear.
    fn is_linear(&self) -> bool {
        true
    }
}

enum Kind {
    Identity,
    Mask(GpuTensor),
    OnHost,
}

/// An operator for [`CudaBackend`]: a mask or the identity on the GPU, the rest on the host.
pub struct GpuOp<'a> {
    host: &'a dyn HostOperator,
    kind: Kind,
}

impl<'a> GpuOp<'a> {
    /// The identity (denoising), on the GPU.
    pub fn identity(host: &'a dyn HostOperator) -> Self {
        GpuOp { host, kind: Kind::Identity }
    }

    /// An inpainting mask (1 = observed; batch 1 or one per image), uploaded.
    ///
    /// # Errors
    /// `mask` does not have `shape`'s length, or the upload fails.
    pub fn mask(b: &CudaBackend<'_>, host: &'a dyn HostOperator, shape: Shape, mask: &[f32]) -> Result<Self> {
        Ok(GpuOp { host, kind: Kind::Mask(GpuTensor::from_host(b.gpu(), shape, mask)?) })
    }

    /// An operator run wholly on host copies.
    pub fn on_host(host: &'a dyn HostOperator) -> Self {
        GpuOp { host, kind: Kind::OnHost }
    }

    /// `f` on host copies of the inputs, written into `out`.
    fn host_call(
        &self,
        b: &CudaBackend<'_>,
        ins: &[&GpuTensor],
        out: &mut GpuTensor,
        f: impl FnOnce(&[(Shape, Vec<f32>)], (Shape, &mut [f32])) -> std::result::Result<(), HostError>,
    ) -> Result<()> {
        let g = b.gpu();
        let host: Vec<(Shape, Vec<f32>)> = ins.iter().map(|t| Ok((t.shape, t.to_host(g)?))).collect::<Result<_>>()?;
        let mut o = vec![0.0f32; out.len()];
        f(&host, (out.shape, &mut o)).map_err(Error::Host)?;
        g.stream().memcpy_htod(&o, &mut out.buf.0)?;
        Ok(())
    }

    /// `out = m x` (the mask is its own adjoint).
    fn masked(&self, b: &CudaBackend<'_>, m: &GpuTensor, x: &GpuTensor, out: &mut GpuTensor) -> Result<()> {
        let sm = mask_stride(m, x)?;
        same(out, x, "masked output")?;
        let l = x.image_len();
        b.gpu().launch_planes("mask_mul", l, x.shape[0], 1, &[P(out.p()), P(x.p()), P(m.p()), L(sm), I(l as i32)])
    }

    fn check_out(&self, out: &GpuTensor, want: Shape, what: &str) -> Result<()> {
        if out.shape != want {
            return Err(Error::shape(what, &out.shape, format!("must be {want:?}")));
        }
        Ok(())
    }
}

fn mask_stride(m: &GpuTensor, x: &GpuTensor) -> Result<i64> {
    if m.image_len() != x.image_len() || (m.shape[0] != 1 && m.shape[0] != x.shape[0]) {
        return Err(Error::shape("mask", &m.shape, format!("does not fit images {:?}", x.shape)));
    }
    Ok(if m.shape[0] == 1 { 0 } else { m.image_len() as i64 })
}

impl<'g> Operator<CudaBackend<'g>> for GpuOp<'_> {
    fn measurement_shape(&self, x: Shape) -> Shape {
        self.host.measurement_shape(x)
    }

    fn forward(&self, b: &mut CudaBackend<'g>, x: &GpuTensor, out: &mut GpuTensor) -> Result<()> {
        self.check_out(out, self.host.measurement_shape(x.shape), "measurement")?;
        match &self.kind {
            Kind::Mask(m) => self.masked(b, m, x, out),
            Kind::Identity => b.gpu().copy(&x.buf, 0, &mut out.buf, 0, x.len()),
            Kind::OnHost => self.host_call(b, &[x], out, |h, o| self.host.forward((h[0].0, &h[0].1), o)),
        }
    }

    fn adjoint(&self, b: &mut CudaBackend<'g>, y: &GpuTensor, out: &mut GpuTensor) -> Result<()> {
        match &self.kind {
            Kind::Mask(m) => self.masked(b, m, y, out),
            Kind::Identity => {
                same(out, y, "adjoint output")?;
                b.gpu().copy(&y.buf, 0, &mut out.buf, 0, y.len())
            }
            Kind::OnHost => self.host_call(b, &[y], out, |h, o| self.host.adjoint((h[0].0, &h[0].1), o)),
        }
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
            return Err(Error::shape("data solve", &z.shape, format!("needs rho > 0, got {rho}")));
        }
        same(out, z, "data solve output")?;
        match &self.kind {
            Kind::Mask(m) => {
                let sm = mask_stride(m, z)?;
                same(y, z, "data solve measurement")?;
                let l = z.image_len();
                let args = [P(out.p()), P(y.p()), P(z.p()), P(m.p()), L(sm), D(rho), I(l as i32)];
                b.gpu().launch_planes("mask_solve", l, z.shape[0], 1, &args)
            }
            _ => self
                .host_call(b, &[y, z], out, |h, o| self.host.data_solve((h[0].0, &h[0].1), (h[1].0, &h[1].1), rho, o)),
        }
    }

    fn init_estimate(&self, b: &mut CudaBackend<'g>, y: &GpuTensor, out: &mut GpuTensor) -> Result<()> {
        self.host_call(b, &[y], out, |h, o| self.host.init_estimate((h[0].0, &h[0].1), o))
    }

    fn mask(&self) -> Option<&GpuTensor> {
        match &self.kind {
            Kind::Mask(m) => Some(m),
            _ => None,
        }
    }

    fn vjp(&self, b: &mut CudaBackend<'g>, x: &GpuTensor, v: &GpuTensor, out: &mut GpuTensor) -> Result<()> {
        match &self.kind {
            Kind::OnHost => {
                self.check_out(out, x.shape, "vjp output")?;
                self.host_call(b, &[x, v], out, |h, o| self.host.vjp((h[0].0, &h[0].1), (h[1].0, &h[1].1), o))
            }
            _ => self.adjoint(b, v, out),
        }
    }

    fn is_linear(&self) -> bool {
        self.host.is_linear()
    }
}
