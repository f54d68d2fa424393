//! The CUDA backend of diffinv, behind the `cuda` feature. Not implemented yet: this crate is
//! empty with or without the feature, so the workspace builds and tests where no CUDA is
//! installed; the CPU backend (`diffinv-cpu`) is the only backend today.
#![no_std]
