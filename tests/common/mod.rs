//! Helpers shared by the integration tests: fixture paths and error measures.
#![allow(dead_code)]

use diffinv::cpu::checkpoint::Checkpoint;
use diffinv::cpu::Tensor;
use std::path::PathBuf;

/// A file under `tests/data`.
pub fn data(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(p)
}

/// A golden fixture.
pub fn golden(name: &str) -> Checkpoint {
    Checkpoint::open(data(&format!("golden/{name}.safetensors"))).expect("golden fixture")
}

/// A 4-D f32 tensor from a fixture.
pub fn tensor(c: &Checkpoint, name: &str) -> Tensor {
    let (s, v) = c.f32(name).unwrap_or_else(|e| panic!("{e}"));
    let mut shape = [1usize; 4];
    let off = 4 - s.len();
    shape[off..].copy_from_slice(&s);
    Tensor::from_vec(shape, v).unwrap()
}

/// `max|a - b| / max|b|`, the measure the fixtures' tolerances are stated in.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let m = b.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64)).max(1e-30);
    a.iter().zip(b).fold(0.0f64, |e, (x, y)| e.max((*x as f64 - *y as f64).abs())) / m
}
