//! The network: guided-diffusion's `UNetModel` built from a [`UNetConfig`] with the exact
//! parameter names of its `state_dict`.

use super::config::UNetConfig;
use super::weights::WeightSource;
use crate::error::Result;
use crate::nn::{AttentionBlock, Conv2d, GroupNorm, Linear, Precision};

/// Up- or down-sampling inside a ResBlock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    /// Same size.
    None,
    /// Nearest-neighbour x2.
    Up,
    /// 2x2 average pooling.
    Down,
}

/// A ResBlock: `skip(x) + out_layers(modulate(in_layers(x), emb))`.
pub struct ResBlock {
    /// Output channels.
    pub cout: usize,
    /// Resampling of both paths (after the input norm on the main path).
    pub resample: Resample,
    /// `GN(h)(1 + scale) + shift` (else `h + emb` before the norm).
    pub scale_shift: bool,
    /// `in_layers.0`, followed by SiLU.
    pub in_norm: GroupNorm,
    /// `in_layers.2`.
    pub in_conv: Conv2d,
    /// `emb_layers.1` (applied to SiLU of the time embedding).
    pub emb: Linear,
    /// `out_layers.0`, modulated, followed by SiLU.
    pub out_norm: GroupNorm,
    /// `out_layers.3`.
    pub out_conv: Conv2d,
    /// The 1x1 skip convolution when the channel count changes.
    pub skip: Option<Conv2d>,
}

/// One layer of a block.
pub enum Layer {
    /// A plain convolution (the input block).
    Conv(Conv2d),
    /// A ResBlock.
    Res(Box<ResBlock>),
    /// A self-attention block.
    Attn(Box<AttentionBlock>),
    /// `Downsample`: a stride-2 conv, or 2x2 average pooling without one.
    Down(Option<Conv2d>),
    /// `Upsample`: nearest x2, then a conv when there is one.
    Up(Option<Conv2d>),
}

/// Above this many parameters the adjoint's packed weights are not cached.
const LEAN_PARAMS: usize = 32_000_000;

/// The ADM UNet.
pub struct UNet {
    pub(crate) cfg: UNetConfig,
    pub(crate) time0: Linear,
    pub(crate) time2: Linear,
    pub(crate) input_blocks: Vec<Vec<Layer>>,
    pub(crate) middle: Vec<Layer>,
    pub(crate) output_blocks: Vec<Vec<Layer>>,
    pub(crate) out_norm: GroupNorm,
    pub(crate) out_conv: Conv2d,
    params: usize,
    pub(crate) precision: Precision,
}

struct Builder<'a> {
    w: &'a mut dyn WeightSource,
    params: usize,
    cfg: &'a UNetConfig,
}

impl Builder<'_> {
    fn tensor(&mut self, name: &str, shape: &[usize], fan_in: usize) -> Result<Vec<f32>> {
        let v = self.w.get(name, shape, fan_in)?;
        self.params += v.len();
        Ok(v)
    }

    fn norm(&mut self, p: &str, c: usize) -> Result<GroupNorm> {
        let g = self.tensor(&format!("{p}.weight"), &[c], 0)?;
        let b = self.tensor(&format!("{p}.bias"), &[c], 0)?;
        Ok(GroupNorm::new(32, g, b))
    }

    fn conv(&mut self, p: &str, cin: usize, cout: usize, k: usize, stride: usize) -> Result<Conv2d> {
        let fan = cin * k * k;
        let w = self.tensor(&format!("{p}.weight"), &[cout, cin, k, k], fan)?;
        let b = self.tensor(&format!("{p}.bias"), &[cout], fan)?;
        Ok(Conv2d::new(w, Some(b), cin, cout, k, stride, k / 2))
    }

    /// A Conv1d with kernel 1 (weights stored as (O, I, 1)) as a 1x1 Conv2d.
    fn conv1d(&mut self, p: &str, cin: usize, cout: usize) -> Result<Conv2d> {
        let w = self.tensor(&format!("{p}.weight"), &[cout, cin, 1], cin)?;
        let b = self.tensor(&format!("{p}.bias"), &[cout], cin)?;
        Ok(Conv2d::new(w, Some(b), cin, cout, 1, 1, 0))
    }

    fn linear(&mut self, p: &str, fin: usize, fout: usize) -> Result<Linear> {
        let w = self.tensor(&format!("{p}.weight"), &[fout, fin], fin)?;
        let b = self.tensor(&format!("{p}.bias"), &[fout], fin)?;
        Ok(Linear::new(w, b, fin, fout))
    }

    fn res(&mut self, p: &str, cin: usize, cout: usize, resample: Resample) -> Result<ResBlock> {
        let emb_dim = 4 * self.cfg.model_channels;
        let ss = self.cfg.use_scale_shift_norm;
        Ok(ResBlock {
            cout,
            resample,
            scale_shift: ss,
            in_norm: self.norm(&format!("{p}.in_layers.0"), cin)?,
            in_conv: self.conv(&format!("{p}.in_layers.2"), cin, cout, 3, 1)?,
            emb: self.linear(&format!("{p}.emb_layers.1"), emb_dim, if ss { 2 * cout } else { cout })?,
            out_norm: self.norm(&format!("{p}.out_layers.0"), cout)?,
            out_conv: self.conv(&format!("{p}.out_layers.3"), cout, cout, 3, 1)?,
            skip: if cin == cout { None } else { Some(self.conv(&format!("{p}.skip_connection"), cin, cout, 1, 1)?) },
        })
    }

    fn attn(&mut self, p: &str, c: usize, upsample: bool) -> Result<AttentionBlock> {
        Ok(AttentionBlock {
            channels: c,
            heads: self.cfg.heads(c, upsample)?,
            order: self.cfg.attention_order,
            norm: self.norm(&format!("{p}.norm"), c)?,
            qkv: self.conv1d(&format!("{p}.qkv"), c, 3 * c)?,
            proj: self.conv1d(&format!("{p}.proj_out"), c, c)?,
        })
    }
}

