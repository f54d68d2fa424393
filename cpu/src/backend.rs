//! The CPU implementation of [`diffinv_core::Backend`]: the sampler loops of diffinv-core run on
//! [`Tensor`]s, the UNet and the elementwise steps of `diffinv_core::{diffusion, update}`,
//! parallel over fixed chunks (so the results do not depend on the thread count).

use crate::context::CpuContext;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::unet::{Tape, UNet, Workspace};
use diffinv_core::diffusion::{posterior_mean, predict_x0, q_sample, sample_fixed, sample_learned_range};
use diffinv_core::update::{axpby, clip_gradient, ddim_step, diffpir_step, mask_blend};
use diffinv_core::{Backend, NoiseStream, Shape, StepCoefs, VarianceKind};
use rayon::prelude::*;

/// Elements per parallel chunk of the elementwise steps.
const CHUNK: usize = 1 << 14;

/// The CPU backend: an optional model (operator-only solvers need none), its context and
/// workspace.
pub struct CpuBackend<'m> {
    model: Option<&'m UNet>,
    variance: VarianceKind,
    ctx: CpuContext,
    ws: Workspace,
    /// Network evaluations so far.
    pub nfe: usize,
}

impl<'m> CpuBackend<'m> {
    /// A backend that runs `model` with the reverse-process variance `variance`, computing as
    /// `ctx` says.
    pub fn new(model: &'m UNet, variance: VarianceKind, ctx: CpuContext) -> Self {
        CpuBackend { model: Some(model), variance, ctx, ws: Workspace::new(), nfe: 0 }
    }

    /// A backend without a model, for the classical solvers and the operators.
    pub fn without_model() -> Self {
        CpuBackend {
            model: None,
            variance: VarianceKind::FixedSmall,
            ctx: CpuContext::default(),
            ws: Workspace::new(),
            nfe: 0,
        }
    }

    fn unet(&self) -> Result<&'m UNet> {
        self.model.ok_or_else(|| Error::Unsupported {
            what: "a network evaluation".into(),
            reason: "this backend was made without a model".into(),
        })
    }
}

fn same(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
    if a.shape() == b.shape() {
        Ok(())
    } else {
        Err(Error::mismatch(what, &a.shape(), &b.shape()))
    }
}

/// Checks that `model_out` holds `k` times `x`'s channels (eps, and the variance's `v`) per image.
fn model_out_fits(x: &Tensor, model_out: &Tensor, k: usize) -> Result<()> {
    let (s, m) = (x.shape(), model_out.shape());
    if m[0] != s[0] || m[2] != s[2] || m[3] != s[3] || m[1] < k * s[1] {
        return Err(Error::shape("model output", &m, format!("needs {k} x the channels of the images {s:?}")));
    }
    Ok(())
}

/// Runs `f` on matching chunks of `out` and the inputs, in parallel.
fn zip_chunks(out: &mut [f32], ins: &[&[f32]], f: impl Fn(&mut [f32], &[&[f32]]) + Sync) {
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, o)| {
        let s = i * CHUNK;
        let parts: Vec<&[f32]> = ins.iter().map(|x| &x[s..s + o.len()]).collect();
        f(o, &parts);
    });
}

/// The first `c` channels (eps) of image `i` of a model output.
fn eps_of(out: &Tensor, i: usize, len: usize) -> &[f32] {
    &out.image(i)[..len]
}

