//! The UNet's forward pass, its tape and its input gradient, written once over a backend's
//! [`Primitives`]: the CPU and CUDA backends implement only the layers' compute (convolution,
//! norm + modulation + SiLU, attention, resampling, concatenation and their adjoints), and both
//! refuse the same inputs with the same errors because the checks live here.
//!
//! Buffers are the backend's; every primitive writes a caller-owned output. Activations shared
//! between the decoder's skip stack and the next layer are reference-counted and handed back to
//! the backend ([`Primitives::recycle`]) as soon as their last user is done.

use crate::error::Error;
use crate::graph::{Attn, Conv, Graph, Layer, LayerSet, Res, Resample};
use std::sync::Arc;

/// A batch shape, NCHW.
pub type Shape = [usize; 4];

/// `(scale, shift)` of ResBlock `block` from the time embedding `emb`.
#[derive(Clone, Copy)]
pub struct Modulation<'a, E> {
    /// The embedding of this call.
    pub emb: &'a E,
    /// The ResBlock's index ([`Res::emb`]).
    pub block: usize,
}

/// What a backend computes for the walker. Sizes are in floats; `n` images of `c x h x w` are
/// stored NCHW. Outputs are caller-owned and fully overwritten unless `accumulate` says to add.
#[allow(clippy::too_many_arguments)]
pub trait Primitives<L: LayerSet> {
    /// A buffer of f32 in the backend's memory.
    type Buf: Send + Sync;
    /// A call's time embedding (every ResBlock's projection of it).
    type Emb: Send + Sync;
    /// The backend's error; walker errors convert into it.
    type Error: From<Error>;

