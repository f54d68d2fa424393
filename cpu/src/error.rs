//! The CPU backend's error type: every variant names what was wrong (file, tensor, shape, value).

use std::fmt;

/// An error of the CPU backend.
#[derive(Debug)]
pub enum Error {
    /// A file could not be read or written.
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A checkpoint or tensor file is malformed (truncated, inconsistent, unsupported).
    Format(String),
    /// A tensor is missing, extra, or has the wrong shape or dtype.
    Tensor(String),
    /// Tensor shapes do not fit together.
    Shape(String),
    /// A configuration value is invalid.
    Config(String),
    /// An image could not be decoded or does not fit.
    Image(String),
    /// A numeric problem (NaN, divergence).
    Numeric(String),
    /// The run was cancelled.
    Cancelled,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{path}: {source}"),
            Error::Format(m)
            | Error::Tensor(m)
            | Error::Shape(m)
            | Error::Config(m)
            | Error::Image(m)
            | Error::Numeric(m) => write!(f, "{m}"),
            Error::Cancelled => write!(f, "cancelled"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
}

/// The CPU backend's result.
pub type Result<T> = std::result::Result<T, Error>;
