//! The ADM UNet's structure, written once: which layers, in which order, with what geometry.
//! The same tree holds a description's weights ([`crate::Desc`]) or a backend's built layers; a
//! backend names its layer types with a [`LayerSet`] and builds them with a [`Builder`].

use crate::config::UNetConfig;
use crate::desc::{Desc, NormDesc, TimeDesc};
use std::sync::atomic::{AtomicU64, Ordering};

/// A backend's layer types.
pub trait LayerSet {
    /// A convolution's weights in the backend's form.
    type Conv: Send + Sync;
    /// A GroupNorm's affine parameters.
    type Norm: Send + Sync;
    /// A self-attention block (its norm, qkv and output projections).
    type Attn: Send + Sync;
    /// The time embedding and every ResBlock's projection of it.
    type Time: Send + Sync;
}

/// Builds a backend's layers from a description's.
pub trait Builder<L: LayerSet> {
    /// The backend's error.
    type Error;
    /// A convolution.
    fn conv(&mut self, c: &Conv<Desc>) -> Result<L::Conv, Self::Error>;
    /// A GroupNorm.
    fn norm(&mut self, n: &NormDesc) -> Result<L::Norm, Self::Error>;
    /// An attention block.
    fn attn(&mut self, a: &Attn<Desc>) -> Result<L::Attn, Self::Error>;
    /// The time embedding.
    fn time(&mut self, t: &TimeDesc) -> Result<L::Time, Self::Error>;
}

/// A convolution's shape: square kernel, symmetric zero padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeom {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
}

impl ConvGeom {
    /// Output height and width for an `h x w` input (the one place this formula lives).
    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        ((h + 2 * self.pad - self.k) / self.stride + 1, (w + 2 * self.pad - self.k) / self.stride + 1)
    }

    /// FLOPs (2 x multiply-adds) per output pixel.
    pub fn flops_per_pixel(&self) -> f64 {
        2.0 * (self.cin * self.cout * self.k * self.k) as f64
    }

    /// A 1x1, stride-1, unpadded convolution (a matrix product per pixel).
    pub fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
}

/// A convolution: its geometry and the backend's layer.
pub struct Conv<L: LayerSet> {
    /// The geometry.
    pub geom: ConvGeom,
    /// The backend's weights.
    pub layer: L::Conv,
}

/// Up- or down-sampling inside a ResBlock or a resampling layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    /// Same size.
    None,
    /// Nearest-neighbour x2.
    Up,
    /// 2x2 average pooling.
    Down,
}

impl Resample {
    /// The output size of an `h x w` map.
    pub fn out_hw(self, h: usize, w: usize) -> (usize, usize) {
        match self {
            Resample::Up => (2 * h, 2 * w),
            Resample::Down => (h / 2, w / 2),
            Resample::None => (h, w),
        }
    }
}

/// A ResBlock: `skip(x) + out_conv(act(modulate(GN(in_conv(act(GN(x))))), emb))`.
pub struct Res<L: LayerSet> {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Resampling of both paths (after the input norm on the main path).
    pub resample: Resample,
    /// `GN(h)(1 + scale) + shift` (else `h + emb` before the norm).
    pub scale_shift: bool,
    /// This block's index among the time embedding's projections.
    pub emb: usize,
    /// `in_layers.0`, followed by SiLU.
    pub in_norm: L::Norm,
    /// `in_layers.2`.
    pub in_conv: Conv<L>,
    /// `out_layers.0`, modulated, followed by SiLU.
    pub out_norm: L::Norm,
    /// `out_layers.3`.
    pub out_conv: Conv<L>,
    /// The 1x1 skip convolution when the channel count changes.
    pub skip: Option<Conv<L>>,
}

/// A self-attention block: `x + proj(attention(qkv(GN(x))))`.
pub struct Attn<L: LayerSet> {
    /// Channels.
    pub channels: usize,
    /// Heads.
    pub heads: usize,
    /// The backend's layer.
    pub layer: L::Attn,
}

/// One layer of a block.
pub enum Layer<L: LayerSet> {
    /// A plain convolution (the input block).
    Conv(Conv<L>),
    /// A ResBlock.
    Res(Box<Res<L>>),
    /// A self-attention block.
    Attn(Box<Attn<L>>),
    /// `Downsample`: a stride-2 convolution, or 2x2 average pooling without one.
    Down(Option<Conv<L>>),
    /// `Upsample`: nearest x2, then a convolution when there is one.
    Up(Option<Conv<L>>),
}

/// The ADM UNet over a backend's layers (or a description's weights).
pub struct Graph<L: LayerSet> {
    /// The architecture.
    pub config: UNetConfig,
    /// The time embedding and every ResBlock's projection of it.
    pub time: L::Time,
    /// The encoder's blocks (`input_blocks`); each block's output is a skip.
    pub input_blocks: Vec<Vec<Layer<L>>>,
    /// The middle block.
    pub middle: Vec<Layer<L>>,
    /// The decoder's blocks (`output_blocks`); each starts with a ResBlock on `cat(h, skip)`.
    pub output_blocks: Vec<Vec<Layer<L>>>,
    /// `out.0` (followed by SiLU).
    pub out_norm: L::Norm,
    /// `out.2`.
    pub out_conv: Conv<L>,
    /// Number of parameters.
    pub params: usize,
    /// Identifies this graph in the tapes it makes.
    pub(crate) id: u64,
}

