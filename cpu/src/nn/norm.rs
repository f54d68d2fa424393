//! GroupNorm fused with the ResBlock's time modulation and SiLU:
//! `y = act(GN(x) * (1 + scale) + shift)`, computed as one per-channel affine `a_c x + b_c`
//! followed by the activation, with the group statistics accumulated in f64.

use rayon::prelude::*;

/// The per-image modulation `(1 + scale, shift)` of a scale-shift ResBlock, each `[n, c]`.
#[derive(Clone, Copy)]
pub struct NormMod<'a> {
    /// `scale` of each image and channel (the layer multiplies by `1 + scale`).
    pub scale: &'a [f32],
    /// `shift` of each image and channel.
    pub shift: &'a [f32],
}

/// `GroupNorm(groups, C)` with affine weight and bias.
#[derive(Clone, Debug)]
pub struct GroupNorm {
    /// Groups.
    pub groups: usize,
    /// Channels.
    pub channels: usize,
    /// The variance epsilon.
    pub eps: f64,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// Mean and `1/sqrt(var + eps)` of every (image, group), `[n * groups]`.
#[derive(Clone, Debug, Default)]
pub struct GroupStats {
    /// Means.
    pub mean: Vec<f64>,
    /// Reciprocal standard deviations.
    pub rstd: Vec<f64>,
}

impl GroupNorm {
    /// A group norm with the given affine parameters.
    pub fn new(groups: usize, gamma: Vec<f32>, beta: Vec<f32>) -> Self {
        Self::with_eps(groups, 1e-5, gamma, beta)
    }

    /// A group norm with the given epsilon and affine parameters.
    pub fn with_eps(groups: usize, eps: f64, gamma: Vec<f32>, beta: Vec<f32>) -> Self {
        let channels = gamma.len();
        assert!(channels.is_multiple_of(groups) && beta.len() == channels, "group norm parameters");
        GroupNorm { groups, channels, eps, gamma, beta }
    }

    /// The affine weight.
    pub fn gamma(&self) -> &[f32] {
        &self.gamma
    }

    /// The affine bias.
    pub fn beta(&self) -> &[f32] {
        &self.beta
    }

    /// Statistics of `x` (`n` images of `channels x hw`).
    pub fn stats(&self, x: &[f32], n: usize, hw: usize) -> GroupStats {
        let gl = self.channels / self.groups * hw;
        let (mean, rstd): (Vec<f64>, Vec<f64>) = (0..n * self.groups)
            .into_par_iter()
            .map(|g| {
                let (m, var) = mean_var(&x[g * gl..(g + 1) * gl]);
                (m, 1.0 / (var + self.eps).sqrt())
            })
            .unzip();
        GroupStats { mean, rstd }
    }

    /// Per-(image, channel) affine `(a, b)` so that the modulated norm is `a x + b`.
    fn affine(&self, st: &GroupStats, n: usize, m: Option<NormMod<'_>>) -> Vec<(f32, f32)> {
        let c = self.channels;
        let cpg = c / self.groups;
        (0..n * c)
            .map(|ic| {
                let (i, ch) = (ic / c, ic % c);
                let g = i * self.groups + ch / cpg;
                let (mu, r) = (st.mean[g], st.rstd[g]);
                let (gm, bt) = (self.gamma[ch] as f64, self.beta[ch] as f64);
                let (s, sh) = m.map_or((1.0, 0.0), |m| (1.0 + m.scale[ic] as f64, m.shift[ic] as f64));
                ((gm * r * s) as f32, ((bt - mu * r * gm) * s + sh) as f32)
            })
            .collect()
    }

    /// `y = act(GN(x) (1 + scale) + shift)` for `n` images of `channels x hw`; returns the stats.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        n: usize,
        hw: usize,
        m: Option<NormMod<'_>>,
        silu: bool,
        y: &mut [f32],
    ) -> GroupStats {
        let st = self.stats(x, n, hw);
        let ab = self.affine(&st, n, m);
        y[..n * self.channels * hw]
            .par_chunks_mut(hw)
            .zip(x.par_chunks(hw))
            .zip(ab.par_iter())
            .for_each(|((yc, xc), &(a, b))| affine_act(xc, a, b, silu, yc));
        st
    }

    /// The input gradient of [`GroupNorm::forward`] (given the same `x`, modulation and `act`):
    /// `gx (+)= d/dx sum(gy * y)`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        x: &[f32],
        n: usize,
        hw: usize,
        m: Option<NormMod<'_>>,
        silu: bool,
        gy: &[f32],
        gx: &mut [f32],
        accumulate: bool,
    ) {
        let st = self.stats(x, n, hw);
        let ab = self.affine(&st, n, m);
        let c = self.channels;
        let cpg = c / self.groups;
        let gl = cpg * hw;
        gx[..n * c * hw].par_chunks_mut(gl).enumerate().for_each(|(g, gxg)| {
            DU.with(|du| {
                let du = &mut *du.borrow_mut();
                du.resize(if silu { gl } else { 0 }, 0.0);
                let (i, grp) = (g / self.groups, g % self.groups);
                let xs = &x[g * gl..(g + 1) * gl];
                let gys = &gy[g * gl..(g + 1) * gl];
                let (mu, r) = (st.mean[g], st.rstd[g]);
                // dxhat = du * gamma (1 + scale); reductions of dxhat and dxhat * xhat over the
                // group. du (gy through SiLU) is kept for the second pass.
                let (mut s1, mut s2) = (0.0f64, 0.0f64);
                for cc in 0..cpg {
                    let ic = i * c + grp * cpg + cc;
                    let (a, b) = ab[ic];
                    let k = a as f64 / r; // gamma (1 + scale)
                    let ch = cc * hw..(cc + 1) * hw;
                    let mut out = (0.0, 0.0);
                    let d = if silu { &mut du[ch.clone()] } else { &mut [][..] };
                    grad_sums(&xs[ch.clone()], &gys[ch], a, b, silu, mu as f32, r as f32, d, &mut out);
                    s1 += k * out.0;
                    s2 += k * out.1;
                }
                let (m1, m2) = (s1 / gl as f64, s2 / gl as f64);
                let dus: &[f32] = if silu { du } else { gys };
                for cc in 0..cpg {
                    let ic = i * c + grp * cpg + cc;
                    let k = (ab[ic].0 as f64 / r) as f32;
                    let ch = cc * hw..(cc + 1) * hw;
                    grad_apply(
                        &xs[ch.clone()],
                        &dus[ch.clone()],
                        [mu as f32, r as f32, k, m1 as f32, m2 as f32],
                        &mut gxg[ch],
                        accumulate,
                    );
                }
            });
        });
    }
}

