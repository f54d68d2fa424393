//! guided-diffusion's self-attention block: `x + proj(attention(qkv(GN(x))))`, one head's
//! `L x L` scores materialised at a time.

use super::{Conv2d, GroupNorm};
use crate::context::CpuContext;
use crate::gemm::{sgemm, Isa};
pub use diffinv_model::AttentionOrder;

/// The attention block.
#[derive(Clone, Debug)]
pub struct AttentionBlock {
    /// Channels.
    pub channels: usize,
    /// Heads.
    pub heads: usize,
    /// Channel order of `qkv`.
    pub order: AttentionOrder,
    /// The input norm.
    pub norm: GroupNorm,
    /// `qkv` (a 1x1 convolution, C -> 3C).
    pub qkv: Conv2d,
    /// `proj_out` (a 1x1 convolution, C -> C).
    pub proj: Conv2d,
}

impl AttentionBlock {
    fn d(&self) -> usize {
        self.channels / self.heads
    }

    /// Row offsets of q, k, v of head `h` inside one image's qkv.
    fn qkv_rows(&self, h: usize) -> (usize, usize, usize) {
        let d = self.d();
        match self.order {
            AttentionOrder::Legacy => (3 * d * h, 3 * d * h + d, 3 * d * h + 2 * d),
            AttentionOrder::New => (d * h, self.channels + d * h, 2 * self.channels + d * h),
        }
    }

    /// `y = x + proj(attn(qkv(GN(x))))` for `n` images of `L = hw` positions. `qkv_out` receives
    /// the qkv activations (`n x 3C x L`) that the backward pass needs; `scratch` holds
    /// `C x L + L x L` floats.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        ctx: &CpuContext,
        x: &[f32],
        n: usize,
        hw: usize,
        y: &mut [f32],
        qkv_out: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        let c = self.channels;
        let l = hw;
        // y temporarily holds GN(x).
        self.norm.forward(x, n, l, None, false, y);
        let f32_ctx = ctx.precision(super::Precision::F32);
        self.qkv.forward(&f32_ctx, y, n, 1, l, qkv_out, None, false);
        scratch.resize(c * l + l * l, 0.0);
        let (a, s) = scratch.split_at_mut(c * l);
        for i in 0..n {
            let qkv = &qkv_out[i * 3 * c * l..(i + 1) * 3 * c * l];
            for h in 0..self.heads {
                self.head_forward(ctx.isa, qkv, h, l, s, &mut a[h * self.d() * l..(h + 1) * self.d() * l]);
            }
            let (xi, yi) = (&x[i * c * l..(i + 1) * c * l], &mut y[i * c * l..(i + 1) * c * l]);
            self.proj.forward(&f32_ctx, a, 1, 1, l, yi, Some(xi), false);
        }
    }

    /// Softmax weights `w = softmax_s(q^T k / sqrt(d))` of head `h` into `s` (`L x L`).
    fn weights(&self, isa: Isa, qkv: &[f32], h: usize, l: usize, s: &mut [f32]) {
        let d = self.d();
        let (qr, kr, _) = self.qkv_rows(h);
        let (q, k) = (&qkv[qr * l..(qr + d) * l], &qkv[kr * l..(kr + d) * l]);
        sgemm(isa, l, l, d, q, 1, l, k, l, 1, s, l, false);
        softmax_rows(s, l, 1.0 / (d as f32).sqrt());
    }

    fn head_forward(&self, isa: Isa, qkv: &[f32], h: usize, l: usize, s: &mut [f32], a: &mut [f32]) {
        let d = self.d();
        self.weights(isa, qkv, h, l, s);
        let (_, _, vr) = self.qkv_rows(h);
        let v = &qkv[vr * l..(vr + d) * l];
        // a[c, t] = sum_s v[c, s] w[t, s]
        sgemm(isa, d, l, l, v, l, 1, s, 1, l, a, l, false);
    }

    /// The input gradient `gx (+)= d/dx sum(gy * y)`, given the forward's `x` and `qkv`.
    /// `scratch` holds `4 C L + 2 L^2` floats after the call.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        ctx: &CpuContext,
        x: &[f32],
        qkv: &[f32],
        n: usize,
        hw: usize,
        gy: &[f32],
        gx: &mut [f32],
        accumulate: bool,
        scratch: &mut Vec<f32>,
    ) {
        let (c, l, d, isa) = (self.channels, hw, self.d(), ctx.isa);
        let f32_ctx = ctx.precision(super::Precision::F32);
        scratch.resize(4 * c * l + 2 * l * l, 0.0);
        let (da, rest) = scratch.split_at_mut(c * l);
        let (dqkv, rest) = rest.split_at_mut(3 * c * l);
        let (w, dw) = rest.split_at_mut(l * l);
        let mut dh = vec![0.0f32; c * l];
        for i in 0..n {
            let qi = &qkv[i * 3 * c * l..(i + 1) * 3 * c * l];
            let gyi = &gy[i * c * l..(i + 1) * c * l];
            self.proj.backward_input(&f32_ctx, gyi, 1, 1, l, da, false);
            for h in 0..self.heads {
                let (qr, kr, vr) = self.qkv_rows(h);
                let dah = &da[h * d * l..(h + 1) * d * l];
                self.weights(isa, qi, h, l, w);
                let (q, k, v) = (&qi[qr * l..(qr + d) * l], &qi[kr * l..(kr + d) * l], &qi[vr * l..(vr + d) * l]);
                // dW[t, s] = sum_c da[c, t] v[c, s];  dV[c, s] = sum_t da[c, t] W[t, s]
                sgemm(isa, l, l, d, dah, 1, l, v, l, 1, dw, l, false);
                sgemm(isa, d, l, l, dah, l, 1, w, l, 1, &mut dqkv[vr * l..(vr + d) * l], l, false);
                softmax_backward_rows(w, dw, l, 1.0 / (d as f32).sqrt());
                // dw now holds dS (scaled): dQ[c, t] = sum_s k[c, s] dS[t, s]; dK[c, s] = sum_t q[c, t] dS[t, s]
                sgemm(isa, d, l, l, k, l, 1, dw, 1, l, &mut dqkv[qr * l..(qr + d) * l], l, false);
                sgemm(isa, d, l, l, q, l, 1, dw, l, 1, &mut dqkv[kr * l..(kr + d) * l], l, false);
            }
            self.qkv.backward_input(&f32_ctx, dqkv, 1, 1, l, &mut dh, false);
            let (xi, gxi) = (&x[i * c * l..(i + 1) * c * l], &mut gx[i * c * l..(i + 1) * c * l]);
            self.norm.backward(xi, 1, l, None, false, &dh, gxi, accumulate);
            for (o, &g) in gxi.iter_mut().zip(gyi) {
                *o += g;
            }
        }
    }
}

