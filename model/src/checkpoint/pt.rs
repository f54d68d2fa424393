//! PyTorch checkpoints: the zip format of `torch.save` (>= 1.6) and the legacy pickle stream.

use super::pickle::{unpickle, Id, Pickle, StorageRef, TensorRef, Value};
use super::{check_view, Buffer, Checkpoint, DType, TensorInfo, View, MAX_HEADER};
use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;

/// The most a compressed zip entry may expand (torch.save stores entries uncompressed; deflate
/// can reach ~1032x, which would let a 1 MB file claim a gigabyte).
const MAX_DEFLATE_RATIO: u64 = 64;
/// What is reserved before an entry's bytes arrive; more grows as data is really read.
const PREALLOCATE: u64 = 16 << 20;
/// How deep nested dicts are followed (e.g. `{"state_dict": {...}}`).
const MAX_NESTING: usize = 8;

struct Storage {
    buf: usize,
    start: usize,
    len: usize,
}

/// The tensors of a state_dict pickle, with names flattened (`outer.inner`) from nested dicts.
fn collect_tensors(p: &Pickle) -> std::result::Result<Vec<(String, Id)>, String> {
    let mut out = Vec::new();
    walk(p, p.root, String::new(), 0, &mut out)?;
    if out.is_empty() {
        return Err("no tensors found (expected a state_dict)".into());
    }
    Ok(out)
}

fn walk(
    p: &Pickle,
    id: Id,
    prefix: String,
    depth: usize,
    out: &mut Vec<(String, Id)>,
) -> std::result::Result<(), String> {
    if depth > MAX_NESTING {
        return Ok(());
    }
    match &p.nodes[id] {
        Value::Dict(items) => {
            for &(k, v) in items {
                let key = match &p.nodes[k] {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                let name = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
                walk(p, v, name, depth + 1, out)?;
            }
        }
        Value::Tensor(_) => out.push((prefix, id)),
        _ => {}
    }
    Ok(())
}

/// Turns the pickle's tensors into [`TensorInfo`]s over the located storages.
fn build(path: &str, p: &Pickle, storages: &HashMap<String, Storage>) -> Result<BTreeMap<String, TensorInfo>> {
    let bad = |m: String| Error::format(path.to_string(), m);
    let mut tensors = BTreeMap::new();
    for (name, id) in collect_tensors(p).map_err(bad)? {
        let Value::Tensor(t) = &p.nodes[id] else { unreachable!("collect_tensors returns tensors") };
        let TensorRef { storage, offset, shape, stride } = &**t;
        let Value::Storage(st) = &p.nodes[*storage] else {
            return Err(bad(format!("tensor '{name}': not backed by a storage")));
        };
        let StorageRef { dtype, key, numel } = &**st;
        let s =
            storages.get(key).ok_or_else(|| bad(format!("tensor '{name}': storage '{key}' missing from the file")))?;
        let have = s.len / dtype.size();
        if have < *numel {
            return Err(bad(format!(
                "tensor '{name}': storage '{key}' holds {have} elements, the pickle says {numel} (truncated file?)"
            )));
        }
        check_view(shape, stride, *offset, have).map_err(|e| bad(format!("tensor '{name}': {e}")))?;
        tensors.insert(
            name,
            TensorInfo {
                dtype: *dtype,
                shape: shape.clone(),
                view: View { buf: s.buf, start: s.start, len: s.len, offset: *offset, strides: stride.clone() },
            },
        );
    }
    Ok(tensors)
}

fn storage_keys(p: &Pickle) -> Vec<(String, DType, usize)> {
    let mut keys: Vec<_> = p
        .nodes
        .iter()
        .filter_map(|v| match v {
            Value::Storage(s) => Some((s.key.clone(), s.dtype, s.numel)),
            _ => None,
        })
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    keys.dedup_by(|a, b| a.0 == b.0);
    keys
}

pub(super) fn read_zip(path: String, buf: Buffer) -> Result<Checkpoint> {
    let bad = |m: String| Error::format(path.to_string(), m);
    let bytes = buf.bytes();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| bad(format!("not a readable zip archive: {e}")))?;
    let pkl_name = zip
        .file_names()
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .map(str::to_string)
        .ok_or_else(|| bad("zip archive has no <name>/data.pkl: not a torch.save file".into()))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    if let Ok(mut f) = zip.by_name(&format!("{prefix}byteorder")) {
        let mut s = String::new();
        let _ = f.by_ref().take(16).read_to_string(&mut s);
        if s.trim() != "little" {
            return Err(bad(format!("byte order '{}' is not supported", s.trim())));
        }
    }
    let total = bytes.len() as u64;
    let pkl = read_entry(&mut zip, &pkl_name, MAX_HEADER as u64, total).map_err(bad)?;
    let p = unpickle(&pkl, None).map_err(|e| bad(format!("data.pkl: {e}")))?;
    let mut owned = Vec::new();
    let mut storages = HashMap::new();
    for (key, _, _) in storage_keys(&p) {
        let name = format!("{prefix}data/{key}");
        let f = zip.by_name(&name).map_err(|_| bad(format!("storage '{key}' missing from the archive")))?;
        if f.compression() == zip::CompressionMethod::Stored {
            let start = f.data_start() as usize;
            let len = f.size() as usize;
            if start.checked_add(len).is_none_or(|e| e > bytes.len()) {
                return Err(bad(format!("storage '{key}' extends past the end of the file")));
            }
            storages.insert(key, Storage { buf: 0, start, len });
        } else {
            drop(f);
            let data = read_entry(&mut zip, &name, u64::MAX, total).map_err(bad)?;
            owned.push(data);
            let len = owned.last().map_or(0, Vec::len);
            storages.insert(key, Storage { buf: owned.len(), start: 0, len });
        }
    }
    let tensors = build(&path, &p, &storages)?;
    let mut buffers = vec![buf];
    buffers.extend(owned.into_iter().map(Buffer::Owned));
    Ok(Checkpoint { path, buffers, tensors, metadata: BTreeMap::new(), format: "pytorch-zip" })
}

