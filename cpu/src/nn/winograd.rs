//! 3x3 stride-1 "same" convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray
//! 2016): each 2x2 output tile costs 16 multiply-adds per channel pair instead of 36. The 16
//! element-wise products become 16 GEMMs over tiles, `M_e = U_e V_e` with `U_e` (Cout x Cin) the
//! transformed weights and `V_e` (Cin x tiles) the transformed input, run on the packed kernels
//! (f32 or bf16), between an input and an output transform. Tiles of all images of the batch
//! are processed together in chunks, so the per-element sums do not depend on the batch.

use crate::gemm::{gemm_serial, pair, DenseB, Epilogue, Isa, PackedA, MR};
use rayon::prelude::*;
use std::cell::RefCell;

/// Tiles per chunk: a chunk's transformed input and products stay in a core's L2.
const CHUNK: usize = 64;

/// The 16 transformed weight matrices `U_e = (G g G^T)_e`, each packed `Cout x Cin`.
#[derive(Clone, Debug)]
pub struct WinogradWeights {
    /// `U` per position `e = 4 xi + nu` of the 4x4 tile.
    pub u: Vec<PackedA>,
}

/// `G g G^T` of a 3x3 kernel: `G = [[1,0,0],[.5,.5,.5],[.5,-.5,.5],[0,0,1]]`.
fn transform_kernel(g: &[f32; 9]) -> [f32; 16] {
    let gm = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0f64]];
    let mut t = [[0.0f64; 3]; 4];
    for i in 0..4 {
        for j in 0..3 {
            t[i][j] = (0..3).map(|k| gm[i][k] * g[k * 3 + j] as f64).sum();
        }
    }
    let mut u = [0.0f32; 16];
    for i in 0..4 {
        for j in 0..4 {
            u[i * 4 + j] = (0..3).map(|k| t[i][k] * gm[j][k]).sum::<f64>() as f32;
        }
    }
    u
}

impl WinogradWeights {
    /// Transforms the OIHW 3x3 weights given by `w(co, ci, ky*3 + kx)`, writing each `U_e`
    /// straight into its packed layout: one pass over the weights, in parallel over row panels
    /// (large models transform per call, so this pass is on the hot path).
    pub fn new(cout: usize, cin: usize, bf16: bool, w: impl Fn(usize, usize, usize) -> f32 + Sync) -> Self {
        let panels = cout.div_ceil(MR);
        let kk = if bf16 { cin.div_ceil(2) } else { cin };
        let len = panels * kk * MR;
        let mut bufs: Vec<Vec<f32>> = (0..16).map(|_| vec![0.0; len]).collect();
        let ptrs: Vec<Ptr> = bufs.iter_mut().map(|b| Ptr(b.as_mut_ptr())).collect();
        let kernel = |co: usize, ci: usize| {
            let mut g = [0.0f32; 9];
            for (t, v) in g.iter_mut().enumerate() {
                *v = w(co, ci, t);
            }
            transform_kernel(&g)
        };
        (0..panels).into_par_iter().for_each(|p| {
            for r in 0..MR.min(cout - p * MR) {
                let co = p * MR + r;
                for q in 0..kk {
                    let at = p * kk * MR + q * MR + r;
                    let vals: [f32; 16] = if bf16 {
                        let lo = kernel(co, 2 * q);
                        let hi = if 2 * q + 1 < cin { kernel(co, 2 * q + 1) } else { [0.0; 16] };
                        std::array::from_fn(|e| pair(lo[e], hi[e]))
                    } else {
                        kernel(co, q)
                    };
                    for (e, v) in vals.into_iter().enumerate() {
                        // SAFETY: `at` lies in panel p, written by this worker only.
                        unsafe { *ptrs[e].get().add(at) = v };
                    }
                }
            }
        });
        let u = bufs.into_iter().map(|d| PackedA::from_packed(cout, cin, bf16, d)).collect();
        WinogradWeights { u }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.u.iter().map(PackedA::bytes).sum()
    }
}

thread_local! {
    static BUF: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// One worker's buffers.
#[derive(Default)]
struct Scratch {
    v: Vec<f32>,
    m: Vec<f32>,
    prow: Vec<f32>,
    hh: Vec<f32>,
    s: Vec<f32>,
}

#[derive(Clone, Copy)]
struct Ptr(*mut f32);
// SAFETY: chunks write disjoint output rows.
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}

