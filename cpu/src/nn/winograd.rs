//! 3x3 stride-1 "same" convolutions by Winograd's minimal filtering (Lavin & Gray 2016):
//! F(2x2, 3x3), where each 2x2 output tile costs 16 multiply-adds per channel pair instead of
//! 36, and F(4x4, 3x3), 36 instead of 144 (points 0, +-1, +-2; f32 only, its transforms scale
//! values by up to 100, more than bf16's 8 bits keep). The E = 16 or 36 element-wise products
//! become E GEMMs over tiles, `M_e = U_e V_e` with `U_e` (Cout x Cin) the transformed weights and
//! `V_e` (Cin x tiles) the transformed input, run on the packed kernels (f32 or bf16), between an
//! input and an output transform. Tiles of all images of the batch are processed together in
//! chunks, so the per-element sums do not depend on the batch.

use crate::gemm::{gemm_prepacked_rows, gemm_prepacked_serial, pair, Isa, PackedA, MR};
use rayon::prelude::*;
use std::cell::RefCell;

/// Tiles per chunk: a chunk's transformed input and products stay in a core's L2.
const CHUNK: usize = 64;

/// The transformed weight matrices `U_e = (G g G^T)_e`, each packed `Cout x Cin`.
#[derive(Clone, Debug)]
pub struct WinogradWeights {
    /// `U` per position `e = a xi + nu` of the a x a input tile (a = tile + 2).
    pub u: Vec<PackedA>,
    /// Output tile side: 2 (F(2x2, 3x3)) or 4 (F(4x4, 3x3)).
    pub tile: usize,
}

/// `G g G^T` of a 3x3 kernel (row-major `g[ky*3 + kx]`) into `u[..a*a]` (row i, column k at
/// `a i + k`), written out (large models transform their weights on every call). F(2x2, 3x3):
/// `G = [[1,0,0],[.5,.5,.5],[.5,-.5,.5],[0,0,1]]`; F(4x4, 3x3): `G = [[1/4,0,0],
/// [-1/6,-1/6,-1/6],[-1/6,1/6,-1/6],[1/24,1/12,1/6],[1/24,-1/12,1/6],[0,0,1]]`.
#[inline(always)]
fn transform_kernel(tile: usize, g: &[f32; 9], u: &mut [f32; 36]) {
    // G applied to a 3-vector.
    let gv = |a: f32, b: f32, c: f32| -> [f32; 6] {
        if tile == 2 {
            [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c, 0.0, 0.0]
        } else {
            let (s, t) = ((a + b + c) / 6.0, (a - b + c) / 6.0);
            let (p, q) = (a / 24.0 + c / 6.0, b / 12.0);
            [a / 4.0, -s, -t, p + q, p - q, c]
        }
    };
    let n = tile + 2;
    let cols: [[f32; 6]; 3] = std::array::from_fn(|j| gv(g[j], g[3 + j], g[6 + j]));
    for i in 0..n {
        let row = gv(cols[0][i], cols[1][i], cols[2][i]);
        u[i * n..i * n + n].copy_from_slice(&row[..n]);
    }
}

impl WinogradWeights {
    /// Transforms the OIHW 3x3 weights given by `w(co, ci, ky*3 + kx)`, writing each `U_e`
    /// straight into its packed layout: one pass over the weights, in parallel over row panels
    /// (large models transform per call, so this pass is on the hot path).
    pub fn new(cout: usize, cin: usize, bf16: bool, w: impl Fn(usize, usize, usize) -> f32 + Sync) -> Self {
        Self::with_tile(2, cout, cin, bf16, w)
    }

