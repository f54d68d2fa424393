//! The UNet's layers on the GPU: convolution (im2col + cuBLAS, or cuDNN), GroupNorm fused with
//! the modulation and SiLU, self-attention, and their input gradients, each built from the
//! model description's weights.

use crate::cudnn::ConvKey;
use crate::device::{Arg::*, DBuf, Gpu};
use crate::error::Result;
use diffinv_model::desc::{Desc, NormDesc};
use diffinv_model::graph::{Attn, Conv};
use diffinv_model::{AttentionOrder, ConvGeom};

/// Floats per block of the GroupNorm reductions.
const GN_CHUNK: usize = 8192;

/// A convolution with OIHW weights.
pub struct GConv {
    w: DBuf,
    b: DBuf,
    geom: ConvGeom,
}

impl GConv {
    /// Uploads a described convolution's weights.
    pub fn new(g: &Gpu, c: &Conv<Desc>) -> Result<Self> {
        Ok(GConv { w: g.upload(&c.layer.weight)?, b: g.upload(&c.layer.bias)?, geom: c.geom })
    }

    fn key(&self, g: &Gpu, n: usize, h: usize, w: usize) -> ConvKey {
        ConvKey { n, h, w, geom: self.geom, tf32: g.tf32() }
    }

    /// `out = conv(x) + bias (+ res) (+ out when accumulate)` for `n` images of `h x w`:
    /// per image, `out^T = col^T W^T` in cuBLAS's column-major terms (a 1x1 convolution reads
    /// `x` as its own column matrix).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        g: &Gpu,
        x: &DBuf,
        n: usize,
        h: usize,
        w: usize,
        out: &DBuf,
        res: Option<&DBuf>,
        accumulate: bool,
    ) -> Result<()> {
        let ConvGeom { cin, cout, k, stride, pad } = self.geom;
        let (oh, ow) = self.geom.out_hw(h, w);
        let (l, kk) = (oh * ow, cin * k * k);
        let args =
            [P(out.p()), P(self.b.p()), P(res.map_or(0, DBuf::p)), I(cout as i32), I(l as i32), I(accumulate as i32)];
        g.launch_planes("bias_init", l, cout, n, &args)?;
        if let (false, Some(d)) = (self.geom.is_pointwise(), g.dnn()) {
            let key = self.key(g, n, h, w);
            return g.timed("cudnn_forward", || d.forward(g, key, x.p(), self.w.p(), out.p(), 1.0));
        }
        let col;
        let src = if self.geom.is_pointwise() {
            x.p()
        } else {
            col = g.alloc(n * kk * l)?;
            let args = [P(x.p()), P(col.p()), I(cin as i32), I(h as i32), I(w as i32)];
            let geo = [I(k as i32), I(stride as i32), I(pad as i32), I(oh as i32), I(ow as i32)];
            g.launch_planes("im2col", l, kk, n, &[&args[..], &geo[..]].concat())?;
            col.p()
        };
        g.gemm(false, false, (l, cout, kk), (src, l, kk * l), (self.w.p(), kk, 0), 1.0, (out.p(), l, cout * l), n)
    }

    /// `gx (+)= conv^T(gy)` for inputs of `h x w`: `dcol^T = gy^T W` per image, then col2im.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_input(
        &self,
        g: &Gpu,
        gy: &DBuf,
        n: usize,
        h: usize,
        w: usize,
        gx: &DBuf,
        accumulate: bool,
    ) -> Result<()> {
        let ConvGeom { cin, cout, k, stride, pad } = self.geom;
        let (oh, ow) = self.geom.out_hw(h, w);
        let (l, kk) = (oh * ow, cin * k * k);
        let a = (gy.p(), l, cout * l);
        let b = (self.w.p(), kk, 0);
        let beta = if accumulate { 1.0 } else { 0.0 };
        if self.geom.is_pointwise() {
            return g.gemm(false, true, (l, kk, cout), a, b, beta, (gx.p(), l, kk * l), n);
        }
        if let Some(d) = g.dnn() {
            let key = self.key(g, n, h, w);
            return g.timed("cudnn_backward_data", || d.backward_data(g, key, gy.p(), self.w.p(), gx.p(), beta));
        }
        let dcol = g.alloc(n * kk * l)?;
        g.gemm(false, true, (l, kk, cout), a, b, 0.0, (dcol.p(), l, kk * l), n)?;
        let args = [P(dcol.p()), P(gx.p()), I(cin as i32), I(h as i32), I(w as i32), I(k as i32)];
        let geo = [I(stride as i32), I(pad as i32), I(oh as i32), I(ow as i32), I(accumulate as i32)];
        g.launch_planes("col2im", h * w, cin, n, &[&args[..], &geo[..]].concat())
    }
}

