//! The forward pass: a reusable [`Workspace`] (no allocation in steady state), and an optional
//! [`Tape`] that keeps what the input-gradient pass needs.

use super::model::{Layer, ResBlock, Resample, UNet};
use crate::error::{Error, Result};
use crate::nn::resample::{avgpool2, upsample2};
use crate::nn::{NormMod, Precision};
use crate::tensor::Tensor;
use std::sync::Arc;

/// Reusable buffers of the forward and backward passes.
#[derive(Default)]
pub struct Workspace {
    free: Vec<Vec<f32>>,
    pub(crate) scratch: Vec<f32>,
}

impl Workspace {
    /// An empty workspace; it grows on first use and is reused afterwards.
    pub fn new() -> Self {
        Self::default()
    }

    /// A buffer of `len` floats, reusing the smallest free buffer that is large enough but not
    /// more than twice as large: handing a large buffer to a small request (when the exact one
    /// left with a returned tensor) would make the next large request allocate, and the pool
    /// creep upwards over calls. The contents are stale: every caller overwrites the whole
    /// buffer (GEMMs without accumulation, norms, resampling, concatenation), so no time goes
    /// into zero-filling.
    pub(crate) fn take(&mut self, len: usize) -> Vec<f32> {
        let most = 2 * len.max(1 << 14);
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len && v.capacity() <= most)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        let mut v = match best {
            Some(i) => self.free.swap_remove(i),
            None => Vec::with_capacity(len),
        };
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, 0.0);
        }
        v
    }

    /// Returns a buffer for reuse.
    pub(crate) fn give(&mut self, v: Vec<f32>) {
        if v.capacity() > 0 {
            self.free.push(v);
        }
    }

    pub(crate) fn give_act(&mut self, a: A) {
        if let Ok(a) = Arc::try_unwrap(a) {
            self.give(a.d);
        }
    }

    /// A new, empty workspace (for a concurrent caller).
    pub fn clone_empty(&self) -> Self {
        Self::default()
    }

    /// Bytes held by the workspace's free buffers.
    pub fn bytes(&self) -> usize {
        4 * (self.free.iter().map(Vec::capacity).sum::<usize>() + self.scratch.capacity())
    }
}

/// An activation: `n` images of `c x h x w`.
pub(crate) struct Act {
    pub d: Vec<f32>,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

pub(crate) type A = Arc<Act>;

/// What the backward pass of one layer needs from its forward pass.
pub(crate) enum Entry {
    Conv {
        dims: (usize, usize, usize),
    },
    /// `x` is None for a decoder ResBlock, whose input is rebuilt from the `Cat` entry.
    Res {
        x: Option<A>,
        dims: (usize, usize, usize),
        h2: Vec<f32>,
        emb_out: Vec<f32>,
    },
    Attn {
        x: A,
        qkv: Vec<f32>,
    },
    Down {
        dims: (usize, usize, usize),
    },
    Up {
        dims: (usize, usize, usize),
    },
    Cat {
        h: A,
        skip: A,
    },
    Out {
        x: A,
    },
}

/// The saved activations of a forward pass, consumed by [`UNet::vjp`].
pub struct Tape {
    pub(crate) n: usize,
    pub(crate) out_shape: [usize; 4],
    pub(crate) in_shape: [usize; 4],
    pub(crate) entries: Vec<Entry>,
}

impl Tape {
    /// Bytes held by the tape.
    pub fn bytes(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        let mut b = 0;
        let mut act = |a: &A, b: &mut usize| {
            if seen.insert(Arc::as_ptr(a) as usize) {
                *b += 4 * a.d.len();
            }
        };
        for e in &self.entries {
            match e {
                Entry::Res { x, h2, emb_out, .. } => {
                    if let Some(x) = x {
                        act(x, &mut b);
                    }
                    b += 4 * (h2.len() + emb_out.len());
                }
                Entry::Attn { x, qkv } => {
                    act(x, &mut b);
                    b += 4 * qkv.len();
                }
                Entry::Cat { h, skip } => {
                    act(h, &mut b);
                    act(skip, &mut b);
                }
                Entry::Out { x } => act(x, &mut b),
                _ => {}
            }
        }
        b
    }
}

/// Called with each block's name and output during a traced forward pass.
pub type Trace<'a> = &'a mut dyn FnMut(&str, &Tensor);

/// Runs `f` on a worker of the current rayon pool (at once if already on one): the many parallel
/// loops of a UNet call then start by work stealing instead of each being injected from an
/// outside thread that sleeps until it ends (a futex wake-up pair per loop, about 10% of a 64 px
/// call).
pub(crate) fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(move |_| f())
}

