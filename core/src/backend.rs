//! What a sampler loop needs from a compute backend, and what it needs from a measurement
//! operator. The loops in [`crate::sampler`] are written once against these traits; the CPU and
//! CUDA backends implement them over their own tensors.

use crate::rng::NoiseStream;
use crate::schedule::{StepCoefs, VarianceKind};

/// A batch shape, NCHW.
pub type Shape = [usize; 4];

/// A compute backend: batched NCHW tensors, the diffusion model, and the elementwise steps.
///
/// Every elementwise method is the batched form of the slice function of the same name in
/// [`crate::diffusion`] or [`crate::update`], with the coefficients those modules compute;
/// output tensors are caller-owned, of the documented shape, and distinct from inputs.
pub trait Backend {
    /// A batch of images (N, C, H, W) in the backend's memory.
    type Tensor;
    /// The backend's error.
    type Error: core::fmt::Display + core::fmt::Debug;
    /// What [`Backend::model_vjp`] needs from a [`Backend::model_for_grad`] call.
    type Tape;

    /// The shape of a tensor.
    fn shape(&self, x: &Self::Tensor) -> Shape;
    /// A new zero tensor.
    fn zeros(&mut self, shape: Shape) -> Result<Self::Tensor, Self::Error>;
    /// `dst = src` (same shapes).
    fn copy(&mut self, src: &Self::Tensor, dst: &mut Self::Tensor) -> Result<(), Self::Error>;
    /// Copies `x`'s elements (row-major NCHW) into `out` on the host, which holds exactly as many.
    fn read_f32(&mut self, x: &Self::Tensor, out: &mut [f32]) -> Result<(), Self::Error>;

    /// Channels of the model output (3 = eps, 6 = eps and the learned-range `v`).
    fn model_out_channels(&self) -> usize;
    /// The variance the model's chain uses.
    fn variance(&self) -> VarianceKind;
    /// `out = model(x, t)` for every image at original timestep `t`.
    fn model(&mut self, x: &Self::Tensor, t: usize, out: &mut Self::Tensor) -> Result<(), Self::Error>;
    /// Like [`Backend::model`], returning the tape [`Backend::model_vjp`] needs.
    fn model_for_grad(&mut self, x: &Self::Tensor, t: usize, out: &mut Self::Tensor)
        -> Result<Self::Tape, Self::Error>;
    /// `grad_x = d(sum(out * cotangent))/dx` at the input of the forward pass that made `tape`
    /// (the tape is consumed: its buffers go back to the backend).
    fn model_vjp(
        &mut self,
        tape: Self::Tape,
        cotangent: &Self::Tensor,
        grad_x: &mut Self::Tensor,
    ) -> Result<(), Self::Error>;

    /// Standard normal noise; image `i` of the batch draws from `rngs[i]`.
    fn randn(&mut self, rngs: &mut [NoiseStream], out: &mut Self::Tensor) -> Result<(), Self::Error>;

