//! The backend-neutral description of a UNet: its [`Graph`] with named f32 weights (convolutions
//! OIHW, linear layers (out, in)), read once from a [`WeightSource`] with guided-diffusion's
//! `state_dict` names. Every backend builds its own layers from it.

use crate::config::{AttentionOrder, Family, Sinusoid, UNetConfig};
use crate::error::Result;
use crate::graph::{next_id, Attn, Conv, ConvGeom, Graph, Layer, LayerSet, Res, Resample};
use crate::weights::WeightSource;

/// The most parameters a model may have (8 GiB of f32; ADM ImageNet-256 has 552 M).
pub const MAX_PARAMS: usize = 2_000_000_000;

/// The description's layer types: weights as they are stored.
pub struct Desc;

impl LayerSet for Desc {
    type Conv = ConvWeights;
    type Norm = NormDesc;
    type Attn = AttnDesc;
    type Time = TimeDesc;
}

/// The description of a whole UNet.
pub type UNetDesc = Graph<Desc>;

/// A convolution's parameters.
#[derive(Clone, Debug)]
pub struct ConvWeights {
    /// The parameter prefix (`input_blocks.1.0.in_layers.2`).
    pub name: String,
    /// OIHW weights (`cout x cin x k x k`).
    pub weight: Vec<f32>,
    /// The bias (`cout`).
    pub bias: Vec<f32>,
}

/// A GroupNorm's parameters.
#[derive(Clone, Debug)]
pub struct NormDesc {
    /// The parameter prefix.
    pub name: String,
    /// Groups (32 in every ADM model).
    pub groups: usize,
    /// The variance epsilon.
    pub eps: f64,
    /// The affine weight (`channels`).
    pub gamma: Vec<f32>,
    /// The affine bias (`channels`).
    pub beta: Vec<f32>,
}

impl NormDesc {
    /// Channels.
    pub fn channels(&self) -> usize {
        self.gamma.len()
    }
}

/// A fully connected layer's parameters.
#[derive(Clone, Debug)]
pub struct LinearDesc {
    /// The parameter prefix.
    pub name: String,
    /// Input features.
    pub fin: usize,
    /// Output features.
    pub fout: usize,
    /// The (out, in) weight, row-major.
    pub weight: Vec<f32>,
    /// The bias.
    pub bias: Vec<f32>,
}

/// A self-attention block's parameters.
pub struct AttnDesc {
    /// Channel order of `qkv`.
    pub order: AttentionOrder,
    /// The input norm.
    pub norm: NormDesc,
    /// `qkv` (a 1x1 convolution, C -> 3C).
    pub qkv: Conv<Desc>,
    /// `proj_out` (a 1x1 convolution, C -> C).
    pub proj: Conv<Desc>,
}

/// The time embedding: `time_embed.2(SiLU(time_embed.0(sinusoid(t))))`, and each ResBlock's
/// `emb_layers.1` applied to its SiLU.
pub struct TimeDesc {
    /// The sinusoid's width (`model_channels`).
    pub model_channels: usize,
    /// `time_embed.0`.
    pub time0: LinearDesc,
    /// `time_embed.2`.
    pub time2: LinearDesc,
    /// Every ResBlock's `emb_layers.1`, in [`Res::emb`] order (build order).
    pub proj: Vec<LinearDesc>,
    /// Whether the projections are `(scale, shift)` pairs (`2 x cout`) rather than `cout` adds.
    pub scale_shift: bool,
    /// The sinusoid's convention.
    pub sinusoid: Sinusoid,
}

/// Reads named, shape-checked parameters and counts them.
pub(crate) struct Reader<'a> {
    pub(crate) w: &'a mut dyn WeightSource,
    params: usize,
    pub(crate) cfg: &'a UNetConfig,
    /// Every ResBlock's time projection so far, in build order.
    pub(crate) proj: Vec<LinearDesc>,
}

