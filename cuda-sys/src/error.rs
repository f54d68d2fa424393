//! The GPU backend's error: what failed (no device, a driver, cuBLAS, cuDNN or NVRTC call, a
//! shape, the model description, a host-side operator).

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
    /// A cuDNN call failed.
    Dnn(String),
    /// The kernels did not compile.
    Compile(String),
    /// A tensor or argument does not fit.
    Shape {
        /// The tensor.
        what: String,
        /// Its shape.
        shape: Vec<usize>,
        /// What was needed.
        reason: String,
    },
    /// The model description refused an input (shape, timestep, tape).
    Model(diffinv_model::Error),
    /// An operator run on a host copy failed.
    Host(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unavailable(m) => write!(f, "CUDA unavailable: {m}"),
            Error::Driver(m) => write!(f, "CUDA driver error: {m}"),
            Error::Blas(m) => write!(f, "cuBLAS error: {m}"),
            Error::Dnn(m) => write!(f, "cuDNN error: {m}"),
            Error::Compile(m) => write!(f, "CUDA kernel compilation failed: {m}"),
            Error::Shape { what, shape, reason } => write!(f, "{what} of shape {shape:?}: {reason}"),
            Error::Model(e) => write!(f, "{e}"),
            Error::Host(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Model(e) => Some(e),
            Error::Host(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

impl Error {
    /// A shape that does not fit.
    pub fn shape(what: impl Into<String>, shape: &[usize], reason: impl Into<String>) -> Self {
        Error::Shape { what: what.into(), shape: shape.to_vec(), reason: reason.into() }
    }
}

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

impl From<diffinv_model::Error> for Error {
    fn from(e: diffinv_model::Error) -> Self {
        Error::Model(e)
    }
}

/// The backend's result.
pub type Result<T> = std::result::Result<T, Error>;
