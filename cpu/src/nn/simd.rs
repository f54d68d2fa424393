//! Run-time ISA dispatch for elementwise loops: the same plain-Rust body is compiled for
//! AVX-512, AVX2+FMA and the baseline, and the best one this CPU has is called. Bodies must only
//! call `#[inline(always)]` helpers so that they are compiled for the chosen ISA. Rust neither
//! reassociates nor contracts float arithmetic, so every copy gives the same bits: the choice is
//! speed only, and follows the CPU rather than the call's context.

/// Defines `pub fn $name(args)` that dispatches to ISA-specific copies of `$body`.
#[macro_export]
#[doc(hidden)]
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $body
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $body
                match $crate::gemm::Isa::best() {
                    // SAFETY: Isa::best only returns ISAs this CPU has.
                    $crate::gemm::Isa::Avx512 | $crate::gemm::Isa::Avx512Bf16 => return unsafe { avx512($($arg),*) },
                    $crate::gemm::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::gemm::Isa::Scalar | $crate::gemm::Isa::Portable => {}
                }
            }
            fn base($($arg: $ty),*) $body
            base($($arg),*)
        }
    };
}

/// `e^x` for f32, branch-free so loops over it vectorise: Cody-Waite range reduction and the
/// Cephes `expf` polynomial (about 1 ulp); inputs are clamped to [-87, 88], NaN stays NaN.
/// `n = round(x log2 e)` and `2^n` come from the 1.5 * 2^23 "magic number" (round to nearest
/// even, then the integer read from the mantissa bits): a float-to-int `as` cast would be
/// saturating, which compilers lower to per-lane scalar code.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    let x = x.clamp(-87.0, 88.0);
    let k = x * std::f32::consts::LOG2_E + MAGIC;
    let n = k - MAGIC;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let z = r * r;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * z + r + 1.0;
    // k's mantissa holds 2^22 + n; (n + 127) << 23 is 2^n.
    let scale = k.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127) << 23;
    y * f32::from_bits(scale)
}

/// The logistic sigmoid.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// SiLU `x sigmoid(x)`.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x * sigmoid(x)
}

/// The derivative of SiLU.
#[inline(always)]
pub fn silu_grad(x: f32) -> f32 {
    let s = sigmoid(x);
    s * (1.0 + x * (1.0 - s))
}

// Reductions in 16 independent lanes: a serial f32 loop is one dependency chain that does not
// vectorise; these compile to one vector accumulator inside multiversioned callers.

/// Sum of `x` in 16 lanes (a serial f32 sum does not vectorise).
#[inline(always)]
pub(crate) fn sum16(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut it = x.chunks_exact(16);
    for v in &mut it {
        for j in 0..16 {
            acc[j] += v[j];
        }
    }
    for (j, &v) in it.remainder().iter().enumerate() {
        acc[j] += v;
    }
    acc.iter().sum()
}

/// `sum(a * b)` in 16 lanes.
#[inline(always)]
pub(crate) fn dot16(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (mut ia, mut ib) = (a.chunks_exact(16), b.chunks_exact(16));
    for (u, v) in (&mut ia).zip(&mut ib) {
        for j in 0..16 {
            acc[j] += u[j] * v[j];
        }
    }
    for (j, (&u, &v)) in ia.remainder().iter().zip(ib.remainder()).enumerate() {
        acc[j] += u * v;
    }
    acc.iter().sum()
}

/// Maximum of `x` in 16 lanes.
#[inline(always)]
pub(crate) fn max16(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let mut it = x.chunks_exact(16);
    for v in &mut it {
        for j in 0..16 {
            acc[j] = acc[j].max(v[j]);
        }
    }
    for (j, &v) in it.remainder().iter().enumerate() {
        acc[j] = acc[j].max(v);
    }
    acc.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_f64() {
        // Every 1/64 in [-87, 88] plus points between, against the f64 exponential.
        let mut worst = 0.0f64;
        for i in 0..(175 * 64 * 7) {
            let x = -87.0 + i as f32 / (64.0 * 7.0);
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 2.5e-7, "exp relative error {worst:.2e}");
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(-1e30) > 0.0 && exp(1e30).is_finite());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn silu_and_its_gradient_match_f64() {
        for i in -2000..2000 {
            let x = i as f32 / 100.0;
            let s = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!((silu(x) as f64 - x as f64 * s).abs() <= 1e-6 * (1.0 + (x as f64).abs()), "silu({x})");
            let g = s * (1.0 + x as f64 * (1.0 - s));
            assert!((silu_grad(x) as f64 - g).abs() <= 1e-6, "silu_grad({x})");
        }
    }
}
