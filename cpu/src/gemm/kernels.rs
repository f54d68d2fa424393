//! The GEMM microkernels: `C[MR x NR] (+)= A_panel * B_panel` over `kc` steps, one per ISA.
//!
//! Packed layouts: an A micro-panel is `kc x MR` (k-major: `a[k*MR + r]`), a B micro-panel is
//! `kc x NR` (`b[k*NR + j]`). `c` points at a full `MR x NR` tile with row stride `ldc`.

/// Rows of every kernel's tile: A panels are packed once for all kernels.
pub const MR: usize = 6;

/// An instruction set with a microkernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust, 6x8 tile.
    Scalar,
    /// Portable SIMD (`wide::f32x8`: SSE on x86-64, NEON on aarch64, simd128 on wasm), 6x8
    /// tile, no architecture-specific code: what runs on x86-64 in the tests is what an aarch64
    /// board runs. Products and sums are separate roundings (never fused), so every CPU gives
    /// the same bits. The default where no x86 kernel is available.
    Portable,
    /// AVX2 + FMA, 6x16 tile.
    Avx2,
    /// AVX-512F, 6x64 tile.
    Avx512,
    /// AVX512-BF16 `vdpbf16ps`, 6x64 tile, bf16 operands (packed as k-pairs), f32 sums.
    /// Only used when asked for (`Precision::Bf16`).
    Avx512Bf16,
}

