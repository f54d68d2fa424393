//! Where the UNet's parameters come from: a checkpoint (shape-checked, every tensor used) or a
//! seeded random initialisation (benchmarks and tests).

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use diffinv_core::NoiseStream;
use std::collections::BTreeSet;

/// A source of named parameters.
pub trait WeightSource {
    /// The parameter `name` with the given shape; `fan_in` is 0 for norm parameters.
    fn get(&mut self, name: &str, shape: &[usize], fan_in: usize) -> Result<Vec<f32>>;
    /// Called after the model is built: reports tensors that were never asked for.
    fn finish(&mut self) -> Result<()>;
    /// Whether the source holds `name` (for layouts whose names changed between versions);
    /// sources without names say no, and the current names are read.
    fn has(&self, _name: &str) -> bool {
        false
    }
}

/// The prefix every tensor name of `ckpt` shares when the `state_dict` was saved from a wrapper
/// (`module.` for DataParallel, `model.`, `state_dict.`), else "".
pub fn wrapper_prefix(ckpt: &Checkpoint) -> &'static str {
    let names = ckpt.tensors();
    ["module.", "model.", "state_dict."]
        .into_iter()
        .find(|p| !names.is_empty() && names.keys().all(|n| n.starts_with(p)))
        .unwrap_or("")
}

/// Parameters from a checkpoint, with `module.` prefixes (DataParallel) stripped.
pub struct CheckpointWeights<'a> {
    ckpt: &'a Checkpoint,
    prefix: String,
    used: BTreeSet<String>,
}

impl<'a> CheckpointWeights<'a> {
    /// Reads from `ckpt`.
    pub fn new(ckpt: &'a Checkpoint) -> Self {
        CheckpointWeights { ckpt, prefix: wrapper_prefix(ckpt).to_string(), used: BTreeSet::new() }
    }
}

impl WeightSource for CheckpointWeights<'_> {
    fn get(&mut self, name: &str, shape: &[usize], _fan_in: usize) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        let info = self.ckpt.info(&full)?;
        if info.shape != shape {
            return Err(Error::TensorShape {
                file: self.ckpt.path().into(),
                tensor: full,
                found: info.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        self.used.insert(full.clone());
        let (_, v) = self.ckpt.f32(&full)?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::NonFiniteWeight { file: self.ckpt.path().into(), tensor: full, index: i });
        }
        Ok(v)
    }

    fn has(&self, name: &str) -> bool {
        self.ckpt.tensors().contains_key(&format!("{}{name}", self.prefix))
    }

    fn finish(&mut self) -> Result<()> {
        let extra: Vec<&String> = self.ckpt.tensors().keys().filter(|k| !self.used.contains(*k)).collect();
        if extra.is_empty() {
            return Ok(());
        }
        Err(Error::UnusedTensors {
            file: self.ckpt.path().into(),
            count: extra.len(),
            first: extra.iter().take(5).map(|s| s.to_string()).collect(),
        })
    }
}

/// Records the name and shape of every parameter a config asks for (no values): what a
/// checkpoint of that architecture holds, to recognise a file by its tensors.
#[derive(Default)]
pub struct ShapeRecorder {
    /// `(name, shape)` in the order asked.
    pub shapes: Vec<(String, Vec<usize>)>,
}

impl WeightSource for ShapeRecorder {
    fn get(&mut self, name: &str, shape: &[usize], _: usize) -> Result<Vec<f32>> {
        self.shapes.push((name.to_string(), shape.to_vec()));
        Ok(Vec::new())
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// No parameters at all (empty vectors): a description that carries the architecture only,
/// for sizes, FLOPs and parameter counts. Backends cannot be built from it.
pub struct ShapeOnly;

impl WeightSource for ShapeOnly {
    fn get(&mut self, _: &str, _: &[usize], _: usize) -> Result<Vec<f32>> {
        Ok(Vec::new())
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Seeded random parameters, scaled like adm_tiny's: norm weight `1 + 0.1 n`, norm bias `0.1 n`,
/// conv and linear weights and biases `n/sqrt(fan_in)`.
pub struct RandomWeights {
    rng: NoiseStream,
}

impl RandomWeights {
    /// Random weights from `seed`.
    pub fn new(seed: u64) -> Self {
        RandomWeights { rng: NoiseStream::new(seed, diffinv_core::rng::streams::WEIGHTS) }
    }
}

impl WeightSource for RandomWeights {
    fn get(&mut self, name: &str, shape: &[usize], fan_in: usize) -> Result<Vec<f32>> {
        let mut v = vec![0.0f32; shape.iter().product()];
        self.rng.fill_normal(&mut v);
        if fan_in == 0 {
            let off = if name.ends_with("weight") { 1.0 } else { 0.0 };
            v.iter_mut().for_each(|x| *x = off + 0.1 * *x);
        } else {
            let s = 1.0 / (fan_in as f32).sqrt();
            v.iter_mut().for_each(|x| *x *= s);
        }
        Ok(v)
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}