thread_local! {
    /// A group's `du` between the two passes of the backward.
    static DU: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

multiversion! {
    fn sum_impl(x: &[f32], shift: f32, square: bool, out: &mut f64) {
        // f32 partial sums over short runs, f64 across runs.
        let mut s = 0.0f64;
        for ch in x.chunks(256) {
            let mut a = [0.0f32; 16];
            let mut it = ch.chunks_exact(16);
            for v in &mut it {
                for j in 0..16 {
                    let d = v[j] - shift;
                    a[j] += if square { d * d } else { d };
                }
            }
            for (j, &v) in it.remainder().iter().enumerate() {
                let d = v - shift;
                a[j] += if square { d * d } else { d };
            }
            s += a.iter().map(|&v| v as f64).sum::<f64>();
        }
        *out = s;
    }
}

/// Mean and variance in two passes, so that a large mean does not cancel the variance.
fn mean_var(x: &[f32]) -> (f64, f64) {
    let (mut s, mut s2) = (0.0, 0.0);
    let n = x.len().max(1) as f64;
    sum_impl(x, 0.0, false, &mut s);
    let m = s / n;
    let shift = m as f32;
    sum_impl(x, shift, true, &mut s2);
    // s2 is centred on the rounded mean: E[(x - shift)^2] = var + (m - shift)^2.
    let d = m - shift as f64;
    (m, (s2 / n - d * d).max(0.0))
}

multiversion! {
    fn affine_act(x: &[f32], a: f32, b: f32, silu: bool, y: &mut [f32]) {
        if silu {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = super::simd::silu(a * x + b);
            }
        } else {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = a * x + b;
            }
        }
    }
}

multiversion! {
    /// Sums over a channel of `du` and `du * xhat`, `du` = gy through the activation (stored in
    /// `du_out` when `silu`).
    #[allow(clippy::too_many_arguments)]
    fn grad_sums(x: &[f32], gy: &[f32], a: f32, b: f32, silu: bool, mu: f32, r: f32, du_out: &mut [f32], out: &mut (f64, f64)) {
        // 16 f32 lanes per run of 256 (vectorisable), f64 across runs.
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for (run, (xc, gc)) in x.chunks(256).zip(gy.chunks(256)).enumerate() {
            let (mut p1, mut p2) = ([0.0f32; 16], [0.0f32; 16]);
            let mut sums = |j: usize, du: f32, x: f32| {
                p1[j] += du;
                p2[j] += du * (x - mu) * r;
            };
            if silu {
                let dc = &mut du_out[run * 256..run * 256 + xc.len()];
                let (mut xs, mut gs, mut ds) = (xc.chunks_exact(16), gc.chunks_exact(16), dc.chunks_exact_mut(16));
                for ((xv, gv), dv) in (&mut xs).zip(&mut gs).zip(&mut ds) {
                    for j in 0..16 {
                        dv[j] = gv[j] * super::simd::silu_grad(a * xv[j] + b);
                        sums(j, dv[j], xv[j]);
                    }
                }
                let rest = xs.remainder().iter().zip(gs.remainder()).zip(ds.into_remainder());
                for (j, ((&x, &g), d)) in rest.enumerate() {
                    *d = g * super::simd::silu_grad(a * x + b);
                    sums(j, *d, x);
                }
            } else {
                let (mut xs, mut gs) = (xc.chunks_exact(16), gc.chunks_exact(16));
                for (xv, gv) in (&mut xs).zip(&mut gs) {
                    for j in 0..16 {
                        sums(j, gv[j], xv[j]);
                    }
                }
                for (j, (&x, &g)) in xs.remainder().iter().zip(gs.remainder()).enumerate() {
                    sums(j, g, x);
                }
            }
            s1 += p1.iter().map(|&v| v as f64).sum::<f64>();
            s2 += p2.iter().map(|&v| v as f64).sum::<f64>();
        }
        *out = (s1, s2);
    }
}

multiversion! {
    /// `gx (+)= r (k du - m1 - xhat m2)`.
    fn grad_apply(x: &[f32], du: &[f32], p: [f32; 5], gx: &mut [f32], accumulate: bool) {
        let [mu, r, k, m1, m2] = p;
        for ((o, &x), &du) in gx.iter_mut().zip(x).zip(du) {
            let xhat = (x - mu) * r;
            let v = r * (k * du - m1 - xhat * m2);
            *o = if accumulate { *o + v } else { v };
        }
    }
}