impl UNet {
    /// Builds the network of `cfg` with parameters from `w`.
    pub fn new(cfg: &UNetConfig, w: &mut dyn WeightSource) -> Result<Self> {
        cfg.validate()?;
        let mut b = Builder { w, params: 0, cfg };
        let mc = cfg.model_channels;
        let attn_ds: Vec<usize> = cfg.attention_resolutions.iter().map(|r| cfg.image_size / r).collect();
        let time0 = b.linear("time_embed.0", mc, 4 * mc)?;
        let time2 = b.linear("time_embed.2", 4 * mc, 4 * mc)?;
        let mut ch = cfg.channel_mult[0] * mc;
        let mut input_blocks = vec![vec![Layer::Conv(b.conv("input_blocks.0.0", cfg.in_channels, ch, 3, 1)?)]];
        let mut chans = vec![ch];
        let mut ds = 1;
        for (level, &mult) in cfg.channel_mult.iter().enumerate() {
            for _ in 0..cfg.num_res_blocks {
                let i = input_blocks.len();
                let mut layers =
                    vec![Layer::Res(Box::new(b.res(&format!("input_blocks.{i}.0"), ch, mult * mc, Resample::None)?))];
                ch = mult * mc;
                if attn_ds.contains(&ds) {
                    layers.push(Layer::Attn(Box::new(b.attn(&format!("input_blocks.{i}.1"), ch, false)?)));
                }
                input_blocks.push(layers);
                chans.push(ch);
            }
            if level + 1 != cfg.channel_mult.len() {
                let i = input_blocks.len();
                let p = format!("input_blocks.{i}.0");
                let layer = if cfg.resblock_updown {
                    Layer::Res(Box::new(b.res(&p, ch, ch, Resample::Down)?))
                } else if cfg.conv_resample {
                    Layer::Down(Some(b.conv(&format!("{p}.op"), ch, ch, 3, 2)?))
                } else {
                    Layer::Down(None)
                };
                input_blocks.push(vec![layer]);
                chans.push(ch);
                ds *= 2;
            }
        }
        let middle = vec![
            Layer::Res(Box::new(b.res("middle_block.0", ch, ch, Resample::None)?)),
            Layer::Attn(Box::new(b.attn("middle_block.1", ch, false)?)),
            Layer::Res(Box::new(b.res("middle_block.2", ch, ch, Resample::None)?)),
        ];
        let mut output_blocks = Vec::new();
        for (level, &mult) in cfg.channel_mult.iter().enumerate().rev() {
            for i in 0..=cfg.num_res_blocks {
                let ob = output_blocks.len();
                let ich = chans.pop().expect("one skip per input block");
                let mut layers = vec![Layer::Res(Box::new(b.res(
                    &format!("output_blocks.{ob}.0"),
                    ch + ich,
                    mc * mult,
                    Resample::None,
                )?))];
                ch = mc * mult;
                if attn_ds.contains(&ds) {
                    let p = format!("output_blocks.{ob}.{}", layers.len());
                    layers.push(Layer::Attn(Box::new(b.attn(&p, ch, true)?)));
                }
                if level > 0 && i == cfg.num_res_blocks {
                    let p = format!("output_blocks.{ob}.{}", layers.len());
                    layers.push(if cfg.resblock_updown {
                        Layer::Res(Box::new(b.res(&p, ch, ch, Resample::Up)?))
                    } else if cfg.conv_resample {
                        Layer::Up(Some(b.conv(&format!("{p}.conv"), ch, ch, 3, 1)?))
                    } else {
                        Layer::Up(None)
                    });
                    ds /= 2;
                }
                output_blocks.push(layers);
            }
        }
        let out_norm = b.norm("out.0", ch)?;
        let out_conv = b.conv("out.2", ch, cfg.out_channels, 3, 1)?;
        let params = b.params;
        b.w.finish()?;
        let mut u = UNet {
            cfg: cfg.clone(),
            time0,
            time2,
            input_blocks,
            middle,
            output_blocks,
            out_norm,
            out_conv,
            params,
            precision: Precision::F32,
        };
        // Large models pack the adjoint's weights per backward call instead of keeping a second
        // copy (FFHQ-256: 366 MiB saved for about 3% of backward time).
        if params > LEAN_PARAMS {
            u.for_each_conv(&mut |c| c.set_cache_transposed(false));
        }
        Ok(u)
    }