/// guided-diffusion's sinusoidal embedding, computed in f32 as it does: `[cos(t f), sin(t f)]`,
/// `f_i = exp(-ln(10000) i/half)`.
pub fn timestep_embedding(t: &[f32], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let c = -(10000f64.ln()) as f32;
    let freqs: Vec<f32> = (0..half).map(|i| ((c * i as f32 / half as f32) as f64).exp() as f32).collect();
    let mut out = vec![0.0f32; t.len() * dim];
    for (row, &tv) in out.chunks_mut(dim).zip(t) {
        for (i, &f) in freqs.iter().enumerate() {
            let arg = (tv * f) as f64;
            row[i] = arg.cos() as f32;
            row[half + i] = arg.sin() as f32;
        }
    }
    out
}

impl UNet {
    fn check_input(&self, x: &Tensor, t: &[f32]) -> Result<()> {
        let s = x.shape();
        let levels = self.cfg.channel_mult.len() - 1;
        if s[1] != self.cfg.in_channels {
            return Err(Error::Shape(format!(
                "model input has {} channels, the model takes {}",
                s[1], self.cfg.in_channels
            )));
        }
        if s[0] == 0 || s[2] == 0 || s[3] == 0 || !s[2].is_multiple_of(1 << levels) || !s[3].is_multiple_of(1 << levels)
        {
            return Err(Error::Shape(format!(
                "model input {s:?}: height and width must be positive multiples of {}",
                1 << levels
            )));
        }
        if t.len() != s[0] {
            return Err(Error::Shape(format!("{} timesteps for a batch of {}", t.len(), s[0])));
        }
        if let Some(v) = t.iter().find(|v| !v.is_finite() || **v < 0.0) {
            return Err(Error::Config(format!("timestep {v} is not a non-negative number")));
        }
        Ok(())
    }

    /// The time embedding `time_embed(sinusoid(t))`, `[n, 4 mc]`.
    pub fn embed(&self, t: &[f32]) -> Vec<f32> {
        let n = t.len();
        let s = timestep_embedding(t, self.cfg.model_channels);
        let mut h = vec![0.0; n * self.time0.fout];
        self.time0.forward(&s, n, false, &mut h);
        let mut e = vec![0.0; n * self.time2.fout];
        self.time2.forward(&h, n, true, &mut e);
        e
    }

    /// The model output for a batch `x` at timesteps `t` (one per image).
    pub fn forward(&self, x: &Tensor, t: &[f32], ws: &mut Workspace) -> Result<Tensor> {
        on_worker(|| self.run(x, t, ws, None, None))
    }

    /// [`UNet::forward`], calling `trace` with every block's output (for tests and debugging).
    pub fn forward_traced(&self, x: &Tensor, t: &[f32], ws: &mut Workspace, trace: Trace<'_>) -> Result<Tensor> {
        self.run(x, t, ws, None, Some(trace))
    }

    /// [`UNet::forward`], keeping the activations [`UNet::vjp`] needs.
    pub fn forward_with_tape(&self, x: &Tensor, t: &[f32], ws: &mut Workspace) -> Result<(Tensor, Tape)> {
        let mut tape = Tape { n: x.n(), out_shape: [0; 4], in_shape: x.shape(), entries: Vec::new() };
        let out = on_worker(|| self.run(x, t, ws, Some(&mut tape), None))?;
        tape.out_shape = out.shape();
        Ok((out, tape))
    }

