//! # diffinv
//!
//! Diffusion-model image restoration on ordinary CPUs, and on NVIDIA GPUs with the `cuda`
//! feature. This crate is the library Rust programs use:
//!
//! - [`Model`]: a diffusion prior (the shipped 64 px face model, DPS's FFHQ-256 `ffhq_10m.pt`,
//!   any guided-diffusion ADM UNet checkpoint);
//! - [`Restorer`]: an inverse problem ([`Task`], linear or not: phase retrieval, HDR) and how
//!   to solve it ([`Method`], DAPS included, settings, seed, [`Device`]), run on measurements of
//!   any size (the model is tiled, [`Tiling`]) with a known noise level, one estimated from the
//!   measurement ([`Restorer::noise_auto`], [`estimate_noise`]) or Poisson counts
//!   ([`NoiseModel`]), as the best of several draws by the measurement residual
//!   ([`Restorer::samples`]);
//! - [`Generator`] (unconditional samples) and [`Denoising`] (noise to a level, denoise);
//! - [`image`]: images as `ndarray` arrays (`H x W x 3` in `[0, 1]`) in and out of files;
//! - [`metrics`]: PSNR, SSIM and LPIPS.
//!
//! ```
//! use diffinv::{Device, Method, Model, Restorer, Task};
//! let model = Model::shipped()?;                                  // the 64 px face model
//! let clean = diffinv::image::load("assets/samples/009521.png")?;  // H x W x 3, [0, 1]
//! let y = Restorer::new(&model).task(Task::InpaintBox).seed(0).measure(clean.view())?;
//! let out = Restorer::new(&model)
//!     .task(Task::InpaintBox).method(Method::DiffPir).steps(5).noise(0.05).seed(0)
//!     .device(Device::Cpu).threads(2)
//!     .on_step(|_step, _total| true)                               // progress; false cancels
//!     .run(y.view())?;
//! println!("{} NFE, {:.1} s", out.nfe, out.seconds);
//! # let dir = std::env::temp_dir().join(format!("diffinv-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! diffinv::image::save(dir.join("out.png"), out.image.view())?;
//! # Ok::<(), diffinv::Error>(())
//! ```
//!
//! The layers below are re-exported for programs that need them: [`core`] (`no_std` math and
//! the sampler loops), [`model`] (configs, checkpoints, the network description and its graph
//! walk), [`cpu`] (the CPU backend), and `cuda` (the CUDA backend, with the `cuda` feature).
#![deny(missing_docs)]

pub mod assets;
mod device;
mod error;
pub mod image;
pub mod metrics;
mod models;
mod noise;
mod restorer;
mod sample;
mod tiled;
pub mod timing;

#[cfg(feature = "cuda")]
pub use device::{gpu_operator, CpuOnHost};
pub use device::{Device, GpuOptions};
pub use diffinv_cpu::classical::Denoiser;
pub use diffinv_cpu::ops::{NoiseModel, Op, Task, TaskParams};
pub use diffinv_cpu::solve::{Method, Settings};
pub use diffinv_cpu::{CpuContext, Tensor};
pub use error::{Error, Result};
pub use models::Model;
pub use ndarray;
pub use noise::estimate_noise;
pub use restorer::{sample_seed, Restored, Restorer, Sample, Tiling, MAX_SAMPLES};
pub use sample::{DenoiseMode, Denoised, Denoising, Generated, Generator};

pub use diffinv_core as core;
pub use diffinv_cpu as cpu;
#[cfg(feature = "cuda")]
pub use diffinv_cuda_sys as cuda;
pub use diffinv_model as model;