/// Reads a whole zip entry, refusing sizes the compressed data cannot justify.
fn read_entry<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    cap: u64,
    archive_len: u64,
) -> std::result::Result<Vec<u8>, String> {
    let f = zip.by_name(name).map_err(|e| format!("{name}: {e}"))?;
    let declared = f.size();
    // The compressed size is read from the file too: it may not claim more than the file.
    let compressed = f.compressed_size().min(archive_len);
    let limit = compressed.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(4096).min(cap);
    if declared > limit {
        return Err(format!("{name}: declared size {declared} is more than its data can hold"));
    }
    let mut out = Vec::with_capacity(declared.min(PREALLOCATE) as usize);
    f.take(declared).read_to_end(&mut out).map_err(|e| format!("{name}: {e}"))?;
    if out.len() as u64 != declared {
        return Err(format!("{name}: truncated ({} of {declared} bytes)", out.len()));
    }
    Ok(out)
}

/// The legacy format: magic, protocol, sys_info and object pickles, the storage key list, then
/// each storage as an 8-byte element count and its bytes.
pub(super) fn read_legacy(path: String, buf: Buffer) -> Result<Checkpoint> {
    let bad = |m: String| Error::format(path.to_string(), m);
    let bytes = buf.bytes();
    let mut pos = 0;
    let mut next = |what: &str| -> Result<Pickle> {
        let p = unpickle(&bytes[pos..], None).map_err(|e| bad(format!("{what}: {e}")))?;
        pos += p.consumed;
        Ok(p)
    };
    let magic = next("magic number")?;
    const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    if magic.nodes[magic.root] != Value::BigInt(MAGIC.to_vec()) {
        return Err(bad("not a PyTorch checkpoint (bad magic number)".into()));
    }
    next("protocol version")?;
    next("sys_info")?;
    let obj = next("state_dict")?;
    let keys = next("storage keys")?;
    let Value::List(ids) = &keys.nodes[keys.root] else {
        return Err(bad("storage key list is not a list".into()));
    };
    let dtypes: HashMap<String, (DType, usize)> = storage_keys(&obj).into_iter().map(|(k, d, n)| (k, (d, n))).collect();
    let mut storages = HashMap::new();
    for &id in ids {
        let Value::Str(key) = &keys.nodes[id] else {
            return Err(bad("storage key is not a string".into()));
        };
        let &(dtype, _) = dtypes.get(key).ok_or_else(|| bad(format!("storage '{key}' is not used by any tensor")))?;
        let header = bytes.get(pos..pos + 8).ok_or_else(|| bad(format!("storage '{key}': truncated")))?;
        let n = u64::from_le_bytes(header.try_into().expect("8"));
        let len = n
            .checked_mul(dtype.size() as u64)
            .filter(|&l| l <= (bytes.len() - pos - 8) as u64)
            .ok_or_else(|| bad(format!("storage '{key}': {n} elements run past the end of the file")))?
            as usize;
        storages.insert(key.clone(), Storage { buf: 0, start: pos + 8, len });
        pos += 8 + len;
    }
    let tensors = build(&path, &obj, &storages)?;
    Ok(Checkpoint { path, buffers: vec![buf], tensors, metadata: BTreeMap::new(), format: "pytorch-legacy" })
}