/// A ResBlock's parameter names under its prefix, per family.
pub(crate) struct ResNames {
    pub(crate) in_norm: &'static str,
    pub(crate) in_conv: &'static str,
    pub(crate) emb: &'static str,
    pub(crate) out_norm: &'static str,
    pub(crate) out_conv: &'static str,
    pub(crate) skip: &'static str,
}

impl ResNames {
    /// guided-diffusion's `ResBlock`.
    const ADM: ResNames = ResNames {
        in_norm: "in_layers.0",
        in_conv: "in_layers.2",
        emb: "emb_layers.1",
        out_norm: "out_layers.0",
        out_conv: "out_layers.3",
        skip: "skip_connection",
    };
}

/// A whole network's layers, before they become a [`Graph`].
pub(crate) struct Parts {
    pub(crate) time0: LinearDesc,
    pub(crate) time2: LinearDesc,
    pub(crate) input_blocks: Vec<Vec<Layer<Desc>>>,
    pub(crate) middle: Vec<Layer<Desc>>,
    pub(crate) output_blocks: Vec<Vec<Layer<Desc>>>,
    pub(crate) out_norm: NormDesc,
    pub(crate) out_conv: Conv<Desc>,
}

impl Reader<'_> {
    pub(crate) fn tensor(&mut self, name: &str, shape: &[usize], fan_in: usize) -> Result<Vec<f32>> {
        let v = self.w.get(name, shape, fan_in)?;
        self.params += shape.iter().product::<usize>();
        Ok(v)
    }

    pub(crate) fn norm(&mut self, p: &str, c: usize) -> Result<NormDesc> {
        let gamma = self.tensor(&format!("{p}.weight"), &[c], 0)?;
        let beta = self.tensor(&format!("{p}.bias"), &[c], 0)?;
        Ok(NormDesc { name: p.into(), groups: self.cfg.norm_groups(), eps: self.cfg.norm_eps(), gamma, beta })
    }

    pub(crate) fn conv(&mut self, p: &str, cin: usize, cout: usize, k: usize, stride: usize) -> Result<Conv<Desc>> {
        let fan = cin * k * k;
        let weight = self.tensor(&format!("{p}.weight"), &[cout, cin, k, k], fan)?;
        let bias = self.tensor(&format!("{p}.bias"), &[cout], fan)?;
        let geom = ConvGeom { cin, cout, k, stride, pad: k / 2 };
        Ok(Conv { geom, layer: ConvWeights { name: p.into(), weight, bias } })
    }

    /// A Conv1d with kernel 1 (weights stored as (O, I, 1)) as a 1x1 convolution.
    fn conv1d(&mut self, p: &str, cin: usize, cout: usize) -> Result<Conv<Desc>> {
        let weight = self.tensor(&format!("{p}.weight"), &[cout, cin, 1], cin)?;
        let bias = self.tensor(&format!("{p}.bias"), &[cout], cin)?;
        let geom = ConvGeom { cin, cout, k: 1, stride: 1, pad: 0 };
        Ok(Conv { geom, layer: ConvWeights { name: p.into(), weight, bias } })
    }

    pub(crate) fn linear(&mut self, p: &str, fin: usize, fout: usize) -> Result<LinearDesc> {
        let weight = self.tensor(&format!("{p}.weight"), &[fout, fin], fin)?;
        let bias = self.tensor(&format!("{p}.bias"), &[fout], fin)?;
        Ok(LinearDesc { name: p.into(), fin, fout, weight, bias })
    }

    fn res(&mut self, p: &str, cin: usize, cout: usize, resample: Resample) -> Result<Layer<Desc>> {
        self.res_named(p, &ResNames::ADM, cin, cout, resample)
    }

    /// A ResBlock whose parameters are `{p}.{names.*}`.
    pub(crate) fn res_named(
        &mut self,
        p: &str,
        names: &ResNames,
        cin: usize,
        cout: usize,
        resample: Resample,
    ) -> Result<Layer<Desc>> {
        let emb_dim = 4 * self.cfg.model_channels;
        let ss = self.cfg.use_scale_shift_norm;
        let in_norm = self.norm(&format!("{p}.{}", names.in_norm), cin)?;
        let in_conv = self.conv(&format!("{p}.{}", names.in_conv), cin, cout, 3, 1)?;
        let emb = self.proj.len();
        let proj = self.linear(&format!("{p}.{}", names.emb), emb_dim, if ss { 2 * cout } else { cout })?;
        self.proj.push(proj);
        let skip = (cin != cout).then(|| self.conv(&format!("{p}.{}", names.skip), cin, cout, 1, 1)).transpose()?;
        Ok(Layer::Res(Box::new(Res {
            cin,
            cout,
            resample,
            scale_shift: ss,
            emb,
            in_norm,
            in_conv,
            out_norm: self.norm(&format!("{p}.{}", names.out_norm), cout)?,
            out_conv: self.conv(&format!("{p}.{}", names.out_conv), cout, cout, 3, 1)?,
            skip,
        })))
    }

    fn attn(&mut self, p: &str, c: usize, upsample: bool) -> Result<Layer<Desc>> {
        let layer = AttnDesc {
            order: self.cfg.attention_order,
            norm: self.norm(&format!("{p}.norm"), c)?,
            qkv: self.conv1d(&format!("{p}.qkv"), c, 3 * c)?,
            proj: self.conv1d(&format!("{p}.proj_out"), c, c)?,
        };
        Ok(Layer::Attn(Box::new(Attn { channels: c, heads: self.cfg.heads(c, upsample)?, layer })))
    }
}