    /// Floats in `b`.
    fn len(&self, b: &Self::Buf) -> usize;
    /// A buffer of `len` floats with unspecified contents.
    fn alloc(&mut self, len: usize) -> Result<Self::Buf, Self::Error>;
    /// Hands a buffer back for reuse.
    fn recycle(&mut self, b: Self::Buf);
    /// `dst[..len] = src[..len]`.
    fn copy(&mut self, src: &Self::Buf, dst: &mut Self::Buf, len: usize) -> Result<(), Self::Error>;
    /// `y[..len] += x[..len]`.
    fn add(&mut self, y: &mut Self::Buf, x: &Self::Buf, len: usize) -> Result<(), Self::Error>;
    /// The embedding of timesteps `t` (one per image) and every ResBlock's projection of it.
    fn embed(&mut self, time: &L::Time, t: &[f32]) -> Result<Self::Emb, Self::Error>;
    /// `out = conv(x) + bias (+ residual) (+ out when accumulate)` for inputs of `h x w`.
    fn conv(
        &mut self,
        c: &Conv<L>,
        x: &Self::Buf,
        n: usize,
        h: usize,
        w: usize,
        out: &mut Self::Buf,
        residual: Option<&Self::Buf>,
        accumulate: bool,
    ) -> Result<(), Self::Error>;
    /// `gx (+)= conv^T(gy)` for inputs of `h x w`.
    fn conv_adjoint(
        &mut self,
        c: &Conv<L>,
        gy: &Self::Buf,
        n: usize,
        h: usize,
        w: usize,
        gx: &mut Self::Buf,
        accumulate: bool,
    ) -> Result<(), Self::Error>;
    /// `y = act(GN(x) (1 + scale) + shift)` over `n` images of `channels x hw`.
    fn norm(
        &mut self,
        norm: &L::Norm,
        x: &Self::Buf,
        n: usize,
        hw: usize,
        m: Option<Modulation<'_, Self::Emb>>,
        silu: bool,
        y: &mut Self::Buf,
    ) -> Result<(), Self::Error>;
    /// `gx (+)= d/dx sum(gy * norm(x))`.
    fn norm_adjoint(
        &mut self,
        norm: &L::Norm,
        x: &Self::Buf,
        n: usize,
        hw: usize,
        m: Option<Modulation<'_, Self::Emb>>,
        silu: bool,
        gy: &Self::Buf,
        gx: &mut Self::Buf,
        accumulate: bool,
    ) -> Result<(), Self::Error>;
    /// `h[i, ch, :] += proj_block(emb)[i, ch]`: a ResBlock without scale-shift.
    fn add_embedding(
        &mut self,
        h: &mut Self::Buf,
        emb: &Self::Emb,
        block: usize,
        n: usize,
        c: usize,
        hw: usize,
    ) -> Result<(), Self::Error>;
    /// `y = x + proj(attention(qkv(GN(x))))`; `saved` (`3 n channels hw` floats) receives what
    /// the adjoint needs.
    fn attention(
        &mut self,
        a: &Attn<L>,
        x: &Self::Buf,
        n: usize,
        hw: usize,
        y: &mut Self::Buf,
        saved: &mut Self::Buf,
    ) -> Result<(), Self::Error>;
    /// `gx = d/dx sum(gy * attention(x))` from the forward's `x` and `saved`.
    fn attention_adjoint(
        &mut self,
        a: &Attn<L>,
        x: &Self::Buf,
        saved: &Self::Buf,
        n: usize,
        hw: usize,
        gy: &Self::Buf,
        gx: &mut Self::Buf,
    ) -> Result<(), Self::Error>;
    /// `y = R x` over `planes` planes of `h x w` (`r` is not [`Resample::None`]).
    fn resample(
        &mut self,
        r: Resample,
        x: &Self::Buf,
        planes: usize,
        h: usize,
        w: usize,
        y: &mut Self::Buf,
    ) -> Result<(), Self::Error>;
    /// `gx (+)= R^T gy` with `gx` of `planes x h x w`.
    fn resample_adjoint(
        &mut self,
        r: Resample,
        gy: &Self::Buf,
        planes: usize,
        h: usize,
        w: usize,
        gx: &mut Self::Buf,
        accumulate: bool,
    ) -> Result<(), Self::Error>;
    /// Per image, `out = [a (la floats), b (lb floats)]`.
    fn concat(
        &mut self,
        a: &Self::Buf,
        la: usize,
        b: &Self::Buf,
        lb: usize,
        n: usize,
        out: &mut Self::Buf,
    ) -> Result<(), Self::Error>;
    /// The adjoint of [`Primitives::concat`]: per image, `g = [ga, gb]`.
    fn split(
        &mut self,
        g: &Self::Buf,
        la: usize,
        lb: usize,
        n: usize,
        ga: &mut Self::Buf,
        gb: &mut Self::Buf,
    ) -> Result<(), Self::Error>;
}

/// Called with each block's name, output and shape during a traced forward pass.
pub type Trace<'a, B> = &'a mut dyn FnMut(&str, &B, Shape);

/// An activation: `n` images of `c x h x w`.
struct Act<B> {
    d: Arc<B>,
    c: usize,
    h: usize,
    w: usize,
}

impl<B> Clone for Act<B> {
    fn clone(&self) -> Self {
        Act { d: self.d.clone(), c: self.c, h: self.h, w: self.w }
    }
}

type Dims = (usize, usize, usize);

/// What the input gradient of one layer needs from its forward pass.
enum Entry<B> {
    Conv {
        dims: Dims,
    },
    /// `x` is None for a decoder ResBlock, whose input is rebuilt from the `Cat` entry.
    Res {
        x: Option<Arc<B>>,
        dims: Dims,
        h2: B,
    },
    Attn {
        x: Act<B>,
        saved: B,
    },
    Down {
        dims: Dims,
    },
    Up {
        dims: Dims,
    },
    Cat {
        h: Act<B>,
        skip: Act<B>,
    },
    Out {
        x: Act<B>,
    },
}

/// The saved activations of one forward pass, consumed by [`Graph::vjp`] (which hands its
/// buffers back to the backend).
pub struct Tape<B, E> {
    graph: u64,
    in_shape: Shape,
    out_shape: Shape,
    emb: E,
    entries: Vec<Entry<B>>,
}

impl<B, E> Tape<B, E> {
    /// The shape of the taped input.
    pub fn input_shape(&self) -> Shape {
        self.in_shape
    }

