//! # diffinv-cpu
//!
//! The CPU backend of diffinv: NCHW f32 [`Tensor`]s, a packed SIMD GEMM with AVX-512/AVX2
//! kernels chosen at run time, the ADM UNet forward pass and its input gradient, measurement
//! operators, classical solvers, metrics, and checkpoint and image I/O.
#![deny(missing_docs)]

pub mod context;
pub mod error;
pub mod tensor;

pub use backend::CpuBackend;
pub use context::CpuContext;
pub use diffinv_model as model;
pub use error::{Error, Result};
pub use tensor::Tensor;
pub mod gemm;
#[macro_use]
pub mod nn;
pub mod backend;
pub mod classical;
pub mod image_io;
pub mod metrics;
pub mod noise_level;
pub mod ops;
pub mod solve;
pub mod tiles;
pub mod unet;
