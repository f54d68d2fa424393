//! A packed, cache-blocked single-precision GEMM, `C = A B (+ C) (+ bias) (+ residual)`.
//!
//! - `A` (M x K) is packed into 6-row panels once ([`PackedA`]); convolution weights are packed at
//!   load time.
//! - `B` (K x N) is anything implementing [`BSource`]: a strided matrix ([`DenseB`]) or an
//!   implicit im2col view of an image (see `crate::nn::conv`), packed block by block into
//!   thread-local buffers, so no im2col matrix is ever materialised.
//! - The microkernel is chosen per call ([`Isa`]; [`crate::CpuContext`] carries the choice,
//!   [`Isa::best`] is this CPU's fastest).
//! - Parallelism is over output tiles only: every element of C is reduced over K in the same order
//!   whatever the thread count, so results are bit-identical on 1 or 64 threads.

mod kernels;

pub use kernels::{Isa, MR};

use std::cell::RefCell;
use std::sync::OnceLock;

/// Depth of a K block.
pub const KC: usize = 256;
/// Target width (columns of C) of one task's block.
const NC: usize = 512;

impl Isa {
    /// The fastest f32 kernel this CPU runs (detected once).
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| *Isa::all_available().last().expect("scalar is always available"))
    }

    /// Parses a kernel name (`scalar`, `portable`, `avx2`, `avx512`).
    pub fn parse(name: &str) -> Option<Isa> {
        [Isa::Scalar, Isa::Portable, Isa::Avx2, Isa::Avx512].into_iter().find(|i| i.name() == name)
    }
}

/// `A` packed into `MR`-row panels, each `K x MR` k-major, zero-padded past row `m`; or, for
/// the bf16 kernel, `ceil(K/2) x MR` pairs of bf16 (a row's k and k+1 in one 32-bit word).
#[derive(Clone, Debug, Default)]
pub struct PackedA {
    m: usize,
    k: usize,
    data: Vec<f32>,
    bf16: bool,
}

/// f32 to bf16 bits, rounding to nearest even (finite inputs).
#[inline(always)]
fn bf16_bits(v: f32) -> u32 {
    let b = v.to_bits();
    (b.wrapping_add(0x7FFF + ((b >> 16) & 1))) >> 16
}

/// Two bf16 in one word, `lo` first in memory.
#[inline(always)]
pub(crate) fn pair(lo: f32, hi: f32) -> f32 {
    f32::from_bits(bf16_bits(lo) | (bf16_bits(hi) << 16))
}

/// Interleaves packed f32 B panels (`kc x nr` each, `nq` of them) into bf16 k-pair panels.
fn to_pairs(src: &[f32], kc: usize, nq: usize, nr: usize, dst: &mut [f32]) {
    let kp = kc.div_ceil(2);
    for q in 0..nq {
        let (s, d) = (&src[q * kc * nr..(q + 1) * kc * nr], &mut dst[q * kp * nr..(q + 1) * kp * nr]);
        for p in 0..kp {
            let lo = &s[2 * p * nr..(2 * p + 1) * nr];
            let out = &mut d[p * nr..(p + 1) * nr];
            if 2 * p + 1 < kc {
                let hi = &s[(2 * p + 1) * nr..(2 * p + 2) * nr];
                for j in 0..nr {
                    out[j] = pair(lo[j], hi[j]);
                }
            } else {
                for j in 0..nr {
                    out[j] = pair(lo[j], 0.0);
                }
            }
        }
    }
}

impl PackedA {
    /// Packs the `m x k` matrix with element `(i, p)` at `a[i*rs + p*cs]`.
    pub fn pack(m: usize, k: usize, a: &[f32], rs: usize, cs: usize) -> Self {
        Self::pack_with(m, k, false, |i, p| a[i * rs + p * cs])
    }

    /// Packs for the bf16 kernel (rounding to nearest even).
    pub fn pack_bf16(m: usize, k: usize, a: &[f32], rs: usize, cs: usize) -> Self {
        Self::pack_with(m, k, true, |i, p| a[i * rs + p * cs])
    }

    /// Packs the `m x k` matrix whose element `(i, p)` is `at(i, p)`, in the f32 or bf16 layout;
    /// no intermediate copy of the matrix is made.
    pub fn pack_with(m: usize, k: usize, bf16: bool, at: impl Fn(usize, usize) -> f32 + Sync) -> Self {
        use rayon::prelude::*;
        let panels = m.div_ceil(MR);
        let kk = if bf16 { k.div_ceil(2) } else { k };
        let mut data = vec![0.0; panels * kk * MR];
        data.par_chunks_mut((kk * MR).max(1)).enumerate().for_each(|(p, dst)| {
            for r in 0..MR.min(m - p * MR) {
                let row = p * MR + r;
                for q in 0..kk {
                    dst[q * MR + r] = if bf16 {
                        let hi = if 2 * q + 1 < k { at(row, 2 * q + 1) } else { 0.0 };
                        pair(at(row, 2 * q), hi)
                    } else {
                        at(row, q)
                    };
                }
            }
        });
        PackedA { m, k, data, bf16 }
    }