    /// [`WinogradWeights::new`] for output tiles of `tile` = 2 or 4 pixels (4: f32 only).
    pub fn with_tile(
        tile: usize,
        cout: usize,
        cin: usize,
        bf16: bool,
        w: impl Fn(usize, usize, usize) -> f32 + Sync,
    ) -> Self {
        assert!(tile == 2 || (tile == 4 && !bf16), "Winograd tiles are 2 (f32, bf16) or 4 (f32)");
        let ne = (tile + 2) * (tile + 2);
        let panels = cout.div_ceil(MR);
        let kk = if bf16 { cin.div_ceil(2) } else { cin };
        let len = panels * kk * MR;
        let mut bufs: Vec<Vec<f32>> = (0..ne).map(|_| vec![0.0; len]).collect();
        let ptrs: Vec<Ptr> = bufs.iter_mut().map(|b| Ptr(b.as_mut_ptr())).collect();
        let kernel = |co: usize, ci: usize| {
            let mut g = [0.0f32; 9];
            for (t, v) in g.iter_mut().enumerate() {
                *v = w(co, ci, t);
            }
            let mut u = [0.0f32; 36];
            transform_kernel(tile, &g, &mut u);
            u
        };
        (0..panels).into_par_iter().for_each(|p| {
            for r in 0..MR.min(cout - p * MR) {
                let co = p * MR + r;
                for q in 0..kk {
                    let at = p * kk * MR + q * MR + r;
                    let vals: [f32; 36] = if bf16 {
                        let lo = kernel(co, 2 * q);
                        let hi = if 2 * q + 1 < cin { kernel(co, 2 * q + 1) } else { [0.0; 36] };
                        std::array::from_fn(|e| pair(lo[e], hi[e]))
                    } else {
                        kernel(co, q)
                    };
                    for (e, v) in vals.into_iter().take(ne).enumerate() {
                        // SAFETY: `at` lies in panel p, written by this worker only.
                        unsafe { *ptrs[e].get().add(at) = v };
                    }
                }
            }
        });
        let u = bufs.into_iter().map(|d| PackedA::from_packed(cout, cin, bf16, d)).collect();
        WinogradWeights { u, tile }
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
    /// The E products, `cout x tc` each (in a one-chunk map, a worker's output rows only).
    m: Vec<f32>,
    /// The chunk's E components for a channel (and its pair partner in bf16).
    comp: Vec<f32>,
    /// The output transform's scratch.
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
/// (zero padding 1, stride 1), through `wts` (whose tile, 2 or 4, sets the transforms). Work is
/// split into chunks of whole tile rows, each transformed, multiplied (E single-threaded GEMMs)
/// and transformed back by one worker, with its buffers in that core's cache. A map that is a
/// single chunk (up to 64 tiles, e.g. 16 px with 2x2 tiles or 32 px with 4x4 at batch 1) is split
/// between the workers in two stages instead: input channels, then groups of output channels
/// (their products and output transform). The input transform writes straight into the kernel's
/// packed-B layout (bf16 k-pairs for the bf16 kernel), so the GEMMs pack nothing. Neither split
/// changes any sum's order.
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
    let tile = wts.tile;
    let (ty, tx) = (h.div_ceil(tile), w.div_ceil(tile));
    let kp = if isa.is_bf16() { cin.div_ceil(2) } else { cin };
    assert!(x.len() >= n * cin * h * w && out.len() >= n * cout * h * w, "winograd: buffer sizes");
    assert_eq!(wts.u.len(), (tile + 2) * (tile + 2), "winograd: weights of another tile");
    let out = Ptr(out.as_mut_ptr());
    let call = Call { isa, wts, cin, cout, x, h, w, tx, kp, bias, residual, accumulate, out };
    let rows_total = n * ty;
    let rows_per_chunk = (CHUNK / tx).clamp(1, rows_total);
    let chunks = rows_total.div_ceil(rows_per_chunk);
    let tile_rows = |r0: usize, nrows: usize| (r0..r0 + nrows).map(move |row| (row / ty, row % ty));
    if chunks == 1 && rayon::current_num_threads() > 1 {
        let mut sh = WHOLE.with(|s| std::mem::take(&mut *s.borrow_mut()));
        sh.rows.clear();
        sh.rows.extend(tile_rows(0, rows_total));
        call.whole(&mut sh);
        WHOLE.with(|s| *s.borrow_mut() = sh);
        return;
    }
    (0..chunks).into_par_iter().for_each(|c| {
        BUF.with(|buf| {
            let sc = &mut *buf.borrow_mut();
            let r0 = c * rows_per_chunk;
            sc.rows.clear();
            sc.rows.extend(tile_rows(r0, rows_per_chunk.min(rows_total - r0)));
            call.chunk(sc);
        })
    });
}

thread_local! {
    /// The F(4x4, 3x3) input transform's rows.
    static INPUT4: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The buffers of a map run as one chunk by all workers (held by the calling thread).
    static WHOLE: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// One call's arguments, shared by its chunks.
struct Call<'a> {
    isa: Isa,
    wts: &'a WinogradWeights,
    cin: usize,
    cout: usize,
    x: &'a [f32],
    h: usize,
    w: usize,
    tx: usize,
    /// K of the products: channels (f32) or channel pairs (bf16).
    kp: usize,
    bias: Option<&'a [f32]>,
    residual: Option<&'a [f32]>,
    accumulate: bool,
    out: Ptr,
}

impl Call<'_> {
    /// Output tile side: 2 or 4.
    fn tile(&self) -> usize {
        self.wts.tile
    }

