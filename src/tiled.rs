//! Images of any size on any backend: [`Tiled`] is a [`Backend`] whose model runs the wrapped
//! backend's model on overlapping model-sized tiles of the image and blends their outputs
//! ([`TileLayout`]); every other step runs on the whole image on the wrapped backend. The
//! sampler loops and operators are unchanged, so every method, task and device tiles alike.
//!
//! Tiles are cut and blended on the host (a tile's transfer is small next to its network
//! evaluation). Memory: the wrapped backend holds one tile's activations at a time (DPS: one
//! tile's tape; its forward pass is run again for the tile's VJP), plus image-sized buffers.

use crate::device::DeviceBackend;
use crate::error::{Error, Result};
use diffinv_core::{Backend, NoiseStream, Operator, Shape, StepCoefs, VarianceKind};
use diffinv_cpu::tiles::TileLayout;
use diffinv_cpu::Tensor;

/// A backend whose model runs on tiles.
pub(crate) struct Tiled<'b, B: DeviceBackend> {
    b: &'b mut B,
    layout: TileLayout,
}

/// What a tiled VJP needs: the input image and the timestep (each tile's pass is run again).
pub(crate) struct TiledTape {
    x: Tensor,
    t: usize,
}

impl<'b, B: DeviceBackend> Tiled<'b, B> {
    pub fn new(b: &'b mut B, layout: TileLayout) -> Self {
        Tiled { b, layout }
    }

    fn tile_shape(&self, x: &Tensor, c: usize) -> Shape {
        let s = self.layout.side();
        [x.n(), c, s, s]
    }

    /// Tile `k` of the host image `x` on the device.
    fn upload_tile(&mut self, k: usize, x: &Tensor) -> Result<B::Tensor> {
        let mut tile = Tensor::zeros(self.tile_shape(x, x.c()));
        self.layout.crop(k, x, &mut tile)?;
        self.b.upload(&tile)
    }

    /// `out = host` on the device.
    fn store(&mut self, host: &Tensor, out: &mut B::Tensor) -> Result<()> {
        let d = self.b.upload(host)?;
        self.b.copy(&d, out).map_err(B::err)
    }
}

