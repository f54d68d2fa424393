//! The safetensors format: an 8-byte little-endian header length, a JSON header of
//! `name -> {dtype, shape, data_offsets}` (plus `__metadata__`), then the data.

use super::{contiguous_strides, Buffer, Checkpoint, DType, TensorInfo, View, MAX_HEADER};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Alias kept for readers that only want safetensors.
pub type SafeTensors = Checkpoint;

#[derive(serde::Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// Whether `bytes` start like a safetensors file: an 8-byte header length that fits the file,
/// then a JSON object.
pub(super) fn looks_like(bytes: &[u8]) -> bool {
    bytes.len() >= 10
        && bytes[8] == b'{'
        && u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) <= (bytes.len() - 8) as u64
}

pub(super) fn read(path: String, buf: Buffer) -> Result<Checkpoint> {
    let bytes = buf.bytes();
    let bad = |m: String| Error::format(path.to_string(), m);
    if bytes.len() < 8 {
        return Err(bad("truncated safetensors file (no header length)".into()));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER as u64 || n > (bytes.len() - 8) as u64 {
        return Err(bad(format!("safetensors header length {n} exceeds the file ({} bytes)", bytes.len())));
    }
    let n = n as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| bad(format!("bad safetensors header JSON: {e}")))?;
    let data_start = 8 + n;
    let data_len = bytes.len() - data_start;
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, v) in header {
        if name == "__metadata__" {
            let m: BTreeMap<String, String> =
                serde_json::from_value(v).map_err(|e| bad(format!("__metadata__ must map strings to strings: {e}")))?;
            metadata = m;
            continue;
        }
        let e: Entry = serde_json::from_value(v).map_err(|e| bad(format!("tensor '{name}': {e}")))?;
        let dtype =
            DType::from_name(&e.dtype).ok_or_else(|| bad(format!("tensor '{name}': unsupported dtype {}", e.dtype)))?;
        let [b, en] = e.data_offsets;
        if b > en || en > data_len as u64 {
            return Err(bad(format!("tensor '{name}': data offsets [{b}, {en}] outside the {data_len} data bytes")));
        }
        if e.shape.len() > super::MAX_RANK {
            return Err(bad(format!("tensor '{name}': {} dimensions (at most {})", e.shape.len(), super::MAX_RANK)));
        }
        let shape: Vec<usize> = e
            .shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| bad(format!("tensor '{name}': dimension {d} too large"))))
            .collect::<Result<_>>()?;
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad(format!("tensor '{name}': shape {shape:?} overflows")))?;
        let nbytes = numel
            .checked_mul(dtype.size())
            .ok_or_else(|| bad(format!("tensor '{name}': shape {shape:?} overflows")))?;
        if nbytes as u64 != en - b {
            return Err(bad(format!(
                "tensor '{name}': shape {shape:?} of {} needs {nbytes} bytes but its data has {}",
                dtype.name(),
                en - b
            )));
        }
        let strides = contiguous_strides(&shape);
        tensors.insert(
            name,
            TensorInfo {
                dtype,
                shape,
                view: View { buf: 0, start: data_start + b as usize, len: nbytes, offset: 0, strides },
            },
        );
    }
    // Tensors may not share bytes (the format's rule; a reader that allowed it would let one
    // file's bytes stand for two tensors).
    let mut spans: Vec<(usize, usize, &String)> =
        tensors.iter().map(|(n, t)| (t.view.start, t.view.start + t.view.len, n)).collect();
    spans.sort();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(bad(format!("tensors '{}' and '{}' overlap in the data", w[0].2, w[1].2)));
        }
    }
    Ok(Checkpoint { path, buffers: vec![buf], tensors, metadata, format: "safetensors" })
}

/// A tensor to write: name, dtype, shape and little-endian bytes.
pub struct WriteTensor<'a> {
    /// Name.
    pub name: &'a str,
    /// Element type of `bytes`.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian element bytes.
    pub bytes: std::borrow::Cow<'a, [u8]>,
}

impl<'a> WriteTensor<'a> {
    /// An f32 tensor.
    pub fn f32(name: &'a str, shape: &[usize], data: &[f32]) -> Self {
        WriteTensor {
            name,
            dtype: DType::F32,
            shape: shape.to_vec(),
            bytes: data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into(),
        }
    }
    /// An f16 tensor (rounded from f32).
    pub fn f16(name: &'a str, shape: &[usize], data: &[f32]) -> Self {
        WriteTensor {
            name,
            dtype: DType::F16,
            shape: shape.to_vec(),
            bytes: data.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect::<Vec<u8>>().into(),
        }
    }
    /// An i64 tensor.
    pub fn i64(name: &'a str, shape: &[usize], data: &[i64]) -> Self {
        WriteTensor {
            name,
            dtype: DType::I64,
            shape: shape.to_vec(),
            bytes: data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into(),
        }
    }
}

/// Writes a safetensors file atomically (a temporary file in the same folder, then a rename).
pub fn write_safetensors(
    path: impl AsRef<Path>,
    tensors: &[WriteTensor<'_>],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata).expect("strings"));
    }
    let mut off = 0usize;
    for t in tensors {
        let n: usize = t.shape.iter().product::<usize>() * t.dtype.size();
        if n != t.bytes.len() {
            return Err(Error::TensorBytes { tensor: t.name.to_string(), expected: n, found: t.bytes.len() });
        }
        header.insert(
            t.name.to_string(),
            serde_json::json!({"dtype": t.dtype.name(), "shape": t.shape, "data_offsets": [off, off + n]}),
        );
        off += n;
    }
    let mut h = serde_json::to_vec(&header).expect("json");
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    crate::io::write_atomic(path.as_ref(), |w| {
        w.write_all(&(h.len() as u64).to_le_bytes())?;
        w.write_all(&h)?;
        for t in tensors {
            w.write_all(&t.bytes)?;
        }
        Ok(())
    })
}
