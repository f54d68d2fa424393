//! The CPU's UNet layers and the primitives the shared walker ([`diffinv_model::walk`]) runs on
//! them: convolutions on the packed GEMM / Winograd kernels, GroupNorm fused with the modulation
//! and SiLU, attention, resampling, all on plain `Vec<f32>` buffers from a [`Workspace`].

use super::workspace::Workspace;
use crate::context::CpuContext;
use crate::error::Error;
use crate::nn::resample::{avgpool2, avgpool2_adjoint, upsample2, upsample2_adjoint};
use crate::nn::{AttentionBlock, Conv2d, GroupNorm, Linear, NormMod};
use diffinv_model::desc::{Desc, NormDesc, TimeDesc};
use diffinv_model::graph::{Attn, Builder, Conv, LayerSet, Resample};
use diffinv_model::walk::{Modulation, Primitives};
use diffinv_model::{timestep_embedding, Graph, Sinusoid};
use std::convert::Infallible;

/// The CPU backend's layer types.
pub struct CpuLayers;

impl LayerSet for CpuLayers {
    type Conv = Conv2d;
    type Norm = GroupNorm;
    type Attn = AttentionBlock;
    type Time = TimeEmbed;
}

/// The time embedding's layers and every ResBlock's projection.
pub struct TimeEmbed {
    model_channels: usize,
    time0: Linear,
    time2: Linear,
    proj: Vec<Linear>,
    scale_shift: bool,
    sinusoid: Sinusoid,
}

/// One ResBlock's projection of a call's embedding: `(scale, shift)` each `[n, c]`, or the
/// `[n, c]` values added before the norm.
pub enum BlockEmb {
    /// A scale-shift block's modulation.
    ScaleShift {
        /// `scale` of each image and channel.
        scale: Vec<f32>,
        /// `shift` of each image and channel.
        shift: Vec<f32>,
    },
    /// Added to every pixel of each image's channel.
    Add(Vec<f32>),
}

/// A call's time embedding: every ResBlock's projection.
pub struct CpuEmb(pub Vec<BlockEmb>);

fn linear(d: &diffinv_model::desc::LinearDesc) -> Linear {
    Linear::new(d.weight.clone(), d.bias.clone(), d.fin, d.fout)
}

fn norm(d: &NormDesc) -> GroupNorm {
    GroupNorm::with_eps(d.groups, d.eps, d.gamma.clone(), d.beta.clone())
}

/// Builds the CPU layers from a description (packing every convolution's weights).
pub struct CpuBuilder;

impl Builder<CpuLayers> for CpuBuilder {
    type Error = Infallible;

    fn conv(&mut self, c: &Conv<Desc>) -> Result<Conv2d, Infallible> {
        Ok(Conv2d::from_desc(c))
    }

    fn norm(&mut self, n: &NormDesc) -> Result<GroupNorm, Infallible> {
        Ok(norm(n))
    }

    fn attn(&mut self, a: &Attn<Desc>) -> Result<AttentionBlock, Infallible> {
        Ok(AttentionBlock {
            channels: a.channels,
            heads: a.heads,
            order: a.layer.order,
            norm: norm(&a.layer.norm),
            qkv: Conv2d::from_desc(&a.layer.qkv),
            proj: Conv2d::from_desc(&a.layer.proj),
        })
    }

    fn time(&mut self, t: &TimeDesc) -> Result<TimeEmbed, Infallible> {
        Ok(TimeEmbed {
            model_channels: t.model_channels,
            time0: linear(&t.time0),
            time2: linear(&t.time2),
            proj: t.proj.iter().map(linear).collect(),
            scale_shift: t.scale_shift,
            sinusoid: t.sinusoid,
        })
    }
}

impl TimeEmbed {
    /// `time_embed.2(SiLU(time_embed.0(sinusoid(t))))`, `[n, 4 model_channels]`.
    pub fn embed(&self, t: &[f32]) -> Vec<f32> {
        let n = t.len();
        let s = timestep_embedding(t, self.model_channels, self.sinusoid);
        let mut h = vec![0.0; n * self.time0.fout];
        self.time0.forward(&s, n, false, &mut h);
        let mut e = vec![0.0; n * self.time2.fout];
        self.time2.forward(&h, n, true, &mut e);
        e
    }