/// A fresh graph identity.
pub(crate) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl<L: LayerSet> Graph<L> {
    /// Every block in execution order: the encoder's, the middle, the decoder's.
    pub fn blocks(&self) -> impl Iterator<Item = &Vec<Layer<L>>> {
        self.input_blocks.iter().chain(std::iter::once(&self.middle)).chain(&self.output_blocks)
    }

    /// Every block, mutable.
    pub fn blocks_mut(&mut self) -> impl Iterator<Item = &mut Vec<Layer<L>>> {
        self.input_blocks.iter_mut().chain(std::iter::once(&mut self.middle)).chain(self.output_blocks.iter_mut())
    }

    /// The shape of the output for an input of shape `x`.
    pub fn output_shape(&self, x: [usize; 4]) -> [usize; 4] {
        [x[0], self.config.out_channels, x[2], x[3]]
    }

    /// FLOPs of one forward pass of one `size x size` image in GFLOP (convolutions, linear layers
    /// and attention products; the elementwise work is left out, as is customary).
    pub fn gflop(&self, size: usize) -> f64 {
        let cfg = &self.config;
        let emb = 4 * cfg.model_channels;
        let conv = |c: &Conv<L>, s: usize| {
            let (oh, ow) = c.geom.out_hw(s, s);
            c.geom.flops_per_pixel() * (oh * ow) as f64
        };
        let mut f = 2.0 * (cfg.model_channels * emb + emb * emb) as f64;
        let mut s = size;
        for l in self.blocks().flatten() {
            match l {
                Layer::Conv(c) => f += conv(c, s),
                Layer::Res(r) => {
                    f += 2.0 * (emb * if r.scale_shift { 2 * r.cout } else { r.cout }) as f64;
                    s = r.resample.out_hw(s, s).0;
                    f += conv(&r.in_conv, s) + conv(&r.out_conv, s);
                    if let Some(k) = &r.skip {
                        f += conv(k, s);
                    }
                }
                Layer::Attn(a) => {
                    let (l, c) = ((s * s) as f64, a.channels as f64);
                    f += 2.0 * 4.0 * c * c * l + 4.0 * l * l * c;
                }
                Layer::Down(c) => {
                    if let Some(c) = c {
                        f += conv(c, s);
                    }
                    s /= 2;
                }
                Layer::Up(c) => {
                    s *= 2;
                    if let Some(c) = c {
                        f += conv(c, s);
                    }
                }
            }
        }
        (f + conv(&self.out_conv, s)) / 1e9
    }
}

impl Graph<Desc> {
    /// The backend's graph: every layer built from this description by `b`.
    pub fn build<L: LayerSet, B: Builder<L>>(&self, b: &mut B) -> Result<Graph<L>, B::Error> {
        let conv =
            |b: &mut B, c: &Conv<Desc>| -> Result<Conv<L>, B::Error> { Ok(Conv { geom: c.geom, layer: b.conv(c)? }) };
        let layer = |b: &mut B, l: &Layer<Desc>| -> Result<Layer<L>, B::Error> {
            Ok(match l {
                Layer::Conv(c) => Layer::Conv(conv(b, c)?),
                Layer::Res(r) => Layer::Res(Box::new(Res {
                    cin: r.cin,
                    cout: r.cout,
                    resample: r.resample,
                    scale_shift: r.scale_shift,
                    emb: r.emb,
                    in_norm: b.norm(&r.in_norm)?,
                    in_conv: conv(b, &r.in_conv)?,
                    out_norm: b.norm(&r.out_norm)?,
                    out_conv: conv(b, &r.out_conv)?,
                    skip: r.skip.as_ref().map(|k| conv(b, k)).transpose()?,
                })),
                Layer::Attn(a) => {
                    Layer::Attn(Box::new(Attn { channels: a.channels, heads: a.heads, layer: b.attn(a)? }))
                }
                Layer::Down(c) => Layer::Down(c.as_ref().map(|c| conv(b, c)).transpose()?),
                Layer::Up(c) => Layer::Up(c.as_ref().map(|c| conv(b, c)).transpose()?),
            })
        };
        let blocks = |b: &mut B, bs: &[Vec<Layer<Desc>>]| -> Result<Vec<Vec<Layer<L>>>, B::Error> {
            bs.iter().map(|blk| blk.iter().map(|l| layer(b, l)).collect()).collect()
        };
        Ok(Graph {
            config: self.config.clone(),
            time: b.time(&self.time)?,
            input_blocks: blocks(b, &self.input_blocks)?,
            middle: self.middle.iter().map(|l| layer(b, l)).collect::<Result<_, _>>()?,
            output_blocks: blocks(b, &self.output_blocks)?,
            out_norm: b.norm(&self.out_norm)?,
            out_conv: conv(b, &self.out_conv)?,
            params: self.params,
            id: next_id(),
        })
    }
}