    /// The shape of the model output (and of the cotangent the VJP takes).
    pub fn output_shape(&self) -> Shape {
        self.out_shape
    }

    /// The distinct saved buffers, for reporting what a tape holds: `f(buffer)` per buffer.
    pub fn for_each_buffer(&self, f: &mut dyn FnMut(&B)) {
        let mut seen = std::collections::HashSet::new();
        let mut act = |a: &Arc<B>, f: &mut dyn FnMut(&B)| {
            if seen.insert(Arc::as_ptr(a) as usize) {
                f(a);
            }
        };
        for e in &self.entries {
            match e {
                Entry::Res { x, h2, .. } => {
                    if let Some(x) = x {
                        act(x, f);
                    }
                    f(h2);
                }
                Entry::Attn { x, saved } => {
                    act(&x.d, f);
                    f(saved);
                }
                Entry::Cat { h, skip } => {
                    act(&h.d, f);
                    act(&skip.d, f);
                }
                Entry::Out { x } => act(&x.d, f),
                Entry::Conv { .. } | Entry::Down { .. } | Entry::Up { .. } => {}
            }
        }
    }
}

fn input_err(input: &'static str, shape: &[usize], reason: String) -> Error {
    Error::Input { input, shape: shape.to_vec(), reason }
}

/// A walk in progress: the graph, the backend and the call's embedding.
struct Walk<'g, 'p, L: LayerSet, P: Primitives<L>> {
    g: &'g Graph<L>,
    p: &'p mut P,
    n: usize,
}

impl<L: LayerSet> Graph<L> {
    /// Checks a model input of `shape` at timesteps `t` (one per image).
    ///
    /// # Errors
    /// [`Error::Input`] for a wrong channel count, an empty batch or sides that the levels cannot
    /// halve, or a timestep count other than the batch; [`Error::Timestep`] for a negative or
    /// non-finite timestep.
    pub fn check_input(&self, shape: Shape, t: &[f32]) -> Result<(), Error> {
        let cfg = &self.config;
        let levels = cfg.channel_mult.len() - 1;
        if shape[1] != cfg.in_channels {
            return Err(input_err("input", &shape, format!("the model takes {} channels", cfg.in_channels)));
        }
        let m = 1usize << levels;
        if shape[0] == 0 || shape[2] == 0 || shape[3] == 0 || !shape[2].is_multiple_of(m) || !shape[3].is_multiple_of(m)
        {
            return Err(input_err("input", &shape, format!("height and width must be positive multiples of {m}")));
        }
        if t.len() != shape[0] {
            return Err(input_err("timesteps", &[t.len()], format!("one per image of a batch of {}", shape[0])));
        }
        if let Some(&v) = t.iter().find(|v| !v.is_finite() || **v < 0.0) {
            return Err(Error::Timestep { value: v });
        }
        Ok(())
    }

    fn check_call<P: Primitives<L>>(
        &self,
        p: &P,
        x: &P::Buf,
        shape: Shape,
        t: &[f32],
        out: &P::Buf,
    ) -> Result<(), Error> {
        self.check_input(shape, t)?;
        let len: usize = shape.iter().product();
        if p.len(x) < len {
            return Err(input_err("input", &shape, format!("the buffer holds {} floats, the shape {len}", p.len(x))));
        }
        let os = self.output_shape(shape);
        let olen: usize = os.iter().product();
        if p.len(out) < olen {
            return Err(input_err("output", &os, format!("the buffer holds {} floats, the shape {olen}", p.len(out))));
        }
        Ok(())
    }

    /// `out = model(x, t)` for a batch `x` of `shape` at timesteps `t` (one per image).
    ///
    /// # Errors
    /// Input checks ([`Graph::check_input`], buffer sizes) and the backend's failures.
    pub fn forward<P: Primitives<L>>(
        &self,
        p: &mut P,
        x: &P::Buf,
        shape: Shape,
        t: &[f32],
        out: &mut P::Buf,
    ) -> Result<(), P::Error> {
        self.check_call(p, x, shape, t, out)?;
        Walk { g: self, p, n: shape[0] }.run(x, shape, t, out, None, None)?;
        Ok(())
    }

