//! The ADM UNet on the GPU: built from a loaded CPU [`UNet`] (same structure, weights uploaded
//! once), its forward pass with an optional tape, and the input gradient (VJP).

use crate::device::{Arg::*, DBuf, Gpu};
use crate::error::{Error, Result};
use crate::layers::{add_into, GAttn, GConv, GNorm, Mod};
use crate::tensor::GpuTensor;
use diffinv_core::Shape;
use diffinv_cpu::unet::{timestep_embedding, Layer, ResBlock, Resample, UNet};
use std::rc::Rc;

/// A ResBlock; its embedding projection is a slice of the model's stacked projections.
struct GRes {
    cout: usize,
    resample: Resample,
    scale_shift: bool,
    in_norm: GNorm,
    in_conv: GConv,
    emb_off: usize,
    out_norm: GNorm,
    out_conv: GConv,
    skip: Option<GConv>,
}

enum GLayer {
    Conv(GConv),
    Res(Box<GRes>),
    Attn(Box<GAttn>),
    Down(Option<GConv>),
    Up(Option<GConv>),
}

/// A linear layer `y = W x + b`, `W` (out, in).
struct GLinear {
    w: DBuf,
    b: DBuf,
    fin: usize,
    fout: usize,
}

impl GLinear {
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

/// The UNet on a GPU.
pub struct GpuUNet {
    mc: usize,
    in_channels: usize,
    out_channels: usize,
    levels: usize,
    time0: GLinear,
    time2: GLinear,
    /// Every ResBlock's `emb_layers.1`, stacked: one GEMM per call.
    emb: GLinear,
    input_blocks: Vec<Vec<GLayer>>,
    middle: Vec<GLayer>,
    output_blocks: Vec<Vec<GLayer>>,
    out_norm: GNorm,
    out_conv: GConv,
    gflop_256: f64,
}

/// An activation: `n` images of `c x h x w`.
#[derive(Clone)]
struct Act {
    d: Rc<DBuf>,
    c: usize,
    h: usize,
    w: usize,
}

enum Entry {
    Conv { dims: (usize, usize, usize) },
    Res { x: Option<Rc<DBuf>>, dims: (usize, usize, usize), h2: DBuf },
    Attn { x: Rc<DBuf>, qkv: DBuf },
    Down { dims: (usize, usize, usize) },
    Up { dims: (usize, usize, usize) },
    Cat { h: Act, skip: Act },
    Out { x: Act },
}

/// What [`GpuUNet::vjp`] needs from a forward pass.
pub struct GpuTape {
    n: usize,
    in_shape: Shape,
    out_shape: Shape,
    emb: DBuf,
    entries: Vec<Entry>,
}

struct Builder<'a> {
    g: &'a Gpu,
    emb_w: Vec<f32>,
    emb_b: Vec<f32>,
}

impl Builder<'_> {
    fn layer(&mut self, l: &Layer) -> Result<GLayer> {
        let g = self.g;
        Ok(match l {
            Layer::Conv(c) => GLayer::Conv(GConv::new(g, c)?),
            Layer::Res(r) => GLayer::Res(Box::new(self.res(r)?)),
            Layer::Attn(a) => GLayer::Attn(Box::new(GAttn::new(g, a)?)),
            Layer::Down(c) => GLayer::Down(c.as_ref().map(|c| GConv::new(g, c)).transpose()?),
            Layer::Up(c) => GLayer::Up(c.as_ref().map(|c| GConv::new(g, c)).transpose()?),
        })
    }

    fn res(&mut self, r: &ResBlock) -> Result<GRes> {
        let g = self.g;
        let emb_off = self.emb_b.len();
        self.emb_w.extend_from_slice(r.emb.weight());
        self.emb_b.extend_from_slice(r.emb.bias());
        Ok(GRes {
            cout: r.cout,
            resample: r.resample,
            scale_shift: r.scale_shift,
            in_norm: GNorm::new(g, &r.in_norm)?,
            in_conv: GConv::new(g, &r.in_conv)?,
            emb_off,
            out_norm: GNorm::new(g, &r.out_norm)?,
            out_conv: GConv::new(g, &r.out_conv)?,
            skip: r.skip.as_ref().map(|k| GConv::new(g, k)).transpose()?,
        })
    }

    fn blocks(&mut self, bs: &[Vec<Layer>]) -> Result<Vec<Vec<GLayer>>> {
        bs.iter().map(|b| b.iter().map(|l| self.layer(l)).collect()).collect()
    }
}

