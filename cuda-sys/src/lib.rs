//! # diffinv-cuda-sys
//!
//! The CUDA backend of diffinv, behind the `cuda` feature: the ADM UNet's layers built from the
//! backend-neutral model description (`diffinv-model`) and run by its shared graph walker
//! (im2col + cuBLAS SGEMM for convolutions, or cuDNN; NVRTC-compiled kernels for the norms,
//! attention softmax, resampling and the sampler steps), [`diffinv_core::Backend`] so the
//! core's DPS / Score-ALD / SDEdit / DiffPIR loops run unchanged on the GPU, and the tasks'
//! operators (masks on the GPU, the rest through a `HostOperator`).
//!
//! cudarc loads the CUDA libraries at run time, so the crate builds (and the workspace's tests
//! pass) on machines without CUDA; `Gpu::new` then returns `Error::Unavailable`. Without the
//! feature the crate is empty. Programs use it through the `diffinv` facade
//! (`Device::Cuda(0)`); directly:
//!
//! ```no_run
//! # #[cfg(feature = "cuda")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use diffinv_cuda_sys::{Gpu, GpuOptions, GpuTensor, GpuUNet};
//! use diffinv_model::{RandomWeights, UNetConfig, UNetDesc};
//!
//! let cfg = UNetConfig::preset("celeba64").unwrap();
//! let desc = UNetDesc::read(&cfg, &mut RandomWeights::new(0))?;
//! let gpu = Gpu::new(0, GpuOptions::default())?;
//! let net = GpuUNet::new(&gpu, &desc)?;
//! let x = GpuTensor::zeros(&gpu, [1, 3, 64, 64])?;
//! let eps = net.forward(&gpu, &x, &[500.0])?;
//! println!("{:?}", eps.shape());
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "cuda"))]
//! # fn main() {}
//! ```
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
mod tensor;
#[cfg(feature = "cuda")]
mod unet;

#[cfg(feature = "cuda")]
pub use backend::CudaBackend;
#[cfg(feature = "cuda")]
pub use device::{compile_kernels, driver_present, DBuf, Gpu, GpuOptions};
#[cfg(feature = "cuda")]
pub use error::{Error, Result};
#[cfg(feature = "cuda")]
pub use layers::{GAttn, GConv, GNorm, Mod};
#[cfg(feature = "cuda")]
pub use ops::{GpuOp, HostError, HostOperator};
#[cfg(feature = "cuda")]
pub use tensor::GpuTensor;
#[cfg(feature = "cuda")]
pub use unet::{GpuBuilder, GpuEmb, GpuLayers, GpuRun, GpuTape, GpuTime, GpuUNet};