impl Isa {
    /// Columns of this kernel's tile.
    pub const fn nr(self) -> usize {
        match self {
            Isa::Scalar | Isa::Portable => 8,
            Isa::Avx2 => 16,
            Isa::Avx512 | Isa::Avx512Bf16 => 64,
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn available(self) -> bool {
        match self {
            Isa::Scalar | Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Bf16 => is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Whether the kernel reads bf16 k-pairs (else f32).
    pub fn is_bf16(self) -> bool {
        self == Isa::Avx512Bf16
    }

    /// Every kernel this CPU can run, best last.
    pub fn all_available() -> Vec<Isa> {
        [Isa::Scalar, Isa::Portable, Isa::Avx2, Isa::Avx512].into_iter().filter(|i| i.available()).collect()
    }

    /// The name used in benchmarks and `DIFFINV_ISA`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Bf16 => "avx512bf16",
        }
    }

    /// Runs this ISA's kernel.
    ///
    /// # Safety
    /// `a` holds `kc*MR` floats, `b` holds `kc*nr()` floats, `c` addresses an `MR x nr()` tile
    /// with row stride `ldc`, and [`Isa::available`] is true.
    #[inline]
    pub unsafe fn kernel(self, kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, acc: bool) {
        match self {
            Isa::Scalar => scalar(kc, a, b, c, ldc, acc),
            Isa::Portable => portable(kc, a, b, c, ldc, acc),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2(kc, a, b, c, ldc, acc),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512(kc, a, b, c, ldc, acc),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Bf16 => avx512bf16(kc, a, b, c, ldc, acc),
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("no SIMD kernels on this architecture"),
        }
    }
}

unsafe fn scalar(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, acc: bool) {
    const NR: usize = 8;
    let mut t = [[0.0f32; NR]; MR];
    for k in 0..kc {
        let bk = std::slice::from_raw_parts(b.add(k * NR), NR);
        let ak = std::slice::from_raw_parts(a.add(k * MR), MR);
        for r in 0..MR {
            for j in 0..NR {
                t[r][j] += ak[r] * bk[j];
            }
        }
    }
    for (r, row) in t.iter().enumerate() {
        let cr = std::slice::from_raw_parts_mut(c.add(r * ldc), NR);
        for j in 0..NR {
            cr[j] = if acc { cr[j] + row[j] } else { row[j] };
        }
    }
}

/// The portable microkernel: 6 rows x one `f32x8` per k, `t + a b` (not fused). Six
/// accumulators of eight lanes fit SSE's 16 registers (two each) as well as NEON's 32, where a
/// wider tile would spill on x86-64's baseline.
unsafe fn portable(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, acc: bool) {
    use wide::f32x8;
    const NR: usize = 8;
    let load = |p: *const f32| f32x8::from(std::ptr::read_unaligned(p as *const [f32; 8]));
    let mut t = [f32x8::ZERO; MR];
    for k in 0..kc {
        let bk = load(b.add(k * NR));
        for (r, tr) in t.iter_mut().enumerate() {
            *tr += f32x8::splat(*a.add(k * MR + r)) * bk;
        }
    }
    for (r, x) in t.iter().enumerate() {
        let q = c.add(r * ldc);
        let x = if acc { load(q) + *x } else { *x };
        std::ptr::write_unaligned(q as *mut [f32; 8], x.to_array());
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, acc: bool) {
    use std::arch::x86_64::*;
    const NR: usize = 16;
    let mut t = [[_mm256_setzero_ps(); 2]; MR];
    for k in 0..kc {
        let b0 = _mm256_loadu_ps(b.add(k * NR));
        let b1 = _mm256_loadu_ps(b.add(k * NR + 8));
        for (r, tr) in t.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*a.add(k * MR + r));
            tr[0] = _mm256_fmadd_ps(av, b0, tr[0]);
            tr[1] = _mm256_fmadd_ps(av, b1, tr[1]);
        }
    }
    for (r, tr) in t.iter().enumerate() {
        let p = c.add(r * ldc);
        for (v, &x) in tr.iter().enumerate() {
            let q = p.add(v * 8);
            let x = if acc { _mm256_add_ps(_mm256_loadu_ps(q), x) } else { x };
            _mm256_storeu_ps(q, x);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, acc: bool) {
    use std::arch::x86_64::*;
    const NR: usize = 64;
    let mut t = [[_mm512_setzero_ps(); 4]; MR];
    for k in 0..kc {
        let bp = b.add(k * NR);
        let bv = [
            _mm512_loadu_ps(bp),
            _mm512_loadu_ps(bp.add(16)),
            _mm512_loadu_ps(bp.add(32)),
            _mm512_loadu_ps(bp.add(48)),
        ];
        for (r, tr) in t.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*a.add(k * MR + r));
            for v in 0..4 {
                tr[v] = _mm512_fmadd_ps(av, bv[v], tr[v]);
            }
        }
    }
    store512(&t, c, ldc, acc);
}

/// `kc` here counts k-pairs: `a` holds `kc x MR` u32 (two bf16 of one row), `b` holds `kc x 64`
/// u32 (two bf16 of one column), and `vdpbf16ps` adds both products to the f32 sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn avx512bf16(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, acc: bool) {
    use std::arch::x86_64::*;
    const NR: usize = 64;
    let (a, b) = (a as *const i32, b as *const i32);
    let mut t = [[_mm512_setzero_ps(); 4]; MR];
    for k in 0..kc {
        let bp = b.add(k * NR);
        let bv: [__m512bh; 4] = [
            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(bp as *const _)),
            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(bp.add(16) as *const _)),
            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(bp.add(32) as *const _)),
            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(bp.add(48) as *const _)),
        ];
        for (r, tr) in t.iter_mut().enumerate() {
            let av: __m512bh = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(*a.add(k * MR + r)));
            for v in 0..4 {
                tr[v] = _mm512_dpbf16_ps(tr[v], av, bv[v]);
            }
        }
    }
    store512(&t, c, ldc, acc);
}

/// Writes (or, with `acc`, adds) a 6x64 tile of f32 sums to `c`: the epilogue of both AVX-512
/// kernels.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store512(t: &[[std::arch::x86_64::__m512; 4]; MR], c: *mut f32, ldc: usize, acc: bool) {
    use std::arch::x86_64::*;
    for (r, tr) in t.iter().enumerate() {
        let p = c.add(r * ldc);
        for (v, &x) in tr.iter().enumerate() {
            let q = p.add(v * 16);
            let x = if acc { _mm512_add_ps(_mm512_loadu_ps(q), x) } else { x };
            _mm512_storeu_ps(q, x);
        }
    }
}