fn linear(g: &Gpu, l: &diffinv_cpu::nn::Linear) -> Result<GLinear> {
    Ok(GLinear { w: g.upload(l.weight())?, b: g.upload(l.bias())?, fin: l.fin, fout: l.fout })
}

fn resampled(r: Resample, h: usize, w: usize) -> (usize, usize) {
    match r {
        Resample::Up => (2 * h, 2 * w),
        Resample::Down => (h / 2, w / 2),
        Resample::None => (h, w),
    }
}

/// Up/down-samples `planes` planes of `h x w` (the input side).
fn resample(g: &Gpu, r: Resample, x: &DBuf, planes: usize, h: usize, w: usize, y: &DBuf) -> Result<()> {
    let (oh, ow) = resampled(r, h, w);
    let name = if r == Resample::Up { "upsample2" } else { "avgpool2" };
    g.launch_planes(name, planes * oh * ow, 1, 1, &[P(x.p()), P(y.p()), L(planes as i64), I(h as i32), I(w as i32)])
}

/// The adjoint of [`resample`]: `gx (+)= R^T gy`, `gx` of `h x w`.
#[allow(clippy::too_many_arguments)]
fn resample_adjoint(
    g: &Gpu,
    r: Resample,
    gy: &DBuf,
    planes: usize,
    h: usize,
    w: usize,
    gx: &DBuf,
    acc: bool,
) -> Result<()> {
    let name = if r == Resample::Up { "upsample2_adjoint" } else { "avgpool2_adjoint" };
    g.launch_planes(
        name,
        planes * h * w,
        1,
        1,
        &[P(gy.p()), P(gx.p()), L(planes as i64), I(h as i32), I(w as i32), I(acc as i32)],
    )
}

