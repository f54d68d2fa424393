//! The ADM UNet on the CPU: the shared graph ([`diffinv_model::Graph`]) over the CPU's layers,
//! run by the shared walker on a [`Workspace`] as a [`CpuContext`] says.

use super::layers::{CpuBuilder, CpuEmb, CpuGraph, CpuLayers, CpuRun};
use super::workspace::Workspace;
use crate::context::CpuContext;
use crate::error::{Error, Result};
use crate::nn::Conv2d;
use crate::tensor::Tensor;
use diffinv_model::graph::Layer;
use diffinv_model::{UNetConfig, UNetDesc, WeightSource};

/// The saved activations of a forward pass, consumed by [`UNet::vjp`].
pub type Tape = diffinv_model::Tape<Vec<f32>, CpuEmb>;

/// Bytes held by a tape's activations.
pub fn tape_bytes(t: &Tape) -> usize {
    let mut b = 0;
    t.for_each_buffer(&mut |v| b += 4 * v.len());
    b
}

/// Above this many parameters the adjoint's packed weights are made per call, not kept.
const LEAN_PARAMS: usize = 32_000_000;

/// The ADM UNet with CPU layers.
pub struct UNet {
    graph: CpuGraph,
}

/// Runs `f` on a worker of the current rayon pool (at once if already on one): the many parallel
/// loops of a UNet call then start by work stealing instead of each being injected from an
/// outside thread that sleeps until it ends (a futex wake-up pair per loop, about 10% of a 64 px
/// call).
fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(move |_| f())
}

impl UNet {
    /// Builds the network of `cfg` with parameters from `w`.
    ///
    /// # Errors
    /// An invalid config or a parameter `w` cannot give.
    pub fn new(cfg: &UNetConfig, w: &mut dyn WeightSource) -> Result<Self> {
        Ok(Self::from_desc(&UNetDesc::read(cfg, w)?))
    }

    /// Builds the CPU layers of a model description (packing every convolution's weights). Large
    /// models pack the adjoint's weights per backward call instead of keeping a second copy
    /// (FFHQ-256: 366 MiB saved for about 3% of backward time).
    pub fn from_desc(desc: &UNetDesc) -> Self {
        let graph = desc.build(&mut CpuBuilder).unwrap_or_else(|e| match e {});
        let mut u = UNet { graph };
        if u.graph.params > LEAN_PARAMS {
            u.set_lean_backward(true);
        }
        u
    }

    /// The shared graph over the CPU layers.
    pub fn graph(&self) -> &CpuGraph {
        &self.graph
    }

    /// The configuration.
    pub fn config(&self) -> &UNetConfig {
        &self.graph.config
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.graph.params
    }

    /// The time embedding `time_embed(sinusoid(t))`, `[n, 4 model_channels]`.
    pub fn embed(&self, t: &[f32]) -> Vec<f32> {
        self.graph.time.embed(t)
    }

    /// GFLOP of one forward pass of one `size x size` image.
    pub fn gflop(&self, size: usize) -> f64 {
        self.graph.gflop(size)
    }

    fn out_tensor(&self, x: &Tensor) -> Tensor {
        Tensor::zeros(self.graph.output_shape(x.shape()))
    }

    fn check_out(&self, x: &Tensor, out: &Tensor, what: &str) -> Result<()> {
        let want = self.graph.output_shape(x.shape());
        if out.shape() != want {
            return Err(Error::shape(what, &out.shape(), format!("the model output for this input is {want:?}")));
        }
        Ok(())
    }

    /// The model output for a batch `x` at timesteps `t` (one per image).
    ///
    /// # Errors
    /// The input checks of [`diffinv_model::Graph::check_input`].
    pub fn forward(&self, ctx: &CpuContext, x: &Tensor, t: &[f32], ws: &mut Workspace) -> Result<Tensor> {
        let mut out = self.out_tensor(x);
        self.forward_into(ctx, x, t, ws, &mut out)?;
        Ok(out)
    }

    /// [`UNet::forward`] into a caller-owned `out` of the output's shape.
    ///
    /// # Errors
    /// As [`UNet::forward`], and an `out` of another shape.
    pub fn forward_into(
        &self,
        ctx: &CpuContext,
        x: &Tensor,
        t: &[f32],
        ws: &mut Workspace,
        out: &mut Tensor,
    ) -> Result<()> {
        self.check_out(x, out, "model output")?;
        on_worker(|| self.graph.forward(&mut CpuRun { ctx, ws }, x.vec(), x.shape(), t, out.vec_mut()))
    }

