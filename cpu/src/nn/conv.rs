//! 2-D convolution as a GEMM over an implicit im2col view: `out[co, p] = W[co, (ci,ky,kx)] *
//! col[(ci,ky,kx), p] + bias[co]`, with the weights packed once at load time.

use super::winograd::{self, WinogradWeights};
use crate::context::CpuContext;
use crate::gemm::{gemm_with, BSource, DenseB, Epilogue, Isa, PackedA};
use diffinv_model::desc::Desc;
use diffinv_model::ConvGeom;

/// Feature maps at least this wide run 3x3 stride-1 convolutions by Winograd F(2x2, 3x3).
pub const WINOGRAD_MIN: usize = 16;

/// f32 maps at least this wide and high use F(4x4, 3x3) instead: 2.25x fewer products than
/// F(2x2, 3x3), and enough 4x4 tiles to fill the GEMM kernel's panels.
pub const WINOGRAD4_MIN: usize = 32;

/// The arithmetic of the convolutions' GEMMs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 throughout.
    #[default]
    F32,
    /// bf16 operands with f32 sums (AVX512-BF16); falls back to f32 on CPUs without it.
    Bf16,
}

/// The A matrix and kernel for a context: the bf16 packing is made on first use.
fn pick<'a>(ctx: &CpuContext, f32_pack: &'a PackedA, bf16: &'a std::sync::OnceLock<PackedA>) -> (Isa, &'a PackedA) {
    if ctx.uses_bf16() {
        let p = bf16.get_or_init(|| PackedA::pack_with(f32_pack.m(), f32_pack.k(), true, |i, q| f32_pack.get(i, q)));
        (Isa::Avx512Bf16, p)
    } else {
        (ctx.isa, f32_pack)
    }
}

fn gemm(isa_a: (Isa, &PackedA), b: &impl BSource, c: &mut [f32], ldc: usize, epi: Epilogue<'_>) {
    gemm_with(isa_a.0, isa_a.1, b, c, ldc, epi)
}

/// The implicit im2col matrix of `n` CHW images side by side: row `(ci, ky, kx)`, column
/// `img * oh*ow + oy*ow + ox`.
pub struct Im2col<'a> {
    x: &'a [f32],
    n: usize,
    img_len: usize,
    h: usize,
    w: usize,
    ksize: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
    rows: usize,
}

impl<'a> Im2col<'a> {
    /// The view of image `x` (c x h x w) for a `k x k` kernel.
    #[allow(clippy::too_many_arguments)]
    pub fn new(x: &'a [f32], c: usize, h: usize, w: usize, k: usize, stride: usize, pad: usize) -> Self {
        Self::batch(x, 1, c, h, w, k, stride, pad)
    }

    /// The view of `n` images (each c x h x w, contiguous) side by side.
    #[allow(clippy::too_many_arguments)]
    pub fn batch(x: &'a [f32], n: usize, c: usize, h: usize, w: usize, k: usize, stride: usize, pad: usize) -> Self {
        let oh = (h + 2 * pad - k) / stride + 1;
        let ow = (w + 2 * pad - k) / stride + 1;
        Im2col { x, n, img_len: c * h * w, h, w, ksize: k, stride, pad, oh, ow, rows: c * k * k }
    }
}

impl BSource for Im2col<'_> {
    fn k(&self) -> usize {
        self.rows
    }
    fn n(&self) -> usize {
        self.n * self.oh * self.ow
    }
    fn pack(&self, k0: usize, kc: usize, n0: usize, nc: usize, nr: usize, out: &mut [f32]) {
        let kk2 = self.ksize * self.ksize;
        let n = self.n();
        for q in 0..nc.div_ceil(nr) {
            let panel = &mut out[q * kc * nr..(q + 1) * kc * nr];
            let j0 = n0 + q * nr;
            let cols = nr.min(n.saturating_sub(j0)).min(n0 + nc - j0);
            for kk in 0..kc {
                let r = k0 + kk;
                let (ci, ky, kx) = (r / kk2, (r % kk2) / self.ksize, r % self.ksize);
                let row = &mut panel[kk * nr..(kk + 1) * nr];
                self.fill_row(ci, ky, kx, j0, &mut row[..cols]);
                row[cols..].fill(0.0);
            }
        }
    }
}

