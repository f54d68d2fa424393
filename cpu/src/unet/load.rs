//! Loading a model: checkpoint + config (+ diffusion settings), and the shipped default model.

use super::config::UNetConfig;
use super::model::UNet;
use super::weights::CheckpointWeights;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use diffinv_core::{BetaSchedule, VarianceKind};
use std::path::{Path, PathBuf};

/// Where the model comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// The shipped 64x64 face model.
    Default,
    /// A checkpoint file.
    Path(PathBuf),
}

/// The diffusion settings a model was trained with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiffusionSettings {
    /// Training steps `T`.
    pub steps: usize,
    /// The beta schedule.
    pub schedule: BetaSchedule,
    /// The reverse-process variance.
    pub variance: VarianceKind,
}

/// A loaded model and what is known about it.
pub struct LoadedModel {
    /// The network.
    pub unet: UNet,
    /// Its architecture.
    pub config: UNetConfig,
    /// Its diffusion settings.
    pub diffusion: DiffusionSettings,
    /// The file it came from.
    pub path: PathBuf,
    /// `safetensors`, `pytorch-zip` or `pytorch-legacy`.
    pub format: &'static str,
    /// Stored element types and how many tensors use each.
    pub dtypes: Vec<(String, usize)>,
}

/// The shipped default model's path: `$DIFFINV_MODEL` if set, else the repository's copy.
pub fn default_model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("DIFFINV_MODEL") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/models/celeba64-adm.safetensors")
}

impl ModelSource {
    /// The file to open.
    pub fn path(&self) -> PathBuf {
        match self {
            ModelSource::Default => default_model_path(),
            ModelSource::Path(p) => p.clone(),
        }
    }
}

/// Opens `source` and builds its UNet. `config` (a preset, JSON file or inline JSON) overrides
/// the checkpoint's own metadata; PyTorch files carry none, so they need it.
pub fn load_model(source: &ModelSource, config: Option<&str>) -> Result<LoadedModel> {
    let path = source.path();
    if !path.exists() {
        let hint = match source {
            ModelSource::Default => " (the shipped model; set DIFFINV_MODEL to its location)",
            ModelSource::Path(_) => "",
        };
        return Err(Error::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, format!("model file not found{hint}")),
        });
    }
    let ckpt = Checkpoint::open(&path)?;
    let cfg = match config {
        Some(c) => UNetConfig::from_arg(c)?,
        None => match ckpt.metadata().get("config") {
            Some(j) => UNetConfig::from_json(j)
                .map_err(|e| Error::Config(format!("{}: metadata config: {e}", path.display())))?,
            None => {
                return Err(Error::Config(format!(
                    "{}: the checkpoint has no config; give --config ({} or a JSON file)",
                    path.display(),
                    UNetConfig::PRESETS.join(", ")
                )))
            }
        },
    };
    let diffusion = diffusion_settings(&ckpt, &cfg)?;
    let mut counts = std::collections::BTreeMap::new();
    for t in ckpt.tensors().values() {
        *counts.entry(t.dtype.name().to_string()).or_insert(0usize) += 1;
    }
    let unet = UNet::new(&cfg, &mut CheckpointWeights::new(&ckpt))?;
    Ok(LoadedModel { unet, config: cfg, diffusion, path, format: ckpt.format(), dtypes: counts.into_iter().collect() })
}

fn diffusion_settings(ckpt: &Checkpoint, cfg: &UNetConfig) -> Result<DiffusionSettings> {
    let mut d = DiffusionSettings { steps: 1000, schedule: BetaSchedule::LINEAR, variance: cfg.variance() };
    let Some(j) = ckpt.metadata().get("diffusion") else {
        return Ok(d);
    };
    let bad = |m: String| Error::Config(format!("{}: metadata diffusion: {m}", ckpt.path()));
    let v: serde_json::Value = serde_json::from_str(j).map_err(|e| bad(e.to_string()))?;
    if let Some(s) = v.get("steps").and_then(|s| s.as_u64()) {
        d.steps = s as usize;
    }
    match v.get("schedule").and_then(|s| s.as_str()) {
        None | Some("linear") => {
            let start = v.get("beta_start").and_then(|x| x.as_f64()).unwrap_or(1e-4);
            let end = v.get("beta_end").and_then(|x| x.as_f64()).unwrap_or(0.02);
            d.schedule = BetaSchedule::Linear { start, end };
        }
        Some("cosine") => d.schedule = BetaSchedule::COSINE,
        Some(s) => return Err(bad(format!("unknown schedule '{s}'"))),
    }
    match v.get("predict").and_then(|s| s.as_str()) {
        None | Some("eps") => {}
        Some(p) => return Err(bad(format!("models predicting '{p}' are not supported (only eps)"))),
    }
    match v.get("variance").and_then(|s| s.as_str()) {
        None => {}
        Some("fixed_small") => d.variance = VarianceKind::FixedSmall,
        Some("fixed_large") => d.variance = VarianceKind::FixedLarge,
        Some("learned_range") => d.variance = VarianceKind::LearnedRange,
        Some(s) => return Err(bad(format!("unknown variance '{s}'"))),
    }
    if d.variance == VarianceKind::LearnedRange && cfg.out_channels != 2 * cfg.in_channels {
        return Err(bad("learned_range variance needs 2x in_channels outputs".into()));
    }
    if d.steps == 0 {
        return Err(bad("steps must be positive".into()));
    }
    Ok(d)
}