    /// The configuration.
    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// The encoder's blocks (`input_blocks`), in order; each block's output is a skip.
    pub fn input_blocks(&self) -> &[Vec<Layer>] {
        &self.input_blocks
    }

    /// The middle block's layers.
    pub fn middle_block(&self) -> &[Layer] {
        &self.middle
    }

    /// The decoder's blocks (`output_blocks`); each starts with a ResBlock on `cat(h, skip)`.
    pub fn output_blocks(&self) -> &[Vec<Layer>] {
        &self.output_blocks
    }

    /// `time_embed.0` and `time_embed.2` (SiLU between them).
    pub fn time_embed(&self) -> (&Linear, &Linear) {
        (&self.time0, &self.time2)
    }

    /// The output head: `out.0` (followed by SiLU) and `out.2`.
    pub fn out_layers(&self) -> (&GroupNorm, &Conv2d) {
        (&self.out_norm, &self.out_conv)
    }

    /// Calls `f` on every convolution.
    pub(crate) fn for_each_conv(&mut self, f: &mut dyn FnMut(&mut Conv2d)) {
        let blocks =
            self.input_blocks.iter_mut().chain(std::iter::once(&mut self.middle)).chain(self.output_blocks.iter_mut());
        for blk in blocks {
            for l in blk.iter_mut() {
                match l {
                    Layer::Conv(c) => f(c),
                    Layer::Res(r) => {
                        f(&mut r.in_conv);
                        f(&mut r.out_conv);
                        if let Some(k) = r.skip.as_mut() {
                            f(k);
                        }
                    }
                    Layer::Attn(a) => {
                        f(&mut a.qkv);
                        f(&mut a.proj);
                    }
                    Layer::Down(Some(c)) | Layer::Up(Some(c)) => f(c),
                    Layer::Down(None) | Layer::Up(None) => {}
                }
            }
        }
        f(&mut self.out_conv);
    }

    /// Packs the adjoint's weights per backward call (`true`, the default above 32M parameters)
    /// or keeps them between calls (`false`): memory against a few percent of backward time.
    pub fn set_lean_backward(&mut self, lean: bool) {
        self.for_each_conv(&mut |c| c.set_cache_transposed(!lean));
    }

    /// Sets the convolutions' arithmetic (bf16 needs AVX512-BF16; without it f32 is used).
    pub fn set_precision(&mut self, p: Precision) {
        self.precision = p;
        let bf16 = p == Precision::Bf16;
        self.for_each_conv(&mut |c| c.set_cache_bf16(bf16));
    }

    /// The convolutions' arithmetic.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.params
    }

    /// FLOPs of one forward pass of one `size x size` image (convolutions, linear layers and
    /// attention products; the elementwise work is left out, as is customary).
    pub fn gflop(&self, size: usize) -> f64 {
        let mut f = 0.0;
        let mut s = size;
        let conv = |c: &Conv2d, s: usize| c.flops_per_pixel() * (c.out_hw(s, s).0 * c.out_hw(s, s).1) as f64;
        let visit = |l: &Layer, s: &mut usize, f: &mut f64| match l {
            Layer::Conv(c) => *f += conv(c, *s),
            Layer::Res(r) => {
                *f += 2.0 * (r.emb.fin * r.emb.fout) as f64;
                let s2 = match r.resample {
                    Resample::Up => 2 * *s,
                    Resample::Down => *s / 2,
                    Resample::None => *s,
                };
                *f += conv(&r.in_conv, s2) + conv(&r.out_conv, s2);
                if let Some(k) = &r.skip {
                    *f += conv(k, s2);
                }
                *s = s2;
            }
            Layer::Attn(a) => {
                let l = (*s * *s) as f64;
                *f += conv(&a.qkv, *s) + conv(&a.proj, *s) + 4.0 * l * l * a.channels as f64;
            }
            Layer::Down(c) => {
                if let Some(c) = c {
                    *f += conv(c, *s);
                }
                *s /= 2;
            }
            Layer::Up(c) => {
                *s *= 2;
                if let Some(c) = c {
                    *f += conv(c, *s);
                }
            }
        };
        f += 2.0 * ((self.time0.fin * self.time0.fout) + (self.time2.fin * self.time2.fout)) as f64;
        for blk in self.input_blocks.iter().chain(std::iter::once(&self.middle)).chain(&self.output_blocks) {
            for l in blk {
                visit(l, &mut s, &mut f);
            }
        }
        f += conv(&self.out_conv, s);
        f / 1e9
    }
}