/// A ResBlock's `(scale, shift)` rows: a pointer into the stacked embedding projections and
/// its row stride.
#[derive(Clone, Copy)]
pub struct Mod {
    /// The device address of image 0's `(scale, shift)` row.
    pub ptr: u64,
    /// Floats between consecutive images' rows.
    pub stride: usize,
}

/// GroupNorm with affine parameters.
pub struct GNorm {
    gamma: DBuf,
    beta: DBuf,
    groups: usize,
    c: usize,
    eps: f64,
}

impl GNorm {
    /// Uploads a described norm's parameters.
    pub fn new(g: &Gpu, n: &NormDesc) -> Result<Self> {
        Ok(GNorm {
            gamma: g.upload(&n.gamma)?,
            beta: g.upload(&n.beta)?,
            groups: n.groups,
            c: n.channels(),
            eps: n.eps,
        })
    }

    /// Chunks per group of the two-stage reductions over `len` elements: (count, length).
    fn chunks(len: usize, per_chunk: usize) -> (usize, usize) {
        let cl = len.div_ceil(len.div_ceil(per_chunk).clamp(1, 256));
        (len.div_ceil(cl), cl)
    }

    /// Mean and rstd of every (image, group): partial sums over chunks, then one fixed-order sum
    /// per group (the same result whatever the launch).
    fn stats(&self, g: &Gpu, x: &DBuf, n: usize, hw: usize) -> Result<DBuf> {
        let gl = self.c / self.groups * hw;
        let (chunks, cl) = Self::chunks(gl, GN_CHUNK);
        let groups = n * self.groups;
        let part = g.alloc_f64(2 * groups * chunks)?;
        g.launch(
            "gn_partial",
            (chunks as u32, groups as u32, 1),
            256,
            &[P(x.p()), P(part.p()), L(gl as i64), L(cl as i64)],
        )?;
        let st = g.alloc(2 * groups)?;
        let args = [P(part.p()), P(st.p()), I(chunks as i32), L(gl as i64), D(self.eps), I(groups as i32)];
        g.launch("gn_finalize", (groups.div_ceil(128) as u32, 1, 1), 128, &args)?;
        Ok(st)
    }

