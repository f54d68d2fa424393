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
    /// Where the architecture came from: `given`, `metadata`, `config.json`, or
    /// `detected` (a preset recognised by the checkpoint's tensor shapes).
    pub config_source: &'static str,
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
    /// A file without metadata (a guided-diffusion `.pt`) is recognised by its tensor shapes
    /// when they are exactly those of a preset.
    pub fn read(ckpt: &Checkpoint, config: Option<&str>) -> Result<Self> {
        let file = ckpt.path().to_string();
        let (cfg, source) = match config {
            Some(c) => (UNetConfig::from_arg(c)?, "given"),
            None => match ckpt.metadata().get("config") {
                Some(j) => (
                    UNetConfig::from_json(j).map_err(|e| match e {
                        Error::Config { key, reason } => Error::config(format!("{file} metadata: {key}"), reason),
                        e => e,
                    })?,
                    "metadata",
                ),
                None => match detect_preset(ckpt) {
                    Some(p) => (UNetConfig::preset(p).expect("a preset"), "detected"),
                    None => return Err(Error::NoConfig { file }),
                },
            },
        };
        let diffusion = diffusion_settings(ckpt, &cfg)?;
        Self::with_config(ckpt, cfg, diffusion, source)
    }

    fn with_config(
        ckpt: &Checkpoint,
        cfg: UNetConfig,
        diffusion: DiffusionSettings,
        config_source: &'static str,
    ) -> Result<Self> {
        let mut counts = std::collections::BTreeMap::new();
        for t in ckpt.tensors().values() {
            *counts.entry(t.dtype.name().to_string()).or_insert(0usize) += 1;
        }
        let desc = UNetDesc::read(&cfg, &mut CheckpointWeights::new(ckpt))?;
        Ok(ModelDesc {
            desc,
            diffusion,
            file: ckpt.path().to_string(),
            format: ckpt.format(),
            dtypes: counts.into_iter().collect(),
            config_source,
        })
    }

    /// Opens `path` and reads its model (see [`ModelDesc::read`]); a folder is read as a
    /// diffusers model (see [`ModelDesc::open_diffusers`]).
    ///
    /// # Errors
    /// The file cannot be opened or parsed, or as [`ModelDesc::read`].
    pub fn open(path: impl AsRef<std::path::Path>, config: Option<&str>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            return Self::open_diffusers(path, config);
        }
        Self::read(&Checkpoint::open(path)?, config)
    }

    /// A diffusers `UNet2DModel` folder: `config.json` (or `config`, which overrides it),
    /// `diffusion_pytorch_model.safetensors` or `.bin`, and the schedule from
    /// `scheduler_config.json` (DDPM's 1000 linear steps without one).
    ///
    /// # Errors
    /// A missing file, an unsupported option (named by its key and file), or a tensor problem.
    pub fn open_diffusers(dir: &std::path::Path, config: Option<&str>) -> Result<Self> {
        let folder = crate::diffusers::Folder::find(dir)?;
        let in_file = |f: &std::path::Path, e: Error| match e {
            Error::Config { key, reason } => Error::config(format!("{}: {key}", f.display()), reason),
            e => e,
        };
        let (cfg, source) = match config {
            Some(c) => (UNetConfig::from_arg(c)?, "given"),
            None => {
                let o = crate::diffusers::read_json(&folder.config)?;
                (crate::diffusers::unet_config(&o).map_err(|e| in_file(&folder.config, e))?, "config.json")
            }
        };
        let diffusion = match &folder.scheduler {
            Some(f) => {
                let o = crate::diffusers::read_json(f)?;
                crate::diffusers::scheduler(&o, &cfg).map_err(|e| in_file(f, e))?
            }
            None => DiffusionSettings::for_config(&cfg),
        };
        let ckpt = Checkpoint::open(&folder.weights)?;
        let mut m = Self::with_config(&ckpt, cfg, diffusion, source)?;
        m.file = dir.display().to_string();
        Ok(m)
    }
}

/// The preset whose parameters have exactly the names and shapes of the checkpoint's (a bare
/// guided-diffusion `state_dict` says nothing else about its architecture).
pub fn detect_preset(ckpt: &Checkpoint) -> Option<&'static str> {
    let prefix = crate::weights::wrapper_prefix(ckpt);
    let found: std::collections::BTreeMap<&str, &[usize]> =
        ckpt.tensors().iter().map(|(k, v)| (&k[prefix.len()..], v.shape.as_slice())).collect();
    detect_preset_by_shapes(&found)
}

/// The preset whose parameters are exactly `found` (name -> shape).
pub fn detect_preset_by_shapes(found: &std::collections::BTreeMap<&str, &[usize]>) -> Option<&'static str> {
    UNetConfig::PRESETS.iter().copied().find(|&p| {
        let mut rec = crate::weights::ShapeRecorder::default();
        let cfg = UNetConfig::preset(p).expect("a preset");
        UNetDesc::read(&cfg, &mut rec).is_ok()
            && rec.shapes.len() == found.len()
            && rec.shapes.iter().all(|(n, s)| found.get(n.as_str()) == Some(&s.as_slice()))
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn shapes(preset: &str) -> Vec<(String, Vec<usize>)> {
        let mut rec = crate::weights::ShapeRecorder::default();
        UNetDesc::read(&UNetConfig::preset(preset).unwrap(), &mut rec).unwrap();
        rec.shapes
    }

    #[test]
    fn each_preset_is_recognised_by_its_shapes_alone() {
        for &p in UNetConfig::PRESETS {
            let s = shapes(p);
            let map: BTreeMap<&str, &[usize]> = s.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
            assert_eq!(detect_preset_by_shapes(&map), Some(p), "{p}");
            // One tensor missing, or one shape changed: no preset.
            let mut less = map.clone();
            less.pop_last();
            assert_eq!(detect_preset_by_shapes(&less), None, "{p} less one tensor");
            let odd = [7usize];
            let mut changed = map.clone();
            *changed.values_mut().next().unwrap() = &odd;
            assert_eq!(detect_preset_by_shapes(&changed), None, "{p} with a changed shape");
        }
    }

    #[test]
    fn imagenet256_has_the_published_size() {
        let s = shapes("imagenet256");
        let params: usize = s.iter().map(|(_, v)| v.iter().product::<usize>()).sum();
        // guided-diffusion's 256x256_diffusion_uncond.pt: 552.8 M parameters, 6 output channels.
        assert!((552_700_000..552_900_000).contains(&params), "{params}");
        let ffhq: usize = shapes("ffhq256").iter().map(|(_, v)| v.iter().product::<usize>()).sum();
        assert!((93_500_000..93_700_000).contains(&ffhq), "{ffhq}");
    }
}