impl Ptr {
    /// The pointer; a method, so closures capture the whole (Send) wrapper.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `out = conv3x3(x) + bias (+ residual) (+ out if accumulate)` for `n` images of `cin x h x w`
/// (zero padding 1, stride 1), through `wts`. Work is split into chunks of whole tile rows, each
/// transformed, multiplied (16 single-threaded GEMMs) and transformed back by one worker, with
/// its buffers in that core's cache.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3(
    isa: Isa,
    wts: &WinogradWeights,
    cin: usize,
    cout: usize,
    x: &[f32],
    n: usize,
    h: usize,
    w: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
    residual: Option<&[f32]>,
    accumulate: bool,
) {
    let (ty, tx) = (h.div_ceil(2), w.div_ceil(2));
    let rows_total = n * ty;
    let rows_per_chunk = (CHUNK / tx).clamp(1, rows_total);
    let chunks = rows_total.div_ceil(rows_per_chunk);
    let optr = Ptr(out.as_mut_ptr());
    (0..chunks).into_par_iter().for_each(|ci_chunk| {
        BUF.with(|buf| {
            let sc = &mut *buf.borrow_mut();
            let r0 = ci_chunk * rows_per_chunk;
            let nrows = rows_per_chunk.min(rows_total - r0);
            let tc = nrows * tx;
            sc.v.resize(16 * cin * tc, 0.0);
            sc.m.resize(16 * cout * tc, 0.0);
            sc.prow.resize(4 * (2 * tx + 2), 0.0);
            sc.hh.resize(16 * tx, 0.0);
            sc.s.resize(8 * tx, 0.0);
            // Input transform: V[e][ci][t] = (B^T d B)_e of tile t's 4x4 patch.
            for ci in 0..cin {
                for rr in 0..nrows {
                    let row = r0 + rr;
                    let (img, tyi) = (row / ty, row % ty);
                    let plane = &x[(img * cin + ci) * h * w..(img * cin + ci + 1) * h * w];
                    input_row(plane, h, w, tx, tyi, &mut sc.prow, &mut sc.hh);
                    for c in 0..4 {
                        let hh = &sc.hh;
                        let (d0, d1, d2, d3) = (
                            &hh[c * tx..(c + 1) * tx],
                            &hh[(4 + c) * tx..(5 + c) * tx],
                            &hh[(8 + c) * tx..(9 + c) * tx],
                            &hh[(12 + c) * tx..(13 + c) * tx],
                        );
                        let at = |e: usize| (e * cin + ci) * tc + rr * tx;
                        let v = sc.v.as_mut_ptr();
                        // SAFETY: the four destination rows are disjoint slices of v.
                        let (o0, o1, o2, o3) = unsafe {
                            (
                                std::slice::from_raw_parts_mut(v.add(at(c)), tx),
                                std::slice::from_raw_parts_mut(v.add(at(4 + c)), tx),
                                std::slice::from_raw_parts_mut(v.add(at(8 + c)), tx),
                                std::slice::from_raw_parts_mut(v.add(at(12 + c)), tx),
                            )
                        };
                        vertical(d0, d1, d2, d3, o0, o1, o2, o3);
                    }
                }
            }
            // The 16 products.
            for e in 0..16 {
                let b = DenseB { data: &sc.v[e * cin * tc..(e + 1) * cin * tc], k: cin, n: tc, rs: tc, cs: 1 };
                gemm_serial(isa, &wts.u[e], &b, &mut sc.m[e * cout * tc..(e + 1) * cout * tc], tc, Epilogue::default());
            }
            // Output transform: Y = A^T M A, plus bias and residual; this chunk's rows only.
            for co in 0..cout {
                let bv = bias.map_or(0.0, |b| b[co]);
                for rr in 0..nrows {
                    let row = r0 + rr;
                    let (img, tyi) = (row / ty, row % ty);
                    let m = &sc.m;
                    let src = |e: usize| &m[(e * cout + co) * tc + rr * tx..(e * cout + co) * tc + (rr + 1) * tx];
                    {
                        let (a, b) = sc.s.split_at_mut(4 * tx);
                        for c in 0..4 {
                            combine(
                                src(c),
                                src(4 + c),
                                src(8 + c),
                                src(12 + c),
                                &mut a[c * tx..(c + 1) * tx],
                                &mut b[c * tx..(c + 1) * tx],
                            );
                        }
                    }
                    for r in 0..2 {
                        let oy = 2 * tyi + r;
                        if oy >= h {
                            continue;
                        }
                        let base = (img * cout + co) * h * w + oy * w;
                        // SAFETY: output rows of this chunk's tile rows are written by this worker only.
                        let orow = unsafe { std::slice::from_raw_parts_mut(optr.get().add(base), w) };
                        let res = residual.map(|rs| &rs[base..base + w]);
                        output_row(&sc.s[r * 4 * tx..(r + 1) * 4 * tx], tx, w, bv, res, accumulate, orow);
                    }
                }
            }
        });
    });
}

