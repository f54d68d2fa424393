//! Reading tensors from checkpoint files: safetensors (memory-mapped) and PyTorch `.pt`/`.pth`
//! (zip or legacy pickle) through a restricted unpickler that never runs code.
//!
//! Every reader is bounds-checked: a malformed file gives an [`Error::Format`] naming the file
//! and the problem, never a panic, and no allocation is larger than the file can justify.

mod pickle;
mod pt;
mod safetensors;

pub use self::safetensors::{write_safetensors, SafeTensors, WriteTensor};
pub use pickle::{unpickle, PickleLimits, StorageRef, TensorRef, Value};

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Element types found in checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// f32.
    F32,
    /// f64.
    F64,
    /// i64.
    I64,
    /// i32.
    I32,
    /// i16.
    I16,
    /// i8.
    I8,
    /// u8.
    U8,
    /// bool (one byte).
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }
    /// The safetensors name.
    pub fn name(self) -> &'static str {
        match self {
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F32 => "F32",
            DType::F64 => "F64",
            DType::I64 => "I64",
            DType::I32 => "I32",
            DType::I16 => "I16",
            DType::I8 => "I8",
            DType::U8 => "U8",
            DType::Bool => "BOOL",
        }
    }
    /// Parses a safetensors dtype name.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "F32" => DType::F32,
            "F64" => DType::F64,
            "I64" => DType::I64,
            "I32" => DType::I32,
            "I16" => DType::I16,
            "I8" => DType::I8,
            "U8" => DType::U8,
            "BOOL" => DType::Bool,
            _ => return None,
        })
    }
    fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }
}

/// Where a tensor's elements are: a strided view into a byte buffer.
#[derive(Clone, Debug)]
struct View {
    buf: usize,
    start: usize,
    len: usize,
    offset: usize,
    strides: Vec<usize>,
}

/// A tensor's name, element type and shape.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    view: View,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

