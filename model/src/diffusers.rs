//! diffusers' `UNet2DModel` (the google/ddpm-* checkpoints): its `config.json` mapped onto a
//! [`UNetConfig`], its parameter names read into the same [`crate::UNetDesc`] as an ADM's, its
//! `scheduler_config.json` into [`DiffusionSettings`], and the model folder's files.
//!
//! The network is the ADM's without scale-shift norm and with separate resampling layers; what
//! differs is kept in [`DiffusersArch`]: attention per block, GroupNorm's epsilon, the
//! `[sin, cos]` embedding with a frequency shift, and `downsample_padding = 0`, whose stride-2
//! convolution pads only the right and bottom. That one is read as a 4x4 kernel (a zero first
//! row and column) with symmetric padding 1: the same sums, so no backend needs a new geometry.

use crate::config::{AttentionOrder, DiffusersArch, Family, Sinusoid, UNetConfig, MAX_LEVELS};
use crate::desc::{AttnDesc, ConvWeights, Desc, Parts, Reader, ResNames};
use crate::error::{Error, Result};
use crate::graph::{Attn, Conv, ConvGeom, Layer, Resample};
use crate::load::{DiffusionSettings, MAX_STEPS};
use diffinv_core::{BetaSchedule, VarianceKind};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The down blocks diffinv reads.
pub const DOWN_BLOCKS: &[&str] = &["DownBlock2D", "AttnDownBlock2D"];
/// The up blocks diffinv reads.
pub const UP_BLOCKS: &[&str] = &["UpBlock2D", "AttnUpBlock2D"];
/// The largest `config.json` / `scheduler_config.json` read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Whether a JSON object is a `UNet2DModel` config (its class name, or diffusers' block keys).
pub fn is_unet_config(o: &Map<String, Value>) -> bool {
    o.get("_class_name").and_then(Value::as_str) == Some("UNet2DModel") || o.contains_key("block_out_channels")
}

fn bad(key: &str, reason: impl Into<String>) -> Error {
    Error::config(key, reason)
}

/// A key's value, `None` when absent; `Some(Value::Null)` when written as `null`.
fn usize_of(o: &Map<String, Value>, k: &str, default: usize) -> Result<usize> {
    match o.get(k) {
        None => Ok(default),
        Some(v) => {
            v.as_u64().map(|x| x as usize).ok_or_else(|| bad(k, format!("must be a non-negative integer, got {v}")))
        }
    }
}

fn bool_of(o: &Map<String, Value>, k: &str, default: bool) -> Result<bool> {
    match o.get(k) {
        None => Ok(default),
        Some(v) => v.as_bool().ok_or_else(|| bad(k, format!("must be true or false, got {v}"))),
    }
}

fn str_of<'a>(o: &'a Map<String, Value>, k: &str, default: &'a str) -> Result<&'a str> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_str().ok_or_else(|| bad(k, format!("must be a string, got {v}"))),
    }
}

fn f64_of(o: &Map<String, Value>, k: &str, default: f64) -> Result<f64> {
    match o.get(k) {
        None => Ok(default),
        Some(v) => v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| bad(k, format!("must be a number, got {v}"))),
    }
}

fn list_of<'a>(o: &'a Map<String, Value>, k: &str) -> Result<&'a Vec<Value>> {
    match o.get(k) {
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= MAX_LEVELS => Ok(a),
        Some(Value::Array(a)) => Err(bad(k, format!("{} entries; 1..={MAX_LEVELS} are supported", a.len()))),
        Some(v) => Err(bad(k, format!("must be a list, got {v}"))),
        None => Err(bad(k, "missing (diffinv needs the model's block layout written out)")),
    }
}

/// Refuses a key whose value changes the network in a way diffinv does not implement.
fn require(o: &Map<String, Value>, k: &str, ok: &[Value], what: &str) -> Result<()> {
    match o.get(k) {
        Some(v) if !ok.contains(v) => Err(bad(k, format!("{v} is not supported ({what})"))),
        _ => Ok(()),
    }
}

