//! The ADM UNet on the GPU: its layers built from the model description (weights uploaded
//! once), and the primitives the shared walker ([`diffinv_model::walk`]) runs on them.

use crate::device::{Arg::*, DBuf, Gpu};
use crate::error::{Error, Result};
use crate::layers::{add_into, GAttn, GConv, GNorm, Mod};
use crate::tensor::GpuTensor;
use diffinv_model::desc::{Desc, LinearDesc, NormDesc, TimeDesc};
use diffinv_model::graph::{Attn, Builder, Conv, LayerSet, Resample};
use diffinv_model::walk::{Modulation, Primitives};
use diffinv_model::{timestep_embedding, Graph, UNetConfig, UNetDesc};

/// The GPU backend's layer types.
pub struct GpuLayers;

impl LayerSet for GpuLayers {
    type Conv = GConv;
    type Norm = GNorm;
    type Attn = GAttn;
    type Time = GpuTime;
}

/// A linear layer `y = W x + b`, `W` (out, in).
struct GLinear {
    w: DBuf,
    b: DBuf,
    fin: usize,
    fout: usize,
}

impl GLinear {
    fn new(g: &Gpu, d: &LinearDesc) -> Result<Self> {
        Ok(GLinear { w: g.upload(&d.weight)?, b: g.upload(&d.bias)?, fin: d.fin, fout: d.fout })
    }

    /// `y[i] = W x[i] + b` for `n` rows: `Y_cm = W_cm^T X_cm`.
    fn forward(&self, g: &Gpu, x: &DBuf, n: usize, y: &DBuf) -> Result<()> {
        g.launch_n("bias_rows", n * self.fout, &[P(y.p()), P(self.b.p()), L(n as i64), I(self.fout as i32)])?;
        g.gemm(
            true,
            false,
            (self.fout, n, self.fin),
            (self.w.p(), self.fin, 0),
            (x.p(), self.fin, 0),
            1.0,
            (y.p(), self.fout, 0),
            1,
        )
    }
}

/// The time embedding, and every ResBlock's projection stacked into one layer (one GEMM a call).
pub struct GpuTime {
    mc: usize,
    sinusoid: diffinv_model::Sinusoid,
    time0: GLinear,
    time2: GLinear,
    emb: GLinear,
    /// Where each block's projection starts in a row of `emb`'s output.
    offsets: Vec<usize>,
}

/// A call's embedding: every block's projection, `[n, F]`.
pub struct GpuEmb {
    buf: DBuf,
    stride: usize,
    offsets: Vec<usize>,
}

impl GpuEmb {
    fn block(&self, b: usize) -> Mod {
        Mod { ptr: self.buf.at(self.offsets[b]), stride: self.stride }
    }
}

/// Uploads a description's layers.
pub struct GpuBuilder<'g> {
    gpu: &'g Gpu,
}

impl Builder<GpuLayers> for GpuBuilder<'_> {
    type Error = Error;

    fn conv(&mut self, c: &Conv<Desc>) -> Result<GConv> {
        GConv::new(self.gpu, c)
    }

    fn norm(&mut self, n: &NormDesc) -> Result<GNorm> {
        GNorm::new(self.gpu, n)
    }

    fn attn(&mut self, a: &Attn<Desc>) -> Result<GAttn> {
        GAttn::new(self.gpu, a)
    }

    fn time(&mut self, t: &TimeDesc) -> Result<GpuTime> {
        let (mut w, mut b, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
        for p in &t.proj {
            offsets.push(b.len());
            w.extend_from_slice(&p.weight);
            b.extend_from_slice(&p.bias);
        }
        let g = self.gpu;
        let fin = t.time2.fout;
        Ok(GpuTime {
            mc: t.model_channels,
            sinusoid: t.sinusoid,
            time0: GLinear::new(g, &t.time0)?,
            time2: GLinear::new(g, &t.time2)?,
            emb: GLinear { w: g.upload(&w)?, b: g.upload(&b)?, fin, fout: b.len() },
            offsets,
        })
    }
}

