//! Measurement operators `A` with exact adjoints, the solves the methods need, and the tasks of
//! the paper (inpainting, deblurring, super-resolution, denoising) with DPS's parameters scaled
//! to the image size.

pub mod blur;
pub mod hdr;
pub mod kernels;
pub mod linalg;
pub mod mask;
pub mod phase;
pub mod poisson;
pub mod resize;
mod task;

pub use blur::Blur;
pub use hdr::Hdr;
pub use kernels::Kernel;
pub use phase::PhaseRetrieval;
pub use poisson::NoiseModel;
pub use resize::Resize;
pub use task::{build, measure, Task, TaskParams, MAX_BLUR_STD, MAX_NOISE};

use crate::backend::CpuBackend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use diffinv_core::{Operator, Shape};

/// A measurement operator.
#[derive(Clone, Debug)]
pub enum Op {
    /// `A = I` (denoising).
    Identity,
    /// `A x = M x`, `M` (1 = observed) of batch 1 (shared) or one per image.
    Mask(Tensor),
    /// Reflect-padded blur.
    Blur(Blur),
    /// Antialiased bicubic downsampling.
    Resize(Resize),
    /// Fourier phase retrieval (nonlinear).
    PhaseRetrieval(PhaseRetrieval),
    /// High dynamic range: `clip(alpha x, -1, 1)` (nonlinear).
    Hdr(Hdr),
    /// `sqrt(W) A`: an operator whose residuals are weighted (`W` given by its square root,
    /// shaped like a measurement), the weighted least squares of a Poisson likelihood.
    Weighted(Box<Op>, Tensor),
}

/// `v * w` elementwise (`w` of batch 1 or `v`'s).
fn weigh(w: &Tensor, v: &Tensor) -> Result<Tensor> {
    apply_mask(w, v)
}

fn mask_image(m: &Tensor, i: usize) -> &[f32] {
    m.image(if m.n() == 1 { 0 } else { i })
}

fn apply_mask(m: &Tensor, x: &Tensor) -> Result<Tensor> {
    if m.image_len() != x.image_len() || (m.n() != 1 && m.n() != x.n()) {
        return Err(Error::shape("mask", &m.shape(), format!("does not fit images {:?}", x.shape())));
    }
    let mut y = x.clone();
    for i in 0..x.n() {
        let mi = mask_image(m, i).to_vec();
        y.image_mut(i).iter_mut().zip(&mi).for_each(|(v, m)| *v *= m);
    }
    Ok(y)
}

impl Op {
    /// The shape of `A x` for images of shape `x`.
    pub fn measurement_shape(&self, x: Shape) -> Shape {
        match self {
            Op::Resize(r) => {
                let (h, w) = r.low();
                [x[0], x[1], h, w]
            }
            Op::PhaseRetrieval(p) => {
                let (h, w) = p.padded();
                [x[0], x[1], h, w]
            }
            Op::Weighted(a, _) => a.measurement_shape(x),
            _ => x,
        }
    }

    /// Whether the operator is linear (adjoint, proximal and normal solves exact).
    pub fn is_linear(&self) -> bool {
        match self {
            Op::PhaseRetrieval(_) | Op::Hdr(_) => false,
            Op::Weighted(a, _) => a.is_linear(),
            _ => true,
        }
    }