impl Im2col<'_> {
    /// Writes im2col row `(ci, ky, kx)` for columns `j0..j0 + row.len()`.
    #[inline]
    fn fill_row(&self, ci: usize, ky: usize, kx: usize, j0: usize, row: &mut [f32]) {
        let ohw = self.oh * self.ow;
        let (mut img, p0) = (j0 / ohw, j0 % ohw);
        let plane_of = |img: usize| {
            &self.x[img * self.img_len + ci * self.h * self.w..img * self.img_len + (ci + 1) * self.h * self.w]
        };
        let mut plane = plane_of(img);
        let (mut oy, mut ox) = (p0 / self.ow, p0 % self.ow);
        let mut j = 0;
        while j < row.len() {
            if oy == self.oh {
                img += 1;
                plane = plane_of(img);
                oy = 0;
            }
            let run = (self.ow - ox).min(row.len() - j);
            let seg = &mut row[j..j + run];
            let iy = (oy * self.stride + ky) as isize - self.pad as isize;
            if iy < 0 || iy >= self.h as isize {
                seg.fill(0.0);
            } else {
                let src = &plane[iy as usize * self.w..(iy as usize + 1) * self.w];
                let off = kx as isize - self.pad as isize;
                if self.stride == 1 {
                    // Valid output columns t: 0 <= ox + t + off < w.
                    let lo = (-(ox as isize) - off).clamp(0, run as isize) as usize;
                    let hi = (self.w as isize - ox as isize - off).clamp(lo as isize, run as isize) as usize;
                    seg[..lo].fill(0.0);
                    if hi > lo {
                        let s0 = (ox as isize + lo as isize + off) as usize;
                        copy_short(&mut seg[lo..hi], &src[s0..s0 + hi - lo]);
                    }
                    seg[hi..].fill(0.0);
                } else {
                    for (t, v) in seg.iter_mut().enumerate() {
                        let ix = ((ox + t) * self.stride) as isize + off;
                        *v = if ix >= 0 && ix < self.w as isize { src[ix as usize] } else { 0.0 };
                    }
                }
            }
            j += run;
            ox = 0;
            oy += 1;
        }
    }
}

/// `dst = src` for the short runs of im2col rows: fixed 16-float chunks compile to vector moves,
/// where `copy_from_slice` would call memmove for every run.
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(16);
    let mut s = src.chunks_exact(16);
    for (a, b) in (&mut d).zip(&mut s) {
        let b: &[f32; 16] = b.try_into().expect("16");
        a.copy_from_slice(b);
    }
    for (a, b) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *a = *b;
    }
}

/// Feature maps up to this many pixels fold the batch into one GEMM.
const FOLD_MAX: usize = 1024;

thread_local! {
    static FOLD: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One GEMM over all `n` images (columns image-major), then a scatter into NCHW that adds the
/// residual and the previous output; the per-element sums are those of the per-image GEMMs.
#[allow(clippy::too_many_arguments)]
fn folded(
    a: (Isa, &PackedA),
    b: &Im2col<'_>,
    bias: Option<&[f32]>,
    n: usize,
    cout: usize,
    ohw: usize,
    out: &mut [f32],
    residual: Option<&[f32]>,
    accumulate: bool,
) {
    use rayon::prelude::*;
    let cols = n * ohw;
    let mut tmp = FOLD.with(|f| std::mem::take(&mut *f.borrow_mut()));
    tmp.resize(cout * cols, 0.0);
    // Accumulating: gather the previous output first, so the sums associate as in the
    // per-image GEMMs ((prev + sum) + bias + residual) and the results are bit-identical.
    if accumulate {
        for i in 0..n {
            for co in 0..cout {
                tmp[co * cols + i * ohw..co * cols + (i + 1) * ohw]
                    .copy_from_slice(&out[(i * cout + co) * ohw..(i * cout + co + 1) * ohw]);
            }
        }
    }
    gemm(a, b, &mut tmp, cols, Epilogue { bias, residual: None, accumulate });
    out[..n * cout * ohw].par_chunks_mut(ohw).enumerate().for_each(|(ic, o)| {
        let (i, co) = (ic / cout, ic % cout);
        let src = &tmp[co * cols + i * ohw..co * cols + (i + 1) * ohw];
        match residual {
            Some(r) => o.iter_mut().zip(src).zip(&r[ic * ohw..(ic + 1) * ohw]).for_each(|((o, s), r)| *o = s + r),
            None => o.copy_from_slice(src),
        }
    });
    FOLD.with(|f| *f.borrow_mut() = tmp);
}

/// A convolution layer (square kernel, symmetric zero padding).
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
    bias: Vec<f32>,
    packed: PackedA,
    /// The adjoint's weights (stride 1): the flipped, transposed kernel, packed on first use.
    packed_t: std::sync::OnceLock<PackedA>,
    /// bf16 packings of the weights and of the adjoint's, made on first use.
    packed_bf16: std::sync::OnceLock<PackedA>,
    packed_t_bf16: std::sync::OnceLock<PackedA>,
    cache_transposed: bool,
    /// Keep the bf16 weights made by a bf16 call even when `cache_transposed` is off (the
    /// default: a model run in bf16 pays their memory rather than a transform per call).
    cache_bf16: bool,
    /// Winograd-transformed weights, made on first use: F(2x2, 3x3) (forward, adjoint) x
    /// (f32, bf16), then F(4x4, 3x3) f32 forward and adjoint.
    wino: [std::sync::OnceLock<WinogradWeights>; 6],
}

