//! Run-time ISA dispatch for elementwise loops: the same plain-Rust body is compiled for
//! AVX-512, AVX2+FMA and the baseline, and the best one this CPU has is called. Bodies must only
//! call `#[inline(always)]` helpers so that they are compiled for the chosen ISA.

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
                match $crate::gemm::default_isa() {
                    // SAFETY: default_isa only returns ISAs this CPU has.
                    $crate::gemm::Isa::Avx512 | $crate::gemm::Isa::Avx512Bf16 => return unsafe { avx512($($arg),*) },
                    $crate::gemm::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::gemm::Isa::Scalar => {}
                }
            }
            fn base($($arg: $ty),*) $body
            base($($arg),*)
        }
    };
}

/// `e^x` for f32, branch-free so loops over it vectorise: Cody-Waite range reduction and the
/// Cephes `expf` polynomial (about 1 ulp); inputs are clamped to [-87, 88].
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E).round();
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let z = r * r;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * z + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
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