enum Buffer {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
    Static(&'static [u8]),
}

impl Buffer {
    fn bytes(&self) -> &[u8] {
        match self {
            Buffer::Map(m) => m,
            Buffer::Owned(v) => v,
            Buffer::Static(s) => s,
        }
    }
}

/// Tensors by name from a safetensors or PyTorch file, with the file's string metadata.
pub struct Checkpoint {
    path: String,
    buffers: Vec<Buffer>,
    tensors: BTreeMap<String, TensorInfo>,
    metadata: BTreeMap<String, String>,
    format: &'static str,
}

/// The largest header or pickle we parse; real checkpoints' are far smaller (a few hundred KiB).
const MAX_HEADER: usize = 64 << 20;

/// The most dimensions a tensor may have.
pub const MAX_RANK: usize = 8;

impl Checkpoint {
    /// Opens a checkpoint, detecting its format from its first bytes.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            let e = std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory, not a checkpoint file");
            return Err(Error::io(path, e));
        }
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; a file truncated underneath us is the user's race, as with
        // every memory-mapped reader (safetensors, PyTorch's mmap=True).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::from_buffer(path.display().to_string(), Buffer::Map(map))
    }

    /// Parses a checkpoint held in memory (`name` is used in errors).
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self> {
        Self::from_buffer(name.to_string(), Buffer::Owned(bytes))
    }

    /// Parses a checkpoint compiled into the program (no copy is made).
    pub fn from_static(name: &str, bytes: &'static [u8]) -> Result<Self> {
        Self::from_buffer(name.to_string(), Buffer::Static(bytes))
    }

    fn from_buffer(path: String, buf: Buffer) -> Result<Self> {
        let bytes = buf.bytes();
        // By structure, not one byte: a safetensors header length can start with 0x80 too.
        if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            pt::read_zip(path, buf)
        } else if safetensors::looks_like(bytes) {
            safetensors::read(path, buf)
        } else if bytes.len() >= 2 && bytes[0] == 0x80 && (2..=5).contains(&bytes[1]) {
            pt::read_legacy(path, buf)
        } else {
            Err(Error::format(path, "not a checkpoint (expected safetensors, or a PyTorch zip or pickle file)"))
        }
    }

    /// The file name given when opening.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `"safetensors"`, `"pytorch-zip"` or `"pytorch-legacy"`.
    pub fn format(&self) -> &'static str {
        self.format
    }

    /// The tensors, by name.
    pub fn tensors(&self) -> &BTreeMap<String, TensorInfo> {
        &self.tensors
    }

    /// The string metadata (safetensors `__metadata__`; empty for PyTorch files).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Info of tensor `name`, or an error naming it.
    pub fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors.get(name).ok_or_else(|| Error::MissingTensor { file: self.path.clone(), tensor: name.into() })
    }

    fn raw(&self, info: &TensorInfo) -> &[u8] {
        let v = &info.view;
        &self.buffers[v.buf].bytes()[v.start..v.start + v.len]
    }

    /// Tensor `name` converted to f32 (from f16, bf16, f32 or f64), contiguous row-major.
    pub fn f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let info = self.info(name)?;
        if !info.dtype.is_float() {
            return Err(Error::TensorDtype {
                file: self.path.clone(),
                tensor: name.into(),
                dtype: info.dtype.name(),
                expected: "a float type",
            });
        }
        let raw = self.raw(info);
        let out = gather(info, raw, |b| match info.dtype {
            DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            DType::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            DType::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            _ => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
        });
        Ok((info.shape.clone(), out))
    }

    /// Tensor `name` as f32 with an expected shape, or an error naming the tensor and both shapes.
    pub fn f32_shaped(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let info = self.info(name)?;
        if info.shape != shape {
            return Err(Error::TensorShape {
                file: self.path.clone(),
                tensor: name.into(),
                found: info.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        Ok(self.f32(name)?.1)
    }

    /// Tensor `name` converted to f64 (floats only).
    pub fn f64(&self, name: &str) -> Result<(Vec<usize>, Vec<f64>)> {
        let info = self.info(name)?;
        if info.dtype == DType::F64 {
            let raw = self.raw(info);
            let out = gather(info, raw, |b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
            return Ok((info.shape.clone(), out));
        }
        let (s, v) = self.f32(name)?;
        Ok((s, v.into_iter().map(f64::from).collect()))
    }

    /// Tensor `name` converted to i64 (integer types only).
    pub fn i64(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>)> {
        let info = self.info(name)?;
        let raw = self.raw(info);
        let out = match info.dtype {
            DType::I64 => gather(info, raw, |b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])),
            DType::I32 => gather(info, raw, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64),
            DType::I16 => gather(info, raw, |b| i16::from_le_bytes([b[0], b[1]]) as i64),
            DType::I8 => gather(info, raw, |b| b[0] as i8 as i64),
            DType::U8 | DType::Bool => gather(info, raw, |b| b[0] as i64),
            d => {
                return Err(Error::TensorDtype {
                    file: self.path.clone(),
                    tensor: name.into(),
                    dtype: d.name(),
                    expected: "an integer type",
                })
            }
        };
        Ok((info.shape.clone(), out))
    }
}

/// Copies a strided view out element by element (views were bounds-checked when parsed).
fn gather<T>(info: &TensorInfo, raw: &[u8], conv: impl Fn(&[u8]) -> T) -> Vec<T> {
    let es = info.dtype.size();
    let v = &info.view;
    let n = info.numel();
    let mut out = Vec::with_capacity(n);
    if is_contiguous(&info.shape, &v.strides) {
        let base = v.offset * es;
        for i in 0..n {
            out.push(conv(&raw[base + i * es..base + (i + 1) * es]));
        }
        return out;
    }
    let rank = info.shape.len();
    let mut idx = vec![0usize; rank];
    for _ in 0..n {
        let e: usize = v.offset + idx.iter().zip(&v.strides).map(|(i, s)| i * s).sum::<usize>();
        out.push(conv(&raw[e * es..(e + 1) * es]));
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < info.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

fn is_contiguous(shape: &[usize], strides: &[usize]) -> bool {
    let mut expect = 1;
    for (d, s) in shape.iter().zip(strides).rev() {
        if *d != 1 && *s != expect {
            return false;
        }
        expect *= d;
    }
    true
}

/// Row-major strides of a shape.
fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// Checks that a strided view of `numel` elements fits in `storage_elems` elements; returns the
/// element count or an error describing the overflow.
fn check_view(
    shape: &[usize],
    strides: &[usize],
    offset: usize,
    storage_elems: usize,
) -> std::result::Result<usize, String> {
    if shape.len() != strides.len() {
        return Err(format!("shape {shape:?} and stride {strides:?} differ in rank"));
    }
    if shape.len() > MAX_RANK {
        return Err(format!("{} dimensions (at most {MAX_RANK})", shape.len()));
    }
    let mut numel: usize = 1;
    let mut last: usize = offset;
    for (&d, &s) in shape.iter().zip(strides) {
        numel = numel.checked_mul(d).ok_or("element count overflows")?;
        if d > 0 {
            last = (d - 1).checked_mul(s).and_then(|x| x.checked_add(last)).ok_or("view extent overflows")?;
        }
    }
    if numel > 0 && last >= storage_elems {
        return Err(format!(
            "view (offset {offset}, shape {shape:?}, stride {strides:?}) reaches element {last} of a storage of {storage_elems}"
        ));
    }
    // A view that reads elements more than once (stride 0, overlapping strides) could expand a
    // tiny file into any amount of memory; a state_dict never holds one.
    if numel > storage_elems {
        return Err(format!("view of {numel} elements over a storage of {storage_elems} repeats elements"));
    }
    Ok(numel)
}