    /// Wraps data already in the packed layout of an `m x k` matrix (see [`PackedA::pack_with`]):
    /// `MR`-row panels, each `k` (f32) or `k/2` (bf16 pairs) columns of `MR` values.
    pub(crate) fn from_packed(m: usize, k: usize, bf16: bool, data: Vec<f32>) -> Self {
        let kk = if bf16 { k.div_ceil(2) } else { k };
        assert_eq!(data.len(), m.div_ceil(MR) * kk * MR, "packed size");
        PackedA { m, k, data, bf16 }
    }

    /// Element `(i, p)` (f32 layout).
    #[inline]
    pub fn get(&self, i: usize, p: usize) -> f32 {
        debug_assert!(!self.bf16);
        self.data[(i / MR) * self.k * MR + p * MR + i % MR]
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        4 * self.data.len()
    }

    /// Whether this is the bf16 layout.
    pub fn is_bf16(&self) -> bool {
        self.bf16
    }
    /// The matrix back in row-major order (f32 layout only).
    pub fn unpack(&self) -> Vec<f32> {
        assert!(!self.bf16, "unpack of a bf16 packing");
        let mut a = vec![0.0; self.m * self.k];
        for (i, row) in a.chunks_mut(self.k.max(1)).enumerate().take(self.m) {
            let (p, r) = (i / MR, i % MR);
            for (kk, v) in row.iter_mut().enumerate() {
                *v = self.data[p * self.k * MR + kk * MR + r];
            }
        }
        a
    }
    /// Rows.
    pub fn m(&self) -> usize {
        self.m
    }
    /// Columns.
    pub fn k(&self) -> usize {
        self.k
    }
    #[inline]
    fn panel(&self, p: usize, k0: usize) -> *const f32 {
        if self.bf16 {
            let kp = self.k.div_ceil(2);
            self.data[p * kp * MR + (k0 / 2) * MR..].as_ptr()
        } else {
            self.data[p * self.k * MR + k0 * MR..].as_ptr()
        }
    }
}

/// The right-hand operand of a GEMM, packed on demand.
pub trait BSource: Sync {
    /// Rows (the reduction dimension).
    fn k(&self) -> usize;
    /// Columns.
    fn n(&self) -> usize;
    /// Packs rows `k0..k0+kc` and columns `n0..n0+nc` into `nr`-wide micro-panels: panel `q` at
    /// `out[q*kc*nr..]`, element `(kk, j)` at `kk*nr + j`; columns past `n()` are zero.
    fn pack(&self, k0: usize, kc: usize, n0: usize, nc: usize, nr: usize, out: &mut [f32]);
}

/// A strided matrix as a [`BSource`]: element `(p, j)` at `data[p*rs + j*cs]`.
pub struct DenseB<'a> {
    /// The elements.
    pub data: &'a [f32],
    /// Rows.
    pub k: usize,
    /// Columns.
    pub n: usize,
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl BSource for DenseB<'_> {
    fn k(&self) -> usize {
        self.k
    }
    fn n(&self) -> usize {
        self.n
    }
    fn pack(&self, k0: usize, kc: usize, n0: usize, nc: usize, nr: usize, out: &mut [f32]) {
        for q in 0..nc.div_ceil(nr) {
            let panel = &mut out[q * kc * nr..(q + 1) * kc * nr];
            let j0 = n0 + q * nr;
            let w = nr.min(self.n.saturating_sub(j0)).min(n0 + nc - j0);
            for kk in 0..kc {
                let row = &mut panel[kk * nr..(kk + 1) * nr];
                let base = (k0 + kk) * self.rs + j0 * self.cs;
                if self.cs == 1 {
                    row[..w].copy_from_slice(&self.data[base..base + w]);
                } else {
                    for (j, v) in row[..w].iter_mut().enumerate() {
                        *v = self.data[base + j * self.cs];
                    }
                }
                row[w..].fill(0.0);
            }
        }
    }
}