    /// The number of products, `(tile + 2)^2`.
    fn ne(&self) -> usize {
        self.wts.u.len()
    }

    /// Floats of V per position e for `tc` tiles: nq panels of kp x nr (see
    /// gemm_prepacked_serial).
    fn vsz(&self, tc: usize) -> usize {
        let nr = self.isa.nr();
        tc.div_ceil(nr) * self.kp * nr
    }

    /// One chunk (`sc.rows`) on this worker: transform, multiply, transform back.
    fn chunk(&self, sc: &mut Scratch) {
        let (nr, tc) = (self.isa.nr(), sc.rows.len() * self.tx);
        let (vsz, ne) = (self.vsz(tc), self.ne());
        sc.v.resize(ne * vsz, 0.0);
        sc.m.resize(ne * self.cout * tc, 0.0);
        sc.comp.resize(2 * ne * tc, 0.0);
        sc.g.resize(40 * tc, 0.0);
        let vptr = Ptr(sc.v.as_mut_ptr());
        for q in 0..self.kp {
            if !self.isa.is_bf16() && tc <= nr {
                // One panel: the components go straight to their rows of V.
                self.input(q, &sc.rows, &mut sc.v[q * nr..], vsz);
            } else {
                // SAFETY: V holds ne vsz floats; this worker owns all of it.
                unsafe { self.transform_channel(q, &sc.rows, &mut sc.comp, vptr, vsz) };
            }
        }
        for e in 0..ne {
            let mrow = &mut sc.m[e * self.cout * tc..(e + 1) * self.cout * tc];
            gemm_prepacked_serial(self.isa, &self.wts.u[e], &sc.v[e * vsz..(e + 1) * vsz], tc, mrow, tc);
        }
        for co in 0..self.cout {
            self.store_channel(co, &sc.m, self.cout * tc, co * tc, &sc.rows, &mut sc.g);
        }
    }

