//! The facade's error: the failing layer's own typed error, kept whole (the GPU's too), plus
//! what only the facade knows (a device this build lacks, a cancelled run).

use std::fmt;

/// An error of the `diffinv` library. Variants keep the failing layer's own typed error, whose
/// fields name the file, tensor, shape or parameter at fault:
///
/// ```
/// use diffinv::{cpu::Error as CpuError, Error, Model, Restorer};
/// let model = Model::shipped()?;
/// let y = ndarray::Array3::<f32>::zeros((64, 64, 3));
/// match Restorer::new(&model).steps(0).run(y.view()) {
///     Err(Error::Cpu(CpuError::Parameter { name, value, .. })) => assert_eq!((name.as_str(), value.as_str()), ("steps", "0")),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A model file, config, tensor or model input was refused.
    Model(diffinv_model::Error),
    /// The CPU backend, an operator, an image or a parameter failed.
    Cpu(diffinv_cpu::Error),
    /// The CUDA backend failed.
    #[cfg(feature = "cuda")]
    Cuda(diffinv_cuda_sys::Error),
    /// The device or asset asked for is not in this build (or on this machine).
    Unavailable {
        /// What was asked for ("CUDA device 0", "the shipped model").
        what: String,
        /// Why it is not there, and what to do.
        reason: String,
    },
    /// The progress callback asked to stop.
    Cancelled,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Model(e) => write!(f, "{e}"),
            Error::Cpu(e) => write!(f, "{e}"),
            #[cfg(feature = "cuda")]
            Error::Cuda(e) => write!(f, "{e}"),
            Error::Unavailable { what, reason } => write!(f, "{what} is unavailable: {reason}"),
            Error::Cancelled => write!(f, "cancelled"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Model(e) => Some(e),
            Error::Cpu(e) => Some(e),
            #[cfg(feature = "cuda")]
            Error::Cuda(e) => Some(e),
            _ => None,
        }
    }
}

impl From<diffinv_model::Error> for Error {
    fn from(e: diffinv_model::Error) -> Self {
        Error::Model(e)
    }
}

impl From<diffinv_cpu::Error> for Error {
    fn from(e: diffinv_cpu::Error) -> Self {
        match e {
            diffinv_cpu::Error::Cancelled => Error::Cancelled,
            diffinv_cpu::Error::Model(e) => Error::Model(e),
            e => Error::Cpu(e),
        }
    }
}

#[cfg(feature = "cuda")]
impl From<diffinv_cuda_sys::Error> for Error {
    fn from(e: diffinv_cuda_sys::Error) -> Self {
        match e {
            diffinv_cuda_sys::Error::Model(e) => Error::Model(e),
            e => Error::Cuda(e),
        }
    }
}

impl<E: Into<Error>> From<diffinv_core::sampler::SampleError<E>> for Error {
    fn from(e: diffinv_core::sampler::SampleError<E>) -> Self {
        use diffinv_core::sampler::SampleError as S;
        match e {
            S::Backend(e) => e.into(),
            S::Cancelled => Error::Cancelled,
            S::NonFinite { method, t } => Error::Cpu(diffinv_cpu::Error::NonFinite { method, step: t }),
            S::Diverged { method, t, max_abs } => Error::Cpu(diffinv_cpu::Error::Diverged { method, step: t, max_abs }),
            S::BadParameter { name, value, reason } => Error::Cpu(diffinv_cpu::Error::parameter(name, value, reason)),
        }
    }
}

/// The library's result.
pub type Result<T> = std::result::Result<T, Error>;