    /// The operator's name in messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Identity => "identity",
            Op::Mask(_) => "mask",
            Op::Blur(_) => "blur",
            Op::Resize(_) => "downsampling",
            Op::PhaseRetrieval(_) => "phase retrieval",
            Op::Hdr(_) => "hdr",
            Op::Weighted(a, _) => a.name(),
        }
    }

    fn nonlinear(&self, what: &str) -> Error {
        Error::parameter("operator", self.name(), format!("is nonlinear: it has no {what}"))
    }

    /// `J_A(x)^T v`, the vector-Jacobian product at `x` (the adjoint for linear operators).
    ///
    /// # Errors
    /// Shapes that do not fit the operator.
    pub fn vjp(&self, x: &Tensor, v: &Tensor) -> Result<Tensor> {
        match self {
            Op::PhaseRetrieval(p) => p.vjp(x, v),
            Op::Hdr(h) => h.vjp(x, v),
            Op::Weighted(a, w) => a.vjp(x, &weigh(w, v)?),
            _ => self.adjoint(v),
        }
    }

    /// `A x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Op::Identity => Ok(x.clone()),
            Op::Mask(m) => apply_mask(m, x),
            Op::Blur(b) => b.forward(x, blur::Method::Auto),
            Op::Resize(r) => r.forward(x),
            Op::PhaseRetrieval(p) => p.forward(x),
            Op::Hdr(h) => Ok(h.forward(x)),
            Op::Weighted(a, w) => weigh(w, &a.forward(x)?),
        }
    }

    /// `A^T y`.
    pub fn adjoint(&self, y: &Tensor) -> Result<Tensor> {
        match self {
            Op::Identity => Ok(y.clone()),
            Op::Mask(m) => apply_mask(m, y),
            Op::Blur(b) => b.adjoint(y, blur::Method::Auto),
            Op::Resize(r) => r.adjoint(y),
            Op::PhaseRetrieval(_) | Op::Hdr(_) => Err(self.nonlinear("adjoint (use its vjp)")),
            Op::Weighted(a, w) => a.adjoint(&weigh(w, y)?),
        }
    }

    /// `argmin_x ||A x - y||^2 + rho ||x - z||^2`: closed form for masks, identity, SR and HDR
    /// (per pixel), preconditioned conjugate gradient for blur, gradient steps for phase
    /// retrieval (no closed form: see [`PhaseRetrieval::data_solve`]).
    pub fn data_solve(&self, y: &Tensor, z: &Tensor, rho: f64) -> Result<Tensor> {
        if !rho.is_finite() || rho <= 0.0 {
            return Err(Error::parameter("rho", rho, "must be positive for the data solve"));
        }
        match self {
            Op::Identity => {
                let mut x = y.clone();
                let s = 1.0 / (1.0 + rho);
                x.data_mut()
                    .iter_mut()
                    .zip(z.data())
                    .for_each(|(x, z)| *x = ((*x as f64 + rho * *z as f64) * s) as f32);
                Ok(x)
            }
            Op::Mask(m) => {
                let mut x = z.clone();
                for i in 0..x.n() {
                    let mi = mask_image(m, i).to_vec();
                    let yi = y.image(i).to_vec();
                    x.image_mut(i).iter_mut().zip(mi.iter().zip(&yi)).for_each(|(x, (&m, &y))| {
                        *x = ((m as f64 * y as f64 + rho * *x as f64) / (m as f64 + rho)) as f32;
                    });
                }
                Ok(x)
            }
            Op::Blur(b) => b.data_solve(y, z, rho),
            Op::Resize(r) => {
                let mut rhs = r.adjoint(y)?;
                rhs.data_mut().iter_mut().zip(z.data()).for_each(|(v, z)| *v += rho as f32 * z);
                r.solve(&rhs, rho)
            }
            Op::PhaseRetrieval(p) => p.data_solve(y, z, rho),
            Op::Hdr(h) => h.data_solve(y, z, rho),
            Op::Weighted(..) => Err(Error::parameter(
                "operator",
                "weighted (Poisson likelihood)",
                "has no proximal solve: only DPS and DAPS use the Poisson likelihood",
            )),
        }
    }

    /// `(A^T A + rho I)^{-1} b` (the classical solvers' x-step).
    pub fn normal_solve(&self, b: &Tensor, rho: f64) -> Result<Tensor> {
        match self {
            Op::PhaseRetrieval(_) | Op::Hdr(_) | Op::Weighted(..) => Err(self.nonlinear("normal equations")),
            Op::Resize(r) => r.solve(b, rho),
            Op::Identity => {
                let mut x = b.clone();
                x.data_mut().iter_mut().for_each(|v| *v = (*v as f64 / (1.0 + rho)) as f32);
                Ok(x)
            }
            Op::Mask(m) => {
                let mut x = b.clone();
                for i in 0..x.n() {
                    let mi = mask_image(m, i).to_vec();
                    x.image_mut(i).iter_mut().zip(&mi).for_each(|(x, &m)| *x = (*x as f64 / (m as f64 + rho)) as f32);
                }
                Ok(x)
            }
            Op::Blur(_) => {
                // (A^T A + rho I) x = b  <=>  data_solve with y = 0 and z = b / rho.
                let zero = Tensor::zeros(b.shape());
                let mut z = b.clone();
                z.data_mut().iter_mut().for_each(|v| *v = (*v as f64 / rho) as f32);
                self.data_solve(&zero, &z, rho)
            }
        }
    }

    /// A starting image from the measurement: holes filled with the observed mean colour,
    /// blur kept as is, SR upsampled bicubically.
    pub fn init_estimate(&self, y: &Tensor) -> Result<Tensor> {
        match self {
            Op::Identity | Op::Blur(_) => Ok(y.clone()),
            Op::PhaseRetrieval(p) => p.back_projection(y),
            Op::Hdr(h) => Ok(h.init_estimate(y)),
            Op::Weighted(..) => Err(self.nonlinear("initial estimate from a weighted measurement")),
            Op::Resize(r) => r.upsample(y),
            Op::Mask(m) => {
                let mut x = y.clone();
                let (c, hw) = (y.c(), y.h() * y.w());
                for i in 0..y.n() {
                    let mi = mask_image(m, i).to_vec();
                    let xi = x.image_mut(i);
                    for ch in 0..c {
                        let (mc, xc) = (&mi[ch * hw..(ch + 1) * hw], &mut xi[ch * hw..(ch + 1) * hw]);
                        let (s, n) = mc
                            .iter()
                            .zip(xc.iter())
                            .filter(|(m, _)| **m > 0.5)
                            .fold((0.0f64, 0usize), |(s, n), (_, v)| (s + *v as f64, n + 1));
                        let mean = if n > 0 { (s / n as f64) as f32 } else { 0.0 };
                        xc.iter_mut().zip(mc).for_each(|(v, m)| {
                            if *m <= 0.5 {
                                *v = mean;
                            }
                        });
                    }
                }
                Ok(x)
            }
        }
    }

    /// The measurement seen as an image for metrics: `y` for blur, denoising and HDR, `M y`
    /// (holes 0) for inpainting, the bicubic upsampling of `y` for SR, the zero-phase
    /// back-projection for phase retrieval; clipped to [-1, 1].
    pub fn measurement_image(&self, y: &Tensor) -> Result<Tensor> {
        let mut x = match self {
            Op::Resize(r) => r.upsample(y)?,
            Op::PhaseRetrieval(p) => p.back_projection(y)?,
            Op::Mask(m) => apply_mask(m, y)?,
            _ => y.clone(),
        };
        x.data_mut().iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
        Ok(x)
    }

    /// The measurement as a file holds it, for `restore` to read back: `y` itself at its own size
    /// (a quarter of the side for x4 SR), holes 0 for inpainting; clipped to [-1, 1].
    pub fn measurement_file(&self, y: &Tensor) -> Result<Tensor> {
        let mut x = match self {
            Op::PhaseRetrieval(_) => {
                return Err(Error::parameter(
                    "measurement",
                    "phase retrieval",
                    "is Fourier magnitudes, not an image: simulate it from a clean image (--from-clean)",
                ))
            }
            Op::Mask(m) => apply_mask(m, y)?,
            _ => y.clone(),
        };
        x.data_mut().iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
        Ok(x)
    }

    /// The mask, for inpainting operators.
    pub fn mask(&self) -> Option<&Tensor> {
        match self {
            Op::Mask(m) => Some(m),
            _ => None,
        }
    }
}

