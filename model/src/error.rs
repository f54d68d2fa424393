//! The model crate's error: every variant carries the facts (file, tensor, key, shape, value) so
//! that callers can act on them and messages can name them.

use std::fmt;
use std::path::PathBuf;

/// An error of loading or running a model description.
#[derive(Debug)]
pub enum Error {
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is not a well-formed checkpoint (truncated, inconsistent, unsupported).
    Format {
        /// The file (or the name given to bytes held in memory).
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor is not in the file.
    MissingTensor {
        /// The file.
        file: String,
        /// The tensor's name.
        tensor: String,
    },
    /// A tensor's shape is not the expected one.
    TensorShape {
        /// The file.
        file: String,
        /// The tensor's name.
        tensor: String,
        /// Its shape in the file.
        found: Vec<usize>,
        /// The shape needed.
        expected: Vec<usize>,
    },
    /// A tensor's element type cannot be read as asked.
    TensorDtype {
        /// The file.
        file: String,
        /// The tensor's name.
        tensor: String,
        /// Its element type (safetensors name).
        dtype: &'static str,
        /// What was asked for ("a float type", "an integer type").
        expected: &'static str,
    },
    /// Tensor bytes given for writing do not match the declared shape.
    TensorBytes {
        /// The tensor's name.
        tensor: String,
        /// Bytes the shape and dtype need.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
    /// A weight holds NaN or an infinity.
    NonFiniteWeight {
        /// The file.
        file: String,
        /// The tensor's name.
        tensor: String,
        /// The first bad element.
        index: usize,
    },
    /// The file holds tensors the architecture does not use (usually a wrong config).
    UnusedTensors {
        /// The file.
        file: String,
        /// How many.
        count: usize,
        /// The first few names.
        first: Vec<String>,
    },
    /// The checkpoint carries no architecture and none was given.
    NoConfig {
        /// The file.
        file: String,
    },
    /// A configuration value is invalid or inconsistent with the rest.
    Config {
        /// The configuration key (or the config's name, for whole-config problems).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A model input (images, timesteps, cotangent) does not fit the model.
    Input {
        /// Which input.
        input: &'static str,
        /// Its shape (N, C, H, W) or length.
        shape: Vec<usize>,
        /// What the model needs.
        reason: String,
    },
    /// A timestep is negative or not finite.
    Timestep {
        /// The value.
        value: f32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Format { file, reason } => write!(f, "{file}: {reason}"),
            Error::MissingTensor { file, tensor } => write!(f, "{file}: missing tensor '{tensor}'"),
            Error::TensorShape { file, tensor, found, expected } => {
                write!(f, "{file}: tensor '{tensor}' has shape {found:?}, expected {expected:?}")
            }
            Error::TensorDtype { file, tensor, dtype, expected } => {
                write!(f, "{file}: tensor '{tensor}' has dtype {dtype}, expected {expected}")
            }
            Error::TensorBytes { tensor, expected, found } => {
                write!(f, "tensor '{tensor}': its shape needs {expected} bytes, got {found}")
            }
            Error::NonFiniteWeight { file, tensor, index } => {
                write!(f, "{file}: tensor '{tensor}' holds a non-finite value at element {index}")
            }
            Error::UnusedTensors { file, count, first } => write!(
                f,
                "{file}: {count} tensor(s) not used by the config (a config for another architecture?): {}{}",
                first.join(", "),
                if *count > first.len() { ", ..." } else { "" }
            ),
            Error::NoConfig { file } => write!(
                f,
                "{file}: the checkpoint has no config and its tensor shapes are those of no preset; name one ({} or a JSON file)",
                crate::UNetConfig::PRESETS.join(", ")
            ),
            Error::Config { key, reason } => write!(f, "config '{key}': {reason}"),
            Error::Input { input, shape, reason } => write!(f, "model {input} {shape:?}: {reason}"),
            Error::Timestep { value } => write!(f, "timestep {value} is not a non-negative number"),
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
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// A malformed file.
    pub fn format(file: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Format { file: file.into(), reason: reason.into() }
    }

    /// An invalid config value.
    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config { key: key.into(), reason: reason.into() }
    }
}

/// The model crate's result.
pub type Result<T> = std::result::Result<T, Error>;