/// A `UNet2DModel` config (diffusers' defaults for keys it leaves out) as a [`UNetConfig`].
///
/// # Errors
/// A value out of range, or an option diffinv does not implement, named by its key.
pub fn unet_config(o: &Map<String, Value>) -> Result<UNetConfig> {
    let null = Value::Null;
    require(o, "time_embedding_type", &["positional".into()], "only the positional sinusoid")?;
    require(o, "center_input_sample", &[false.into()], "inputs are taken in [-1, 1]")?;
    require(o, "act_fn", &["silu".into()], "only SiLU")?;
    require(o, "class_embed_type", std::slice::from_ref(&null), "class-conditional models are not supported")?;
    require(o, "num_class_embeds", std::slice::from_ref(&null), "class-conditional models are not supported")?;
    require(o, "mid_block_scale_factor", &[1.into(), 1.0.into()], "only 1")?;
    require(o, "downsample_type", &["conv".into()], "only conv downsampling")?;
    require(o, "upsample_type", &["conv".into()], "only conv upsampling")?;
    require(o, "add_attention", &[true.into()], "the mid block needs its attention")?;
    require(o, "attn_norm_num_groups", std::slice::from_ref(&null), "attention norms use norm_num_groups")?;
    require(o, "mid_block_type", &["UNetMidBlock2D".into()], "only UNetMidBlock2D")?;
    require(o, "resnet_time_scale_shift", &["default".into()], "only default")?;
    let image_size = match o.get("sample_size") {
        Some(Value::Array(a)) if a.len() == 2 && a[0] == a[1] => {
            a[0].as_u64().ok_or_else(|| bad("sample_size", format!("bad size {}", a[0])))? as usize
        }
        Some(Value::Array(a)) => return Err(bad("sample_size", format!("{a:?}: only square models are supported"))),
        Some(Value::Null) | None => {
            return Err(bad("sample_size", "missing: diffinv needs the trained image size"));
        }
        Some(_) => usize_of(o, "sample_size", 0)?,
    };
    let in_channels = usize_of(o, "in_channels", 3)?;
    let out_channels = usize_of(o, "out_channels", 3)?;
    let layers = usize_of(o, "layers_per_block", 2)?;
    let channels = list_of(o, "block_out_channels")?
        .iter()
        .map(|v| v.as_u64().filter(|&c| c > 0).map(|c| c as usize))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| bad("block_out_channels", "must be positive integers"))?;
    let c0 = channels[0];
    if let Some(c) = channels.iter().find(|&&c| !c.is_multiple_of(c0)) {
        return Err(bad(
            "block_out_channels",
            format!("{channels:?}: {c} is not a multiple of the first ({c0}); diffinv needs each to be"),
        ));
    }
    let blocks = |k: &str, known: &[&str]| -> Result<Vec<bool>> {
        let list = list_of(o, k)?;
        if list.len() != channels.len() {
            return Err(bad(k, format!("{} blocks for {} block_out_channels", list.len(), channels.len())));
        }
        list.iter()
            .map(|v| match v.as_str() {
                Some(s) if s == known[0] => Ok(false),
                Some(s) if s == known[1] => Ok(true),
                _ => Err(bad(k, format!("{v} is not supported (diffinv reads {})", known.join(", ")))),
            })
            .collect()
    };
    let down_attention = blocks("down_block_types", DOWN_BLOCKS)?;
    let up_attention = blocks("up_block_types", UP_BLOCKS)?;
    // diffusers: a missing key means 8 channels a head; `null` means one head per block.
    let head_dim = match o.get("attention_head_dim") {
        None => Some(8),
        Some(Value::Null) => None,
        Some(v) => {
            Some(v.as_u64().filter(|&d| d > 0).ok_or_else(|| bad("attention_head_dim", format!("bad value {v}")))?
                as usize)
        }
    };
    let freq_shift = usize_of(o, "freq_shift", 0)?;
    let downsample_padding = usize_of(o, "downsample_padding", 1)?;
    if downsample_padding > 1 {
        return Err(bad("downsample_padding", format!("{downsample_padding} (0 or 1 are supported)")));
    }
    let norm_eps = f64_of(o, "norm_eps", 1e-5)?;
    if !(norm_eps > 0.0 && norm_eps <= 1.0) {
        return Err(bad("norm_eps", format!("{norm_eps} must be in (0, 1]")));
    }
    let arch = DiffusersArch {
        down_attention,
        up_attention,
        norm_groups: usize_of(o, "norm_num_groups", 32)?,
        norm_eps,
        downsample_padding,
        sinusoid: Sinusoid {
            cos_first: bool_of(o, "flip_sin_to_cos", true)?,
            freq_shift: u32::try_from(freq_shift).map_err(|_| bad("freq_shift", format!("{freq_shift} too large")))?,
        },
    };
    let cfg = UNetConfig {
        image_size,
        in_channels,
        model_channels: c0,
        out_channels,
        num_res_blocks: layers,
        attention_resolutions: Vec::new(),
        channel_mult: channels.iter().map(|c| c / c0).collect(),
        num_heads: 1,
        num_head_channels: head_dim,
        num_heads_upsample: 1,
        use_scale_shift_norm: false,
        resblock_updown: false,
        conv_resample: true,
        attention_order: AttentionOrder::New,
        family: Family::Diffusers(arch),
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The diffusers-specific checks of [`UNetConfig::validate`].
pub(crate) fn validate(cfg: &UNetConfig, d: &DiffusersArch) -> Result<()> {
    let levels = cfg.channel_mult.len();
    if d.down_attention.len() != levels || d.up_attention.len() != levels {
        return Err(bad("down_block_types", format!("one block per level ({levels}) on each path")));
    }
    if d.norm_groups == 0 || d.norm_groups > 1024 {
        return Err(bad("norm_num_groups", format!("{} must be in 1..=1024", d.norm_groups)));
    }
    if !(d.norm_eps > 0.0 && d.norm_eps <= 1.0) {
        return Err(bad("norm_eps", format!("{} must be in (0, 1]", d.norm_eps)));
    }
    if d.sinusoid.freq_shift as usize >= cfg.model_channels / 2 {
        return Err(bad("freq_shift", format!("{} must be below half the embedding width", d.sinusoid.freq_shift)));
    }
    if cfg.use_scale_shift_norm || cfg.resblock_updown || !cfg.conv_resample {
        return Err(bad(
            "resnet_time_scale_shift",
            "diffusers models add the time embedding and resample with convolutions",
        ));
    }
    if cfg.num_res_blocks == 0 {
        return Err(bad("layers_per_block", "must be positive"));
    }
    for (i, (&down, &up)) in d.down_attention.iter().zip(d.up_attention.iter().rev()).enumerate() {
        let side = cfg.image_size >> i;
        if (down || up) && side > crate::config::MAX_ATTENTION_SIDE {
            return Err(bad(
                "down_block_types",
                format!("attention on {side}x{side} maps (at most {})", crate::config::MAX_ATTENTION_SIDE),
            ));
        }
        let ch = cfg.channel_mult[i] * cfg.model_channels;
        if down || up {
            cfg.heads(ch, false)?;
        }
    }
    cfg.heads(cfg.channel_mult[levels - 1] * cfg.model_channels, false)?;
    Ok(())
}

/// The config as diffusers writes it.
pub(crate) fn config_json(cfg: &UNetConfig, d: &DiffusersArch) -> Value {
    let pick = |attn: &[bool], names: &[&'static str]| -> Vec<&'static str> {
        attn.iter().map(|&a| names[a as usize]).collect()
    };
    serde_json::json!({
        "_class_name": "UNet2DModel",
        "sample_size": cfg.image_size,
        "in_channels": cfg.in_channels,
        "out_channels": cfg.out_channels,
        "block_out_channels": cfg.channel_mult.iter().map(|m| m * cfg.model_channels).collect::<Vec<_>>(),
        "down_block_types": pick(&d.down_attention, DOWN_BLOCKS),
        "up_block_types": pick(&d.up_attention, UP_BLOCKS),
        "layers_per_block": cfg.num_res_blocks,
        "attention_head_dim": cfg.num_head_channels,
        "norm_num_groups": d.norm_groups,
        "norm_eps": d.norm_eps,
        "downsample_padding": d.downsample_padding,
        "flip_sin_to_cos": d.sinusoid.cos_first,
        "freq_shift": d.sinusoid.freq_shift,
        "resnet_time_scale_shift": "default",
    })
}

/// A `DDPMScheduler` (or any diffusers scheduler) config's training schedule and variance.
///
/// # Errors
/// A schedule, variance or prediction type diffinv does not implement, or a value out of range.
pub fn scheduler(o: &Map<String, Value>, cfg: &UNetConfig) -> Result<DiffusionSettings> {
    let steps = usize_of(o, "num_train_timesteps", 1000)?;
    if !(1..=MAX_STEPS).contains(&steps) {
        return Err(bad("num_train_timesteps", format!("{steps} must be in 1..={MAX_STEPS}")));
    }
    require(o, "trained_betas", &[Value::Null], "explicit betas are not supported")?;
    require(o, "prediction_type", &["epsilon".into()], "only eps-predicting models")?;
    require(o, "thresholding", &[false.into()], "dynamic thresholding is not implemented")?;
    let start = f64_of(o, "beta_start", 1e-4)?;
    let end = f64_of(o, "beta_end", 0.02)?;
    if !(start > 0.0 && start <= end && end < 1.0) {
        return Err(bad("beta_start", format!("betas {start}..{end} must satisfy 0 < start <= end < 1")));
    }
    let schedule = match str_of(o, "beta_schedule", "linear")? {
        // diffusers does not rescale by 1000/T as guided-diffusion does; undo the rescaling.
        "linear" => {
            let k = steps as f64 / 1000.0;
            BetaSchedule::Linear { start: start * k, end: end * k }
        }
        "scaled_linear" => BetaSchedule::ScaledLinear { start, end },
        "squaredcos_cap_v2" => BetaSchedule::COSINE,
        s => return Err(bad("beta_schedule", format!("'{s}' (linear, scaled_linear, squaredcos_cap_v2)"))),
    };
    let variance = match str_of(o, "variance_type", "fixed_small")? {
        "fixed_small" | "fixed_small_log" => VarianceKind::FixedSmall,
        "fixed_large" | "fixed_large_log" => VarianceKind::FixedLarge,
        "learned_range" => VarianceKind::LearnedRange,
        s => return Err(bad("variance_type", format!("'{s}' (fixed_small, fixed_large, learned_range)"))),
    };
    if variance == VarianceKind::LearnedRange && cfg.out_channels != 2 * cfg.in_channels {
        return Err(bad("variance_type", "learned_range needs 2 x in_channels outputs"));
    }
    if variance != VarianceKind::LearnedRange && cfg.out_channels != cfg.in_channels {
        return Err(bad("variance_type", format!("{} outputs need learned_range", cfg.out_channels)));
    }
    Ok(DiffusionSettings { steps, schedule, variance })
}

/// The files of a diffusers model folder (flat, or a pipeline's `unet/` and `scheduler/`).
#[derive(Clone, Debug)]
pub struct Folder {
    /// `config.json`.
    pub config: PathBuf,
    /// `diffusion_pytorch_model.safetensors` (preferred) or `.bin`.
    pub weights: PathBuf,
    /// `scheduler_config.json`, if there is one.
    pub scheduler: Option<PathBuf>,
}

impl Folder {
    /// Finds the files in `dir`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the folder and the file it lacks.
    pub fn find(dir: &Path) -> Result<Folder> {
        let (unet, sched) = if dir.join("unet").join("config.json").is_file() {
            (dir.join("unet"), dir.join("scheduler"))
        } else {
            (dir.to_path_buf(), dir.to_path_buf())
        };
        let config = unet.join("config.json");
        if !config.is_file() {
            let e = std::io::Error::other(
                "is a directory, and not a diffusers model folder (config.json + diffusion_pytorch_model.safetensors or .bin)",
            );
            return Err(Error::io(dir, e));
        }
        let weights = ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"]
            .iter()
            .map(|f| unet.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                bad(
                    &unet.display().to_string(),
                    "no diffusion_pytorch_model.safetensors or diffusion_pytorch_model.bin",
                )
            })?;
        let scheduler = Some(sched.join("scheduler_config.json")).filter(|p| p.is_file());
        Ok(Folder { config, weights, scheduler })
    }
}

/// Reads a JSON object from a small file.
pub fn read_json(path: &Path) -> Result<Map<String, Value>> {
    let name = path.display().to_string();
    let len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if len > MAX_CONFIG_BYTES {
        return Err(bad(&name, format!("{len} bytes; a config is at most {MAX_CONFIG_BYTES}")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(bad(&name, "must be a JSON object")),
        Err(e) => Err(bad(&name, e.to_string())),
    }
}

/// The network under diffusers' parameter names.
pub(crate) fn read_parts(r: &mut Reader<'_>, d: &DiffusersArch) -> Result<Parts> {
    let cfg = r.cfg;
    let (mc, levels) = (cfg.model_channels, cfg.channel_mult.len());
    let time0 = r.linear("time_embedding.linear_1", mc, 4 * mc)?;
    let time2 = r.linear("time_embedding.linear_2", 4 * mc, 4 * mc)?;
    let mut ch = cfg.channel_mult[0] * mc;
    let mut input_blocks = vec![vec![Layer::Conv(r.conv("conv_in", cfg.in_channels, ch, 3, 1)?)]];
    let mut chans = vec![ch];
    for (i, &mult) in cfg.channel_mult.iter().enumerate() {
        for j in 0..cfg.num_res_blocks {
            let mut layers = vec![res(r, &format!("down_blocks.{i}.resnets.{j}"), ch, mult * mc)?];
            ch = mult * mc;
            if d.down_attention[i] {
                layers.push(attn(r, &format!("down_blocks.{i}.attentions.{j}"), ch)?);
            }
            input_blocks.push(layers);
            chans.push(ch);
        }
        if i + 1 != levels {
            let p = format!("down_blocks.{i}.downsamplers.0.conv");
            input_blocks.push(vec![Layer::Down(Some(downsample(r, &p, ch, d.downsample_padding)?))]);
            chans.push(ch);
        }
    }
    let middle = vec![
        res(r, "mid_block.resnets.0", ch, ch)?,
        attn(r, "mid_block.attentions.0", ch)?,
        res(r, "mid_block.resnets.1", ch, ch)?,
    ];
    let mut output_blocks = Vec::new();
    for (u, level) in (0..levels).rev().enumerate() {
        let out = cfg.channel_mult[level] * mc;
        for j in 0..=cfg.num_res_blocks {
            let skip = chans.pop().expect("one skip per input block");
            let mut layers = vec![res(r, &format!("up_blocks.{u}.resnets.{j}"), ch + skip, out)?];
            ch = out;
            if d.up_attention[u] {
                layers.push(attn(r, &format!("up_blocks.{u}.attentions.{j}"), ch)?);
            }
            if level > 0 && j == cfg.num_res_blocks {
                layers.push(Layer::Up(Some(r.conv(&format!("up_blocks.{u}.upsamplers.0.conv"), ch, ch, 3, 1)?)));
            }
            output_blocks.push(layers);
        }
    }
    let out_norm = r.norm("conv_norm_out", ch)?;
    let out_conv = r.conv("conv_out", ch, cfg.out_channels, 3, 1)?;
    Ok(Parts { time0, time2, input_blocks, middle, output_blocks, out_norm, out_conv })
}

/// `ResnetBlock2D`'s names (the network adds the time embedding: `validate` refuses scale-shift).
const RES_NAMES: ResNames = ResNames {
    in_norm: "norm1",
    in_conv: "conv1",
    emb: "time_emb_proj",
    out_norm: "norm2",
    out_conv: "conv2",
    skip: "conv_shortcut",
};

fn res(r: &mut Reader<'_>, p: &str, cin: usize, cout: usize) -> Result<Layer<Desc>> {
    r.res_named(p, &RES_NAMES, cin, cout, Resample::None)
}

/// `Attention` (current names `to_q`, `to_k`, `to_v`, `to_out.0`; early diffusers' `query`,
/// `key`, `value`, `proj_attn`): q, k and v stacked into one 1x1 `qkv` in the q-k-v-first order.
fn attn(r: &mut Reader<'_>, p: &str, c: usize) -> Result<Layer<Desc>> {
    let old = r.w.has(&format!("{p}.query.weight"));
    let [q, k, v, o] = if old { ["query", "key", "value", "proj_attn"] } else { ["to_q", "to_k", "to_v", "to_out.0"] };
    let norm = r.norm(&format!("{p}.group_norm"), c)?;
    // No capacity reserved: the shape-only pass that counts parameters must not allocate.
    let (mut weight, mut bias) = (Vec::new(), Vec::new());
    for part in [q, k, v] {
        let l = r.linear(&format!("{p}.{part}"), c, c)?;
        weight.extend_from_slice(&l.weight);
        bias.extend_from_slice(&l.bias);
    }
    let geom = ConvGeom { cin: c, cout: 3 * c, k: 1, stride: 1, pad: 0 };
    let qkv = Conv { geom, layer: ConvWeights { name: format!("{p}.{q}+{k}+{v}"), weight, bias } };
    let l = r.linear(&format!("{p}.{o}"), c, c)?;
    let geom = ConvGeom { cin: c, cout: c, k: 1, stride: 1, pad: 0 };
    let proj = Conv { geom, layer: ConvWeights { name: l.name, weight: l.weight, bias: l.bias } };
    let layer = AttnDesc { order: AttentionOrder::New, norm, qkv, proj };
    Ok(Layer::Attn(Box::new(Attn { channels: c, heads: r.cfg.heads(c, false)?, layer })))
}

/// `Downsample2D`'s stride-2 3x3 convolution; with `padding = 0` diffusers pads the right and
/// bottom by one, which is a 4x4 kernel with a zero first row and column under padding 1.
fn downsample(r: &mut Reader<'_>, p: &str, c: usize, padding: usize) -> Result<Conv<Desc>> {
    let conv = r.conv(p, c, c, 3, 2)?;
    if padding == 1 {
        return Ok(conv);
    }
    let w3 = &conv.layer.weight;
    let mut w4 = vec![0.0f32; if w3.is_empty() { 0 } else { c * c * 16 }];
    for (dst, src) in w4.chunks_exact_mut(16).zip(w3.chunks_exact(9)) {
        for a in 0..3 {
            dst[(a + 1) * 4 + 1..(a + 1) * 4 + 4].copy_from_slice(&src[a * 3..a * 3 + 3]);
        }
    }
    let geom = ConvGeom { cin: c, cout: c, k: 4, stride: 2, pad: 1 };
    Ok(Conv { geom, layer: ConvWeights { name: conv.layer.name, weight: w4, bias: conv.layer.bias } })
}
