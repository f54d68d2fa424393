//! The UNet's configuration: guided-diffusion's `UNetModel` arguments, from a preset, a JSON file
//! or a checkpoint's metadata.

use crate::error::{Error, Result};
use diffinv_core::VarianceKind;
use serde_json::Value;

/// How the attention's `qkv` channels are split into heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionOrder {
    /// `QKVAttentionLegacy`: heads first, then q, k, v within a head.
    Legacy,
    /// `QKVAttention`: q, k, v first, then heads.
    New,
}

/// The sinusoidal timestep embedding's convention: `[cos, sin]` or `[sin, cos]` halves, with
/// frequencies `exp(-ln(10000) i/(half - freq_shift))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sinusoid {
    /// `[cos, sin]` (guided-diffusion; diffusers' `flip_sin_to_cos = true`), else `[sin, cos]`.
    pub cos_first: bool,
    /// diffusers' `downscale_freq_shift` (0 in guided-diffusion).
    pub freq_shift: u32,
}

impl Sinusoid {
    /// guided-diffusion's embedding.
    pub const ADM: Sinusoid = Sinusoid { cos_first: true, freq_shift: 0 };
}

/// The code base whose layout, parameter names and conventions a network follows.
#[derive(Clone, Debug, PartialEq)]
pub enum Family {
    /// guided-diffusion's `UNetModel` (ADM): `input_blocks.*` names, attention placed by
    /// `attention_resolutions`, GroupNorm(32, eps 1e-5), the `[cos, sin]` embedding.
    Adm,
    /// diffusers' `UNet2DModel`: `down_blocks.*` names, attention placed per block.
    Diffusers(DiffusersArch),
}

/// What a diffusers `UNet2DModel` config fixes beyond the ADM fields.
#[derive(Clone, Debug, PartialEq)]
pub struct DiffusersArch {
    /// Whether each down block has attention (`AttnDownBlock2D`), shallowest first.
    pub down_attention: Vec<bool>,
    /// Whether each up block has attention (`AttnUpBlock2D`), deepest first (diffusers' order).
    pub up_attention: Vec<bool>,
    /// GroupNorm groups (`norm_num_groups`).
    pub norm_groups: usize,
    /// GroupNorm epsilon (`norm_eps`).
    pub norm_eps: f64,
    /// `downsample_padding`: 1 pads every side; 0 pads only the right and bottom by one.
    pub downsample_padding: usize,
    /// The timestep embedding (`flip_sin_to_cos`, `freq_shift`).
    pub sinusoid: Sinusoid,
}

/// The architecture of a UNet: guided-diffusion's `UNetModel` arguments (a diffusers
/// `UNet2DModel` config is mapped onto them, its own conventions kept in [`Family::Diffusers`]).
#[derive(Clone, Debug, PartialEq)]
pub struct UNetConfig {
    /// Side of the (square) images.
    pub image_size: usize,
    /// Image channels.
    pub in_channels: usize,
    /// Base channel count.
    pub model_channels: usize,
    /// Output channels (2x `in_channels` when the variance is learned).
    pub out_channels: usize,
    /// ResBlocks per level.
    pub num_res_blocks: usize,
    /// Feature-map sizes (`image_size / ds`) with attention.
    pub attention_resolutions: Vec<usize>,
    /// Channel multiplier of each level.
    pub channel_mult: Vec<usize>,
    /// Heads when `num_head_channels` is not set.
    pub num_heads: usize,
    /// Channels per head (overrides `num_heads`).
    pub num_head_channels: Option<usize>,
    /// Heads of the decoder's attention when `num_head_channels` is not set.
    pub num_heads_upsample: usize,
    /// FiLM-style `GN(h)(1 + scale) + shift` instead of `h + emb`.
    pub use_scale_shift_norm: bool,
    /// Up/down-sample with ResBlocks (else separate Upsample/Downsample layers).
    pub resblock_updown: bool,
    /// Convolutions in the separate Upsample/Downsample layers.
    pub conv_resample: bool,
    /// Channel order of the attention's qkv.
    pub attention_order: AttentionOrder,
    /// Layout, names and conventions.
    pub family: Family,
}