    fn run(
        &self,
        x: &Tensor,
        t: &[f32],
        ws: &mut Workspace,
        mut tape: Option<&mut Tape>,
        mut trace: Option<Trace<'_>>,
    ) -> Result<Tensor> {
        self.check_input(x, t)?;
        let n = x.n();
        let prec = self.precision;
        let emb = self.embed(t);
        let mut d = ws.take(x.data().len());
        d.copy_from_slice(x.data());
        let mut h: A = Arc::new(Act { d, c: x.c(), h: x.h(), w: x.w() });
        let mut hs: Vec<A> = Vec::new();
        let emit = |name: &str, a: &Act, trace: &mut Option<Trace<'_>>| {
            if let Some(tr) = trace.as_mut() {
                let t = Tensor::from_vec([n, a.c, a.h, a.w], a.d.clone()).expect("act shape");
                tr(name, &t);
            }
        };
        for (i, blk) in self.input_blocks.iter().enumerate() {
            for l in blk {
                h = self.layer_forward(l, h, n, &emb, ws, tape.as_deref_mut());
            }
            emit(&format!("input_blocks.{i}"), &h, &mut trace);
            hs.push(h.clone());
        }
        for l in &self.middle {
            h = self.layer_forward(l, h, n, &emb, ws, tape.as_deref_mut());
        }
        emit("middle_block", &h, &mut trace);
        for (j, blk) in self.output_blocks.iter().enumerate() {
            let skip = hs.pop().expect("one skip per output block");
            let cat = concat(&h, &skip, n, ws);
            if let Some(tp) = tape.as_deref_mut() {
                tp.entries.push(Entry::Cat { h: h.clone(), skip: skip.clone() });
            }
            ws.give_act(h);
            ws.give_act(skip);
            h = Arc::new(cat);
            for (k, l) in blk.iter().enumerate() {
                // The decoder ResBlock's concatenated input is not kept: the Cat entry rebuilds it.
                let keep_input = k > 0;
                h = self.layer_forward_opt(l, h, n, &emb, ws, tape.as_deref_mut(), keep_input);
            }
            emit(&format!("output_blocks.{j}"), &h, &mut trace);
        }
        let (c, hh, ww) = (h.c, h.h, h.w);
        let mut g = ws.take(n * c * hh * ww);
        self.out_norm.forward(&h.d, n, hh * ww, None, true, &mut g);
        let oc = self.cfg.out_channels;
        let mut out = vec![0.0; n * oc * hh * ww];
        self.out_conv.forward_p(&g, n, hh, ww, &mut out, None, false, prec);
        ws.give(g);
        match tape {
            Some(tp) => tp.entries.push(Entry::Out { x: h }),
            None => ws.give_act(h),
        }
        let out = Tensor::from_vec([n, oc, hh, ww], out)?;
        if let Some(tr) = trace.as_mut() {
            tr("out", &out);
        }
        Ok(out)
    }

    fn layer_forward(&self, l: &Layer, x: A, n: usize, emb: &[f32], ws: &mut Workspace, tape: Option<&mut Tape>) -> A {
        self.layer_forward_opt(l, x, n, emb, ws, tape, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn layer_forward_opt(
        &self,
        l: &Layer,
        x: A,
        n: usize,
        emb: &[f32],
        ws: &mut Workspace,
        tape: Option<&mut Tape>,
        keep_input: bool,
    ) -> A {
        let dims = (x.c, x.h, x.w);
        let prec = self.precision;
        let (out, entry) = match l {
            Layer::Conv(c) => {
                let (oh, ow) = c.out_hw(x.h, x.w);
                let mut o = ws.take(n * c.cout * oh * ow);
                c.forward_p(&x.d, n, x.h, x.w, &mut o, None, false, prec);
                (Act { d: o, c: c.cout, h: oh, w: ow }, Entry::Conv { dims })
            }
            Layer::Res(rb) => {
                let (o, h2, eo) = res_forward(rb, &x, emb, n, ws, prec);
                let xs = if keep_input { Some(x.clone()) } else { None };
                (o, Entry::Res { x: xs, dims, h2, emb_out: eo })
            }
            Layer::Attn(ab) => {
                let l = x.h * x.w;
                let mut o = ws.take(n * x.c * l);
                let mut qkv = ws.take(n * 3 * x.c * l);
                ab.forward(&x.d, n, l, &mut o, &mut qkv, &mut ws.scratch);
                (Act { d: o, c: x.c, h: x.h, w: x.w }, Entry::Attn { x: x.clone(), qkv })
            }
            Layer::Down(conv) => {
                let (oh, ow) = (x.h / 2, x.w / 2);
                let mut o = ws.take(n * x.c * oh * ow);
                match conv {
                    Some(c) => c.forward_p(&x.d, n, x.h, x.w, &mut o, None, false, prec),
                    None => avgpool2(&x.d, n * x.c, x.h, x.w, &mut o),
                }
                (Act { d: o, c: x.c, h: oh, w: ow }, Entry::Down { dims })
            }
            Layer::Up(conv) => {
                let (oh, ow) = (2 * x.h, 2 * x.w);
                let mut o = ws.take(n * x.c * oh * ow);
                upsample2(&x.d, n * x.c, x.h, x.w, &mut o);
                if let Some(c) = conv {
                    let mut o2 = ws.take(n * c.cout * oh * ow);
                    c.forward_p(&o, n, oh, ow, &mut o2, None, false, prec);
                    ws.give(std::mem::replace(&mut o, o2));
                }
                (Act { d: o, c: x.c, h: oh, w: ow }, Entry::Up { dims })
            }
        };
        match tape {
            Some(tp) => tp.entries.push(entry),
            None => {
                if let Entry::Res { h2, emb_out, .. } = entry {
                    ws.give(h2);
                    drop(emb_out);
                } else if let Entry::Attn { qkv, .. } = entry {
                    ws.give(qkv);
                }
            }
        }
        ws.give_act(x);
        Arc::new(out)
    }
}

/// `cat([h, skip], channels)` per image.
pub(crate) fn concat(h: &Act, skip: &Act, n: usize, ws: &mut Workspace) -> Act {
    let (lh, ls) = (h.c * h.h * h.w, skip.c * skip.h * skip.w);
    let mut d = ws.take(n * (lh + ls));
    for i in 0..n {
        let o = &mut d[i * (lh + ls)..(i + 1) * (lh + ls)];
        o[..lh].copy_from_slice(&h.d[i * lh..(i + 1) * lh]);
        o[lh..].copy_from_slice(&skip.d[i * ls..(i + 1) * ls]);
    }
    Act { d, c: h.c + skip.c, h: h.h, w: h.w }
}

/// Resamples `n*c` planes of `h x w` for an up/down ResBlock.
pub(crate) fn resample(r: Resample, x: &[f32], planes: usize, h: usize, w: usize, out: &mut [f32]) {
    match r {
        Resample::Up => upsample2(x, planes, h, w, out),
        Resample::Down => avgpool2(x, planes, h, w, out),
        Resample::None => out.copy_from_slice(&x[..out.len()]),
    }
}

pub(crate) fn resampled(r: Resample, h: usize, w: usize) -> (usize, usize) {
    match r {
        Resample::Up => (2 * h, 2 * w),
        Resample::Down => (h / 2, w / 2),
        Resample::None => (h, w),
    }
}

/// Splits a ResBlock's embedding projection into `(scale, shift)`, each `[n, cout]`.
pub(crate) fn scale_shift(eo: &[f32], n: usize, cout: usize) -> (Vec<f32>, Vec<f32>) {
    let mut scale = Vec::with_capacity(n * cout);
    let mut shift = Vec::with_capacity(n * cout);
    for i in 0..n {
        scale.extend_from_slice(&eo[i * 2 * cout..i * 2 * cout + cout]);
        shift.extend_from_slice(&eo[i * 2 * cout + cout..(i + 1) * 2 * cout]);
    }
    (scale, shift)
}

/// A ResBlock's forward pass; returns the output, the pre-norm `h2` (after the embedding is
/// added when there is no scale-shift) and the embedding projection.
fn res_forward(
    rb: &ResBlock,
    x: &Act,
    emb: &[f32],
    n: usize,
    ws: &mut Workspace,
    prec: Precision,
) -> (Act, Vec<f32>, Vec<f32>) {
    let (c, h, w) = (x.c, x.h, x.w);
    let (oh, ow) = resampled(rb.resample, h, w);
    let (hw, ohw) = (h * w, oh * ow);
    let mut h1 = ws.take(n * c * hw);
    rb.in_norm.forward(&x.d, n, hw, None, true, &mut h1);
    let mut xs = None;
    if rb.resample != Resample::None {
        let mut t = ws.take(n * c * ohw);
        resample(rb.resample, &h1, n * c, h, w, &mut t);
        ws.give(std::mem::replace(&mut h1, t));
        let mut xr = ws.take(n * c * ohw);
        resample(rb.resample, &x.d, n * c, h, w, &mut xr);
        xs = Some(xr);
    }
    let co = rb.cout;
    let mut h2 = ws.take(n * co * ohw);
    rb.in_conv.forward_p(&h1, n, oh, ow, &mut h2, None, false, prec);
    ws.give(h1);
    let mut eo = vec![0.0; n * rb.emb.fout];
    rb.emb.forward(emb, n, true, &mut eo);
    let mut h3 = ws.take(n * co * ohw);
    if rb.scale_shift {
        let (scale, shift) = scale_shift(&eo, n, co);
        rb.out_norm.forward(&h2, n, ohw, Some(NormMod { scale: &scale, shift: &shift }), true, &mut h3);
    } else {
        for (p, &e) in h2.chunks_mut(ohw).zip(&eo) {
            p.iter_mut().for_each(|v| *v += e);
        }
        rb.out_norm.forward(&h2, n, ohw, None, true, &mut h3);
    }
    let mut out = ws.take(n * co * ohw);
    let xsr: &[f32] = xs.as_deref().unwrap_or(&x.d);
    match &rb.skip {
        Some(k) => {
            k.forward_p(xsr, n, oh, ow, &mut out, None, false, prec);
            rb.out_conv.forward_p(&h3, n, oh, ow, &mut out, None, true, prec);
        }
        None => rb.out_conv.forward_p(&h3, n, oh, ow, &mut out, Some(xsr), false, prec),
    }
    ws.give(h3);
    if let Some(xr) = xs {
        ws.give(xr);
    }
    (Act { d: out, c: co, h: oh, w: ow }, h2, eo)
}
