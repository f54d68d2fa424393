//! # diffinv-cuda-sys
//!
//! The CUDA backend of diffinv, behind the `cuda` feature: the ADM UNet forward pass and its
//! input gradient (im2col + cuBLAS SGEMM for convolutions, or cuDNN with `DIFFINV_CUDNN=1`;
//! NVRTC-compiled kernels for the
//! norms, attention softmax, resampling and the sampler steps), [`diffinv_core::Backend`] so the
//! core's DPS / Score-ALD / SDEdit / DiffPIR loops run unchanged on the GPU, and the five
//! tasks' operators.
//!
//! cudarc loads the CUDA libraries at run time, so the crate builds (and the workspace's tests
//! pass) on machines without CUDA; `Gpu::new` then returns `Error::Unavailable`. Without the
//! feature the crate is empty.
//!
//! ```no_run
//! # #[cfg(feature = "cuda")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use diffinv_cpu::image_io::{load_image, Fit};
//! use diffinv_cpu::ops::{build, measure, Task, TaskParams};
//! use diffinv_cpu::solve::{Method, Settings};
//! use diffinv_cpu::unet::{load_model, ModelSource};
//! use diffinv_cuda_sys::{Gpu, GpuUNet};
//!
//! let model = load_model(&ModelSource::Default, None)?;
//! let gpu = Gpu::new(0)?;
//! let net = GpuUNet::new(&gpu, &model.unet)?;
//! let x = load_image("face.png".as_ref(), Fit::Exact(64))?;
//! let op = build(Task::InpaintBox, &TaskParams::default(), x.shape(), 0, 0)?;
//! let y = measure(&op, &x, 0.05, 0, 0)?;
//! let settings = Settings::default();
//! let out = diffinv_cuda_sys::restore(
//!     &gpu, &net, &model, Method::Dps, Task::InpaintBox, &settings, &op, &y, 0.05, 0, 0, &mut |_, _| true,
//! )?;
//! println!("{} network evaluations", out.nfe);
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
