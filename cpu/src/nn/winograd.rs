//! 3x3 stride-1 "same" convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray
//! 2016): each 2x2 output tile costs 16 multiply-adds per channel pair instead of 36. The 16
//! element-wise products become 16 GEMMs over tiles, `M_e = U_e V_e` with `U_e` (Cout x Cin) the
//! transformed weights and `V_e` (Cin x tiles) the transformed input, run on the packed kernels
//! (f32 or bf16), between an input and an output transform. Tiles of all images of the batch
//! are processed together in chunks, so the per-element sums do not depend on the batch.

use crate::gemm::{gemm_prepacked_serial, pair, Isa, PackedA, MR};
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

/// `G g G^T` of a 3x3 kernel (row-major `g[ky*3 + kx]`), `G = [[1,0,0],[.5,.5,.5],[.5,-.5,.5],
/// [0,0,1]]`, written out (large models transform their weights on every call).
#[inline(always)]
fn transform_kernel(g: &[f32; 9]) -> [f32; 16] {
    // G applied to a 3-vector.
    let gv = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    let cols: [[f32; 4]; 3] = std::array::from_fn(|j| gv(g[j], g[3 + j], g[6 + j]));
    let mut u = [0.0f32; 16];
    for i in 0..4 {
        let row = gv(cols[0][i], cols[1][i], cols[2][i]);
        u[i * 4..i * 4 + 4].copy_from_slice(&row);
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
    /// The transformed input, already in the GEMM's packed-B layout, per position `e`.
    v: Vec<f32>,
    /// The 16 products, `cout x tc` each.
    m: Vec<f32>,
    /// The chunk's 16 components for a channel (and its pair partner in bf16).
    comp: Vec<f32>,
    /// Transform scratch.
    g: Vec<f32>,
    /// (image, tile row) of each of the chunk's tile rows.
    rows: Vec<(usize, usize)>,
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
/// its buffers in that core's cache. The input transform writes straight into the kernel's
/// packed-B layout (bf16 k-pairs for the bf16 kernel), so the GEMMs pack nothing.
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
    let (nr, bf16) = (isa.nr(), isa.is_bf16());
    let kp = if bf16 { cin.div_ceil(2) } else { cin };
    (0..chunks).into_par_iter().for_each(|ci_chunk| {
        BUF.with(|buf| {
            let sc = &mut *buf.borrow_mut();
            let r0 = ci_chunk * rows_per_chunk;
            let nrows = rows_per_chunk.min(rows_total - r0);
            let tc = nrows * tx;
            // Per position e: nq panels of kp x nr (see gemm_prepacked_serial).
            let vsz = tc.div_ceil(nr) * kp * nr;
            sc.v.resize(16 * vsz, 0.0);
            sc.m.resize(16 * cout * tc, 0.0);
            sc.comp.resize(32 * tc, 0.0);
            sc.g.resize(32 * tc, 0.0);
            sc.rows.clear();
            sc.rows.extend((r0..r0 + nrows).map(|row| (row / ty, row % ty)));
            // Input transform, a channel (bf16: a channel pair) at a time over the whole chunk.
            for q in 0..kp {
                let c0 = if bf16 { 2 * q } else { q };
                if !bf16 && tc <= nr {
                    // One panel: the components go straight to their rows of V.
                    input_chunk(x, cin, c0, h, w, &sc.rows, &mut sc.g, &mut sc.v[q * nr..], vsz);
                    continue;
                }
                let (lo, hi) = sc.comp.split_at_mut(16 * tc);
                input_chunk(x, cin, c0, h, w, &sc.rows, &mut sc.g, lo, tc);
                if bf16 {
                    if c0 + 1 < cin {
                        input_chunk(x, cin, c0 + 1, h, w, &sc.rows, &mut sc.g, hi, tc);
                    } else {
                        hi.fill(0.0);
                    }
                }
                // Scatter into the panels: tile t is column t % nr of panel t / nr.
                for pq in 0..tc.div_ceil(nr) {
                    let (t0, len) = (pq * nr, nr.min(tc - pq * nr));
                    for e in 0..16 {
                        let at = e * vsz + pq * kp * nr + q * nr;
                        let dst = &mut sc.v[at..at + len];
                        let l = &sc.comp[e * tc + t0..e * tc + t0 + len];
                        if bf16 {
                            pair_rows(l, &sc.comp[(16 + e) * tc + t0..(16 + e) * tc + t0 + len], dst);
                        } else {
                            dst.copy_from_slice(l);
                        }
                    }
                }
            }
            // The 16 products.
            for e in 0..16 {
                let mrow = &mut sc.m[e * cout * tc..(e + 1) * cout * tc];
                gemm_prepacked_serial(isa, &wts.u[e], &sc.v[e * vsz..(e + 1) * vsz], tc, mrow, tc);
            }
            // Output transform: Y = A^T M A, plus bias and residual; this chunk's rows only.
            for co in 0..cout {
                let bv = bias.map_or(0.0, |b| b[co]);
                output_chunk(&sc.m, cout * tc, co * tc, tc, bv, &mut sc.g);
                let y = &sc.g[..4 * tc];
                for (rr, &(img, tyi)) in sc.rows.iter().enumerate() {
                    let rows = (h - 2 * tyi).min(2);
                    let base = (img * cout + co) * h * w + 2 * tyi * w;
                    // SAFETY: output rows of this chunk's tile rows are written by this worker only.
                    let orows = unsafe { std::slice::from_raw_parts_mut(optr.get().add(base), rows * w) };
                    let res = residual.map(|rs| &rs[base..base + rows * w]);
                    let part = |k: usize| &y[k * tc + rr * tx..k * tc + (rr + 1) * tx];
                    store_row(part(0), part(1), res.map(|r| &r[..w]), accumulate, &mut orows[..w]);
                    if rows == 2 {
                        store_row(part(2), part(3), res.map(|r| &r[w..]), accumulate, &mut orows[w..]);
                    }
                }
            }
        });
    });
}

multiversion! {
    /// The 16 components `(B^T d B)_e` of every tile of a chunk for input channel `ci`:
    /// `out[e*os + t]` (`os >= tc`), tile t = column j of tile row `rows[t / tx]` = (image,
    /// tile row). `g` (24 tc) is scratch.
    #[allow(clippy::too_many_arguments)]
    fn input_chunk(x: &[f32], cin: usize, ci: usize, h: usize, w: usize, rows: &[(usize, usize)], g: &mut [f32], out: &mut [f32], os: usize) {
        let (tx, hx) = (w.div_ceil(2), w / 2);
        let tc = rows.len() * tx;
        // Tile j of an input row reads (a, b, c, d) = (x[2j-1], x[2j], x[2j+1], x[2j+2]), zero
        // outside the row: with b[j] = x[2j] and c[j] = x[2j+1], a[j] = c[j-1] and d[j] = b[j+1]
        // within a tile row. g holds b and c of the tile's 4 input rows, each over the chunk.
        let (g, hb) = g[..24 * tc].split_at_mut(8 * tc);
        let (gb, gc) = g.split_at_mut(4 * tc);
        for (rr, &(img, tyi)) in rows.iter().enumerate() {
            let plane = &x[(img * cin + ci) * h * w..(img * cin + ci + 1) * h * w];
            for r in 0..4 {
                let at = r * tc + rr * tx;
                let (b, c) = (&mut gb[at..at + tx], &mut gc[at..at + tx]);
                let yy = (2 * tyi + r).wrapping_sub(1);
                if yy >= h {
                    b.fill(0.0);
                    c.fill(0.0);
                    continue;
                }
                let src = &plane[yy * w..(yy + 1) * w];
                for ((p, b), c) in src.chunks_exact(2).zip(b.iter_mut()).zip(c.iter_mut()) {
                    *b = p[0];
                    *c = p[1];
                }
                if w % 2 == 1 {
                    b[hx] = src[w - 1];
                    c[hx] = 0.0;
                }
            }
        }
        // d B per input row: (a - c, b + c, c - b, b - d), into hb[(r*4 + k)*tc + t]; the shifted
        // reads run over the whole chunk, then the first and last tile of each tile row are fixed.
        let hb = &mut hb[..16 * tc];
        for r in 0..4 {
            let at = r * tc;
            let (b, c) = (&gb[at..at + tc], &gc[at..at + tc]);
            let (h0, rest) = hb[4 * at..4 * (at + tc)].split_at_mut(tc);
            let (h1, rest) = rest.split_at_mut(tc);
            let (h2, h3) = rest.split_at_mut(tc);
            h0[0] = 0.0 - c[0];
            for t in 1..tc {
                h0[t] = c[t - 1] - c[t];
            }
            for t in 0..tc {
                h1[t] = b[t] + c[t];
                h2[t] = c[t] - b[t];
            }
            for t in 0..tc - 1 {
                h3[t] = b[t] - b[t + 1];
            }
            h3[tc - 1] = b[tc - 1];
            for rr in 1..rows.len() {
                h0[rr * tx] = 0.0 - c[rr * tx];
                h3[rr * tx - 1] = b[rr * tx - 1];
            }
        }
        // B^T over the rows, component by component: out[(4 xi + k)*os + t].
        let out = &mut out[..15 * os + tc];
        for k in 0..4 {
            let hr = |r: usize| &hb[(4 * r + k) * tc..(4 * r + k + 1) * tc];
            let (d0, d1, d2, d3) = (hr(0), hr(1), hr(2), hr(3));
            let (o0, rest) = out.split_at_mut(4 * os);
            let (o1, rest) = rest.split_at_mut(4 * os);
            let (o2, o3) = rest.split_at_mut(4 * os);
            let (o0, o1) = (&mut o0[k * os..k * os + tc], &mut o1[k * os..k * os + tc]);
            let (o2, o3) = (&mut o2[k * os..k * os + tc], &mut o3[k * os..k * os + tc]);
            for t in 0..tc {
                o0[t] = d0[t] - d2[t];
                o1[t] = d1[t] + d2[t];
                o2[t] = d2[t] - d1[t];
                o3[t] = d1[t] - d3[t];
            }
        }
    }
}

multiversion! {
    /// bf16 k-pair words of two rows: `out[j] = (lo[j], hi[j])`.
    fn pair_rows(lo: &[f32], hi: &[f32], out: &mut [f32]) {
        for ((o, &l), &h) in out.iter_mut().zip(lo).zip(hi) {
            *o = pair(l, h);
        }
    }
}

multiversion! {
    /// `A^T M A + bias` of the chunk's tiles for output channel `co`, from the 16 products
    /// `m[e*es + off..][..tc]`: `y[k*tc + t]` for k = (row 0 even, row 0 odd, row 1 even,
    /// row 1 odd) pixel of tile t. `y` also serves as scratch (12 tc).
    fn output_chunk(m: &[f32], es: usize, off: usize, tc: usize, bias: f32, y: &mut [f32]) {
        let mr = |e: usize| &m[e * es + off..e * es + off + tc];
        let (yv, sv) = y[..12 * tc].split_at_mut(4 * tc);
        // A^T over rows: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3, per column component c.
        for c in 0..4 {
            let (m0, m1, m2, m3) = (mr(c), mr(4 + c), mr(8 + c), mr(12 + c));
            let (s0, s1) = sv[2 * c * tc..2 * (c + 1) * tc].split_at_mut(tc);
            for t in 0..tc {
                s0[t] = m0[t] + m1[t] + m2[t];
                s1[t] = m1[t] - m2[t] - m3[t];
            }
        }
        // A over columns: (c0 + c1 + c2, c1 - c2 - c3) for the tile's two pixels of each row.
        for r in 0..2 {
            let sr = |c: usize| &sv[(2 * c + r) * tc..(2 * c + r + 1) * tc];
            let (c0, c1, c2, c3) = (sr(0), sr(1), sr(2), sr(3));
            let (ye, yo) = yv[2 * r * tc..2 * (r + 1) * tc].split_at_mut(tc);
            for t in 0..tc {
                ye[t] = c0[t] + c1[t] + c2[t] + bias;
                yo[t] = c1[t] - c2[t] - c3[t] + bias;
            }
        }
    }
}

multiversion! {
    /// One output row from its tiles' even and odd pixels, plus the residual and (if
    /// `accumulate`) the previous value.
    fn store_row(ye: &[f32], yo: &[f32], res: Option<&[f32]>, accumulate: bool, out: &mut [f32]) {
        let w = out.len();
        let hx = w / 2;
        match (res, accumulate) {
            (None, false) => {
                for ((o, &e), &d) in out.chunks_exact_mut(2).zip(ye).zip(yo) {
                    o[0] = e;
                    o[1] = d;
                }
            }
            (Some(rs), false) => {
                for (((o, r), &e), &d) in out.chunks_exact_mut(2).zip(rs.chunks_exact(2)).zip(ye).zip(yo) {
                    o[0] = e + r[0];
                    o[1] = d + r[1];
                }
            }
            (None, true) => {
                for ((o, &e), &d) in out.chunks_exact_mut(2).zip(ye).zip(yo) {
                    o[0] += e;
                    o[1] += d;
                }
            }
            (Some(rs), true) => {
                for (((o, r), &e), &d) in out.chunks_exact_mut(2).zip(rs.chunks_exact(2)).zip(ye).zip(yo) {
                    o[0] += e + r[0];
                    o[1] += d + r[1];
                }
            }
        }
        if w % 2 == 1 {
            let v = ye[hx] + res.map_or(0.0, |r| r[w - 1]);
            out[w - 1] = if accumulate { out[w - 1] + v } else { v };
        }
    }
}