/// Writes `v` into the caller's `out`, which must already have `v`'s shape.
fn put(v: Tensor, out: &mut Tensor, what: &str) -> Result<()> {
    if v.shape() != out.shape() {
        return Err(Error::shape(what, &out.shape(), format!("must be {:?}", v.shape())));
    }
    out.data_mut().copy_from_slice(v.data());
    Ok(())
}

impl Operator<CpuBackend<'_>> for Op {
    fn measurement_shape(&self, x: Shape) -> Shape {
        Op::measurement_shape(self, x)
    }
    fn forward(&self, _: &mut CpuBackend<'_>, x: &Tensor, out: &mut Tensor) -> Result<()> {
        put(Op::forward(self, x)?, out, "measurement")
    }
    fn adjoint(&self, _: &mut CpuBackend<'_>, y: &Tensor, out: &mut Tensor) -> Result<()> {
        put(Op::adjoint(self, y)?, out, "adjoint output")
    }
    fn data_solve(&self, _: &mut CpuBackend<'_>, y: &Tensor, z: &Tensor, rho: f64, out: &mut Tensor) -> Result<()> {
        put(Op::data_solve(self, y, z, rho)?, out, "data solve output")
    }
    fn init_estimate(&self, _: &mut CpuBackend<'_>, y: &Tensor, out: &mut Tensor) -> Result<()> {
        put(Op::init_estimate(self, y)?, out, "initial estimate")
    }
    fn mask(&self) -> Option<&Tensor> {
        Op::mask(self)
    }
    fn vjp(&self, _: &mut CpuBackend<'_>, x: &Tensor, v: &Tensor, out: &mut Tensor) -> Result<()> {
        put(Op::vjp(self, x, v)?, out, "vjp output")
    }
    fn is_linear(&self) -> bool {
        Op::is_linear(self)
    }
}