impl GpuUNet {
    /// Uploads `unet`'s weights.
    pub fn new(g: &Gpu, unet: &UNet) -> Result<Self> {
        let cfg = unet.config();
        let (t0, t2) = unet.time_embed();
        let mut b = Builder { g, emb_w: Vec::new(), emb_b: Vec::new() };
        let input_blocks = b.blocks(unet.input_blocks())?;
        let middle = unet.middle_block().iter().map(|l| b.layer(l)).collect::<Result<Vec<_>>>()?;
        let output_blocks = b.blocks(unet.output_blocks())?;
        let fin = t2.fout;
        let emb = GLinear { w: g.upload(&b.emb_w)?, b: g.upload(&b.emb_b)?, fin, fout: b.emb_b.len() };
        let (on, oc) = unet.out_layers();
        Ok(GpuUNet {
            mc: cfg.model_channels,
            in_channels: cfg.in_channels,
            out_channels: cfg.out_channels,
            levels: cfg.channel_mult.len() - 1,
            time0: linear(g, t0)?,
            time2: linear(g, t2)?,
            emb,
            input_blocks,
            middle,
            output_blocks,
            out_norm: GNorm::new(g, on)?,
            out_conv: GConv::new(g, oc)?,
            gflop_256: unet.gflop(256),
        })
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// GFLOP of one 256 px forward pass (scale by the pixel count for other sizes).
    pub fn gflop_256(&self) -> f64 {
        self.gflop_256
    }

    fn check(&self, s: Shape, t: &[f32]) -> Result<()> {
        let m = 1 << self.levels;
        if s[1] != self.in_channels || s[0] == 0 || s[2] == 0 || !s[2].is_multiple_of(m) || !s[3].is_multiple_of(m) {
            return Err(Error::Shape(format!(
                "model input {s:?}: the model takes {} channels and sides that are positive multiples of {m}",
                self.in_channels
            )));
        }
        if t.len() != s[0] {
            return Err(Error::Shape(format!("{} timesteps for a batch of {}", t.len(), s[0])));
        }
        Ok(())
    }

    /// `silu(time_embed(t))` projected by every ResBlock: `[n, F]`.
    fn embed(&self, g: &Gpu, t: &[f32]) -> Result<DBuf> {
        let n = t.len();
        let s = g.upload(&timestep_embedding(t, self.mc))?;
        let h = g.alloc(n * self.time0.fout)?;
        self.time0.forward(g, &s, n, &h)?;
        g.launch_n("silu_inplace", n * self.time0.fout, &[P(h.p()), L((n * self.time0.fout) as i64)])?;
        let e = g.alloc(n * self.time2.fout)?;
        self.time2.forward(g, &h, n, &e)?;
        g.launch_n("silu_inplace", n * self.time2.fout, &[P(e.p()), L((n * self.time2.fout) as i64)])?;
        let all = g.alloc(n * self.emb.fout)?;
        self.emb.forward(g, &e, n, &all)?;
        Ok(all)
    }

    /// The model output for `x` at timesteps `t` (one per image).
    pub fn forward(&self, g: &Gpu, x: &GpuTensor, t: &[f32]) -> Result<GpuTensor> {
        self.run(g, x, t, None)
    }

    /// [`GpuUNet::forward`], keeping what [`GpuUNet::vjp`] needs.
    pub fn forward_with_tape(&self, g: &Gpu, x: &GpuTensor, t: &[f32]) -> Result<(GpuTensor, GpuTape)> {
        let mut tape =
            GpuTape { n: x.shape[0], in_shape: x.shape, out_shape: [0; 4], emb: g.alloc(1)?, entries: Vec::new() };
        let out = self.run(g, x, t, Some(&mut tape))?;
        tape.out_shape = out.shape;
        Ok((out, tape))
    }

    fn run(&self, g: &Gpu, x: &GpuTensor, t: &[f32], mut tape: Option<&mut GpuTape>) -> Result<GpuTensor> {
        self.check(x.shape, t)?;
        let n = x.shape[0];
        let emb = self.embed(g, t)?;
        let mut d = g.alloc(x.len())?;
        g.copy(&x.buf, 0, &mut d, 0, x.len())?;
        let mut h = Act { d: Rc::new(d), c: x.shape[1], h: x.shape[2], w: x.shape[3] };
        let mut hs = Vec::new();
        for blk in &self.input_blocks {
            for l in blk {
                h = self.layer_forward(g, l, h, n, &emb, tape.as_deref_mut(), true)?;
            }
            hs.push(h.clone());
        }
        for l in &self.middle {
            h = self.layer_forward(g, l, h, n, &emb, tape.as_deref_mut(), true)?;
        }
        for blk in &self.output_blocks {
            let skip = hs.pop().expect("one skip per output block");
            let cat = concat(g, &h, &skip, n)?;
            if let Some(tp) = tape.as_deref_mut() {
                tp.entries.push(Entry::Cat { h: h.clone(), skip: skip.clone() });
            }
            h = cat;
            for (k, l) in blk.iter().enumerate() {
                h = self.layer_forward(g, l, h, n, &emb, tape.as_deref_mut(), k > 0)?;
            }
        }
        let (c, hh, ww) = (h.c, h.h, h.w);
        let t1 = g.alloc(n * c * hh * ww)?;
        self.out_norm.forward(g, &h.d, n, hh * ww, None, true, &t1)?;
        let oc = self.out_channels;
        let out = g.alloc(n * oc * hh * ww)?;
        self.out_conv.forward(g, &t1, n, hh, ww, &out, None, false)?;
        if let Some(tp) = tape {
            tp.entries.push(Entry::Out { x: h });
            tp.emb = emb;
        }
        Ok(GpuTensor { buf: out, shape: [n, oc, hh, ww] })
    }

    #[allow(clippy::too_many_arguments)]
    fn layer_forward(
        &self,
        g: &Gpu,
        l: &GLayer,
        x: Act,
        n: usize,
        emb: &DBuf,
        tape: Option<&mut GpuTape>,
        keep_input: bool,
    ) -> Result<Act> {
        let dims = (x.c, x.h, x.w);
        let (out, entry) = match l {
            GLayer::Conv(c) => {
                let (oh, ow) = c.out_hw(x.h, x.w);
                let o = g.alloc(n * c.cout * oh * ow)?;
                c.forward(g, &x.d, n, x.h, x.w, &o, None, false)?;
                (Act { d: Rc::new(o), c: c.cout, h: oh, w: ow }, Entry::Conv { dims })
            }
            GLayer::Res(rb) => {
                let (o, h2) = self.res_forward(g, rb, &x, emb, n)?;
                (o, Entry::Res { x: keep_input.then(|| x.d.clone()), dims, h2 })
            }
            GLayer::Attn(ab) => {
                let l = x.h * x.w;
                let o = g.alloc(n * x.c * l)?;
                let qkv = g.alloc(n * 3 * x.c * l)?;
                ab.forward(g, &x.d, n, l, &o, &qkv)?;
                (Act { d: Rc::new(o), c: x.c, h: x.h, w: x.w }, Entry::Attn { x: x.d.clone(), qkv })
            }
            GLayer::Down(conv) => {
                let (oh, ow) = (x.h / 2, x.w / 2);
                let o = g.alloc(n * x.c * oh * ow)?;
                match conv {
                    Some(c) => c.forward(g, &x.d, n, x.h, x.w, &o, None, false)?,
                    None => resample(g, Resample::Down, &x.d, n * x.c, x.h, x.w, &o)?,
                }
                (Act { d: Rc::new(o), c: x.c, h: oh, w: ow }, Entry::Down { dims })
            }
            GLayer::Up(conv) => {
                let (oh, ow) = (2 * x.h, 2 * x.w);
                let mut o = g.alloc(n * x.c * oh * ow)?;
                resample(g, Resample::Up, &x.d, n * x.c, x.h, x.w, &o)?;
                if let Some(c) = conv {
                    let o2 = g.alloc(n * c.cout * oh * ow)?;
                    c.forward(g, &o, n, oh, ow, &o2, None, false)?;
                    o = o2;
                }
                (Act { d: Rc::new(o), c: x.c, h: oh, w: ow }, Entry::Up { dims })
            }
        };
        if let Some(tp) = tape {
            tp.entries.push(entry);
        }
        Ok(out)
    }

    fn modulation(&self, rb: &GRes, emb: &DBuf) -> Mod {
        Mod { ptr: emb.at(rb.emb_off), stride: self.emb.fout }
    }

    /// A ResBlock; returns the output and `h2` (the in-conv output, the embedding added when
    /// there is no scale-shift).
    fn res_forward(&self, g: &Gpu, rb: &GRes, x: &Act, emb: &DBuf, n: usize) -> Result<(Act, DBuf)> {
        let (c, h, w) = (x.c, x.h, x.w);
        let (oh, ow) = resampled(rb.resample, h, w);
        let (hw, ohw, co) = (h * w, oh * ow, rb.cout);
        let mut h1 = g.alloc(n * c * hw)?;
        rb.in_norm.forward(g, &x.d, n, hw, None, true, &h1)?;
        let mut xr = None;
        if rb.resample != Resample::None {
            let t = g.alloc(n * c * ohw)?;
            resample(g, rb.resample, &h1, n * c, h, w, &t)?;
            h1 = t;
            let r = g.alloc(n * c * ohw)?;
            resample(g, rb.resample, &x.d, n * c, h, w, &r)?;
            xr = Some(r);
        }
        let h2 = g.alloc(n * co * ohw)?;
        rb.in_conv.forward(g, &h1, n, oh, ow, &h2, None, false)?;
        drop(h1);
        let m = self.modulation(rb, emb);
        let h3 = g.alloc(n * co * ohw)?;
        if rb.scale_shift {
            rb.out_norm.forward(g, &h2, n, ohw, Some(m), true, &h3)?;
        } else {
            let args = [P(h2.p()), P(m.ptr), L(m.stride as i64), I(co as i32), I(ohw as i32)];
            g.launch_planes("add_channel", ohw, co, n, &args)?;
            rb.out_norm.forward(g, &h2, n, ohw, None, true, &h3)?;
        }
        let out = g.alloc(n * co * ohw)?;
        let xs: &DBuf = xr.as_ref().unwrap_or(&x.d);
        match &rb.skip {
            Some(k) => {
                k.forward(g, xs, n, oh, ow, &out, None, false)?;
                rb.out_conv.forward(g, &h3, n, oh, ow, &out, None, true)?;
            }
            None => rb.out_conv.forward(g, &h3, n, oh, ow, &out, Some(xs), false)?,
        }
        Ok((Act { d: Rc::new(out), c: co, h: oh, w: ow }, h2))
    }

    /// `grad_x = d(sum(out * cotangent))/dx` at the inputs of the taped forward pass.
    pub fn vjp(&self, g: &Gpu, mut tape: GpuTape, cotangent: &GpuTensor) -> Result<GpuTensor> {
        if cotangent.shape != tape.out_shape {
            return Err(Error::Shape(format!(
                "cotangent has shape {:?}, the model output {:?}",
                cotangent.shape, tape.out_shape
            )));
        }
        let n = tape.n;
        let emb = std::mem::replace(&mut tape.emb, g.alloc(1)?);
        let e = &mut tape.entries;
        let Some(Entry::Out { x }) = e.pop() else { unreachable!("the tape ends with Out") };
        let (c, h, w) = (x.c, x.h, x.w);
        let t = g.alloc(n * c * h * w)?;
        self.out_conv.backward_input(g, &cotangent.buf, n, h, w, &t, false)?;
        let mut gr = g.alloc(n * c * h * w)?;
        self.out_norm.backward(g, &x.d, n, h * w, None, true, &t, &gr, false)?;
        drop((t, x));
        let mut skip_grads: Vec<Option<DBuf>> = (0..self.input_blocks.len()).map(|_| None).collect();
        for (j, blk) in self.output_blocks.iter().enumerate().rev() {
            for (k, l) in blk.iter().enumerate().rev() {
                if k > 0 {
                    gr = self.layer_backward(g, l, e.pop().expect("tape entry"), gr, n, &emb)?;
                    continue;
                }
                let Some(Entry::Res { dims, h2, .. }) = e.pop() else { unreachable!("decoder ResBlock") };
                let Some(Entry::Cat { h: hh, skip }) = e.pop() else { unreachable!("Cat entry") };
                let GLayer::Res(rb) = l else { unreachable!("decoder blocks start with a ResBlock") };
                let cat = concat(g, &hh, &skip, n)?;
                let gc = self.res_backward(g, rb, &cat.d, dims, &h2, n, &gr, &emb)?;
                let (lh, ls) = (hh.c * hh.h * hh.w, skip.c * skip.h * skip.w);
                let gh = g.alloc(n * lh)?;
                let gs = g.alloc(n * ls)?;
                g.launch_planes(
                    "split2",
                    lh + ls,
                    n,
                    1,
                    &[P(gc.p()), P(gh.p()), P(gs.p()), I(lh as i32), I(ls as i32)],
                )?;
                skip_grads[self.input_blocks.len() - 1 - j] = Some(gs);
                gr = gh;
            }
        }
        for l in self.middle.iter().rev() {
            gr = self.layer_backward(g, l, e.pop().expect("tape entry"), gr, n, &emb)?;
        }
        for (i, blk) in self.input_blocks.iter().enumerate().rev() {
            if let Some(sg) = skip_grads[i].take() {
                add_into(g, &gr, &sg, sg.len())?;
            }
            for l in blk.iter().rev() {
                gr = self.layer_backward(g, l, e.pop().expect("tape entry"), gr, n, &emb)?;
            }
        }
        Ok(GpuTensor { buf: gr, shape: tape.in_shape })
    }

    fn layer_backward(&self, g: &Gpu, l: &GLayer, entry: Entry, gy: DBuf, n: usize, emb: &DBuf) -> Result<DBuf> {
        Ok(match (l, entry) {
            (GLayer::Conv(conv), Entry::Conv { dims: (c, h, w) }) => {
                let gx = g.alloc(n * c * h * w)?;
                conv.backward_input(g, &gy, n, h, w, &gx, false)?;
                gx
            }
            (GLayer::Res(rb), Entry::Res { x: Some(x), dims, h2 }) => {
                self.res_backward(g, rb, &x, dims, &h2, n, &gy, emb)?
            }
            (GLayer::Attn(ab), Entry::Attn { x, qkv }) => {
                let gx = g.alloc(gy.len())?;
                ab.backward(g, &x, &qkv, n, gy.len() / (n * ab.c), &gy, &gx)?;
                gx
            }
            (GLayer::Down(conv), Entry::Down { dims: (c, h, w) }) => {
                let gx = g.alloc(n * c * h * w)?;
                match conv {
                    Some(k) => k.backward_input(g, &gy, n, h, w, &gx, false)?,
                    None => resample_adjoint(g, Resample::Down, &gy, n * c, h, w, &gx, false)?,
                }
                gx
            }
            (GLayer::Up(conv), Entry::Up { dims: (c, h, w) }) => {
                let (oh, ow) = (2 * h, 2 * w);
                let gu = match conv {
                    Some(k) => {
                        let t = g.alloc(n * c * oh * ow)?;
                        k.backward_input(g, &gy, n, oh, ow, &t, false)?;
                        t
                    }
                    None => gy,
                };
                let gx = g.alloc(n * c * h * w)?;
                resample_adjoint(g, Resample::Up, &gu, n * c, h, w, &gx, false)?;
                gx
            }
            _ => unreachable!("tape entries follow the layers"),
        })
    }

    /// A ResBlock's input gradient (see `res_forward`).
    #[allow(clippy::too_many_arguments)]
    fn res_backward(
        &self,
        g: &Gpu,
        rb: &GRes,
        x: &DBuf,
        dims: (usize, usize, usize),
        h2: &DBuf,
        n: usize,
        gy: &DBuf,
        emb: &DBuf,
    ) -> Result<DBuf> {
        let (c, h, w) = dims;
        let (oh, ow) = resampled(rb.resample, h, w);
        let (hw, ohw, co) = (h * w, oh * ow, rb.cout);
        let g3 = g.alloc(n * co * ohw)?;
        rb.out_conv.backward_input(g, gy, n, oh, ow, &g3, false)?;
        let g2 = g.alloc(n * co * ohw)?;
        let m = rb.scale_shift.then(|| self.modulation(rb, emb));
        rb.out_norm.backward(g, h2, n, ohw, m, true, &g3, &g2, false)?;
        drop(g3);
        let mut g1 = g.alloc(n * c * ohw)?;
        rb.in_conv.backward_input(g, &g2, n, oh, ow, &g1, false)?;
        drop(g2);
        if rb.resample != Resample::None {
            let t = g.alloc(n * c * hw)?;
            resample_adjoint(g, rb.resample, &g1, n * c, h, w, &t, false)?;
            g1 = t;
        }
        let gx = g.alloc(n * c * hw)?;
        rb.in_norm.backward(g, x, n, hw, None, true, &g1, &gx, false)?;
        drop(g1);
        let gs_owned = match &rb.skip {
            Some(k) => {
                let t = g.alloc(n * c * ohw)?;
                k.backward_input(g, gy, n, oh, ow, &t, false)?;
                Some(t)
            }
            None => None,
        };
        let gs = gs_owned.as_ref().unwrap_or(gy);
        if rb.resample != Resample::None {
            resample_adjoint(g, rb.resample, gs, n * c, h, w, &gx, true)?;
        } else {
            add_into(g, &gx, gs, n * c * hw)?;
        }
        Ok(gx)
    }
}

/// `cat([h, skip], channels)` per image.
fn concat(g: &Gpu, h: &Act, skip: &Act, n: usize) -> Result<Act> {
    let (lh, ls) = (h.c * h.h * h.w, skip.c * skip.h * skip.w);
    let d = g.alloc(n * (lh + ls))?;
    g.launch_planes("concat2", lh + ls, n, 1, &[P(h.d.p()), P(skip.d.p()), P(d.p()), I(lh as i32), I(ls as i32)])?;
    Ok(Act { d: Rc::new(d), c: h.c + skip.c, h: h.h, w: h.w })
}