/// The horizontal transform of the four input rows of tile row `tyi`: `hh[(r*4 + c)*tx + j]` =
/// component c of `(d B)` for row r of tile j (`prow` is scratch for the zero-padded rows).
#[inline]
fn input_row(plane: &[f32], h: usize, w: usize, tx: usize, tyi: usize, prow: &mut [f32], hh: &mut [f32]) {
    let pw = 2 * tx + 2;
    for r in 0..4 {
        let p = &mut prow[r * pw..(r + 1) * pw];
        let yy = (2 * tyi + r) as isize - 1;
        p.fill(0.0);
        if yy >= 0 && (yy as usize) < h {
            let src = &plane[yy as usize * w..(yy as usize + 1) * w];
            p[1..1 + w].copy_from_slice(src);
        }
        let (h0, rest) = hh[r * 4 * tx..(r + 1) * 4 * tx].split_at_mut(tx);
        let (h1, rest) = rest.split_at_mut(tx);
        let (h2, h3) = rest.split_at_mut(tx);
        for j in 0..tx {
            let (a, b, c, d) = (p[2 * j], p[2 * j + 1], p[2 * j + 2], p[2 * j + 3]);
            h0[j] = a - c;
            h1[j] = b + c;
            h2[j] = c - b;
            h3[j] = b - d;
        }
    }
}

/// The vertical transform `B^T (.)` of one component over a tile row (contiguous over tiles).
#[allow(clippy::too_many_arguments)]
#[inline]
fn vertical(
    d0: &[f32],
    d1: &[f32],
    d2: &[f32],
    d3: &[f32],
    o0: &mut [f32],
    o1: &mut [f32],
    o2: &mut [f32],
    o3: &mut [f32],
) {
    for j in 0..d0.len() {
        o0[j] = d0[j] - d2[j];
        o1[j] = d1[j] + d2[j];
        o2[j] = d2[j] - d1[j];
        o3[j] = d1[j] - d3[j];
    }
}

/// `A^T (.)` over rows: `s0 = m0 + m1 + m2`, `s1 = m1 - m2 - m3` (contiguous over tiles).
#[inline]
fn combine(m0: &[f32], m1: &[f32], m2: &[f32], m3: &[f32], s0: &mut [f32], s1: &mut [f32]) {
    for j in 0..m0.len() {
        s0[j] = m0[j] + m1[j] + m2[j];
        s1[j] = m1[j] - m2[j] - m3[j];
    }
}

/// `(.) A` over columns for one output row, plus bias, residual and the previous value.
#[inline]
fn output_row(s: &[f32], tx: usize, w: usize, bias: f32, res: Option<&[f32]>, accumulate: bool, out: &mut [f32]) {
    let (c0, rest) = s.split_at(tx);
    let (c1, rest) = rest.split_at(tx);
    let (c2, c3) = rest.split_at(tx);
    for j in 0..tx {
        let pair = [c0[j] + c1[j] + c2[j], c1[j] - c2[j] - c3[j]];
        for (k, &v) in pair.iter().enumerate() {
            let xx = 2 * j + k;
            if xx < w {
                let mut val = v + bias;
                if let Some(r) = res {
                    val += r[xx];
                }
                out[xx] = if accumulate { out[xx] + val } else { val };
            }
        }
    }
}
