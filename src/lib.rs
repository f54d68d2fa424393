//! # diffinv
//!
//! Diffusion-model image restoration on ordinary CPUs. This facade re-exports the workspace:
//! [`core`] (the `no_std` math and sampler loops) and [`cpu`] (the CPU backend: tensors, the ADM
//! UNet, operators, classical solvers, metrics, checkpoint and image I/O).
#![deny(missing_docs)]

pub use diffinv_core as core;
pub use diffinv_cpu as cpu;
#[cfg(feature = "cuda")]
pub use diffinv_cuda_sys as cuda;