impl Graph<Desc> {
    /// Reads the network of `cfg` from `w` (every parameter shape-checked by the source; the
    /// source reports tensors left unused).
    ///
    /// # Errors
    /// An invalid config, or a parameter the source cannot give.
    pub fn read(cfg: &UNetConfig, w: &mut dyn WeightSource) -> Result<Self> {
        cfg.validate()?;
        // The parameter count before any weight is allocated (a config alone can ask for any).
        let params = Self::read_unchecked(cfg, &mut crate::weights::ShapeOnly)?.params;
        if params > MAX_PARAMS {
            return Err(crate::Error::config("config", format!("{params} parameters (at most {MAX_PARAMS})")));
        }
        Self::read_unchecked(cfg, w)
    }

    fn read_unchecked(cfg: &UNetConfig, w: &mut dyn WeightSource) -> Result<Self> {
        let mut r = Reader { w, params: 0, cfg, proj: Vec::new() };
        let parts = match &cfg.family {
            Family::Adm => read_adm(&mut r)?,
            Family::Diffusers(d) => crate::diffusers::read_parts(&mut r, d)?,
        };
        r.w.finish()?;
        let Parts { time0, time2, input_blocks, middle, output_blocks, out_norm, out_conv } = parts;
        let mc = cfg.model_channels;
        let time = TimeDesc {
            model_channels: mc,
            time0,
            time2,
            proj: r.proj,
            scale_shift: cfg.use_scale_shift_norm,
            sinusoid: cfg.sinusoid(),
        };
        Ok(Graph {
            config: cfg.clone(),
            time,
            input_blocks,
            middle,
            output_blocks,
            out_norm,
            out_conv,
            params: r.params,
            id: next_id(),
        })
    }
}