impl<B: DeviceBackend> Backend for Tiled<'_, B> {
    type Tensor = B::Tensor;
    type Error = Error;
    type Tape = TiledTape;

    fn shape(&self, x: &B::Tensor) -> Shape {
        self.b.shape(x)
    }
    fn zeros(&mut self, shape: Shape) -> Result<B::Tensor> {
        self.b.zeros(shape).map_err(B::err)
    }
    fn copy(&mut self, src: &B::Tensor, dst: &mut B::Tensor) -> Result<()> {
        self.b.copy(src, dst).map_err(B::err)
    }
    fn read_f32(&mut self, x: &B::Tensor, out: &mut [f32]) -> Result<()> {
        self.b.read_f32(x, out).map_err(B::err)
    }
    fn model_out_channels(&self) -> usize {
        self.b.model_out_channels()
    }
    fn variance(&self) -> VarianceKind {
        self.b.variance()
    }

    fn model(&mut self, x: &B::Tensor, t: usize, out: &mut B::Tensor) -> Result<()> {
        let xh = self.b.download(x)?;
        let cout = self.b.model_out_channels();
        let mut acc = Tensor::zeros([xh.n(), cout, xh.h(), xh.w()]);
        let mut tile_out = self.b.zeros(self.tile_shape(&xh, cout)).map_err(B::err)?;
        for k in 0..self.layout.len() {
            let tile = self.upload_tile(k, &xh)?;
            self.b.model(&tile, t, &mut tile_out).map_err(B::err)?;
            self.layout.paste_weighted(k, &self.b.download(&tile_out)?, &mut acc)?;
        }
        self.store(&acc, out)
    }

    fn model_for_grad(&mut self, x: &B::Tensor, t: usize, out: &mut B::Tensor) -> Result<TiledTape> {
        self.model(x, t, out)?;
        Ok(TiledTape { x: self.b.download(x)?, t })
    }

    fn model_vjp(&mut self, tape: TiledTape, cotangent: &B::Tensor, grad_x: &mut B::Tensor) -> Result<()> {
        let TiledTape { x, t } = tape;
        let g = self.b.download(cotangent)?;
        let mut acc = Tensor::zeros(x.shape());
        let mut cot = Tensor::zeros(self.tile_shape(&g, g.c()));
        let mut tile_out = self.b.zeros(self.tile_shape(&g, g.c())).map_err(B::err)?;
        let mut gt = self.b.zeros(self.tile_shape(&x, x.c())).map_err(B::err)?;
        for k in 0..self.layout.len() {
            let tile = self.upload_tile(k, &x)?;
            let tape = self.b.model_for_grad(&tile, t, &mut tile_out).map_err(B::err)?;
            self.layout.crop_weighted(k, &g, &mut cot)?;
            let cot_dev = self.b.upload(&cot)?;
            self.b.model_vjp(tape, &cot_dev, &mut gt).map_err(B::err)?;
            self.layout.crop_adjoint(k, &self.b.download(&gt)?, &mut acc)?;
        }
        self.store(&acc, grad_x)
    }

    fn randn(&mut self, rngs: &mut [NoiseStream], out: &mut B::Tensor) -> Result<()> {
        self.b.randn(rngs, out).map_err(B::err)
    }
    fn q_sample(&mut self, x0: &B::Tensor, noise: &B::Tensor, abar: f64, out: &mut B::Tensor) -> Result<()> {
        self.b.q_sample(x0, noise, abar, out).map_err(B::err)
    }
    fn predict_x0(
        &mut self,
        x_t: &B::Tensor,
        model_out: &B::Tensor,
        c: &StepCoefs,
        clip: bool,
        out: &mut B::Tensor,
    ) -> Result<()> {
        self.b.predict_x0(x_t, model_out, c, clip, out).map_err(B::err)
    }
    fn eps_from_x0(&mut self, x_t: &B::Tensor, x0: &B::Tensor, c: &StepCoefs, out: &mut B::Tensor) -> Result<()> {
        self.b.eps_from_x0(x_t, x0, c, out).map_err(B::err)
    }
    fn posterior_sample(
        &mut self,
        x0: &B::Tensor,
        x_t: &B::Tensor,
        model_out: &B::Tensor,
        c: &StepCoefs,
        kind: VarianceKind,
        z: Option<&B::Tensor>,
        out: &mut B::Tensor,
    ) -> Result<()> {
        self.b.posterior_sample(x0, x_t, model_out, c, kind, z, out).map_err(B::err)
    }
    fn ddim_step(
        &mut self,
        x0: &B::Tensor,
        eps: &B::Tensor,
        z: Option<&B::Tensor>,
        abar: f64,
        abar_prev: f64,
        eta: f64,
        out: &mut B::Tensor,
    ) -> Result<()> {
        self.b.ddim_step(x0, eps, z, abar, abar_prev, eta, out).map_err(B::err)
    }
    fn diffpir_step(
        &mut self,
        x0: &B::Tensor,
        x_t: &B::Tensor,
        z: Option<&B::Tensor>,
        abar: f64,
        abar_prev: f64,
        zeta: f64,
        out: &mut B::Tensor,
    ) -> Result<()> {
        self.b.diffpir_step(x0, x_t, z, abar, abar_prev, zeta, out).map_err(B::err)
    }
    fn axpby(&mut self, a: f64, x: &B::Tensor, b: f64, y: &B::Tensor, out: &mut B::Tensor) -> Result<()> {
        self.b.axpby(a, x, b, y, out).map_err(B::err)
    }
    fn axpy(&mut self, a: f64, x: &B::Tensor, y: &mut B::Tensor) -> Result<()> {
        self.b.axpy(a, x, y).map_err(B::err)
    }
    fn mask_blend(&mut self, x: &B::Tensor, y_t: &B::Tensor, mask: &B::Tensor, out: &mut B::Tensor) -> Result<()> {
        self.b.mask_blend(x, y_t, mask, out).map_err(B::err)
    }
    fn clamp(&mut self, x: &mut B::Tensor, lo: f64, hi: f64) -> Result<()> {
        self.b.clamp(x, lo, hi).map_err(B::err)
    }
    fn clip_gradient(&mut self, x0_raw: &B::Tensor, grad: &mut B::Tensor) -> Result<()> {
        self.b.clip_gradient(x0_raw, grad).map_err(B::err)
    }
    fn norms(&mut self, x: &B::Tensor, out: &mut [f64]) -> Result<()> {
        self.b.norms(x, out).map_err(B::err)
    }
    fn scale_images(&mut self, x: &mut B::Tensor, s: &[f64]) -> Result<()> {
        self.b.scale_images(x, s).map_err(B::err)
    }
    fn embed_channels(&mut self, g: &B::Tensor, scale: f64, out: &mut B::Tensor) -> Result<()> {
        self.b.embed_channels(g, scale, out).map_err(B::err)
    }
    fn max_abs(&mut self, x: &B::Tensor) -> Result<f64> {
        self.b.max_abs(x).map_err(B::err)
    }
}

/// The wrapped backend's operator, for the tiled backend (the operator sees the whole image).
pub(crate) struct TiledOp<'o, B: DeviceBackend>(pub &'o dyn Operator<B>);

impl<'b, B: DeviceBackend> Operator<Tiled<'b, B>> for TiledOp<'_, B> {
    fn measurement_shape(&self, x: Shape) -> Shape {
        self.0.measurement_shape(x)
    }
    fn forward(&self, b: &mut Tiled<'b, B>, x: &B::Tensor, out: &mut B::Tensor) -> Result<()> {
        self.0.forward(b.b, x, out).map_err(B::err)
    }
    fn adjoint(&self, b: &mut Tiled<'b, B>, y: &B::Tensor, out: &mut B::Tensor) -> Result<()> {
        self.0.adjoint(b.b, y, out).map_err(B::err)
    }
    fn data_solve(
        &self,
        b: &mut Tiled<'b, B>,
        y: &B::Tensor,
        z: &B::Tensor,
        rho: f64,
        out: &mut B::Tensor,
    ) -> Result<()> {
        self.0.data_solve(b.b, y, z, rho, out).map_err(B::err)
    }
    fn init_estimate(&self, b: &mut Tiled<'b, B>, y: &B::Tensor, out: &mut B::Tensor) -> Result<()> {
        self.0.init_estimate(b.b, y, out).map_err(B::err)
    }
    fn mask(&self) -> Option<&B::Tensor> {
        self.0.mask()
    }
    fn vjp(&self, b: &mut Tiled<'b, B>, x: &B::Tensor, v: &B::Tensor, out: &mut B::Tensor) -> Result<()> {
        self.0.vjp(b.b, x, v, out).map_err(B::err)
    }
    fn is_linear(&self) -> bool {
        self.0.is_linear()
    }
}
