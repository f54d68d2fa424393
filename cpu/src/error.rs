//! The CPU backend's error: every variant carries the facts (file, tensor, shape, value).

use std::fmt;
use std::path::PathBuf;

/// An error of the CPU backend.
#[derive(Debug)]
pub enum Error {
    /// Loading or running the model description failed (file, tensor, config, model input).
    Model(diffinv_model::Error),
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An image cannot be decoded or used.
    Image {
        /// The file (or the name given to bytes in memory).
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor's shape does not fit.
    Shape {
        /// The tensor ("mask", "measurement", "q_sample input", ...).
        what: String,
        /// Its shape.
        shape: Vec<usize>,
        /// What was needed.
        reason: String,
    },
    /// A parameter is outside its range.
    Parameter {
        /// The parameter's name (`steps`, `zeta`, `noise`, ...).
        name: String,
        /// The value given.
        value: String,
        /// The valid range or rule.
        reason: String,
    },
    /// Something this build or CPU cannot do.
    Unsupported {
        /// What was asked for.
        what: String,
        /// Why it cannot be done.
        reason: String,
    },
    /// The iterate of a method became NaN or infinite.
    NonFinite {
        /// The method.
        method: &'static str,
        /// The step: the original timestep for diffusion methods, the iteration otherwise.
        step: usize,
    },
    /// The iterate of a method grew past the divergence limit.
    Diverged {
        /// The method.
        method: &'static str,
        /// The step: the original timestep for diffusion methods, the iteration otherwise.
        step: usize,
        /// The largest |x| seen.
        max_abs: f64,
    },
    /// The run was cancelled by its monitor.
    Cancelled,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Model(e) => write!(f, "{e}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Image { file, reason } => write!(f, "{file}: {reason}"),
            Error::Shape { what, shape, reason } => write!(f, "{what} of shape {shape:?}: {reason}"),
            Error::Parameter { name, value, reason } => write!(f, "{name} {reason}, got {value}"),
            Error::Unsupported { what, reason } => write!(f, "{what} is not supported: {reason}"),
            Error::NonFinite { method, step } => {
                write!(f, "{method}: the iterate became NaN or infinite at step {step}")
            }
            Error::Diverged { method, step, max_abs } => write!(
                f,
                "{method}: the iterate diverged at step {step} (max |x| = {max_abs:.3e}); try a smaller step size"
            ),
            Error::Cancelled => write!(f, "cancelled"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Model(e) => Some(e),
            _ => None,
        }
    }
}

impl From<diffinv_model::Error> for Error {
    fn from(e: diffinv_model::Error) -> Self {
        Error::Model(e)
    }
}

impl<E: Into<Error>> From<diffinv_core::sampler::SampleError<E>> for Error {
    fn from(e: diffinv_core::sampler::SampleError<E>) -> Self {
        use diffinv_core::sampler::SampleError as S;
        match e {
            S::Backend(e) => e.into(),
            S::NonFinite { method, t } => Error::NonFinite { method, step: t },
            S::Diverged { method, t, max_abs } => Error::Diverged { method, step: t, max_abs },
            S::Cancelled => Error::Cancelled,
            S::BadParameter { name, value, reason } => {
                Error::Parameter { name: name.into(), value: format!("{value}"), reason: reason.into() }
            }
        }
    }
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// A shape that does not fit.
    pub fn shape(what: impl Into<String>, shape: &[usize], reason: impl Into<String>) -> Self {
        Error::Shape { what: what.into(), shape: shape.to_vec(), reason: reason.into() }
    }

    /// Two tensors of `what` whose shapes should agree.
    pub fn mismatch(what: &str, a: &[usize], b: &[usize]) -> Self {
        Error::shape(what, a, format!("must match {b:?}"))
    }

    /// A parameter out of its range.
    pub fn parameter(name: impl Into<String>, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        Error::Parameter { name: name.into(), value: value.to_string(), reason: reason.into() }
    }

    /// An image that cannot be used.
    pub fn image(file: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Image { file: file.into(), reason: reason.into() }
    }
}

/// The CPU backend's result.
pub type Result<T> = std::result::Result<T, Error>;