/// The GPU primitives of one call.
pub struct GpuRun<'g> {
    gpu: &'g Gpu,
}

fn modulation(m: Option<Modulation<'_, GpuEmb>>) -> Option<Mod> {
    m.map(|m| m.emb.block(m.block))
}

impl Primitives<GpuLayers> for GpuRun<'_> {
    type Buf = DBuf;
    type Emb = GpuEmb;
    type Error = Error;

    fn len(&self, b: &DBuf) -> usize {
        b.len()
    }

    fn alloc(&mut self, len: usize) -> Result<DBuf> {
        self.gpu.alloc(len)
    }

    fn recycle(&mut self, b: DBuf) {
        // The stream-ordered pool keeps freed memory for the next allocation.
        drop(b);
    }

    fn copy(&mut self, src: &DBuf, dst: &mut DBuf, len: usize) -> Result<()> {
        self.gpu.copy(src, 0, dst, 0, len)
    }

    fn add(&mut self, y: &mut DBuf, x: &DBuf, len: usize) -> Result<()> {
        add_into(self.gpu, y, x, len)
    }

    fn embed(&mut self, time: &GpuTime, t: &[f32]) -> Result<GpuEmb> {
        let (g, n) = (self.gpu, t.len());
        let s = g.upload(&timestep_embedding(t, time.mc, time.sinusoid))?;
        let h = g.alloc(n * time.time0.fout)?;
        time.time0.forward(g, &s, n, &h)?;
        g.launch_n("silu_inplace", n * time.time0.fout, &[P(h.p()), L((n * time.time0.fout) as i64)])?;
        let e = g.alloc(n * time.time2.fout)?;
        time.time2.forward(g, &h, n, &e)?;
        g.launch_n("silu_inplace", n * time.time2.fout, &[P(e.p()), L((n * time.time2.fout) as i64)])?;
        let all = g.alloc(n * time.emb.fout)?;
        time.emb.forward(g, &e, n, &all)?;
        Ok(GpuEmb { buf: all, stride: time.emb.fout, offsets: time.offsets.clone() })
    }

    fn conv(
        &mut self,
        c: &Conv<GpuLayers>,
        x: &DBuf,
        n: usize,
        h: usize,
        w: usize,
        out: &mut DBuf,
        residual: Option<&DBuf>,
        accumulate: bool,
    ) -> Result<()> {
        c.layer.forward(self.gpu, x, n, h, w, out, residual, accumulate)
    }

    fn conv_adjoint(
        &mut self,
        c: &Conv<GpuLayers>,
        gy: &DBuf,
        n: usize,
        h: usize,
        w: usize,
        gx: &mut DBuf,
        accumulate: bool,
    ) -> Result<()> {
        c.layer.backward_input(self.gpu, gy, n, h, w, gx, accumulate)
    }

    fn norm(
        &mut self,
        norm: &GNorm,
        x: &DBuf,
        n: usize,
        hw: usize,
        m: Option<Modulation<'_, GpuEmb>>,
        silu: bool,
        y: &mut DBuf,
    ) -> Result<()> {
        norm.forward(self.gpu, x, n, hw, modulation(m), silu, y)
    }

    fn norm_adjoint(
        &mut self,
        norm: &GNorm,
        x: &DBuf,
        n: usize,
        hw: usize,
        m: Option<Modulation<'_, GpuEmb>>,
        silu: bool,
        gy: &DBuf,
        gx: &mut DBuf,
        accumulate: bool,
    ) -> Result<()> {
        norm.backward(self.gpu, x, n, hw, modulation(m), silu, gy, gx, accumulate)
    }

    fn add_embedding(&mut self, h: &mut DBuf, emb: &GpuEmb, block: usize, n: usize, c: usize, hw: usize) -> Result<()> {
        let m = emb.block(block);
        let args = [P(h.p()), P(m.ptr), L(m.stride as i64), I(c as i32), I(hw as i32)];
        self.gpu.launch_planes("add_channel", hw, c, n, &args)
    }

    fn attention(
        &mut self,
        a: &Attn<GpuLayers>,
        x: &DBuf,
        n: usize,
        hw: usize,
        y: &mut DBuf,
        saved: &mut DBuf,
    ) -> Result<()> {
        a.layer.forward(self.gpu, x, n, hw, y, saved)
    }

    fn attention_adjoint(
        &mut self,
        a: &Attn<GpuLayers>,
        x: &DBuf,
        saved: &DBuf,
        n: usize,
        hw: usize,
        gy: &DBuf,
        gx: &mut DBuf,
    ) -> Result<()> {
        a.layer.backward(self.gpu, x, saved, n, hw, gy, gx)
    }

    fn resample(&mut self, r: Resample, x: &DBuf, planes: usize, h: usize, w: usize, y: &mut DBuf) -> Result<()> {
        let (oh, ow) = r.out_hw(h, w);
        let name = match r {
            Resample::Up => "upsample2",
            Resample::Down => "avgpool2",
            Resample::None => return self.gpu.copy(x, 0, y, 0, planes * h * w),
        };
        let args = [P(x.p()), P(y.p()), L(planes as i64), I(h as i32), I(w as i32)];
        self.gpu.launch_planes(name, planes * oh * ow, 1, 1, &args)
    }

    fn resample_adjoint(
        &mut self,
        r: Resample,
        gy: &DBuf,
        planes: usize,
        h: usize,
        w: usize,
        gx: &mut DBuf,
        accumulate: bool,
    ) -> Result<()> {
        let name = match r {
            Resample::Up => "upsample2_adjoint",
            Resample::Down => "avgpool2_adjoint",
            Resample::None if accumulate => return add_into(self.gpu, gx, gy, planes * h * w),
            Resample::None => return self.gpu.copy(gy, 0, gx, 0, planes * h * w),
        };
        let args = [P(gy.p()), P(gx.p()), L(planes as i64), I(h as i32), I(w as i32), I(accumulate as i32)];
        self.gpu.launch_planes(name, planes * h * w, 1, 1, &args)
    }

    fn concat(&mut self, a: &DBuf, la: usize, b: &DBuf, lb: usize, n: usize, out: &mut DBuf) -> Result<()> {
        let args = [P(a.p()), P(b.p()), P(out.p()), I(la as i32), I(lb as i32)];
        self.gpu.launch_planes("concat2", la + lb, n, 1, &args)
    }

    fn split(&mut self, g: &DBuf, la: usize, lb: usize, n: usize, ga: &mut DBuf, gb: &mut DBuf) -> Result<()> {
        let args = [P(g.p()), P(ga.p()), P(gb.p()), I(la as i32), I(lb as i32)];
        self.gpu.launch_planes("split2", la + lb, n, 1, &args)
    }
}

