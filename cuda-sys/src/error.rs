//! The GPU backend's error: what failed (no device, a driver, cuBLAS or NVRTC call, a shape).

use std::fmt;

/// A GPU backend error.
#[derive(Debug)]
pub enum Error {
    /// No usable CUDA device or library (the message says which).
    Unavailable(String),
    /// A CUDA driver call failed.
    Driver(String),
    /// A cuBLAS call failed.
    Blas(String),
    /// The kernels did not compile.
    Compile(String),
    /// Tensors or arguments that do not fit.
    Shape(String),
    /// An error of the CPU side (model loading, host operators).
    Cpu(diffinv_cpu::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unavailable(m) => write!(f, "CUDA unavailable: {m}"),
            Error::Driver(m) => write!(f, "CUDA driver error: {m}"),
            Error::Blas(m) => write!(f, "cuBLAS error: {m}"),
            Error::Compile(m) => write!(f, "CUDA kernel compilation failed: {m}"),
            Error::Shape(m) => write!(f, "{m}"),
            Error::Cpu(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<cudarc::driver::DriverError> for Error {
    fn from(e: cudarc::driver::DriverError) -> Self {
        Error::Driver(e.to_string())
    }
}

impl From<cudarc::cublas::result::CublasError> for Error {
    fn from(e: cudarc::cublas::result::CublasError) -> Self {
        Error::Blas(format!("{e:?}"))
    }
}

impl From<diffinv_cpu::Error> for Error {
    fn from(e: diffinv_cpu::Error) -> Self {
        Error::Cpu(e)
    }
}

/// The backend's result.
pub type Result<T> = std::result::Result<T, Error>;