    /// [`UNet::forward`], calling `trace` with every block's output (for tests and debugging).
    ///
    /// # Errors
    /// As [`UNet::forward`].
    pub fn forward_traced(
        &self,
        ctx: &CpuContext,
        x: &Tensor,
        t: &[f32],
        ws: &mut Workspace,
        trace: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Tensor> {
        let mut out = self.out_tensor(x);
        let mut tr = |name: &str, b: &Vec<f32>, s: [usize; 4]| {
            let len = s.iter().product();
            let t = Tensor::from_vec(s, b[..len].to_vec()).expect("trace shape");
            trace(name, &t);
        };
        self.graph.forward_traced(&mut CpuRun { ctx, ws }, x.vec(), x.shape(), t, out.vec_mut(), &mut tr)?;
        Ok(out)
    }

    /// [`UNet::forward_into`], returning the tape [`UNet::vjp`] needs.
    ///
    /// # Errors
    /// As [`UNet::forward_into`].
    pub fn forward_for_grad(
        &self,
        ctx: &CpuContext,
        x: &Tensor,
        t: &[f32],
        ws: &mut Workspace,
        out: &mut Tensor,
    ) -> Result<Tape> {
        self.check_out(x, out, "model output")?;
        on_worker(|| self.graph.forward_for_grad(&mut CpuRun { ctx, ws }, x.vec(), x.shape(), t, out.vec_mut()))
    }

    /// The output and the tape, in new tensors (see [`UNet::forward_for_grad`]).
    ///
    /// # Errors
    /// As [`UNet::forward`].
    pub fn forward_with_tape(
        &self,
        ctx: &CpuContext,
        x: &Tensor,
        t: &[f32],
        ws: &mut Workspace,
    ) -> Result<(Tensor, Tape)> {
        let mut out = self.out_tensor(x);
        let tape = self.forward_for_grad(ctx, x, t, ws, &mut out)?;
        Ok((out, tape))
    }

    /// `grad_x = d(sum(out * cotangent))/dx` at the input of the taped forward pass.
    ///
    /// # Errors
    /// A cotangent of another shape than the output, or a tape of another model.
    pub fn vjp(&self, ctx: &CpuContext, tape: Tape, cotangent: &Tensor, ws: &mut Workspace) -> Result<Tensor> {
        let mut g = Tensor::zeros(tape.input_shape());
        self.vjp_into(ctx, tape, cotangent, ws, &mut g)?;
        Ok(g)
    }

    /// [`UNet::vjp`] into a caller-owned `grad_x` of the input's shape.
    ///
    /// # Errors
    /// As [`UNet::vjp`], and a `grad_x` of another shape.
    pub fn vjp_into(
        &self,
        ctx: &CpuContext,
        tape: Tape,
        cotangent: &Tensor,
        ws: &mut Workspace,
        grad_x: &mut Tensor,
    ) -> Result<()> {
        if cotangent.shape() != tape.output_shape() {
            return Err(Error::shape(
                "cotangent",
                &cotangent.shape(),
                format!("must match the model output {:?}", tape.output_shape()),
            ));
        }
        if grad_x.shape() != tape.input_shape() {
            return Err(Error::mismatch("input gradient", &grad_x.shape(), &tape.input_shape()));
        }
        on_worker(|| self.graph.vjp(&mut CpuRun { ctx, ws }, tape, cotangent.vec(), grad_x.vec_mut()))
    }

    /// Calls `f` on every convolution (the attention blocks' included).
    fn for_each_conv(&mut self, f: &mut dyn FnMut(&mut Conv2d)) {
        let g = &mut self.graph;
        for l in
            g.input_blocks.iter_mut().chain(std::iter::once(&mut g.middle)).chain(g.output_blocks.iter_mut()).flatten()
        {
            match l {
                Layer::Conv(c) => f(&mut c.layer),
                Layer::Res(r) => {
                    f(&mut r.in_conv.layer);
                    f(&mut r.out_conv.layer);
                    if let Some(k) = r.skip.as_mut() {
                        f(&mut k.layer);
                    }
                }
                Layer::Attn(a) => {
                    f(&mut a.layer.qkv);
                    f(&mut a.layer.proj);
                }
                Layer::Down(Some(c)) | Layer::Up(Some(c)) => f(&mut c.layer),
                Layer::Down(None) | Layer::Up(None) => {}
            }
        }
        f(&mut g.out_conv.layer);
    }

    /// Packs the adjoint's weights per backward call (`true`, the default above 32M parameters)
    /// or keeps them between calls (`false`): memory against a few percent of backward time.
    pub fn set_lean_backward(&mut self, lean: bool) {
        self.for_each_conv(&mut |c| c.set_cache_transposed(!lean));
    }

    /// Keeps the bf16 weights made by a bf16 call between calls (the default) even where the
    /// f32 ones are made per call; `false` drops them (about 350 MB on FFHQ-256).
    pub fn set_keep_bf16(&mut self, keep: bool) {
        self.for_each_conv(&mut |c| c.set_cache_bf16(keep));
    }

    /// Bytes of packed weights held by the convolutions.
    pub fn weight_bytes(&mut self) -> usize {
        let mut b = 0;
        self.for_each_conv(&mut |c| b += c.weight_bytes());
        b
    }

    /// The layers, for inspection.
    pub fn layers(&self) -> &diffinv_model::Graph<CpuLayers> {
        &self.graph
    }
}
