//! A model from a checkpoint: its architecture (from the file's metadata or a given config), its
//! diffusion settings, and its description with every weight read and checked.

use crate::checkpoint::Checkpoint;
use crate::config::UNetConfig;
use crate::desc::UNetDesc;
use crate::error::{Error, Result};
use crate::weights::CheckpointWeights;
use diffinv_core::{BetaSchedule, VarianceKind};

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

/// The most training steps a model may declare.
pub const MAX_STEPS: usize = 100_000;

impl DiffusionSettings {
    /// The DDPM defaults for `cfg`: 1000 linear steps, the variance its outputs imply.
    pub fn for_config(cfg: &UNetConfig) -> Self {
        DiffusionSettings { steps: 1000, schedule: BetaSchedule::LINEAR, variance: cfg.variance() }
    }
}

/// A loaded description and what is known about its file.
pub struct ModelDesc {
    /// The network.
    pub desc: UNetDesc,
    /// Its diffusion settings.
    pub diffusion: DiffusionSettings,
    /// The file (or name) it came from.
    pub file: String,
    /// `safetensors`, `pytorch-zip` or `pytorch-legacy`.
    pub format: &'static str,
    /// Stored element types and how many tensors use each.
    pub dtypes: Vec<(String, usize)>,
}

impl ModelDesc {
    /// The architecture.
    pub fn config(&self) -> &UNetConfig {
        &self.desc.config
    }

    /// Reads the model in `ckpt`. `config` (a preset, a JSON file or inline JSON) overrides the
    /// checkpoint's own metadata; PyTorch files carry none, so they need it.
    ///
    /// # Errors
    /// [`Error::NoConfig`] without a config, config and metadata errors, and every tensor problem
    /// (missing, misshapen, non-finite, unused).
    pub fn read(ckpt: &Checkpoint, config: Option<&str>) -> Result<Self> {
        let file = ckpt.path().to_string();
        let cfg = match config {
            Some(c) => UNetConfig::from_arg(c)?,
            None => match ckpt.metadata().get("config") {
                Some(j) => UNetConfig::from_json(j).map_err(|e| match e {
                    Error::Config { key, reason } => Error::config(format!("{file} metadata: {key}"), reason),
                    e => e,
                })?,
                None => return Err(Error::NoConfig { file }),
            },
        };
        let diffusion = diffusion_settings(ckpt, &cfg)?;
        let mut counts = std::collections::BTreeMap::new();
        for t in ckpt.tensors().values() {
            *counts.entry(t.dtype.name().to_string()).or_insert(0usize) += 1;
        }
        let desc = UNetDesc::read(&cfg, &mut CheckpointWeights::new(ckpt))?;
        Ok(ModelDesc { desc, diffusion, file, format: ckpt.format(), dtypes: counts.into_iter().collect() })
    }

    /// Opens `path` and reads its model (see [`ModelDesc::read`]).
    ///
    /// # Errors
    /// The file cannot be opened or parsed, or as [`ModelDesc::read`].
    pub fn open(path: impl AsRef<std::path::Path>, config: Option<&str>) -> Result<Self> {
        Self::read(&Checkpoint::open(path)?, config)
    }
}

fn diffusion_settings(ckpt: &Checkpoint, cfg: &UNetConfig) -> Result<DiffusionSettings> {
    let mut d = DiffusionSettings::for_config(cfg);
    let Some(j) = ckpt.metadata().get("diffusion") else {
        return Ok(d);
    };
    let bad = |key: &str, m: String| Error::config(format!("{} metadata: diffusion.{key}", ckpt.path()), m);
    let v: serde_json::Value = serde_json::from_str(j).map_err(|e| bad("JSON", e.to_string()))?;
    if let Some(s) = v.get("steps") {
        d.steps = s
            .as_u64()
            .filter(|&s| (1..=MAX_STEPS as u64).contains(&s))
            .ok_or_else(|| bad("steps", format!("must be an integer in 1..={MAX_STEPS}, got {s}")))?
            as usize;
    }
    match v.get("schedule").and_then(|s| s.as_str()) {
        None | Some("linear") => {
            let start = v.get("beta_start").and_then(|x| x.as_f64()).unwrap_or(1e-4);
            let end = v.get("beta_end").and_then(|x| x.as_f64()).unwrap_or(0.02);
            if !(start > 0.0 && start <= end && end < 1.0) {
                return Err(bad("beta_start", format!("betas {start}..{end} must satisfy 0 < start <= end < 1")));
            }
            d.schedule = BetaSchedule::Linear { start, end };
        }
        Some("cosine") => d.schedule = BetaSchedule::COSINE,
        Some(s) => return Err(bad("schedule", format!("unknown schedule '{s}'"))),
    }
    match v.get("predict").and_then(|s| s.as_str()) {
        None | Some("eps") => {}
        Some(p) => return Err(bad("predict", format!("models predicting '{p}' are not supported (only eps)"))),
    }
    match v.get("variance").and_then(|s| s.as_str()) {
        None => {}
        Some("fixed_small") => d.variance = VarianceKind::FixedSmall,
        Some("fixed_large") => d.variance = VarianceKind::FixedLarge,
        Some("learned_range") => d.variance = VarianceKind::LearnedRange,
        Some(s) => return Err(bad("variance", format!("unknown variance '{s}'"))),
    }
    if d.variance == VarianceKind::LearnedRange && cfg.out_channels != 2 * cfg.in_channels {
        return Err(bad("variance", "learned_range needs 2 x in_channels outputs".into()));
    }
    Ok(d)
}
