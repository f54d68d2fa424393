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

    /// The kernel of the convolutions' GEMMs.
    pub fn conv_isa(&self) -> Isa {
        if self.uses_bf16() {
            Isa::Avx512Bf16
        } else {
            self.isa
        }
    }
}