/// What is added to `A B` when a tile is finished.
#[derive(Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// Added to every element of row `i`: `bias[i]`.
    pub bias: Option<&'a [f32]>,
    /// Added elementwise; laid out like C (row stride `ldc`).
    pub residual: Option<&'a [f32]>,
    /// Keep C's previous contents and add to them.
    pub accumulate: bool,
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: tasks write disjoint tiles of C.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

thread_local! {
    static PACK_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The largest packed B (in floats) that is packed once and shared between tasks.
const SHARED_B_MAX: usize = 4 << 20;

/// `C (m x n, row stride ldc) = A B + epilogue` with kernel `isa` (which must be available).
pub fn gemm_with(isa: Isa, a: &PackedA, b: &impl BSource, c: &mut [f32], ldc: usize, epi: Epilogue<'_>) {
    gemm_run(isa, a, b, c, ldc, epi, true)
}

/// [`gemm_with`] on the calling thread only (for callers that parallelise above it).
pub fn gemm_serial(isa: Isa, a: &PackedA, b: &impl BSource, c: &mut [f32], ldc: usize, epi: Epilogue<'_>) {
    gemm_run(isa, a, b, c, ldc, epi, false)
}

fn gemm_run(isa: Isa, a: &PackedA, b: &impl BSource, c: &mut [f32], ldc: usize, epi: Epilogue<'_>, parallel: bool) {
    assert!(isa.available(), "kernel {} is not available on this CPU", isa.name());
    assert_eq!(isa.is_bf16(), a.bf16, "the packing of A does not match kernel {}", isa.name());
    let (m, k, n) = (a.m, a.k, b.n());
    assert_eq!(b.k(), k, "gemm: A is {m}x{k} but B has {} rows", b.k());
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "gemm: C too small");
    if let Some(r) = epi.residual {
        assert!(r.len() >= (m - 1) * ldc + n, "gemm: residual too small");
    }
    let cptr = SendPtr(c.as_mut_ptr());
    let n_blocks = n.div_ceil(NC);
    let panels = m.div_ceil(MR);
    let want = if parallel { 4 * rayon::current_num_threads() } else { 1 };
    let small = k * n * m < 32 * 1024 || !parallel;
    // With few column blocks the tasks must split the rows too, and would each re-pack the same
    // B panels: when the whole packed B is small, pack it once and share it.
    if !small && n_blocks < want && k * n.div_ceil(isa.nr()) * isa.nr() <= SHARED_B_MAX {
        shared_b(isa, a, b, cptr, ldc, epi, want);
        return;
    }
    // Tasks: column blocks of NC, and row chunks when there are too few column blocks to keep
    // every thread busy. The split never changes the per-element reduction order.
    let m_chunks = want.div_ceil(n_blocks).clamp(1, panels);
    let panels_per_chunk = panels.div_ceil(m_chunks);
    let tasks = n_blocks * panels.div_ceil(panels_per_chunk);
    let run = |task: usize| {
        let nb = task % n_blocks;
        let mc = task / n_blocks;
        let (p0, p1) = (mc * panels_per_chunk, ((mc + 1) * panels_per_chunk).min(panels));
        let (n0, n1) = (nb * NC, ((nb + 1) * NC).min(n));
        // SAFETY: this task owns rows p0*MR..p1*MR and columns n0..n1 of C.
        unsafe { block(isa, a, b, cptr, ldc, epi, p0, p1, n0, n1) };
    };
    if tasks == 1 || small {
        (0..tasks).for_each(run);
    } else {
        use rayon::prelude::*;
        (0..tasks).into_par_iter().for_each(run);
    }
}