/// What [`GpuUNet::vjp`] needs from a forward pass.
pub type GpuTape = diffinv_model::Tape<DBuf, GpuEmb>;

/// The UNet on a GPU.
pub struct GpuUNet {
    graph: Graph<GpuLayers>,
}

impl GpuUNet {
    /// Uploads the layers of a model description.
    ///
    /// # Errors
    /// An upload fails (out of device memory).
    pub fn new(gpu: &Gpu, desc: &UNetDesc) -> Result<Self> {
        Ok(GpuUNet { graph: desc.build(&mut GpuBuilder { gpu })? })
    }

    /// The architecture.
    pub fn config(&self) -> &UNetConfig {
        &self.graph.config
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.graph.config.out_channels
    }

    /// GFLOP of one forward pass of one `size x size` image.
    pub fn gflop(&self, size: usize) -> f64 {
        self.graph.gflop(size)
    }

    fn out_tensor(&self, gpu: &Gpu, x: &GpuTensor) -> Result<GpuTensor> {
        let shape = self.graph.output_shape(x.shape);
        Ok(GpuTensor { buf: gpu.alloc(shape.iter().product())?, shape })
    }

    fn check_out(&self, x: &GpuTensor, out: &GpuTensor) -> Result<()> {
        let want = self.graph.output_shape(x.shape);
        if out.shape != want {
            return Err(Error::shape("model output", &out.shape, format!("the output for this input is {want:?}")));
        }
        Ok(())
    }

