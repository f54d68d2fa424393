//! How the CPU backend computes, chosen per call: the GEMM/Winograd kernel's instruction set,
//! the convolutions' arithmetic (f32, or bf16 products with f32 sums) and whether 3x3
//! convolutions on large maps run as Winograd F(2x2, 3x3). The library reads no environment
//! variables; a program (the CLI) passes these in.
//!
//! Threads are the rayon pool the call runs in (`ThreadPool::install`), as with faer's `Par`:
//! results do not depend on the thread count.

use crate::error::{Error, Result};
use crate::gemm::Isa;
pub use crate::nn::conv::Precision;

/// The CPU backend's settings for a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuContext {
    /// The kernel of the f32 GEMMs and Winograd products (must be available on this CPU).
    pub isa: Isa,
    /// The convolutions' arithmetic; bf16 needs AVX512-BF16 and falls back to f32 without it.
    pub precision: Precision,
    /// Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions on maps of 16 px and more.
    pub winograd: bool,
}

impl Default for CpuContext {
    /// The best kernel this CPU has, f32, Winograd on.
    fn default() -> Self {
        CpuContext { isa: Isa::best(), precision: Precision::F32, winograd: true }
    }
}

impl CpuContext {
    /// The default context with kernel `isa`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when this CPU cannot run `isa`.
    pub fn with_isa(isa: Isa) -> Result<Self> {
        if !isa.available() || isa.is_bf16() {
            return Err(Error::Unsupported {
                what: format!("the {} kernel", isa.name()),
                reason: format!(
                    "this CPU runs {}",
                    Isa::all_available().iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        Ok(CpuContext { isa, ..Self::default() })
    }

    /// This context with precision `p`.
    pub fn precision(self, p: Precision) -> Self {
        CpuContext { precision: p, ..self }
    }

    /// This context with Winograd on or off.
    pub fn winograd(self, on: bool) -> Self {
        CpuContext { winograd: on, ..self }
    }

    /// Whether the convolutions really run in bf16 (asked for, and the CPU has AVX512-BF16).
    pub fn uses_bf16(&self) -> bool {
        self.precision == Precision::Bf16 && Isa::Avx512Bf16.available()
    }

    /// The default context with the precision [`Calibration::get`] measured to be faster on this
    /// CPU (f32 unless it has AVX512-BF16 and its bf16 kernel is clearly faster).
    pub fn fastest() -> Self {
        CpuContext { precision: Calibration::get().choice, ..Self::default() }
    }

    /// The kernel of the convolutions' GEMMs.
    pub fn conv_isa(&self) -> Isa {
        if self.uses_bf16() {
            Isa::Avx512Bf16
        } else {
            self.isa
        }
    }
}

/// Throughput of this CPU's f32 and bf16 GEMM microkernels, measured once per process, and the
/// precision chosen from it. bf16 is not faster everywhere: `vdpbf16ps` does twice the work of an
/// f32 FMA, but some CPUs issue it at half the FMA's rate (an Intel Xeon of 2026 measured 173
/// f32 vs 88 bf16 GFLOP/s per core), others at the same rate (AMD Zen 4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    /// The best f32 kernel's GFLOP/s on one core, operands in L1.
    pub f32_gflops: f64,
    /// The bf16 kernel's (f32-equivalent) GFLOP/s, or `None` without AVX512-BF16.
    pub bf16_gflops: Option<f64>,
    /// bf16 when its kernel is at least [`Calibration::BF16_MARGIN`] times faster, else f32.
    pub choice: Precision,
}

impl Calibration {
    /// How much faster bf16's kernel must be to be chosen: it also pays for converting and
    /// pairing operands, and a margin keeps a CPU near parity from flipping between runs.
    pub const BF16_MARGIN: f64 = 1.3;

    /// The measurement (about 10 ms on first use, then cached for the process).
    pub fn get() -> Calibration {
        static CAL: std::sync::OnceLock<Calibration> = std::sync::OnceLock::new();
        *CAL.get_or_init(Self::measure)
    }

    fn measure() -> Calibration {
        let f32_gflops = kernel_gflops(Isa::best());
        let bf16_gflops = Isa::Avx512Bf16.available().then(|| kernel_gflops(Isa::Avx512Bf16));
        let choice = match bf16_gflops {
            Some(b) if b >= Self::BF16_MARGIN * f32_gflops => Precision::Bf16,
            _ => Precision::F32,
        };
        Calibration { f32_gflops, bf16_gflops, choice }
    }
}

/// GFLOP/s of `isa`'s microkernel on one 6 x nr tile with K = 128 (f32-equivalent for bf16),
/// operands in L1: the best of 5 rounds of about 1 ms.
fn kernel_gflops(isa: Isa) -> f64 {
    const K: usize = 128;
    let nr = isa.nr();
    let kk = if isa.is_bf16() { K / 2 } else { K };
    // Small values that stay finite when read as f32 or as bf16 pairs.
    let a = vec![f32::from_bits(0x3c00_3c00); crate::gemm::MR * kk];
    let b = vec![f32::from_bits(0x3c00_3c00); kk * nr];
    let mut c = vec![0.0f32; crate::gemm::MR * nr];
    let calls = 4096 / nr * 16;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        for _ in 0..calls {
            // SAFETY: a is MR x kk, b is kk x nr and c is MR x nr, as the kernel reads and writes.
            unsafe { isa.kernel(kk, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), nr, true) };
        }
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(&c);
    }
    (2 * crate::gemm::MR * nr * K * calls) as f64 / best.max(1e-9) / 1e9
}