/// guided-diffusion's `UNetModel` under its `state_dict` names.
fn read_adm(r: &mut Reader<'_>) -> Result<Parts> {
    let cfg = r.cfg;
    let mc = cfg.model_channels;
    let attn_ds: Vec<usize> = cfg.attention_resolutions.iter().map(|res| cfg.image_size / res).collect();
    let time0 = r.linear("time_embed.0", mc, 4 * mc)?;
    let time2 = r.linear("time_embed.2", 4 * mc, 4 * mc)?;
    let mut ch = cfg.channel_mult[0] * mc;
    let mut input_blocks = vec![vec![Layer::Conv(r.conv("input_blocks.0.0", cfg.in_channels, ch, 3, 1)?)]];
    let mut chans = vec![ch];
    let mut ds = 1;
    for (level, &mult) in cfg.channel_mult.iter().enumerate() {
        for _ in 0..cfg.num_res_blocks {
            let i = input_blocks.len();
            let mut layers = vec![r.res(&format!("input_blocks.{i}.0"), ch, mult * mc, Resample::None)?];
            ch = mult * mc;
            if attn_ds.contains(&ds) {
                layers.push(r.attn(&format!("input_blocks.{i}.1"), ch, false)?);
            }
            input_blocks.push(layers);
            chans.push(ch);
        }
        if level + 1 != cfg.channel_mult.len() {
            let p = format!("input_blocks.{}.0", input_blocks.len());
            let layer = if cfg.resblock_updown {
                r.res(&p, ch, ch, Resample::Down)?
            } else if cfg.conv_resample {
                Layer::Down(Some(r.conv(&format!("{p}.op"), ch, ch, 3, 2)?))
            } else {
                Layer::Down(None)
            };
            input_blocks.push(vec![layer]);
            chans.push(ch);
            ds *= 2;
        }
    }
    let middle = vec![
        r.res("middle_block.0", ch, ch, Resample::None)?,
        r.attn("middle_block.1", ch, false)?,
        r.res("middle_block.2", ch, ch, Resample::None)?,
    ];
    let mut output_blocks = Vec::new();
    for (level, &mult) in cfg.channel_mult.iter().enumerate().rev() {
        for i in 0..=cfg.num_res_blocks {
            let ob = output_blocks.len();
            let ich = chans.pop().expect("one skip per input block");
            let mut layers = vec![r.res(&format!("output_blocks.{ob}.0"), ch + ich, mc * mult, Resample::None)?];
            ch = mc * mult;
            if attn_ds.contains(&ds) {
                layers.push(r.attn(&format!("output_blocks.{ob}.{}", layers.len()), ch, true)?);
            }
            if level > 0 && i == cfg.num_res_blocks {
                let p = format!("output_blocks.{ob}.{}", layers.len());
                layers.push(if cfg.resblock_updown {
                    r.res(&p, ch, ch, Resample::Up)?
                } else if cfg.conv_resample {
                    Layer::Up(Some(r.conv(&format!("{p}.conv"), ch, ch, 3, 1)?))
                } else {
                    Layer::Up(None)
                });
                ds /= 2;
            }
            output_blocks.push(layers);
        }
    }
    let out_norm = r.norm("out.0", ch)?;
    let out_conv = r.conv("out.2", ch, cfg.out_channels, 3, 1)?;
    Ok(Parts { time0, time2, input_blocks, middle, output_blocks, out_norm, out_conv })
}

/// The sinusoidal embedding, computed in f32 as guided-diffusion and diffusers do:
/// `[cos(t f), sin(t f)]` (or `[sin, cos]`), `f_i = exp(-ln(10000) i/(half - freq_shift))`, one
/// row of `dim` per timestep (an odd `dim`'s last column is 0).
pub fn timestep_embedding(t: &[f32], dim: usize, s: Sinusoid) -> Vec<f32> {
    let half = dim / 2;
    let c = -(10000f64.ln()) as f32;
    // `half - shift` is positive: configs are checked to have a sinusoid wider than the shift.
    let den = half.saturating_sub(s.freq_shift as usize).max(1) as f32;
    let freqs: Vec<f32> = (0..half).map(|i| ((c * i as f32 / den) as f64).exp() as f32).collect();
    let (cos_at, sin_at) = if s.cos_first { (0, half) } else { (half, 0) };
    let mut out = vec![0.0f32; t.len() * dim];
    for (row, &tv) in out.chunks_mut(dim).zip(t) {
        for (i, &f) in freqs.iter().enumerate() {
            let arg = (tv * f) as f64;
            row[cos_at + i] = arg.cos() as f32;
            row[sin_at + i] = arg.sin() as f32;
        }
    }
    out
}