    /// `out = q_sample(x0, noise, abar)`.
    fn q_sample(
        &mut self,
        x0: &Self::Tensor,
        noise: &Self::Tensor,
        abar: f64,
        out: &mut Self::Tensor,
    ) -> Result<(), Self::Error>;
    /// `out = x0_hat(x_t, eps)`, `eps` = the first channels of `model_out`.
    fn predict_x0(
        &mut self,
        x_t: &Self::Tensor,
        model_out: &Self::Tensor,
        c: &StepCoefs,
        clip: bool,
        out: &mut Self::Tensor,
    ) -> Result<(), Self::Error>;
    /// `out = eps(x_t, x0)`.
    fn eps_from_x0(
        &mut self,
        x_t: &Self::Tensor,
        x0: &Self::Tensor,
        c: &StepCoefs,
        out: &mut Self::Tensor,
    ) -> Result<(), Self::Error>;
    /// `out = posterior_mean(x0, x_t) + sigma z`, `sigma` from `kind` (the learned range reads
    /// `v` from the last channels of `model_out`); `z = None` adds no noise.
    #[allow(clippy::too_many_arguments)]
    fn posterior_sample(
        &mut self,
        x0: &Self::Tensor,
        x_t: &Self::Tensor,
        model_out: &Self::Tensor,
        c: &StepCoefs,
        kind: VarianceKind,
        z: Option<&Self::Tensor>,
        out: &mut Self::Tensor,
    ) -> Result<(), Self::Error>;
    /// `out = ddim_step(x0, eps, z, abar, abar_prev, eta)`.
    #[allow(clippy::too_many_arguments)]
    fn ddim_step(
        &mut self,
        x0: &Self::Tensor,
        eps: &Self::Tensor,
        z: Option<&Self::Tensor>,
        abar: f64,
        abar_prev: f64,
        eta: f64,
        out: &mut Self::Tensor,
    ) -> Result<(), Self::Error>;
    /// `out = diffpir_step(x0, x_t, z, abar, abar_prev, zeta)`.
    #[allow(clippy::too_many_arguments)]
    fn diffpir_step(
        &mut self,
        x0: &Self::Tensor,
        x_t: &Self::Tensor,
        z: Option<&Self::Tensor>,
        abar: f64,
        abar_prev: f64,
        zeta: f64,
        out: &mut Self::Tensor,
    ) -> Result<(), Self::Error>;
    /// `out = a x + b y`.
    fn axpby(
        &mut self,
        a: f64,
        x: &Self::Tensor,
        b: f64,
        y: &Self::Tensor,
        out: &mut Self::Tensor,
    ) -> Result<(), Self::Error>;
    /// `y += a x`.
    fn axpy(&mut self, a: f64, x: &Self::Tensor, y: &mut Self::Tensor) -> Result<(), Self::Error>;
    /// `out = M y_t + (1 - M) x` with `mask` broadcast over the batch when it has N = 1.
    fn mask_blend(
        &mut self,
        x: &Self::Tensor,
        y_t: &Self::Tensor,
        mask: &Self::Tensor,
        out: &mut Self::Tensor,
    ) -> Result<(), Self::Error>;
    /// Clamps every element to `[lo, hi]` in place.
    fn clamp(&mut self, x: &mut Self::Tensor, lo: f64, hi: f64) -> Result<(), Self::Error>;
    /// Zeros `grad` where `|x0_raw| >= 1` (the gradient of the clip).
    fn clip_gradient(&mut self, x0_raw: &Self::Tensor, grad: &mut Self::Tensor) -> Result<(), Self::Error>;
    /// The L2 norm of every image of the batch, computed in a fixed order.
    fn norms(&mut self, x: &Self::Tensor, out: &mut [f64]) -> Result<(), Self::Error>;
    /// Scales image `i` by `s[i]` in place.
    fn scale_images(&mut self, x: &mut Self::Tensor, s: &[f64]) -> Result<(), Self::Error>;
    /// `out` (model-output shaped) = `scale * g` in the first channels and 0 in the rest.
    fn embed_channels(&mut self, g: &Self::Tensor, scale: f64, out: &mut Self::Tensor) -> Result<(), Self::Error>;
    /// The largest `|x|`, or NaN/infinity if any element is not finite.
    fn max_abs(&mut self, x: &Self::Tensor) -> Result<f64, Self::Error>;
}

/// A measurement operator `A`: its forward map and vector-Jacobian product, and for a linear
/// one the adjoint and the solves the methods need. A nonlinear operator answers
/// [`Operator::is_linear`] with `false`; its [`Operator::adjoint`] is refused and its
/// [`Operator::data_solve`] is a stated approximation (see the implementation).
pub trait Operator<B: Backend> {
    /// The shape of `A x` for an `x` of shape `x`.
    fn measurement_shape(&self, x: Shape) -> Shape;
    /// `out = A x`.
    fn forward(&self, b: &mut B, x: &B::Tensor, out: &mut B::Tensor) -> Result<(), B::Error>;
    /// `out = A^T y`.
    fn adjoint(&self, b: &mut B, y: &B::Tensor, out: &mut B::Tensor) -> Result<(), B::Error>;
    /// `out = argmin_x ||A x - y||^2 + rho ||x - z||^2`, i.e. `(A^T A + rho I)^{-1} (A^T y + rho z)`.
    fn data_solve(
        &self,
        b: &mut B,
        y: &B::Tensor,
        z: &B::Tensor,
        rho: f64,
        out: &mut B::Tensor,
    ) -> Result<(), B::Error>;
    /// A starting image from the measurement (holes filled, blur kept, SR upsampled).
    fn init_estimate(&self, b: &mut B, y: &B::Tensor, out: &mut B::Tensor) -> Result<(), B::Error>;
    /// The observation mask (1 = observed) when the operator is an inpainting mask.
    fn mask(&self) -> Option<&B::Tensor> {
        None
    }
    /// `out = J_A(x)^T cot`, the vector-Jacobian product at `x` (`cot` shaped like `A x`); the
    /// adjoint for a linear operator, whatever `x`.
    fn vjp(&self, b: &mut B, x: &B::Tensor, cot: &B::Tensor, out: &mut B::Tensor) -> Result<(), B::Error> {
        let _ = x;
        self.adjoint(b, cot, out)
    }
    /// Whether `A` is linear (its adjoint and proximal solve are exact).
    fn is_linear(&self) -> bool {
        true
    }
}