impl Conv2d {
    /// A convolution from OIHW weights and a bias (`None` = zero).
    pub fn new(
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Self {
        assert_eq!(weight.len(), cout * cin * k * k, "conv weight size");
        let kk = cin * k * k;
        let packed = PackedA::pack(cout, kk, &weight, kk, 1);
        Conv2d {
            cin,
            cout,
            k,
            stride,
            pad,
            bias: bias.unwrap_or_else(|| vec![0.0; cout]),
            packed,
            packed_t: std::sync::OnceLock::new(),
            packed_bf16: std::sync::OnceLock::new(),
            packed_t_bf16: std::sync::OnceLock::new(),
            cache_transposed: true,
            cache_bf16: true,
            wino: Default::default(),
        }
    }

    /// A convolution from a model description's layer.
    pub fn from_desc(c: &diffinv_model::Conv<Desc>) -> Self {
        let g = c.geom;
        Conv2d::new(c.layer.weight.clone(), Some(c.layer.bias.clone()), g.cin, g.cout, g.k, g.stride, g.pad)
    }

    /// The geometry.
    pub fn geom(&self) -> ConvGeom {
        ConvGeom { cin: self.cin, cout: self.cout, k: self.k, stride: self.stride, pad: self.pad }
    }

    /// Output height and width for an `h x w` input.
    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        self.geom().out_hw(h, w)
    }

    /// Multiply-adds per output pixel times 2: the layer's FLOPs per pixel.
    pub fn flops_per_pixel(&self) -> f64 {
        self.geom().flops_per_pixel()
    }

    /// The OIHW weights (unpacked copy).
    pub fn weight(&self) -> Vec<f32> {
        self.packed.unpack()
    }