multiversion! {
    fn softmax_rows(s: &mut [f32], l: usize, scale: f32) {
        for row in s.chunks_mut(l) {
            let m = super::simd::max16(row) * scale;
            for v in row.iter_mut() {
                *v = super::simd::exp(*v * scale - m);
            }
            let inv = 1.0 / super::simd::sum16(row);
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

multiversion! {
    /// `dw <- scale * w * (dw - sum_s w dw)` per row: the softmax's adjoint, times the score scale.
    fn softmax_backward_rows(w: &[f32], dw: &mut [f32], l: usize, scale: f32) {
        for (wr, dr) in w.chunks(l).zip(dw.chunks_mut(l)) {
            let dot = super::simd::dot16(wr, dr);
            for (d, &wv) in dr.iter_mut().zip(wr) {
                *d = scale * wv * (*d - dot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_and_their_adjoint_match_f64() {
        for &l in &[1usize, 7, 37, 256] {
            let mut seed = 7u32 + l as u32;
            let mut rnd = || {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 * 8.0 - 4.0
            };
            let rows = 3;
            let x: Vec<f32> = (0..rows * l).map(|_| rnd()).collect();
            let g: Vec<f32> = (0..rows * l).map(|_| rnd()).collect();
            let scale = 0.7f32;
            let mut w = x.clone();
            softmax_rows(&mut w, l, scale);
            let mut dw = g.clone();
            softmax_backward_rows(&w, &mut dw, l, scale);
            for r in 0..rows {
                let xr = &x[r * l..(r + 1) * l];
                let m = xr.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64 * scale as f64));
                let e: Vec<f64> = xr.iter().map(|&v| (v as f64 * scale as f64 - m).exp()).collect();
                let z: f64 = e.iter().sum();
                let p: Vec<f64> = e.iter().map(|v| v / z).collect();
                let dot: f64 = p.iter().zip(&g[r * l..(r + 1) * l]).map(|(a, b)| a * *b as f64).sum();
                for j in 0..l {
                    assert!((w[r * l + j] as f64 - p[j]).abs() < 1e-6, "softmax l={l} [{r},{j}]");
                    let want = scale as f64 * p[j] * (g[r * l + j] as f64 - dot);
                    assert!((dw[r * l + j] as f64 - want).abs() < 1e-5, "adjoint l={l} [{r},{j}]");
                }
            }
        }
    }
}