impl Backend for CpuBackend<'_> {
    type Tensor = Tensor;
    type Error = Error;
    type Tape = Tape;

    fn shape(&self, x: &Tensor) -> Shape {
        x.shape()
    }

    fn zeros(&mut self, shape: Shape) -> Result<Tensor> {
        Ok(Tensor::zeros(shape))
    }

    fn read_f32(&mut self, x: &Tensor, out: &mut [f32]) -> Result<()> {
        if out.len() != x.data().len() {
            return Err(Error::shape("read_f32", &[out.len()], format!("needs {} elements", x.data().len())));
        }
        out.copy_from_slice(x.data());
        Ok(())
    }

    fn copy(&mut self, src: &Tensor, dst: &mut Tensor) -> Result<()> {
        same(src, dst, "copy")?;
        dst.data_mut().copy_from_slice(src.data());
        Ok(())
    }

    fn model_out_channels(&self) -> usize {
        self.model.map_or(0, |m| m.config().out_channels)
    }

    fn variance(&self) -> VarianceKind {
        self.variance
    }

    fn model(&mut self, x: &Tensor, t: usize, out: &mut Tensor) -> Result<()> {
        let ts = vec![t as f32; x.n()];
        self.unet()?.forward_into(&self.ctx, x, &ts, &mut self.ws, out)?;
        self.nfe += 1;
        Ok(())
    }

    fn model_for_grad(&mut self, x: &Tensor, t: usize, out: &mut Tensor) -> Result<Tape> {
        let ts = vec![t as f32; x.n()];
        let tape = self.unet()?.forward_for_grad(&self.ctx, x, &ts, &mut self.ws, out)?;
        self.nfe += 1;
        Ok(tape)
    }

    fn model_vjp(&mut self, tape: Tape, cotangent: &Tensor, grad_x: &mut Tensor) -> Result<()> {
        self.unet()?.vjp_into(&self.ctx, tape, cotangent, &mut self.ws, grad_x)
    }

    fn randn(&mut self, rngs: &mut [NoiseStream], out: &mut Tensor) -> Result<()> {
        if rngs.len() != out.n() {
            return Err(Error::shape("noise", &out.shape(), format!("{} noise streams for this batch", rngs.len())));
        }
        diffinv_model::noise::randn_images(rngs, out.data_mut());
        Ok(())
    }

    fn q_sample(&mut self, x0: &Tensor, noise: &Tensor, abar: f64, out: &mut Tensor) -> Result<()> {
        same(x0, noise, "q_sample")?;
        same(x0, out, "q_sample")?;
        zip_chunks(out.data_mut(), &[x0.data(), noise.data()], |o, i| q_sample(i[0], i[1], abar, o));
        Ok(())
    }

    fn predict_x0(
        &mut self,
        x_t: &Tensor,
        model_out: &Tensor,
        c: &StepCoefs,
        clip: bool,
        out: &mut Tensor,
    ) -> Result<()> {
        same(x_t, out, "predict_x0")?;
        model_out_fits(x_t, model_out, 1)?;
        let l = x_t.image_len();
        for i in 0..x_t.n() {
            let e = eps_of(model_out, i, l);
            zip_chunks(out.image_mut(i), &[x_t.image(i), e], |o, s| predict_x0(s[0], s[1], c, clip, o));
        }
        Ok(())
    }

    fn eps_from_x0(&mut self, x_t: &Tensor, x0: &Tensor, c: &StepCoefs, out: &mut Tensor) -> Result<()> {
        same(x_t, x0, "eps_from_x0")?;
        same(x_t, out, "eps_from_x0")?;
        zip_chunks(out.data_mut(), &[x_t.data(), x0.data()], |o, s| {
            diffinv_core::diffusion::eps_from_x0(s[0], s[1], c, o)
        });
        Ok(())
    }

    fn posterior_sample(
        &mut self,
        x0: &Tensor,
        x_t: &Tensor,
        model_out: &Tensor,
        c: &StepCoefs,
        kind: VarianceKind,
        z: Option<&Tensor>,
        out: &mut Tensor,
    ) -> Result<()> {
        same(x0, x_t, "posterior_sample")?;
        same(x0, out, "posterior_sample")?;
        model_out_fits(x0, model_out, if kind == VarianceKind::LearnedRange { 2 } else { 1 })?;
        if let Some(z) = z {
            same(x0, z, "posterior_sample noise")?;
        }
        let l = x0.image_len();
        for i in 0..x0.n() {
            let (a, b) = (x0.image(i), x_t.image(i));
            let zi = z.map(|z| z.image(i));
            let v = (kind == VarianceKind::LearnedRange).then(|| &model_out.image(i)[l..2 * l]);
            out.image_mut(i).par_chunks_mut(CHUNK).enumerate().for_each(|(k, o)| {
                let r = k * CHUNK..k * CHUNK + o.len();
                let mut mean = [0.0f32; CHUNK];
                let mean = &mut mean[..o.len()];
                posterior_mean(&a[r.clone()], &b[r.clone()], c, mean);
                let zr = zi.map(|z| &z[r.clone()]);
                match v {
                    Some(v) => sample_learned_range(mean, &v[r], c, zr, o),
                    None => sample_fixed(mean, c.fixed_log_variance(kind), zr, o),
                }
            });
        }
        Ok(())
    }

    fn ddim_step(
        &mut self,
        x0: &Tensor,
        eps: &Tensor,
        z: Option<&Tensor>,
        abar: f64,
        abar_prev: f64,
        eta: f64,
        out: &mut Tensor,
    ) -> Result<()> {
        same(x0, eps, "ddim_step")?;
        same(x0, out, "ddim_step")?;
        match z {
            Some(z) => zip_chunks(out.data_mut(), &[x0.data(), eps.data(), z.data()], |o, s| {
                ddim_step(s[0], s[1], Some(s[2]), abar, abar_prev, eta, o)
            }),
            None => zip_chunks(out.data_mut(), &[x0.data(), eps.data()], |o, s| {
                ddim_step(s[0], s[1], None, abar, abar_prev, eta, o)
            }),
        }
        Ok(())
    }

    fn diffpir_step(
        &mut self,
        x0: &Tensor,
        x_t: &Tensor,
        z: Option<&Tensor>,
        abar: f64,
        abar_prev: f64,
        zeta: f64,
        out: &mut Tensor,
    ) -> Result<()> {
        same(x0, x_t, "diffpir_step")?;
        same(x0, out, "diffpir_step")?;
        match z {
            Some(z) => zip_chunks(out.data_mut(), &[x0.data(), x_t.data(), z.data()], |o, s| {
                diffpir_step(s[0], s[1], Some(s[2]), abar, abar_prev, zeta, o)
            }),
            None => zip_chunks(out.data_mut(), &[x0.data(), x_t.data()], |o, s| {
                diffpir_step(s[0], s[1], None, abar, abar_prev, zeta, o)
            }),
        }
        Ok(())
    }

    fn axpby(&mut self, a: f64, x: &Tensor, b: f64, y: &Tensor, out: &mut Tensor) -> Result<()> {
        same(x, y, "axpby")?;
        same(x, out, "axpby")?;
        zip_chunks(out.data_mut(), &[x.data(), y.data()], |o, s| axpby(a, s[0], b, s[1], o));
        Ok(())
    }

    fn axpy(&mut self, a: f64, x: &Tensor, y: &mut Tensor) -> Result<()> {
        same(x, y, "axpy")?;
        let a = a as f32;
        y.data_mut().par_chunks_mut(CHUNK).zip(x.data().par_chunks(CHUNK)).for_each(|(y, x)| {
            y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
        });
        Ok(())
    }

    fn mask_blend(&mut self, x: &Tensor, y_t: &Tensor, mask: &Tensor, out: &mut Tensor) -> Result<()> {
        same(x, y_t, "mask_blend")?;
        same(x, out, "mask_blend")?;
        let l = x.image_len();
        if mask.image_len() != l || (mask.n() != 1 && mask.n() != x.n()) {
            return Err(Error::shape("mask", &mask.shape(), format!("does not fit images {:?}", x.shape())));
        }
        for i in 0..x.n() {
            let m = mask.image(if mask.n() == 1 { 0 } else { i });
            zip_chunks(out.image_mut(i), &[x.image(i), y_t.image(i), m], |o, s| mask_blend(s[0], s[1], s[2], o));
        }
        Ok(())
    }

    fn clamp(&mut self, x: &mut Tensor, lo: f64, hi: f64) -> Result<()> {
        let (lo, hi) = (lo as f32, hi as f32);
        x.data_mut().par_chunks_mut(CHUNK).for_each(|c| c.iter_mut().for_each(|v| *v = v.clamp(lo, hi)));
        Ok(())
    }

    fn clip_gradient(&mut self, x0_raw: &Tensor, grad: &mut Tensor) -> Result<()> {
        same(x0_raw, grad, "clip_gradient")?;
        grad.data_mut()
            .par_chunks_mut(CHUNK)
            .zip(x0_raw.data().par_chunks(CHUNK))
            .for_each(|(g, x)| clip_gradient(x, g));
        Ok(())
    }

    fn norms(&mut self, x: &Tensor, out: &mut [f64]) -> Result<()> {
        if out.len() != x.n() {
            return Err(Error::shape("norms", &x.shape(), format!("{} outputs for this batch", out.len())));
        }
        let v: Vec<f64> = (0..x.n())
            .into_par_iter()
            .map(|i| x.image(i).iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt())
            .collect();
        out.copy_from_slice(&v);
        Ok(())
    }

    fn scale_images(&mut self, x: &mut Tensor, s: &[f64]) -> Result<()> {
        if s.len() != x.n() {
            return Err(Error::shape("scale_images", &x.shape(), format!("{} scales for this batch", s.len())));
        }
        for (i, &sc) in s.iter().enumerate() {
            let sc = sc as f32;
            x.image_mut(i).iter_mut().for_each(|v| *v *= sc);
        }
        Ok(())
    }

    fn embed_channels(&mut self, g: &Tensor, scale: f64, out: &mut Tensor) -> Result<()> {
        let l = g.image_len();
        if out.n() != g.n() || out.image_len() < l || out.h() != g.h() || out.w() != g.w() {
            return Err(Error::shape("embed_channels", &g.shape(), format!("does not fit {:?}", out.shape())));
        }
        let s = scale as f32;
        for i in 0..g.n() {
            let (head, tail) = out.image_mut(i).split_at_mut(l);
            head.iter_mut().zip(g.image(i)).for_each(|(o, &v)| *o = s * v);
            tail.fill(0.0);
        }
        Ok(())
    }

    fn max_abs(&mut self, x: &Tensor) -> Result<f64> {
        Ok(x.data()
            .par_chunks(CHUNK)
            .map(|c| c.iter().fold(0.0f32, |m, &v| if v.is_nan() || m.is_nan() { f32::NAN } else { m.max(v.abs()) }))
            .reduce(|| 0.0, |a, b| if a.is_nan() || b.is_nan() { f32::NAN } else { a.max(b) }) as f64)
    }
}
