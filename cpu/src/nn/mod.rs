//! Neural-network layers on NCHW f32 slices, each with the input-gradient the UNet's VJP needs:
//! convolution (implicit-im2col GEMM), group norm fused with scale-shift and SiLU, attention,
//! linear layers and resampling.

#[macro_use]
pub mod simd;
pub mod attention;
pub mod conv;
pub mod linear;
pub mod norm;
pub mod resample;
pub mod winograd;

pub use attention::{AttentionBlock, AttentionOrder};
pub use conv::{Conv2d, Precision};
pub use linear::Linear;
pub use norm::{GroupNorm, NormMod};