    /// [`Graph::forward`], calling `trace` with every block's output (tests and debugging).
    ///
    /// # Errors
    /// As [`Graph::forward`].
    pub fn forward_traced<P: Primitives<L>>(
        &self,
        p: &mut P,
        x: &P::Buf,
        shape: Shape,
        t: &[f32],
        out: &mut P::Buf,
        trace: Trace<'_, P::Buf>,
    ) -> Result<(), P::Error> {
        self.check_call(p, x, shape, t, out)?;
        Walk { g: self, p, n: shape[0] }.run(x, shape, t, out, None, Some(trace))?;
        Ok(())
    }

    /// [`Graph::forward`], returning the tape [`Graph::vjp`] needs.
    ///
    /// # Errors
    /// As [`Graph::forward`].
    pub fn forward_for_grad<P: Primitives<L>>(
        &self,
        p: &mut P,
        x: &P::Buf,
        shape: Shape,
        t: &[f32],
        out: &mut P::Buf,
    ) -> Result<Tape<P::Buf, P::Emb>, P::Error> {
        self.check_call(p, x, shape, t, out)?;
        let mut entries = Vec::new();
        let emb = Walk { g: self, p, n: shape[0] }.run(x, shape, t, out, Some(&mut entries), None)?;
        Ok(Tape { graph: self.id, in_shape: shape, out_shape: self.output_shape(shape), emb, entries })
    }

    /// `grad_x = d(sum(out * cotangent))/dx` at the input of the taped forward pass (the time
    /// embedding carries no gradient with respect to `x`).
    ///
    /// # Errors
    /// A tape from another model, buffers smaller than the tape's shapes, the backend's failures.
    pub fn vjp<P: Primitives<L>>(
        &self,
        p: &mut P,
        tape: Tape<P::Buf, P::Emb>,
        cotangent: &P::Buf,
        grad_x: &mut P::Buf,
    ) -> Result<(), P::Error> {
        if tape.graph != self.id {
            return Err(input_err("tape", &tape.in_shape, "was made by another model".into()).into());
        }
        let (olen, ilen) = (tape.out_shape.iter().product::<usize>(), tape.in_shape.iter().product::<usize>());
        if p.len(cotangent) < olen {
            let reason = format!("the buffer holds {} floats, the model output {olen}", p.len(cotangent));
            return Err(input_err("cotangent", &tape.out_shape, reason).into());
        }
        if p.len(grad_x) < ilen {
            let reason = format!("the buffer holds {} floats, the input {ilen}", p.len(grad_x));
            return Err(input_err("gradient", &tape.in_shape, reason).into());
        }
        let g = Walk { g: self, p, n: tape.in_shape[0] }.back(tape.entries, &tape.emb, cotangent)?;
        p.copy(&g, grad_x, ilen)?;
        p.recycle(g);
        Ok(())
    }
}

impl<L: LayerSet, P: Primitives<L>> Walk<'_, '_, L, P> {
    fn release(&mut self, a: Act<P::Buf>) {
        self.release_buf(a.d);
    }

    fn release_buf(&mut self, a: Arc<P::Buf>) {
        if let Ok(b) = Arc::try_unwrap(a) {
            self.p.recycle(b);
        }
    }

    fn act(&mut self, c: usize, h: usize, w: usize) -> Result<(P::Buf, usize), P::Error> {
        let len = self.n * c * h * w;
        Ok((self.p.alloc(len)?, len))
    }