    /// `y = act(GN(x) (1 + scale) + shift)`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(&self, g: &Gpu, x: &DBuf, n: usize, hw: usize, m: Option<Mod>, silu: bool, y: &DBuf) -> Result<()> {
        let st = self.stats(g, x, n, hw)?;
        let (mp, ms) = m.map_or((0, 0), |m| (m.ptr, m.stride));
        let args = [P(x.p()), P(y.p()), P(st.p()), P(self.gamma.p()), P(self.beta.p()), P(mp), L(ms as i64)];
        let dims = [I(self.c as i32), I(hw as i32), I(self.groups as i32), I(silu as i32)];
        g.launch_planes("gn_apply", hw, self.c, n, &[&args[..], &dims[..]].concat())
    }

    /// `gx (+)= d/dx sum(gy * forward(x))`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        g: &Gpu,
        x: &DBuf,
        n: usize,
        hw: usize,
        m: Option<Mod>,
        silu: bool,
        gy: &DBuf,
        gx: &DBuf,
        accumulate: bool,
    ) -> Result<()> {
        let st = self.stats(g, x, n, hw)?;
        let (mp, ms) = m.map_or((0, 0), |m| (m.ptr, m.stride));
        let gl = self.c / self.groups * hw;
        // Chunks of pixels, each over all the group's channels.
        let (chunks, cl) = Self::chunks(hw, GN_CHUNK.div_ceil(self.c / self.groups));
        let groups = n * self.groups;
        let part = g.alloc_f64(2 * groups * chunks)?;
        let common = [P(x.p()), P(gy.p())];
        let aff = [P(st.p()), P(self.gamma.p()), P(self.beta.p()), P(mp), L(ms as i64)];
        let dims = [I(self.c as i32), I(hw as i32), I(self.groups as i32), I(silu as i32)];
        let tail = [P(part.p()), I(cl as i32)];
        let args = [&common[..], &aff[..], &dims[..], &tail[..]].concat();
        g.launch("gn_bwd_partial", (chunks as u32, groups as u32, 1), 256, &args)?;
        let mm = g.alloc(2 * groups)?;
        let args = [P(part.p()), P(mm.p()), I(chunks as i32), L(gl as i64), I(groups as i32)];
        g.launch("gn_bwd_finalize", (groups.div_ceil(128) as u32, 1, 1), 128, &args)?;
        let head = [P(x.p()), P(gy.p()), P(gx.p())];
        let dims =
            [P(mm.p()), I(self.c as i32), I(hw as i32), I(self.groups as i32), I(silu as i32), I(accumulate as i32)];
        g.launch_planes("gn_bwd_apply", hw, self.c, n, &[&head[..], &aff[..], &dims[..]].concat())
    }
}

/// The self-attention block.
pub struct GAttn {
    c: usize,
    heads: usize,
    order: AttentionOrder,
    norm: GNorm,
    qkv: GConv,
    proj: GConv,
}

/// Pointers of one image's q, k and v of head 0, and the stride between heads.
struct Heads {
    q: u64,
    k: u64,
    v: u64,
    hs: usize,
}

impl GAttn {
    /// Uploads a described attention block's parameters.
    pub fn new(g: &Gpu, a: &Attn<Desc>) -> Result<Self> {
        Ok(GAttn {
            c: a.channels,
            heads: a.heads,
            order: a.layer.order,
            norm: GNorm::new(g, &a.layer.norm)?,
            qkv: GConv::new(g, &a.layer.qkv)?,
            proj: GConv::new(g, &a.layer.proj)?,
        })
    }

    fn d(&self) -> usize {
        self.c / self.heads
    }

    fn heads_of(&self, base: u64, l: usize) -> Heads {
        let (c, d) = (self.c, self.d());
        let f = |rows: usize| base + 4 * (rows * l) as u64;
        match self.order {
            AttentionOrder::Legacy => Heads { q: f(0), k: f(d), v: f(2 * d), hs: 3 * d * l },
            AttentionOrder::New => Heads { q: f(0), k: f(c), v: f(2 * c), hs: d * l },
        }
    }

    /// Every head's softmax weights `w[t, s] = softmax_s(q_t . k_s / sqrt(d))` into `w`
    /// (`heads x L x L`): `S_cm = K_cm Q_cm^T`, then the row softmax.
    fn weights(&self, g: &Gpu, hd: &Heads, l: usize, w: &DBuf) -> Result<()> {
        let d = self.d();
        g.gemm(false, true, (l, l, d), (hd.k, l, hd.hs), (hd.q, l, hd.hs), 0.0, (w.p(), l, l * l), self.heads)?;
        let scale = 1.0 / (d as f32).sqrt();
        g.launch("softmax_rows", ((self.heads * l) as u32, 1, 1), 256, &[P(w.p()), I(l as i32), F(scale)])
    }