    /// The bias.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// `out = conv(x) + bias (+ residual) (+ out if accumulate)` for a batch of `n` images,
    /// computed as `ctx` says. Maps up to 32x32 pixels fold the batch into one GEMM.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        ctx: &CpuContext,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        out: &mut [f32],
        residual: Option<&[f32]>,
        accumulate: bool,
    ) {
        let (oh, ow) = self.out_hw(h, w);
        let (il, ol) = (self.cin * h * w, self.cout * oh * ow);
        assert!(x.len() >= n * il && out.len() >= n * ol, "conv: buffer sizes");
        if self.winograd_fits(ctx, h, w) {
            self.with_winograd(ctx, false, h, w, |isa, wts| {
                winograd::conv3x3(
                    isa,
                    wts,
                    self.cin,
                    self.cout,
                    x,
                    n,
                    h,
                    w,
                    Some(&self.bias),
                    out,
                    residual,
                    accumulate,
                )
            });
            return;
        }
        let a = pick(ctx, &self.packed, &self.packed_bf16);
        if n > 1 && oh * ow <= FOLD_MAX {
            let b = Im2col::batch(x, n, self.cin, h, w, self.k, self.stride, self.pad);
            folded(a, &b, Some(&self.bias), n, self.cout, oh * ow, out, residual, accumulate);
            return;
        }
        for i in 0..n {
            let xi = &x[i * il..(i + 1) * il];
            let oi = &mut out[i * ol..(i + 1) * ol];
            let epi =
                Epilogue { bias: Some(&self.bias), residual: residual.map(|r| &r[i * ol..(i + 1) * ol]), accumulate };
            if self.k == 1 && self.stride == 1 && self.pad == 0 {
                let b = DenseB { data: xi, k: self.cin, n: h * w, rs: h * w, cs: 1 };
                gemm(a, &b, oi, oh * ow, epi);
            } else {
                let b = Im2col::new(xi, self.cin, h, w, self.k, self.stride, self.pad);
                gemm(a, &b, oi, oh * ow, epi);
            }
        }
    }

    /// The adjoint's weights `W'[ci, co, ky, kx] = W[co, ci, k-1-ky, k-1-kx]`, packed straight
    /// from the forward packing.
    fn pack_transposed(&self, bf16: bool) -> PackedA {
        let kk = self.k * self.k;
        let p = &self.packed;
        PackedA::pack_with(self.cin, self.cout * kk, bf16, |ci, q| {
            let (co, t) = (q / kk, kk - 1 - q % kk);
            p.get(co, ci * kk + t)
        })
    }

    /// Runs `f` with the adjoint's kernel and weights at precision `prec`: cached, or (for large
    /// models, see [`Conv2d::set_cache_transposed`]) packed for this call only.
    fn with_transposed<R>(&self, ctx: &CpuContext, f: impl FnOnce((Isa, &PackedA)) -> R) -> R {
        let (bf16, isa) = (ctx.uses_bf16(), ctx.conv_isa());
        if self.cache_transposed || (bf16 && self.cache_bf16) {
            let cell = if bf16 { &self.packed_t_bf16 } else { &self.packed_t };
            f((isa, cell.get_or_init(|| self.pack_transposed(bf16))))
        } else {
            let p = self.pack_transposed(bf16);
            f((isa, &p))
        }
    }

    fn winograd_fits(&self, ctx: &CpuContext, h: usize, w: usize) -> bool {
        ctx.winograd && self.k == 3 && self.stride == 1 && self.pad == 1 && h >= WINOGRAD_MIN && w >= WINOGRAD_MIN
    }

    /// Runs `f` with the Winograd weights of the forward (`adjoint = false`) or adjoint
    /// convolution in `ctx`'s precision, with the tile an `h x w` map takes (4x4 for f32 maps of
    /// at least [`WINOGRAD4_MIN`], else 2x2): cached, or transformed for this call only when the
    /// weights are not cached (large models, see [`Conv2d::set_cache_transposed`]).
    #[allow(clippy::too_many_arguments)]
    fn with_winograd<R>(
        &self,
        ctx: &CpuContext,
        adjoint: bool,
        h: usize,
        w: usize,
        f: impl FnOnce(Isa, &WinogradWeights) -> R,
    ) -> R {
        let (bf16, isa) = (ctx.uses_bf16(), ctx.conv_isa());
        let tile = if !bf16 && h >= WINOGRAD4_MIN && w >= WINOGRAD4_MIN { 4 } else { 2 };
        let p = &self.packed;
        let make = || {
            if adjoint {
                // W'[ci, co, t] = W[co, ci, 8 - t]
                WinogradWeights::with_tile(tile, self.cin, self.cout, bf16, |ci, co, t| p.get(co, ci * 9 + 8 - t))
            } else {
                WinogradWeights::with_tile(tile, self.cout, self.cin, bf16, |co, ci, t| p.get(co, ci * 9 + t))
            }
        };
        let slot = if tile == 4 { 4 + usize::from(adjoint) } else { 2 * usize::from(adjoint) + usize::from(bf16) };
        if self.cache_transposed || (bf16 && self.cache_bf16) {
            f(isa, self.wino[slot].get_or_init(make))
        } else {
            f(isa, &make())
        }
    }

    /// Keeps the bf16 Winograd and transposed weights between calls even where the f32 ones are
    /// made per call (a model running in bf16 pays their memory rather than a transform per
    /// call); turned off there, the kept bf16 weights are dropped.
    pub fn set_cache_bf16(&mut self, keep: bool) {
        self.cache_bf16 = keep;
        if !keep && !self.cache_transposed {
            self.packed_t_bf16 = std::sync::OnceLock::new();
            self.wino[1] = std::sync::OnceLock::new();
            self.wino[3] = std::sync::OnceLock::new();
        }
    }

    /// Whether the adjoint's packed weights are kept between calls (default) or packed per call,
    /// which saves a second copy of the weights at a few percent of backward time.
    pub fn set_cache_transposed(&mut self, keep: bool) {
        self.cache_transposed = keep;
        if !keep {
            self.packed_t = std::sync::OnceLock::new();
            self.packed_t_bf16 = std::sync::OnceLock::new();
            self.wino = Default::default();
        }
    }

    /// Bytes of packed weights held.
    pub fn weight_bytes(&self) -> usize {
        self.packed.bytes()
            + [&self.packed_t, &self.packed_bf16, &self.packed_t_bf16]
                .iter()
                .map(|c| c.get().map_or(0, PackedA::bytes))
                .sum::<usize>()
            + self.wino.iter().map(|c| c.get().map_or(0, WinogradWeights::bytes)).sum::<usize>()
    }

    /// The input gradient: `gx (+)= conv^T(gy)` for a batch of `n` images of input size `h x w`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_input(
        &self,
        ctx: &CpuContext,
        gy: &[f32],
        n: usize,
        h: usize,
        w: usize,
        gx: &mut [f32],
        accumulate: bool,
    ) {
        let (oh, ow) = self.out_hw(h, w);
        let (il, ol) = (self.cin * h * w, self.cout * oh * ow);
        // A stride-1 "same" convolution's adjoint is the same convolution with the flipped,
        // transposed kernel.
        let same = self.stride == 1 && 2 * self.pad + 1 == self.k;
        if self.winograd_fits(ctx, h, w) {
            self.with_winograd(ctx, true, h, w, |isa, wts| {
                winograd::conv3x3(isa, wts, self.cout, self.cin, gy, n, h, w, None, gx, None, accumulate)
            });
            return;
        }
        if !same {
            for i in 0..n {
                self.backward_col2im(
                    ctx.isa,
                    &gy[i * ol..(i + 1) * ol],
                    h,
                    w,
                    &mut gx[i * il..(i + 1) * il],
                    accumulate,
                );
            }
            return;
        }
        self.with_transposed(ctx, |wt| {
            if n > 1 && h * w <= FOLD_MAX {
                let b = Im2col::batch(gy, n, self.cout, oh, ow, self.k, 1, self.k - 1 - self.pad);
                folded(wt, &b, None, n, self.cin, h * w, gx, None, accumulate);
                return;
            }
            let epi = Epilogue { accumulate, ..Default::default() };
            for i in 0..n {
                let gyi = &gy[i * ol..(i + 1) * ol];
                let gxi = &mut gx[i * il..(i + 1) * il];
                if self.k == 1 {
                    let b = DenseB { data: gyi, k: self.cout, n: h * w, rs: h * w, cs: 1 };
                    gemm(wt, &b, gxi, h * w, epi);
                } else {
                    let b = Im2col::new(gyi, self.cout, oh, ow, self.k, 1, self.k - 1 - self.pad);
                    gemm(wt, &b, gxi, h * w, epi);
                }
            }
        });
    }

    /// General adjoint: `dcol = W^T gy`, then scatter-add the columns back (col2im).
    fn backward_col2im(&self, isa: Isa, gy: &[f32], h: usize, w: usize, gx: &mut [f32], accumulate: bool) {
        let (oh, ow) = self.out_hw(h, w);
        let (k, kk) = (self.k, self.k * self.k);
        let rows = self.cin * kk;
        let np = oh * ow;
        let mut col = vec![0.0f32; rows * np];
        crate::gemm::sgemm(isa, rows, np, self.cout, &self.packed.unpack(), 1, rows, gy, np, 1, &mut col, np, false);
        if !accumulate {
            gx.fill(0.0);
        }
        for r in 0..rows {
            let (ci, ky, kx) = (r / kk, (r % kk) / k, r % k);
            for oy in 0..oh {
                let iy = (oy * self.stride + ky) as isize - self.pad as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                for ox in 0..ow {
                    let ix = (ox * self.stride + kx) as isize - self.pad as isize;
                    if ix >= 0 && ix < w as isize {
                        gx[(ci * h + iy as usize) * w + ix as usize] += col[r * np + oy * ow + ox];
                    }
                }
            }
        }
    }
}