    /// `time_embed.0` and `time_embed.2`.
    pub fn layers(&self) -> (&Linear, &Linear) {
        (&self.time0, &self.time2)
    }
}

/// The CPU primitives of one call: its context and workspace.
pub struct CpuRun<'a> {
    /// How to compute.
    pub ctx: &'a CpuContext,
    /// Where buffers come from.
    pub ws: &'a mut Workspace,
}

fn modulation<'e>(m: Option<Modulation<'e, CpuEmb>>) -> Option<NormMod<'e>> {
    m.map(|m| match &m.emb.0[m.block] {
        BlockEmb::ScaleShift { scale, shift } => NormMod { scale, shift },
        BlockEmb::Add(_) => unreachable!("the walker modulates scale-shift blocks only"),
    })
}

fn resample(r: Resample, x: &[f32], planes: usize, h: usize, w: usize, y: &mut [f32]) {
    match r {
        Resample::Up => upsample2(x, planes, h, w, y),
        Resample::Down => avgpool2(x, planes, h, w, y),
        Resample::None => {
            let len = y.len();
            y.copy_from_slice(&x[..len])
        }
    }
}

impl Primitives<CpuLayers> for CpuRun<'_> {
    type Buf = Vec<f32>;
    type Emb = CpuEmb;
    type Error = Error;

    fn len(&self, b: &Vec<f32>) -> usize {
        b.len()
    }

    fn alloc(&mut self, len: usize) -> Result<Vec<f32>, Error> {
        Ok(self.ws.take(len))
    }

    fn recycle(&mut self, b: Vec<f32>) {
        self.ws.give(b);
    }

    fn copy(&mut self, src: &Vec<f32>, dst: &mut Vec<f32>, len: usize) -> Result<(), Error> {
        dst[..len].copy_from_slice(&src[..len]);
        Ok(())
    }

    fn add(&mut self, y: &mut Vec<f32>, x: &Vec<f32>, len: usize) -> Result<(), Error> {
        y[..len].iter_mut().zip(&x[..len]).for_each(|(a, b)| *a += b);
        Ok(())
    }

    fn embed(&mut self, time: &TimeEmbed, t: &[f32]) -> Result<CpuEmb, Error> {
        let n = t.len();
        let e = time.embed(t);
        let blocks = time
            .proj
            .iter()
            .map(|p| {
                let mut eo = vec![0.0; n * p.fout];
                p.forward(&e, n, true, &mut eo);
                if !time.scale_shift {
                    return BlockEmb::Add(eo);
                }
                let c = p.fout / 2;
                let (mut scale, mut shift) = (Vec::with_capacity(n * c), Vec::with_capacity(n * c));
                for row in eo.chunks(2 * c) {
                    scale.extend_from_slice(&row[..c]);
                    shift.extend_from_slice(&row[c..]);
                }
                BlockEmb::ScaleShift { scale, shift }
            })
            .collect();
        Ok(CpuEmb(blocks))
    }

    fn conv(
        &mut self,
        c: &Conv<CpuLayers>,
        x: &Vec<f32>,
        n: usize,
        h: usize,
        w: usize,
        out: &mut Vec<f32>,
        residual: Option<&Vec<f32>>,
        accumulate: bool,
    ) -> Result<(), Error> {
        c.layer.forward(self.ctx, x, n, h, w, out, residual.map(|r| &r[..]), accumulate);
        Ok(())
    }

    fn conv_adjoint(
        &mut self,
        c: &Conv<CpuLayers>,
        gy: &Vec<f32>,
        n: usize,
        h: usize,
        w: usize,
        gx: &mut Vec<f32>,
        accumulate: bool,
    ) -> Result<(), Error> {
        c.layer.backward_input(self.ctx, gy, n, h, w, gx, accumulate);
        Ok(())
    }

    fn norm(
        &mut self,
        norm: &GroupNorm,
        x: &Vec<f32>,
        n: usize,
        hw: usize,
        m: Option<Modulation<'_, CpuEmb>>,
        silu: bool,
        y: &mut Vec<f32>,
    ) -> Result<(), Error> {
        norm.forward(x, n, hw, modulation(m), silu, y);
        Ok(())
    }

    fn norm_adjoint(
        &mut self,
        norm: &GroupNorm,
        x: &Vec<f32>,
        n: usize,
        hw: usize,
        m: Option<Modulation<'_, CpuEmb>>,
        silu: bool,
        gy: &Vec<f32>,
        gx: &mut Vec<f32>,
        accumulate: bool,
    ) -> Result<(), Error> {
        norm.backward(x, n, hw, modulation(m), silu, gy, gx, accumulate);
        Ok(())
    }

    fn add_embedding(
        &mut self,
        h: &mut Vec<f32>,
        emb: &CpuEmb,
        block: usize,
        n: usize,
        c: usize,
        hw: usize,
    ) -> Result<(), Error> {
        let BlockEmb::Add(eo) = &emb.0[block] else { unreachable!("the walker adds to non-scale-shift blocks only") };
        for (p, &e) in h[..n * c * hw].chunks_mut(hw).zip(eo) {
            p.iter_mut().for_each(|v| *v += e);
        }
        Ok(())
    }

    fn attention(
        &mut self,
        a: &Attn<CpuLayers>,
        x: &Vec<f32>,
        n: usize,
        hw: usize,
        y: &mut Vec<f32>,
        saved: &mut Vec<f32>,
    ) -> Result<(), Error> {
        a.layer.forward(self.ctx, x, n, hw, y, saved, &mut self.ws.scratch);
        Ok(())
    }

    fn attention_adjoint(
        &mut self,
        a: &Attn<CpuLayers>,
        x: &Vec<f32>,
        saved: &Vec<f32>,
        n: usize,
        hw: usize,
        gy: &Vec<f32>,
        gx: &mut Vec<f32>,
    ) -> Result<(), Error> {
        a.layer.backward(self.ctx, x, saved, n, hw, gy, gx, false, &mut self.ws.scratch);
        Ok(())
    }

    fn resample(
        &mut self,
        r: Resample,
        x: &Vec<f32>,
        planes: usize,
        h: usize,
        w: usize,
        y: &mut Vec<f32>,
    ) -> Result<(), Error> {
        resample(r, x, planes, h, w, y);
        Ok(())
    }

    fn resample_adjoint(
        &mut self,
        r: Resample,
        gy: &Vec<f32>,
        planes: usize,
        h: usize,
        w: usize,
        gx: &mut Vec<f32>,
        accumulate: bool,
    ) -> Result<(), Error> {
        match r {
            Resample::Up => upsample2_adjoint(gy, planes, h, w, gx, accumulate),
            Resample::Down => avgpool2_adjoint(gy, planes, h, w, gx, accumulate),
            Resample::None => {
                let len = planes * h * w;
                if accumulate {
                    gx[..len].iter_mut().zip(&gy[..len]).for_each(|(a, b)| *a += b);
                } else {
                    gx[..len].copy_from_slice(&gy[..len]);
                }
            }
        }
        Ok(())
    }

    fn concat(
        &mut self,
        a: &Vec<f32>,
        la: usize,
        b: &Vec<f32>,
        lb: usize,
        n: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), Error> {
        for i in 0..n {
            let o = &mut out[i * (la + lb)..(i + 1) * (la + lb)];
            o[..la].copy_from_slice(&a[i * la..(i + 1) * la]);
            o[la..].copy_from_slice(&b[i * lb..(i + 1) * lb]);
        }
        Ok(())
    }

    fn split(
        &mut self,
        g: &Vec<f32>,
        la: usize,
        lb: usize,
        n: usize,
        ga: &mut Vec<f32>,
        gb: &mut Vec<f32>,
    ) -> Result<(), Error> {
        for i in 0..n {
            let src = &g[i * (la + lb)..(i + 1) * (la + lb)];
            ga[i * la..(i + 1) * la].copy_from_slice(&src[..la]);
            gb[i * lb..(i + 1) * lb].copy_from_slice(&src[la..]);
        }
        Ok(())
    }
}

/// The CPU graph: the shared UNet structure over the CPU's layers.
pub type CpuGraph = Graph<CpuLayers>;