    /// `y = x + proj(attn(qkv(GN(x))))`; `qkv` receives the activations the backward pass needs.
    pub fn forward(&self, g: &Gpu, x: &DBuf, n: usize, l: usize, y: &DBuf, qkv: &DBuf) -> Result<()> {
        let (c, d) = (self.c, self.d());
        self.norm.forward(g, x, n, l, None, false, y)?;
        self.qkv.forward(g, y, n, 1, l, qkv, None, false)?;
        let a = g.alloc(n * c * l)?;
        let w = g.alloc(self.heads * l * l)?;
        for i in 0..n {
            let hd = self.heads_of(qkv.at(i * 3 * c * l), l);
            self.weights(g, &hd, l, &w)?;
            // A_cm(t, c) = sum_s W[t, s] v[c, s] = (W_cm^T V_cm)(t, c)
            g.gemm(
                true,
                false,
                (l, d, l),
                (w.p(), l, l * l),
                (hd.v, l, hd.hs),
                0.0,
                (a.at(i * c * l), l, d * l),
                self.heads,
            )?;
        }
        self.proj.forward(g, &a, n, 1, l, y, Some(x), false)
    }

    /// `gx = d/dx sum(gy * forward(x))` given the forward's `x` and `qkv`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(&self, g: &Gpu, x: &DBuf, qkv: &DBuf, n: usize, l: usize, gy: &DBuf, gx: &DBuf) -> Result<()> {
        let (c, d, nh) = (self.c, self.d(), self.heads);
        let da = g.alloc(n * c * l)?;
        self.proj.backward_input(g, gy, n, 1, l, &da, false)?;
        let dqkv = g.alloc(n * 3 * c * l)?;
        let w = g.alloc(nh * l * l)?;
        let dw = g.alloc(nh * l * l)?;
        let scale = 1.0 / (d as f32).sqrt();
        for i in 0..n {
            let hd = self.heads_of(qkv.at(i * 3 * c * l), l);
            let gd = self.heads_of(dqkv.at(i * 3 * c * l), l);
            let dai = (da.at(i * c * l), l, d * l);
            let (wm, dwm) = ((w.p(), l, l * l), (dw.p(), l, l * l));
            self.weights(g, &hd, l, &w)?;
            // dW[t, s] = sum_c da[c, t] v[c, s]:  dW_cm = V_cm DA_cm^T
            g.gemm(false, true, (l, l, d), (hd.v, l, hd.hs), dai, 0.0, dwm, nh)?;
            // dV[c, s] = sum_t da[c, t] W[t, s]:  dV_cm = W_cm DA_cm
            g.gemm(false, false, (l, d, l), wm, dai, 0.0, (gd.v, l, gd.hs), nh)?;
            g.launch(
                "softmax_backward_rows",
                ((nh * l) as u32, 1, 1),
                256,
                &[P(w.p()), P(dw.p()), I(l as i32), F(scale)],
            )?;
            // dQ[c, t] = sum_s k[c, s] dS[t, s]:  dQ_cm = dS_cm^T K_cm
            g.gemm(true, false, (l, d, l), dwm, (hd.k, l, hd.hs), 0.0, (gd.q, l, gd.hs), nh)?;
            // dK[c, s] = sum_t q[c, t] dS[t, s]:  dK_cm = dS_cm Q_cm
            g.gemm(false, false, (l, d, l), dwm, (hd.q, l, hd.hs), 0.0, (gd.k, l, gd.hs), nh)?;
        }
        let dh = g.alloc(n * c * l)?;
        self.qkv.backward_input(g, &dqkv, n, 1, l, &dh, false)?;
        self.norm.backward(g, x, n, l, None, false, &dh, gx, false)?;
        add_into(g, gx, gy, n * c * l)
    }
}

/// `y += x` over `len` floats.
pub(crate) fn add_into(g: &Gpu, y: &DBuf, x: &DBuf, len: usize) -> Result<()> {
    let args =
        [P(y.p()), L(0), P(y.p()), L(0), F(1.0), P(x.p()), L(0), F(1.0), P(0), L(0), F(0.0), I(len as i32), I(0)];
    g.launch_planes("lin3", len, 1, 1, &args)
}