    /// All tile rows (`sh.rows`) as one chunk, split over the workers in two stages: input
    /// channels, then groups of output channels (their products and output transform).
    fn whole(&self, sh: &mut Scratch) {
        let tc = sh.rows.len() * self.tx;
        let (vsz, ne) = (self.vsz(tc), self.ne());
        sh.v.resize(ne * vsz, 0.0);
        let (vptr, rows) = (Ptr(sh.v.as_mut_ptr()), &sh.rows);
        (0..self.kp).into_par_iter().for_each(|q| {
            BUF.with(|buf| {
                let sc = &mut *buf.borrow_mut();
                sc.comp.resize(2 * ne * tc, 0.0);
                // SAFETY: V holds ne vsz floats; channel q's rows are written by this task only.
                unsafe { self.transform_channel(q, rows, &mut sc.comp, vptr, vsz) };
            })
        });
        let v = &sh.v;
        // One group of whole row panels per worker: each reads all of V once.
        let panels = self.cout.div_ceil(MR);
        let per = panels.div_ceil(rayon::current_num_threads().clamp(1, panels));
        (0..panels.div_ceil(per)).into_par_iter().for_each(|gi| {
            BUF.with(|buf| {
                let sc = &mut *buf.borrow_mut();
                let (p0, p1) = (gi * per, ((gi + 1) * per).min(panels));
                let (c0, c1) = (p0 * MR, (p1 * MR).min(self.cout));
                let es = (c1 - c0) * tc;
                sc.m.resize(ne * es, 0.0);
                sc.g.resize(40 * tc, 0.0);
                for e in 0..ne {
                    let (ve, me) = (&v[e * vsz..(e + 1) * vsz], &mut sc.m[e * es..(e + 1) * es]);
                    gemm_prepacked_rows(self.isa, &self.wts.u[e], p0..p1, ve, tc, me, tc);
                }
                for co in c0..c1 {
                    self.store_channel(co, &sc.m, es, (co - c0) * tc, rows, &mut sc.g);
                }
            })
        });
    }

    /// Transforms channel q (bf16: channel pair q) of the tile rows into `comp` and scatters it
    /// into V's panels: tile t is column t % nr of panel t / nr.
    ///
    /// # Safety
    /// `v` points at ne vsz floats whose channel-q rows no other thread touches meanwhile.
    unsafe fn transform_channel(&self, q: usize, rows: &[(usize, usize)], comp: &mut [f32], v: Ptr, vsz: usize) {
        let (nr, bf16, tc, ne) = (self.isa.nr(), self.isa.is_bf16(), rows.len() * self.tx, self.ne());
        let c0 = if bf16 { 2 * q } else { q };
        let (lo, hi) = comp[..2 * ne * tc].split_at_mut(ne * tc);
        self.input(c0, rows, lo, tc);
        if bf16 {
            if c0 + 1 < self.cin {
                self.input(c0 + 1, rows, hi, tc);
            } else {
                hi.fill(0.0);
            }
        }
        for pq in 0..tc.div_ceil(nr) {
            let (t0, len) = (pq * nr, nr.min(tc - pq * nr));
            for e in 0..ne {
                let at = e * vsz + pq * self.kp * nr + q * nr;
                // SAFETY: at + len <= ne vsz, and row q is this caller's (the contract).
                let dst = unsafe { std::slice::from_raw_parts_mut(v.get().add(at), len) };
                let l = &comp[e * tc + t0..e * tc + t0 + len];
                if bf16 {
                    pair_rows(l, &comp[(ne + e) * tc + t0..(ne + e) * tc + t0 + len], dst);
                } else {
                    dst.copy_from_slice(l);
                }
            }
        }
    }

    /// The components of input channel `ci` over the tile rows: `out[e*os + t]`.
    fn input(&self, ci: usize, rows: &[(usize, usize)], out: &mut [f32], os: usize) {
        if self.tile() == 2 {
            input_chunk(self.x, self.cin, ci, self.h, self.w, rows, out, os);
        } else {
            INPUT4.with(|g| {
                let g = &mut *g.borrow_mut();
                g.resize(6 * (self.w + 8) + self.w, 0.0);
                input_chunk4(self.x, self.cin, ci, self.h, self.w, rows, g, out, os)
            });
        }
    }