thread_local! {
    static SHARED_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Packs all of B once (in parallel over K blocks), then runs row chunks over the shared panels.
fn shared_b(isa: Isa, a: &PackedA, b: &impl BSource, c: SendPtr, ldc: usize, epi: Epilogue<'_>, want: usize) {
    use rayon::prelude::*;
    let (m, k, n) = (a.m, a.k, b.n());
    let nr = isa.nr();
    let nq = n.div_ceil(nr);
    // K block kb holds rows kb*KC.. of every panel: kc x (nq*nr), panel by panel.
    let mut packed = SHARED_B.with(|s| std::mem::take(&mut *s.borrow_mut()));
    packed.resize(k * nq * nr, 0.0);
    packed.par_chunks_mut(KC * nq * nr).enumerate().for_each(|(kb, dst)| {
        let k0 = kb * KC;
        let kc = KC.min(k - k0);
        b.pack(k0, kc, 0, n, nr, &mut dst[..kc * nq * nr]);
        if isa.is_bf16() {
            let mut pairs = vec![0.0; kc.div_ceil(2) * nq * nr];
            to_pairs(&dst[..kc * nq * nr], kc, nq, nr, &mut pairs);
            dst[..pairs.len()].copy_from_slice(&pairs);
        }
    });
    let panels = m.div_ceil(MR);
    let per = panels.div_ceil(want.min(panels));
    let pk = &packed;
    (0..panels.div_ceil(per)).into_par_iter().for_each(|t| {
        let (p0, p1) = (t * per, ((t + 1) * per).min(panels));
        let mut edge = [0.0f32; MR * 64];
        let mut k0 = 0;
        while k0 < k {
            let kc = KC.min(k - k0);
            let acc = k0 > 0 || epi.accumulate;
            // A bf16 block keeps its k-pairs at the start of the block's space.
            let kk = if isa.is_bf16() { kc.div_ceil(2) } else { kc };
            for p in p0..p1 {
                let rows = MR.min(m - p * MR);
                // SAFETY: this task owns rows p0*MR..p1*MR of C.
                unsafe {
                    tile_row(
                        isa,
                        a.panel(p, k0),
                        &pk[k0 * nq * nr..],
                        kk,
                        kk * nr,
                        nq,
                        rows,
                        p * MR,
                        0,
                        n,
                        c,
                        ldc,
                        acc,
                        &mut edge,
                    )
                };
            }
            k0 += kc;
        }
        // SAFETY: as above.
        unsafe { apply_epilogue(c, ldc, epi, p0 * MR, (p1 * MR).min(m), 0, n) };
    });
    SHARED_B.with(|s| *s.borrow_mut() = packed);
}

/// One row panel of C (rows `r0..r0+rows`) against packed B panels `bp` (panel `q` at
/// `bp[q * pstride..]`, `kc` rows of it used), columns `n0..n1`.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn tile_row(
    isa: Isa,
    ap: *const f32,
    bp: &[f32],
    kc: usize,
    pstride: usize,
    nq: usize,
    rows: usize,
    r0: usize,
    n0: usize,
    n1: usize,
    c: SendPtr,
    ldc: usize,
    acc: bool,
    edge: &mut [f32; MR * 64],
) {
    let nr = isa.nr();
    for q in 0..nq {
        let j0 = n0 + q * nr;
        if j0 >= n1 {
            break;
        }
        let cols = nr.min(n1 - j0);
        let bq = bp[q * pstride..].as_ptr();
        let ct = c.0.add(r0 * ldc + j0);
        if rows == MR && cols == nr {
            isa.kernel(kc, ap, bq, ct, ldc, acc);
        } else {
            // Partial tile: run the full kernel on a scratch tile, copy the valid part.
            for r in 0..rows {
                for j in 0..cols {
                    edge[r * nr + j] = if acc { *ct.add(r * ldc + j) } else { 0.0 };
                }
            }
            isa.kernel(kc, ap, bq, edge.as_mut_ptr(), nr, true);
            for r in 0..rows {
                for j in 0..cols {
                    *ct.add(r * ldc + j) = edge[r * nr + j];
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn block(
    isa: Isa,
    a: &PackedA,
    b: &impl BSource,
    c: SendPtr,
    ldc: usize,
    epi: Epilogue<'_>,
    p0: usize,
    p1: usize,
    n0: usize,
    n1: usize,
) {
    let (m, k) = (a.m, a.k);
    let nr = isa.nr();
    let nc = n1 - n0;
    let nq = nc.div_ceil(nr);
    PACK_B.with(|buf| {
        let mut buf = buf.borrow_mut();
        let need = KC.min(k.max(1)) * nq * nr;
        if buf.len() < 2 * need {
            buf.resize(2 * need, 0.0);
        }
        let (buf, pairs) = buf.split_at_mut(need);
        let mut edge = [0.0f32; MR * 64];
        let mut k0 = 0;
        while k0 < k {
            let kc = KC.min(k - k0);
            b.pack(k0, kc, n0, nc, nr, &mut buf[..kc * nq * nr]);
            // The bf16 kernel reads k-pairs: interleave the block's rows first.
            let (panels, kk): (&[f32], usize) = if isa.is_bf16() {
                to_pairs(&buf[..kc * nq * nr], kc, nq, nr, pairs);
                (pairs, kc.div_ceil(2))
            } else {
                (buf, kc)
            };
            let acc = k0 > 0 || epi.accumulate;
            for p in p0..p1 {
                let rows = MR.min(m - p * MR);
                tile_row(
                    isa,
                    a.panel(p, k0),
                    &panels[..kk * nq * nr],
                    kk,
                    kk * nr,
                    nq,
                    rows,
                    p * MR,
                    n0,
                    n1,
                    c,
                    ldc,
                    acc,
                    &mut edge,
                );
            }
            k0 += kc;
        }
        if k == 0 && !epi.accumulate {
            for r in p0 * MR..(p1 * MR).min(m) {
                std::slice::from_raw_parts_mut(c.0.add(r * ldc + n0), nc).fill(0.0);
            }
        }
        apply_epilogue(c, ldc, epi, p0 * MR, (p1 * MR).min(m), n0, n1);
    });
}

/// `C (m x n, row stride ldc) = A B` on the calling thread, with B already in the kernel's
/// panel layout for all of K: panel `q` (`nr` columns) at `b[q * kp * nr..]`, row-major
/// `kp x nr`, where `kp` is K (f32) or `ceil(K/2)` k-pairs (bf16). Producers that can write B this
/// way (the Winograd input transform) skip the packing pass; the K blocking, and so every sum's
/// order, is that of [`gemm_serial`].
pub fn gemm_prepacked_serial(isa: Isa, a: &PackedA, b: &[f32], n: usize, c: &mut [f32], ldc: usize) {
    gemm_prepacked_rows(isa, a, 0..a.m.div_ceil(MR), b, n, c, ldc)
}

/// [`gemm_prepacked_serial`] for A's row panels `panels` only (rows `MR * panels.start..`):
/// `c` holds those rows, its row 0 being A's row `MR * panels.start`. Callers that split M
/// between workers give each its panels; every sum's order is the unsplit one's.
pub fn gemm_prepacked_rows(
    isa: Isa,
    a: &PackedA,
    panels: std::ops::Range<usize>,
    b: &[f32],
    n: usize,
    c: &mut [f32],
    ldc: usize,
) {
    assert!(isa.available(), "kernel {} is not available on this CPU", isa.name());
    assert_eq!(isa.is_bf16(), a.bf16, "the packing of A does not match kernel {}", isa.name());
    let (k, nr) = (a.k, isa.nr());
    assert!(panels.start <= panels.end && panels.end <= a.m.div_ceil(MR), "gemm: row panels out of range");
    let r0 = panels.start * MR;
    let m = (panels.end * MR).min(a.m).saturating_sub(r0);
    let kp = if a.bf16 { k.div_ceil(2) } else { k };
    let nq = n.div_ceil(nr);
    assert!(b.len() >= nq * kp * nr, "gemm: packed B too small");
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "gemm: C too small");
    let cptr = SendPtr(c.as_mut_ptr());
    let mut edge = [0.0f32; MR * 64];
    let mut k0 = 0;
    while k0 < k {
        let kc = KC.min(k - k0);
        let (off, kk) = if a.bf16 { (k0 / 2, kc.div_ceil(2)) } else { (k0, kc) };
        for p in panels.clone() {
            // SAFETY: C holds m x n at stride ldc (checked above); B's panels are in bounds.
            unsafe {
                tile_row(
                    isa,
                    a.panel(p, k0),
                    &b[off * nr..],
                    kk,
                    kp * nr,
                    nq,
                    MR.min(a.m - p * MR),
                    p * MR - r0,
                    0,
                    n,
                    cptr,
                    ldc,
                    k0 > 0,
                    &mut edge,
                )
            };
        }
        k0 += kc;
    }
    if k == 0 {
        for r in 0..m {
            c[r * ldc..r * ldc + n].fill(0.0);
        }
    }
}

unsafe fn apply_epilogue(c: SendPtr, ldc: usize, epi: Epilogue<'_>, r0: usize, r1: usize, n0: usize, n1: usize) {
    if epi.bias.is_none() && epi.residual.is_none() {
        return;
    }
    for r in r0..r1 {
        let row = std::slice::from_raw_parts_mut(c.0.add(r * ldc + n0), n1 - n0);
        if let Some(bias) = epi.bias {
            let bv = bias[r];
            row.iter_mut().for_each(|v| *v += bv);
        }
        if let Some(res) = epi.residual {
            for (v, &x) in row.iter_mut().zip(&res[r * ldc + n0..r * ldc + n1]) {
                *v += x;
            }
        }
    }
}

/// Plain `C = A B` (+ C when `accumulate`) for strided A (`m x k`) and B (`k x n`), packing A on
/// the fly; for small or one-off products (attention, tests).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    rsa: usize,
    csa: usize,
    b: &[f32],
    rsb: usize,
    csb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let pa = PackedA::pack(m, k, a, rsa, csa);
    let pb = DenseB { data: b, k, n, rs: rsb, cs: csb };
    gemm_with(isa, &pa, &pb, c, ldc, Epilogue { accumulate, ..Default::default() });
}