impl UNetConfig {
    /// The named presets: `ffhq256` (DPS's `ffhq_10m.pt`), `imagenet256` (guided-diffusion's
    /// `256x256_diffusion_uncond.pt`) and `celeba64` (the shipped model).
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "ffhq256" => Some(UNetConfig {
                image_size: 256,
                in_channels: 3,
                model_channels: 128,
                out_channels: 6,
                num_res_blocks: 1,
                attention_resolutions: vec![16],
                channel_mult: vec![1, 1, 2, 2, 4, 4],
                num_heads: 4,
                num_head_channels: Some(64),
                num_heads_upsample: 4,
                use_scale_shift_norm: true,
                resblock_updown: true,
                conv_resample: true,
                attention_order: AttentionOrder::Legacy,
                family: Family::Adm,
            }),
            // guided-diffusion's ImageNet-256: FFHQ-256's layout, twice the width and depth,
            // attention at three levels.
            "imagenet256" => Some(UNetConfig {
                model_channels: 256,
                num_res_blocks: 2,
                attention_resolutions: vec![32, 16, 8],
                ..Self::preset("ffhq256")?
            }),
            "celeba64" => Some(UNetConfig {
                image_size: 64,
                in_channels: 3,
                model_channels: 64,
                out_channels: 3,
                num_res_blocks: 1,
                attention_resolutions: vec![16, 8],
                channel_mult: vec![1, 2, 2, 2],
                num_heads: 4,
                num_head_channels: Some(32),
                num_heads_upsample: 4,
                use_scale_shift_norm: true,
                resblock_updown: true,
                conv_resample: true,
                attention_order: AttentionOrder::Legacy,
                family: Family::Adm,
            }),
            _ => None,
        }
    }

    /// The names [`UNetConfig::preset`] knows.
    pub const PRESETS: &'static [&'static str] = &["ffhq256", "imagenet256", "celeba64"];

    /// A preset name, a path to a JSON file, or inline JSON.
    pub fn from_arg(arg: &str) -> Result<Self> {
        if let Some(c) = Self::preset(arg) {
            return Ok(c);
        }
        let text = if arg.trim_start().starts_with('{') {
            arg.to_string()
        } else {
            let p = std::path::Path::new(arg);
            if !p.exists() {
                return Err(Error::config(
                    arg,
                    format!("neither a preset ({}) nor a JSON file", Self::PRESETS.join(", ")),
                ));
            }
            std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?
        };
        Self::from_json(&text).map_err(|e| match e {
            Error::Config { key, reason } if !arg.trim_start().starts_with('{') => {
                Error::config(format!("{arg}: {key}"), reason)
            }
            e => e,
        })
    }

    /// Parses adm.py-style (`model_channels`, `out_channels`) or guided-diffusion-style
    /// (`num_channels`, `learn_sigma`) JSON, whose unset keys take the DPS FFHQ-256 values, or a
    /// diffusers `UNet2DModel` `config.json` (see [`crate::diffusers`]).
    pub fn from_json(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text).map_err(|e| Error::config("JSON", e.to_string()))?;
        let o = v.as_object().ok_or_else(|| Error::config("JSON", "must be an object"))?;
        if crate::diffusers::is_unet_config(o) {
            return crate::diffusers::unet_config(o);
        }
        let get_usize = |k: &str| -> Result<Option<usize>> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .map(|x| Some(x as usize))
                    .ok_or_else(|| Error::config(k, format!("must be a non-negative integer, got {n}"))),
                Some(Value::String(s)) if s.trim().parse::<usize>().is_ok() => {
                    Ok(Some(s.trim().parse().expect("checked")))
                }
                Some(x) => Err(Error::config(k, format!("must be an integer, got {x}"))),
            }
        };
        let get_bool = |k: &str, d: bool| -> Result<bool> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(d),
                Some(Value::Bool(b)) => Ok(*b),
                Some(x) => Err(Error::config(k, format!("must be true or false, got {x}"))),
            }
        };
        let get_list = |k: &str| -> Result<Option<Vec<usize>>> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => s
                    .split(',')
                    .map(|p| p.trim().parse::<usize>().map_err(|_| Error::config(k, format!("bad list '{s}'"))))
                    .collect::<Result<Vec<_>>>()
                    .map(Some),
                Some(Value::Number(n)) => {
                    Ok(Some(vec![n.as_u64().ok_or_else(|| Error::config(k, format!("bad value {n}")))? as usize]))
                }
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_u64().map(|x| x as usize).ok_or_else(|| Error::config(k, format!("bad list element {x}")))
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(Some),
                Some(x) => Err(Error::config(k, format!("must be a list, got {x}"))),
            }
        };
        if get_bool("class_cond", false)? || get_usize("num_classes")?.is_some() {
            return Err(Error::config("class_cond", "class-conditional models are not supported"));
        }
        let image_size = get_usize("image_size")?.unwrap_or(256);
        let in_channels = get_usize("in_channels")?.unwrap_or(3);
        let model_channels = get_usize("model_channels")?.or(get_usize("num_channels")?).unwrap_or(128);
        let out_channels = match get_usize("out_channels")? {
            Some(c) => c,
            None => in_channels * if get_bool("learn_sigma", false)? { 2 } else { 1 },
        };
        let channel_mult = match get_list("channel_mult")? {
            Some(m) => m,
            None => default_channel_mult(image_size)?,
        };
        let num_heads = get_usize("num_heads")?.unwrap_or(4);
        let head_ch = match o.get("num_head_channels") {
            Some(Value::Number(n)) if n.as_i64() == Some(-1) => None,
            _ => get_usize("num_head_channels")?,
        };
        let heads_up = match o.get("num_heads_upsample") {
            Some(Value::Number(n)) if n.as_i64() == Some(-1) => None,
            _ => get_usize("num_heads_upsample")?,
        };
        let c = UNetConfig {
            image_size,
            in_channels,
            model_channels,
            out_channels,
            num_res_blocks: get_usize("num_res_blocks")?.unwrap_or(1),
            attention_resolutions: get_list("attention_resolutions")?.unwrap_or_default(),
            channel_mult,
            num_heads,
            num_head_channels: head_ch,
            num_heads_upsample: heads_up.unwrap_or(num_heads),
            use_scale_shift_norm: get_bool("use_scale_shift_norm", true)?,
            resblock_updown: get_bool("resblock_updown", true)?,
            conv_resample: get_bool("conv_resample", true)?,
            attention_order: if get_bool("use_new_attention_order", false)? {
                AttentionOrder::New
            } else {
                AttentionOrder::Legacy
            },
            family: Family::Adm,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks that the architecture can be built.
    pub fn validate(&self) -> Result<()> {
        let bad = |k: &str, m: String| Err(Error::config(k, m));
        for (k, v) in [
            ("image_size", self.image_size),
            ("in_channels", self.in_channels),
            ("model_channels", self.model_channels),
            ("out_channels", self.out_channels),
            ("num_heads", self.num_heads),
        ] {
            if v == 0 {
                return bad(k, "must be positive".into());
            }
        }
        for (k, v, max) in [
            ("image_size", self.image_size, MAX_IMAGE_SIZE),
            ("in_channels", self.in_channels, 64),
            ("out_channels", self.out_channels, 128),
            ("model_channels", self.model_channels, MAX_CHANNELS),
            ("num_res_blocks", self.num_res_blocks, MAX_RES_BLOCKS),
            ("num_heads", self.num_heads, 1024),
            ("num_heads_upsample", self.num_heads_upsample, 1024),
            ("attention_resolutions", self.attention_resolutions.len(), MAX_LEVELS),
        ] {
            if v > max {
                return bad(k, format!("{v} is more than the {max} diffinv accepts"));
            }
        }
        if self.channel_mult.is_empty() || self.channel_mult.contains(&0) {
            return bad("channel_mult", format!("{:?} must be non-empty and positive", self.channel_mult));
        }
        if self.channel_mult.len() > MAX_LEVELS {
            return bad(
                "channel_mult",
                format!("{} levels; at most {MAX_LEVELS} are supported", self.channel_mult.len()),
            );
        }
        if !self.image_size.is_multiple_of(1 << (self.channel_mult.len() - 1)) {
            return bad(
                "image_size",
                format!(
                    "{} is not divisible by 2^{} (one halving per level)",
                    self.image_size,
                    self.channel_mult.len() - 1
                ),
            );
        }
        for &m in &self.channel_mult {
            if m > MAX_CHANNELS || m * self.model_channels > MAX_CHANNELS {
                return bad(
                    "channel_mult",
                    format!("{m} x {} channels is more than {MAX_CHANNELS}", self.model_channels),
                );
            }
            if !(m * self.model_channels).is_multiple_of(self.norm_groups()) {
                return bad(
                    "channel_mult",
                    format!(
                        "{m} x {} channels are not divisible by GroupNorm's {} groups",
                        self.model_channels,
                        self.norm_groups()
                    ),
                );
            }
        }
        for &r in &self.attention_resolutions {
            if r == 0 || !self.image_size.is_multiple_of(r) {
                return bad("attention_resolutions", format!("{r} does not divide image_size {}", self.image_size));
            }
            if r > MAX_ATTENTION_SIDE {
                return bad(
                    "attention_resolutions",
                    format!("attention on {r}x{r} maps (at most {MAX_ATTENTION_SIDE})"),
                );
            }
        }
        if self.num_head_channels == Some(0) {
            return bad("num_head_channels", "must be positive".into());
        }
        if let Family::Diffusers(d) = &self.family {
            crate::diffusers::validate(self, d)?;
        }
        Ok(())
    }

    /// GroupNorm's group count.
    pub fn norm_groups(&self) -> usize {
        match &self.family {
            Family::Adm => 32,
            Family::Diffusers(d) => d.norm_groups,
        }
    }

    /// GroupNorm's epsilon.
    pub fn norm_eps(&self) -> f64 {
        match &self.family {
            Family::Adm => 1e-5,
            Family::Diffusers(d) => d.norm_eps,
        }
    }

    /// The timestep embedding's convention.
    pub fn sinusoid(&self) -> Sinusoid {
        match &self.family {
            Family::Adm => Sinusoid::ADM,
            Family::Diffusers(d) => d.sinusoid,
        }
    }

    /// `adm` or `diffusers`.
    pub fn family_name(&self) -> &'static str {
        match &self.family {
            Family::Adm => "adm",
            Family::Diffusers(_) => "diffusers",
        }
    }

    /// The preset this config equals, if any.
    pub fn preset_name(&self) -> Option<&'static str> {
        Self::PRESETS.iter().copied().find(|p| Self::preset(p).as_ref() == Some(self))
    }

    /// Number of attention heads for a block of `ch` channels.
    pub fn heads(&self, ch: usize, upsample: bool) -> Result<usize> {
        let h = match self.num_head_channels {
            Some(hc) => {
                if !ch.is_multiple_of(hc) {
                    return Err(Error::config("num_head_channels", format!("{ch} channels are not divisible by {hc}")));
                }
                ch / hc
            }
            None => {
                let h = if upsample { self.num_heads_upsample } else { self.num_heads };
                if !ch.is_multiple_of(h) {
                    return Err(Error::config("num_heads", format!("{ch} channels are not divisible by {h} heads")));
                }
                h
            }
        };
        Ok(h)
    }

    /// The variance the model implies: learned range when it outputs `2 x in_channels`.
    pub fn variance(&self) -> VarianceKind {
        if self.out_channels == 2 * self.in_channels {
            VarianceKind::LearnedRange
        } else {
            VarianceKind::FixedSmall
        }
    }

    /// The config as adm.py-style JSON (a diffusers model's as its `config.json`).
    pub fn to_json(&self) -> Value {
        if let Family::Diffusers(d) = &self.family {
            return crate::diffusers::config_json(self, d);
        }
        serde_json::json!({
            "image_size": self.image_size,
            "in_channels": self.in_channels,
            "model_channels": self.model_channels,
            "out_channels": self.out_channels,
            "num_res_blocks": self.num_res_blocks,
            "attention_resolutions": self.attention_resolutions,
            "channel_mult": self.channel_mult,
            "num_heads": self.num_heads,
            "num_head_channels": self.num_head_channels.map_or(-1, |v| v as i64),
            "num_heads_upsample": self.num_heads_upsample,
            "use_scale_shift_norm": self.use_scale_shift_norm,
            "resblock_updown": self.resblock_updown,
            "conv_resample": self.conv_resample,
            "use_new_attention_order": self.attention_order == AttentionOrder::New,
        })
    }
}

/// The most levels (halvings + 1) a config may have.
pub const MAX_LEVELS: usize = 16;
/// The largest image side a config may declare.
pub const MAX_IMAGE_SIZE: usize = 2048;
/// The most channels a level may have (`model_channels x channel_mult`).
pub const MAX_CHANNELS: usize = 8192;
/// The largest feature map with attention (its scores are `side^4` floats a head).
pub const MAX_ATTENTION_SIDE: usize = 64;
/// The most ResBlocks per level.
pub const MAX_RES_BLOCKS: usize = 16;

/// guided-diffusion's default `channel_mult` for an image size.
fn default_channel_mult(image_size: usize) -> Result<Vec<usize>> {
    Ok(match image_size {
        256 => vec![1, 1, 2, 2, 4, 4],
        128 => vec![1, 1, 2, 3, 4],
        64 => vec![1, 2, 3, 4],
        32 => vec![1, 2, 2, 2],
        s => return Err(Error::config("channel_mult", format!("no default for image_size {s}; give one"))),
    })
}