    /// Output channel co of the tile rows: `Y = A^T M A` from the products `m[e*es + off..]
    /// [..tc]`, plus bias and residual (or the previous output); `g` (40 tc) is scratch.
    #[allow(clippy::too_many_arguments)]
    fn store_channel(&self, co: usize, m: &[f32], es: usize, off: usize, rows: &[(usize, usize)], g: &mut [f32]) {
        let (h, w, tx, cout) = (self.h, self.w, self.tx, self.cout);
        let tc = rows.len() * tx;
        let bias = self.bias.map_or(0.0, |b| b[co]);
        let t = self.tile();
        if t == 4 {
            output_chunk4(m, es, off, tc, bias, g);
        } else {
            output_chunk(m, es, off, tc, bias, g);
        }
        // Pixel (r, c) of every tile at y[(t r + c)*tc..].
        let y = &g[..t * t * tc];
        for (rr, &(img, tyi)) in rows.iter().enumerate() {
            let nrows = (h - t * tyi).min(t);
            let base = (img * cout + co) * h * w + t * tyi * w;
            // SAFETY: these output rows (channel co of this tile row) are written by this call only.
            let orows = unsafe { std::slice::from_raw_parts_mut(self.out.get().add(base), nrows * w) };
            let res = self.residual.map(|rs| &rs[base..base + nrows * w]);
            let part = |k: usize| &y[k * tc + rr * tx..k * tc + (rr + 1) * tx];
            for (r, orow) in orows.chunks_exact_mut(w).enumerate() {
                let res_r = res.map(|x| &x[r * w..(r + 1) * w]);
                if t == 4 {
                    let parts = [part(4 * r), part(4 * r + 1), part(4 * r + 2), part(4 * r + 3)];
                    store_row4(parts, res_r, self.accumulate, orow);
                } else {
                    store_row(part(2 * r), part(2 * r + 1), res_r, self.accumulate, orow);
                }
            }
        }
    }
}