    fn run(
        mut self,
        x: &P::Buf,
        shape: Shape,
        t: &[f32],
        out: &mut P::Buf,
        mut tape: Option<&mut Vec<Entry<P::Buf>>>,
        mut trace: Option<Trace<'_, P::Buf>>,
    ) -> Result<P::Emb, P::Error> {
        let g = self.g;
        let n = shape[0];
        let emb = self.p.embed(&g.time, t)?;
        let (mut d, len) = self.act(shape[1], shape[2], shape[3])?;
        self.p.copy(x, &mut d, len)?;
        let mut h = Act { d: Arc::new(d), c: shape[1], h: shape[2], w: shape[3] };
        let emit = |name: &str, a: &Act<P::Buf>, trace: &mut Option<Trace<'_, P::Buf>>| {
            if let Some(tr) = trace.as_mut() {
                tr(name, &a.d, [n, a.c, a.h, a.w]);
            }
        };
        let mut hs = Vec::new();
        for (i, blk) in g.input_blocks.iter().enumerate() {
            for l in blk {
                h = self.layer(l, h, &emb, tape.as_deref_mut(), true)?;
            }
            emit(&format!("input_blocks.{i}"), &h, &mut trace);
            hs.push(h.clone());
        }
        for l in &g.middle {
            h = self.layer(l, h, &emb, tape.as_deref_mut(), true)?;
        }
        emit("middle_block", &h, &mut trace);
        for (j, blk) in g.output_blocks.iter().enumerate() {
            let skip = hs.pop().expect("one skip per output block");
            let cat = self.concat(&h, &skip)?;
            if let Some(tp) = tape.as_deref_mut() {
                tp.push(Entry::Cat { h: h.clone(), skip: skip.clone() });
            }
            self.release(h);
            self.release(skip);
            h = cat;
            for (k, l) in blk.iter().enumerate() {
                // The decoder ResBlock's concatenated input is not kept: the Cat entry rebuilds it.
                h = self.layer(l, h, &emb, tape.as_deref_mut(), k > 0)?;
            }
            emit(&format!("output_blocks.{j}"), &h, &mut trace);
        }
        let (mut t1, _) = self.act(h.c, h.h, h.w)?;
        self.p.norm(&g.out_norm, &h.d, n, h.h * h.w, None, true, &mut t1)?;
        self.p.conv(&g.out_conv, &t1, n, h.h, h.w, out, None, false)?;
        self.p.recycle(t1);
        if let Some(tr) = trace.as_mut() {
            tr("out", out, g.output_shape(shape));
        }
        match tape {
            Some(tp) => tp.push(Entry::Out { x: h }),
            None => self.release(h),
        }
        Ok(emb)
    }

    fn concat(&mut self, h: &Act<P::Buf>, skip: &Act<P::Buf>) -> Result<Act<P::Buf>, P::Error> {
        let (lh, ls) = (h.c * h.h * h.w, skip.c * skip.h * skip.w);
        let mut d = self.p.alloc(self.n * (lh + ls))?;
        self.p.concat(&h.d, lh, &skip.d, ls, self.n, &mut d)?;
        Ok(Act { d: Arc::new(d), c: h.c + skip.c, h: h.h, w: h.w })
    }

    fn layer(
        &mut self,
        l: &Layer<L>,
        x: Act<P::Buf>,
        emb: &P::Emb,
        tape: Option<&mut Vec<Entry<P::Buf>>>,
        keep_input: bool,
    ) -> Result<Act<P::Buf>, P::Error> {
        let n = self.n;
        let dims = (x.c, x.h, x.w);
        let (out, entry) = match l {
            Layer::Conv(c) => {
                let (oh, ow) = c.geom.out_hw(x.h, x.w);
                let (mut o, _) = self.act(c.geom.cout, oh, ow)?;
                self.p.conv(c, &x.d, n, x.h, x.w, &mut o, None, false)?;
                (Act { d: Arc::new(o), c: c.geom.cout, h: oh, w: ow }, Entry::Conv { dims })
            }
            Layer::Res(rb) => {
                let (o, h2) = self.res(rb, &x, emb)?;
                (o, Entry::Res { x: keep_input.then(|| x.d.clone()), dims, h2 })
            }
            Layer::Attn(ab) => {
                let (mut o, len) = self.act(x.c, x.h, x.w)?;
                let mut saved = self.p.alloc(3 * len)?;
                self.p.attention(ab, &x.d, n, x.h * x.w, &mut o, &mut saved)?;
                (Act { d: Arc::new(o), c: x.c, h: x.h, w: x.w }, Entry::Attn { x: x.clone(), saved })
            }
            Layer::Down(conv) => {
                let (oh, ow) = Resample::Down.out_hw(x.h, x.w);
                let (mut o, _) = self.act(x.c, oh, ow)?;
                match conv {
                    Some(c) => self.p.conv(c, &x.d, n, x.h, x.w, &mut o, None, false)?,
                    None => self.p.resample(Resample::Down, &x.d, n * x.c, x.h, x.w, &mut o)?,
                }
                (Act { d: Arc::new(o), c: x.c, h: oh, w: ow }, Entry::Down { dims })
            }
            Layer::Up(conv) => {
                let (oh, ow) = Resample::Up.out_hw(x.h, x.w);
                let (mut o, _) = self.act(x.c, oh, ow)?;
                self.p.resample(Resample::Up, &x.d, n * x.c, x.h, x.w, &mut o)?;
                if let Some(c) = conv {
                    let (mut o2, _) = self.act(c.geom.cout, oh, ow)?;
                    self.p.conv(c, &o, n, oh, ow, &mut o2, None, false)?;
                    self.p.recycle(std::mem::replace(&mut o, o2));
                }
                (Act { d: Arc::new(o), c: x.c, h: oh, w: ow }, Entry::Up { dims })
            }
        };
        match tape {
            Some(tp) => tp.push(entry),
            // The entry's own reference to the input goes first, so that the input returns to
            // the backend's pool below (a partial move would keep it alive past `release`).
            None => match entry {
                Entry::Res { h2, x: kept, .. } => {
                    drop(kept);
                    self.p.recycle(h2)
                }
                Entry::Attn { saved, x: kept } => {
                    drop(kept);
                    self.p.recycle(saved)
                }
                _ => {}
            },
        }
        self.release(x);
        Ok(out)
    }

    /// A ResBlock; returns the output and `h2` (the in-conv output, with the embedding added when
    /// there is no scale-shift), which the adjoint needs.
    #[allow(clippy::type_complexity)]
    fn res(&mut self, rb: &Res<L>, x: &Act<P::Buf>, emb: &P::Emb) -> Result<(Act<P::Buf>, P::Buf), P::Error> {
        let n = self.n;
        let (c, h, w, co) = (x.c, x.h, x.w, rb.cout);
        let (oh, ow) = rb.resample.out_hw(h, w);
        let (hw, ohw) = (h * w, oh * ow);
        let (mut h1, _) = self.act(c, h, w)?;
        self.p.norm(&rb.in_norm, &x.d, n, hw, None, true, &mut h1)?;
        let mut xr = None;
        if rb.resample != Resample::None {
            let (mut t, _) = self.act(c, oh, ow)?;
            self.p.resample(rb.resample, &h1, n * c, h, w, &mut t)?;
            self.p.recycle(std::mem::replace(&mut h1, t));
            let (mut r, _) = self.act(c, oh, ow)?;
            self.p.resample(rb.resample, &x.d, n * c, h, w, &mut r)?;
            xr = Some(r);
        }
        let (mut h2, _) = self.act(co, oh, ow)?;
        self.p.conv(&rb.in_conv, &h1, n, oh, ow, &mut h2, None, false)?;
        self.p.recycle(h1);
        let (mut h3, _) = self.act(co, oh, ow)?;
        if rb.scale_shift {
            let m = Modulation { emb, block: rb.emb };
            self.p.norm(&rb.out_norm, &h2, n, ohw, Some(m), true, &mut h3)?;
        } else {
            self.p.add_embedding(&mut h2, emb, rb.emb, n, co, ohw)?;
            self.p.norm(&rb.out_norm, &h2, n, ohw, None, true, &mut h3)?;
        }
        let (mut out, _) = self.act(co, oh, ow)?;
        let xs: &P::Buf = xr.as_ref().unwrap_or(&x.d);
        match &rb.skip {
            Some(k) => {
                self.p.conv(k, xs, n, oh, ow, &mut out, None, false)?;
                self.p.conv(&rb.out_conv, &h3, n, oh, ow, &mut out, None, true)?;
            }
            None => self.p.conv(&rb.out_conv, &h3, n, oh, ow, &mut out, Some(xs), false)?,
        }
        self.p.recycle(h3);
        if let Some(r) = xr {
            self.p.recycle(r);
        }
        Ok((Act { d: Arc::new(out), c: co, h: oh, w: ow }, h2))
    }

    fn back(mut self, mut e: Vec<Entry<P::Buf>>, emb: &P::Emb, cot: &P::Buf) -> Result<P::Buf, P::Error> {
        let g = self.g;
        let n = self.n;
        let broken = || -> P::Error { input_err("tape", &[], "does not follow this model's layers".into()).into() };
        let Some(Entry::Out { x }) = e.pop() else { return Err(broken()) };
        let (mut t, _) = self.act(x.c, x.h, x.w)?;
        self.p.conv_adjoint(&g.out_conv, cot, n, x.h, x.w, &mut t, false)?;
        let (mut gr, _) = self.act(x.c, x.h, x.w)?;
        self.p.norm_adjoint(&g.out_norm, &x.d, n, x.h * x.w, None, true, &t, &mut gr, false)?;
        self.p.recycle(t);
        self.release(x);
        let mut skip_grads: Vec<Option<(P::Buf, usize)>> = (0..g.input_blocks.len()).map(|_| None).collect();
        for (j, blk) in g.output_blocks.iter().enumerate().rev() {
            for (k, l) in blk.iter().enumerate().rev() {
                if k > 0 {
                    gr = self.layer_back(l, e.pop().ok_or_else(broken)?, gr, emb)?;
                    continue;
                }
                let (Some(Entry::Res { dims, h2, .. }), Some(Entry::Cat { h: hh, skip }), Layer::Res(rb)) =
                    (e.pop(), e.pop(), l)
                else {
                    return Err(broken());
                };
                let cat = self.concat(&hh, &skip)?;
                let gc = self.res_back(rb, &cat.d, dims, &h2, &gr, emb)?;
                self.p.recycle(h2);
                self.release(cat);
                self.p.recycle(gr);
                // Split the concatenated gradient into h's and the skip's.
                let (lh, ls) = (hh.c * hh.h * hh.w, skip.c * skip.h * skip.w);
                let mut gh = self.p.alloc(n * lh)?;
                let mut gs = self.p.alloc(n * ls)?;
                self.p.split(&gc, lh, ls, n, &mut gh, &mut gs)?;
                self.p.recycle(gc);
                skip_grads[g.input_blocks.len() - 1 - j] = Some((gs, n * ls));
                gr = gh;
                self.release(hh);
                self.release(skip);
            }
        }
        for l in g.middle.iter().rev() {
            gr = self.layer_back(l, e.pop().ok_or_else(broken)?, gr, emb)?;
        }
        for (i, blk) in g.input_blocks.iter().enumerate().rev() {
            if let Some((sg, len)) = skip_grads[i].take() {
                self.p.add(&mut gr, &sg, len)?;
                self.p.recycle(sg);
            }
            for l in blk.iter().rev() {
                gr = self.layer_back(l, e.pop().ok_or_else(broken)?, gr, emb)?;
            }
        }
        Ok(gr)
    }

    fn layer_back(&mut self, l: &Layer<L>, entry: Entry<P::Buf>, gy: P::Buf, emb: &P::Emb) -> Result<P::Buf, P::Error> {
        let n = self.n;
        let gx = match (l, entry) {
            (Layer::Conv(conv), Entry::Conv { dims: (c, h, w) }) => {
                let (mut gx, _) = self.act(c, h, w)?;
                self.p.conv_adjoint(conv, &gy, n, h, w, &mut gx, false)?;
                gx
            }
            (Layer::Res(rb), Entry::Res { x: Some(x), dims, h2 }) => {
                let gx = self.res_back(rb, &x, dims, &h2, &gy, emb)?;
                self.p.recycle(h2);
                self.release_buf(x);
                gx
            }
            (Layer::Attn(ab), Entry::Attn { x, saved }) => {
                let (mut gx, _) = self.act(x.c, x.h, x.w)?;
                self.p.attention_adjoint(ab, &x.d, &saved, n, x.h * x.w, &gy, &mut gx)?;
                self.p.recycle(saved);
                self.release(x);
                gx
            }
            (Layer::Down(conv), Entry::Down { dims: (c, h, w) }) => {
                let (mut gx, _) = self.act(c, h, w)?;
                match conv {
                    Some(k) => self.p.conv_adjoint(k, &gy, n, h, w, &mut gx, false)?,
                    None => self.p.resample_adjoint(Resample::Down, &gy, n * c, h, w, &mut gx, false)?,
                }
                gx
            }
            (Layer::Up(conv), Entry::Up { dims: (c, h, w) }) => {
                let (oh, ow) = Resample::Up.out_hw(h, w);
                let (mut gu, len) = self.act(c, oh, ow)?;
                match conv {
                    Some(k) => self.p.conv_adjoint(k, &gy, n, oh, ow, &mut gu, false)?,
                    None => self.p.copy(&gy, &mut gu, len)?,
                }
                let (mut gx, _) = self.act(c, h, w)?;
                self.p.resample_adjoint(Resample::Up, &gu, n * c, h, w, &mut gx, false)?;
                self.p.recycle(gu);
                gx
            }
            _ => return Err(input_err("tape", &[], "does not follow this model's layers".into()).into()),
        };
        self.p.recycle(gy);
        Ok(gx)
    }

    /// A ResBlock's input gradient (see [`Walk::res`]).
    fn res_back(
        &mut self,
        rb: &Res<L>,
        x: &P::Buf,
        dims: Dims,
        h2: &P::Buf,
        gy: &P::Buf,
        emb: &P::Emb,
    ) -> Result<P::Buf, P::Error> {
        let n = self.n;
        let (c, h, w) = dims;
        let co = rb.cout;
        let (oh, ow) = rb.resample.out_hw(h, w);
        let (hw, ohw) = (h * w, oh * ow);
        let (mut g3, _) = self.act(co, oh, ow)?;
        self.p.conv_adjoint(&rb.out_conv, gy, n, oh, ow, &mut g3, false)?;
        let (mut g2, _) = self.act(co, oh, ow)?;
        let m = rb.scale_shift.then_some(Modulation { emb, block: rb.emb });
        self.p.norm_adjoint(&rb.out_norm, h2, n, ohw, m, true, &g3, &mut g2, false)?;
        self.p.recycle(g3);
        let (mut g1, _) = self.act(c, oh, ow)?;
        self.p.conv_adjoint(&rb.in_conv, &g2, n, oh, ow, &mut g1, false)?;
        self.p.recycle(g2);
        if rb.resample != Resample::None {
            let (mut t, _) = self.act(c, h, w)?;
            self.p.resample_adjoint(rb.resample, &g1, n * c, h, w, &mut t, false)?;
            self.p.recycle(std::mem::replace(&mut g1, t));
        }
        let (mut gx, len) = self.act(c, h, w)?;
        self.p.norm_adjoint(&rb.in_norm, x, n, hw, None, true, &g1, &mut gx, false)?;
        self.p.recycle(g1);
        // The skip path.
        let gs_owned = match &rb.skip {
            Some(k) => {
                let (mut t, _) = self.act(c, oh, ow)?;
                self.p.conv_adjoint(k, gy, n, oh, ow, &mut t, false)?;
                Some(t)
            }
            None => None,
        };
        let gs: &P::Buf = gs_owned.as_ref().unwrap_or(gy);
        if rb.resample != Resample::None {
            self.p.resample_adjoint(rb.resample, gs, n * c, h, w, &mut gx, true)?;
        } else {
            self.p.add(&mut gx, gs, len)?;
        }
        if let Some(t) = gs_owned {
            self.p.recycle(t);
        }
        Ok(gx)
    }
}