    /// `out = model(x, t)` for timesteps `t` (one per image) into a caller-owned `out`.
    ///
    /// # Errors
    /// The shared input checks, an `out` of another shape, device failures.
    pub fn forward_into(&self, gpu: &Gpu, x: &GpuTensor, t: &[f32], out: &mut GpuTensor) -> Result<()> {
        self.check_out(x, out)?;
        self.graph.forward(&mut GpuRun { gpu }, &x.buf, x.shape, t, &mut out.buf)
    }

    /// The model output for `x` at timesteps `t`, in a new tensor.
    ///
    /// # Errors
    /// As [`GpuUNet::forward_into`].
    pub fn forward(&self, gpu: &Gpu, x: &GpuTensor, t: &[f32]) -> Result<GpuTensor> {
        let mut out = self.out_tensor(gpu, x)?;
        self.forward_into(gpu, x, t, &mut out)?;
        Ok(out)
    }

    /// [`GpuUNet::forward_into`], returning the tape [`GpuUNet::vjp_into`] needs.
    ///
    /// # Errors
    /// As [`GpuUNet::forward_into`].
    pub fn forward_for_grad(&self, gpu: &Gpu, x: &GpuTensor, t: &[f32], out: &mut GpuTensor) -> Result<GpuTape> {
        self.check_out(x, out)?;
        self.graph.forward_for_grad(&mut GpuRun { gpu }, &x.buf, x.shape, t, &mut out.buf)
    }

    /// The output and the tape, in a new tensor.
    ///
    /// # Errors
    /// As [`GpuUNet::forward_into`].
    pub fn forward_with_tape(&self, gpu: &Gpu, x: &GpuTensor, t: &[f32]) -> Result<(GpuTensor, GpuTape)> {
        let mut out = self.out_tensor(gpu, x)?;
        let tape = self.forward_for_grad(gpu, x, t, &mut out)?;
        Ok((out, tape))
    }

    /// `grad_x = d(sum(out * cotangent))/dx` at the input of the taped pass, into `grad_x`.
    ///
    /// # Errors
    /// Shapes other than the tape's, a tape of another model, device failures.
    pub fn vjp_into(&self, gpu: &Gpu, tape: GpuTape, cotangent: &GpuTensor, grad_x: &mut GpuTensor) -> Result<()> {
        if cotangent.shape != tape.output_shape() {
            let reason = format!("must match the model output {:?}", tape.output_shape());
            return Err(Error::shape("cotangent", &cotangent.shape, reason));
        }
        if grad_x.shape != tape.input_shape() {
            let reason = format!("must match the input {:?}", tape.input_shape());
            return Err(Error::shape("input gradient", &grad_x.shape, reason));
        }
        self.graph.vjp(&mut GpuRun { gpu }, tape, &cotangent.buf, &mut grad_x.buf)
    }

    /// [`GpuUNet::vjp_into`] into a new tensor.
    ///
    /// # Errors
    /// As [`GpuUNet::vjp_into`].
    pub fn vjp(&self, gpu: &Gpu, tape: GpuTape, cotangent: &GpuTensor) -> Result<GpuTensor> {
        let shape = tape.input_shape();
        let mut g = GpuTensor { buf: gpu.alloc(shape.iter().product())?, shape };
        self.vjp_into(gpu, tape, cotangent, &mut g)?;
        Ok(g)
    }
}