multiversion! {
    /// The 16 components `(B^T d B)_e` of every tile of a chunk for input channel `ci`:
    /// `out[e*os + t]` (`os >= tc`), tile t = column j of tile row `rows[t / tx]` = (image,
    /// tile row). Blocks of [`LANES`] tiles are read straight from the input rows (no scratch
    /// written and read back), so this compiles to vector loads, shuffles and adds.
    #[allow(clippy::too_many_arguments)]
    fn input_chunk(x: &[f32], cin: usize, ci: usize, h: usize, w: usize, rows: &[(usize, usize)], out: &mut [f32], os: usize) {
        let tx = w.div_ceil(2);
        assert!(out.len() >= 15 * os + rows.len() * tx && os >= rows.len() * tx);
        let optr = out.as_mut_ptr();
        for (rr, &(img, tyi)) in rows.iter().enumerate() {
            let plane = &x[(img * cin + ci) * h * w..(img * cin + ci + 1) * h * w];
            // The tile row's four input rows, None outside the image (zero padding).
            let mut src: [Option<&[f32]>; 4] = [None; 4];
            for (r, s) in src.iter_mut().enumerate() {
                let yy = (2 * tyi + r).wrapping_sub(1);
                if yy < h {
                    *s = Some(&plane[yy * w..(yy + 1) * w]);
                }
            }
            let o = rr * tx;
            for j in (0..tx).step_by(LANES) {
                let v = tile_block(&src, j);
                let len = LANES.min(tx - j);
                for (e, ve) in v.iter().enumerate() {
                    // SAFETY: e*os + o + j + len <= 15*os + tc <= out.len(), asserted above.
                    unsafe {
                        let dst = optr.add(e * os + o + j);
                        if len == LANES {
                            std::ptr::write_unaligned(dst as *mut [f32; LANES], *ve);
                        } else {
                            for (l, &x) in ve[..len].iter().enumerate() {
                                *dst.add(l) = x;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Tiles per block of the input transform (compiled to one vector per ISA).
const LANES: usize = 8;

/// `row[2j - 1 ..][..2 LANES + 2]`, zero outside the row (and for a padding row, `None`).
#[inline(always)]
fn window(row: Option<&[f32]>, j: usize) -> [f32; 2 * LANES + 2] {
    let mut win = [0.0f32; 2 * LANES + 2];
    let Some(row) = row else { return win };
    let start = 2 * j;
    if start >= 1 && start + 2 * LANES < row.len() {
        let part = &row[start - 1..start + 2 * LANES + 1];
        // SAFETY: `part` holds exactly 2 LANES + 2 floats (a fixed-size read, not a memcpy call).
        return unsafe { std::ptr::read_unaligned(part.as_ptr() as *const [f32; 2 * LANES + 2]) };
    }
    for (i, v) in win.iter_mut().enumerate() {
        if start + i >= 1 && start + i - 1 < row.len() {
            *v = row[start + i - 1];
        }
    }
    win
}

/// The horizontal step of one input row over a block: tile l reads `(a, b, c, d) = win[2l..]`
/// and gives `(a - c, b + c, c - b, b - d)`.
#[inline(always)]
fn horizontal(win: &[f32; 2 * LANES + 2]) -> [[f32; LANES]; 4] {
    let mut o = [[0.0f32; LANES]; 4];
    for l in 0..LANES {
        let (a, b, c, d) = (win[2 * l], win[2 * l + 1], win[2 * l + 2], win[2 * l + 3]);
        o[0][l] = a - c;
        o[1][l] = b + c;
        o[2][l] = c - b;
        o[3][l] = b - d;
    }
    o
}

/// `B^T d B` of tiles `j..j + LANES` of a tile row: tile j reads `(x[2j-1], x[2j], x[2j+1],
/// x[2j+2])` of each of its four input rows; [`horizontal`] per row, then the same combination
/// down the rows. Component `4 xi + k` (vertical xi, horizontal k), lane by lane so that it
/// compiles to vector arithmetic (plain loops only: closures would not inherit the caller's ISA).
#[inline(always)]
fn tile_block(src: &[Option<&[f32]>; 4], j: usize) -> [[f32; LANES]; 16] {
    let h0 = horizontal(&window(src[0], j));
    let h1 = horizontal(&window(src[1], j));
    let h2 = horizontal(&window(src[2], j));
    let h3 = horizontal(&window(src[3], j));
    let mut o = [[0.0f32; LANES]; 16];
    for k in 0..4 {
        for l in 0..LANES {
            o[k][l] = h0[k][l] - h2[k][l];
            o[4 + k][l] = h1[k][l] + h2[k][l];
            o[8 + k][l] = h2[k][l] - h1[k][l];
            o[12 + k][l] = h1[k][l] - h3[k][l];
        }
    }
    o
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

multiversion! {
    /// F(4x4, 3x3)'s 36 components `(B^T d B)_e` of every tile of a chunk for input channel
    /// `ci`: `out[e*os + t]` (`os >= tc`), tile t = column j of tile row `rows[t / tx]`, with 6x6
    /// input tiles at a stride of 4. Down the six input rows first ([`bt6`] on whole rows,
    /// contiguous), then along each result, whose stride-4 groups compile to vector shuffles.
    /// `g` (at least 6 (w + 8) + w) is scratch.
    #[allow(clippy::too_many_arguments)]
    fn input_chunk4(x: &[f32], cin: usize, ci: usize, h: usize, w: usize, rows: &[(usize, usize)], g: &mut [f32], out: &mut [f32], os: usize) {
        let tx = w.div_ceil(4);
        // A vertical row: [0, v[0..w], 0...], 4 tx + 4 long.
        let vl = 4 * tx + 4;
        assert!(out.len() >= 35 * os + rows.len() * tx && os >= rows.len() * tx && g.len() >= 6 * vl + w);
        // A zero row stands for the padding rows above and below the image.
        let (g, zero) = g.split_at_mut(6 * vl);
        let zero = &mut zero[..w];
        zero.fill(0.0);
        let zero = &*zero;
        for (rr, &(img, tyi)) in rows.iter().enumerate() {
            let plane = &x[(img * cin + ci) * h * w..(img * cin + ci + 1) * h * w];
            let mut src: [&[f32]; 6] = [zero; 6];
            for (r, s) in src.iter_mut().enumerate() {
                let yy = (4 * tyi + r).wrapping_sub(1);
                if yy < h {
                    *s = &plane[yy * w..(yy + 1) * w];
                }
            }
            vertical6(&src, rows6(g, vl, vl));
            for (xi, p) in g.chunks_exact(vl).enumerate() {
                horizontal6(p, rows6(&mut out[6 * xi * os + rr * tx..], os, tx));
            }
        }
    }
}

/// Six rows of `len` floats at a stride of `stride` in `buf`, as separate slices.
#[inline(always)]
fn rows6(buf: &mut [f32], stride: usize, len: usize) -> [&mut [f32]; 6] {
    let mut it = buf.chunks_mut(stride);
    std::array::from_fn(|_| &mut it.next().expect("six rows")[..len])
}

/// `B^T` down six input rows of w floats into the vertical rows `g`, each `[0, v[0..w], 0, ...]`
/// (the left zero is the tiles' padding column).
#[inline(always)]
fn vertical6(src: &[&[f32]; 6], g: [&mut [f32]; 6]) {
    let w = src[0].len();
    let [g0, g1, g2, g3, g4, g5] = g;
    for gr in [&mut *g0, &mut *g1, &mut *g2, &mut *g3, &mut *g4, &mut *g5] {
        gr[0] = 0.0;
        gr[w + 1..].fill(0.0);
    }
    let [s0, s1, s2, s3, s4, s5] = *src;
    let (s1, s2, s3, s4, s5) = (&s1[..w], &s2[..w], &s3[..w], &s4[..w], &s5[..w]);
    let (g0, g1, g2, g3, g4, g5) =
        (&mut g0[1..=w], &mut g1[1..=w], &mut g2[1..=w], &mut g3[1..=w], &mut g4[1..=w], &mut g5[1..=w]);
    for i in 0..w {
        let v = bt6([s0[i], s1[i], s2[i], s3[i], s4[i], s5[i]]);
        g0[i] = v[0];
        g1[i] = v[1];
        g2[i] = v[2];
        g3[i] = v[3];
        g4[i] = v[4];
        g5[i] = v[5];
    }
}

/// `B^T` along a vertical row `p` (`[0, v..., 0...]`) for each tile j, reading `p[4j..4j+6]`,
/// into the six components `outs[k][j]`.
#[inline(always)]
fn horizontal6(p: &[f32], outs: [&mut [f32]; 6]) {
    let [o0, o1, o2, o3, o4, o5] = outs;
    let tx = o0.len();
    let (a, b) = (&p[..4 * tx], &p[4..4 * tx + 4]);
    let it = a.chunks_exact(4).zip(b.chunks_exact(4));
    for (((((((c, n), y0), y1), y2), y3), y4), y5) in
        it.zip(o0.iter_mut()).zip(o1.iter_mut()).zip(o2.iter_mut()).zip(o3.iter_mut()).zip(o4.iter_mut()).zip(o5)
    {
        let v = bt6([c[0], c[1], c[2], c[3], n[0], n[1]]);
        *y0 = v[0];
        *y1 = v[1];
        *y2 = v[2];
        *y3 = v[3];
        *y4 = v[4];
        *y5 = v[5];
    }
}

/// `B^T d` of a 6-vector for F(4x4, 3x3): the rows of `B^T = [[4,0,-5,0,1,0], [0,-4,-4,1,1,0],
/// [0,4,-4,-1,1,0], [0,-2,-1,2,1,0], [0,2,-1,-2,1,0], [0,4,0,-5,0,1]]`, with shared terms.
#[inline(always)]
fn bt6(d: [f32; 6]) -> [f32; 6] {
    let (p, q) = (d[4] - 4.0 * d[2], d[3] - 4.0 * d[1]);
    let (r, s) = (d[4] - d[2], 2.0 * (d[3] - d[1]));
    [4.0 * d[0] - 5.0 * d[2] + d[4], p + q, p - q, r + s, r - s, 4.0 * d[1] - 5.0 * d[3] + d[5]]
}

/// `A^T m` of a 6-vector for F(4x4, 3x3): `A^T = [[1,1,1,1,1,0], [0,1,-1,2,-2,0],
/// [0,1,1,4,4,0], [0,1,-1,8,-8,1]]`, with shared terms.
#[inline(always)]
fn at6(m: [f32; 6]) -> [f32; 4] {
    let (a, b, c, d) = (m[1] + m[2], m[1] - m[2], m[3] + m[4], m[3] - m[4]);
    [m[0] + a + c, b + 2.0 * d, a + 4.0 * c, b + 8.0 * d + m[5]]
}

multiversion! {
    /// F(4x4, 3x3)'s `A^T M A + bias` of the chunk's tiles for output channel `co`, from the 36
    /// products `m[e*es + off..][..tc]`: `y[(4 r + c)*tc + t]` for pixel (r, c) of tile t. `y`
    /// also serves as scratch (40 tc).
    fn output_chunk4(m: &[f32], es: usize, off: usize, tc: usize, bias: f32, y: &mut [f32]) {
        let (yv, sv) = y[..40 * tc].split_at_mut(16 * tc);
        // Down the rows: s[(4 c + r)*tc + t] for input-tile column c, output row r.
        for c in 0..6 {
            let col: [&[f32]; 6] = std::array::from_fn(|xi| &m[(6 * xi + c) * es + off..(6 * xi + c) * es + off + tc]);
            let (s0, rest) = sv[4 * c * tc..(4 * c + 4) * tc].split_at_mut(tc);
            let (s1, rest) = rest.split_at_mut(tc);
            let (s2, s3) = rest.split_at_mut(tc);
            for t in 0..tc {
                let v = at6([col[0][t], col[1][t], col[2][t], col[3][t], col[4][t], col[5][t]]);
                s0[t] = v[0];
                s1[t] = v[1];
                s2[t] = v[2];
                s3[t] = v[3];
            }
        }
        // Along each output row.
        for r in 0..4 {
            let row: [&[f32]; 6] = std::array::from_fn(|c| &sv[(4 * c + r) * tc..(4 * c + r + 1) * tc]);
            let (y0, rest) = yv[4 * r * tc..(4 * r + 4) * tc].split_at_mut(tc);
            let (y1, rest) = rest.split_at_mut(tc);
            let (y2, y3) = rest.split_at_mut(tc);
            for t in 0..tc {
                let v = at6([row[0][t], row[1][t], row[2][t], row[3][t], row[4][t], row[5][t]]);
                y0[t] = v[0] + bias;
                y1[t] = v[1] + bias;
                y2[t] = v[2] + bias;
                y3[t] = v[3] + bias;
            }
        }
    }
}

multiversion! {
    /// One output row from its tiles' four pixel columns (`out[4j + c] = parts[c][j]`), plus
    /// the residual and (if `accumulate`) the previous value.
    fn store_row4(parts: [&[f32]; 4], res: Option<&[f32]>, accumulate: bool, out: &mut [f32]) {
        let w = out.len();
        let full = w / 4;
        let [p0, p1, p2, p3] = parts;
        let (p0, p1, p2, p3) = (&p0[..full], &p1[..full], &p2[..full], &p3[..full]);
        let zeros = [0.0f32; 4];
        let body = &mut out[..4 * full];
        match res {
            Some(r) => {
                for (j, (o, rv)) in body.chunks_exact_mut(4).zip(r.chunks_exact(4)).enumerate() {
                    store4(o, [p0[j], p1[j], p2[j], p3[j]], rv, accumulate);
                }
            }
            None => {
                for (j, o) in body.chunks_exact_mut(4).enumerate() {
                    store4(o, [p0[j], p1[j], p2[j], p3[j]], &zeros, accumulate);
                }
            }
        }
        for x in 4 * full..w {
            let v = parts[x % 4][full] + res.map_or(0.0, |r| r[x]);
            out[x] = if accumulate { out[x] + v } else { v };
        }
    }
}

/// `o = v + r` (or `o += v + r`) for four pixels.
#[inline(always)]
fn store4(o: &mut [f32], v: [f32; 4], r: &[f32], accumulate: bool) {
    for c in 0..4 {
        let y = v[c] + r[c];
        o[c] = if accumulate { o[c] + y } else { y };
    }
}
