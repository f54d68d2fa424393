//! # diffinv-cuda-sys
//!
//! The CUDA backend of diffinv, behind the `cuda` feature: the ADM UNet forward pass and its
//! input gradient (im2col + cuBLAS SGEMM for convolutions, NVRTC-compiled kernels for the
//! norms, attention softmax, resampling and the sampler steps), [`diffinv_core::Backend`] so the
//! core's DPS / Score-ALD / SDEdit / DiffPIR loops run unchanged on the GPU, and the five
//! tasks' operators.
//!
//! cudarc loads the CUDA libraries at run time, so the crate builds (and the workspace's tests
//! pass) on machines without CUDA; `Gpu::new` then returns `Error::Unavailable`. Without the
//! feature the crate is empty.
#![cfg_attr(not(feature = "cuda"), no_std)]
#![cfg_attr(feature = "cuda", deny(missing_docs))]

#[cfg(feature = "cuda")]
mod backend;
#[cfg(feature = "cuda")]
mod cudnn;
#[cfg(feature = "cuda")]
mod device;
#[cfg(feature = "cuda")]
mod error;
#[cfg(feature = "cuda")]
mod layers;
#[cfg(feature = "cuda")]
mod ops;
#[cfg(feature = "cuda")]
mod restore;
#[cfg(feature = "cuda")]
mod tensor;
#[cfg(feature = "cuda")]
mod unet;

#[cfg(feature = "cuda")]
pub use backend::CudaBackend;
#[cfg(feature = "cuda")]
pub use device::{compile_kernels, driver_present, DBuf, Gpu};
#[cfg(feature = "cuda")]
pub use error::{Error, Result};
#[cfg(feature = "cuda")]
pub use ops::GpuOp;
#[cfg(feature = "cuda")]
pub use restore::restore;
#[cfg(feature = "cuda")]
pub use tensor::GpuTensor;
#[cfg(feature = "cuda")]
pub use unet::{GpuTape, GpuUNet};
