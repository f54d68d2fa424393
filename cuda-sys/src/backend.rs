//! [`diffinv_core::Backend`] on the GPU: the core's sampler loops drive the GPU UNet and the
//! element-wise steps of `diffinv_core::{diffusion, update}` as CUDA kernels, with the
//! coefficients those modules compute. Noise is drawn on the host from the same counter-based
//! streams as the CPU backend (`diffinv_model::noise`), so both backends see the same numbers.

use crate::device::{Arg::*, Gpu};
use crate::error::{Error, Result};
use crate::tensor::{same, GpuTensor};
use crate::unet::{GpuTape, GpuUNet};
use diffinv_core::diffusion::{eps_from_x0_coefs, fixed_sigma, learned_range_bounds, q_sample_coefs};
use diffinv_core::update::{DdimCoefs, DiffpirCoefs};
use diffinv_core::{Backend, NoiseStream, Shape, StepCoefs, VarianceKind};

/// The GPU backend: a device and an optional model.
pub struct CudaBackend<'g> {
    gpu: &'g Gpu,
    model: Option<&'g GpuUNet>,
    variance: VarianceKind,
    /// Network evaluations so far.
    pub nfe: usize,
}

/// One operand of [`lin3`]: a pointer, its image stride (floats) and its coefficient.
type Term = (u64, usize, f64);

const NONE: Term = (0, 0, 0.0);

impl<'g> CudaBackend<'g> {
    /// A backend that runs `model` with the reverse-process variance `variance`.
    pub fn new(gpu: &'g Gpu, model: &'g GpuUNet, variance: VarianceKind) -> Self {
        CudaBackend { gpu, model: Some(model), variance, nfe: 0 }
    }

    /// A backend without a model (operators only).
    pub fn without_model(gpu: &'g Gpu) -> Self {
        CudaBackend { gpu, model: None, variance: VarianceKind::FixedSmall, nfe: 0 }
    }

    /// The device.
    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    fn unet(&self) -> Result<&'g GpuUNet> {
        self.model.ok_or_else(|| Error::Unavailable("this backend was made without a model".into()))
    }

    /// `out[i] = a x[i] + b y[i] + c z[i]` over `n` images of `len` floats (each operand with
    /// its own image stride), clamped to [-1, 1] when `clip`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn lin3(
        &self,
        out: (u64, usize),
        x: Term,
        y: Term,
        z: Term,
        len: usize,
        n: usize,
        clip: bool,
    ) -> Result<()> {
        let l = |v: usize| L(v as i64);
        self.gpu.launch_planes(
            "lin3",
            len,
            n,
            1,
            &[
                P(out.0),
                l(out.1),
                P(x.0),
                l(x.1),
                F(x.2 as f32),
                P(y.0),
                l(y.1),
                F(y.2 as f32),
                P(z.0),
                l(z.1),
                F(z.2 as f32),
                I(len as i32),
                I(clip as i32),
            ],
        )
    }

    /// `lin3` over whole tensors of one shape.
    fn lin(&self, out: &GpuTensor, terms: [Option<(&GpuTensor, f64)>; 3]) -> Result<()> {
        let l = out.image_len();
        let t = |o: Option<(&GpuTensor, f64)>| o.map_or(NONE, |(x, a)| (x.p(), l, a));
        self.lin3((out.p(), l), t(terms[0]), t(terms[1]), t(terms[2]), l, out.shape[0], false)
    }
}

/// Checks that `model_out` holds `k` times `x`'s channels (eps, and the variance's `v`) per image.
fn model_out_fits(x: &GpuTensor, model_out: &GpuTensor, k: usize) -> Result<()> {
    let (s, m) = (x.shape, model_out.shape);
    if m[0] != s[0] || m[2] != s[2] || m[3] != s[3] || m[1] < k * s[1] {
        return Err(Error::shape("model output", &m, format!("needs {k} x the channels of the images {s:?}")));
    }
    Ok(())
}

fn opt(z: Option<&GpuTensor>, c: f64) -> Option<(&GpuTensor, f64)> {
    z.map(|z| (z, c))
}

impl Backend for CudaBackend<'_> {
    type Tensor = GpuTensor;
    type Error = Error;
    type Tape = GpuTape;

    fn shape(&self, x: &GpuTensor) -> Shape {
        x.shape
    }

    fn zeros(&mut self, shape: Shape) -> Result<GpuTensor> {
        GpuTensor::zeros(self.gpu, shape)
    }

    fn read_f32(&mut self, x: &GpuTensor, out: &mut [f32]) -> Result<()> {
        if out.len() != x.len() {
            return Err(Error::shape("read_f32", &[out.len()], format!("needs {} elements", x.len())));
        }
        out.copy_from_slice(&x.to_host(self.gpu)?);
        Ok(())
    }

    fn copy(&mut self, src: &GpuTensor, dst: &mut GpuTensor) -> Result<()> {
        same(src, dst, "copy")?;
        self.gpu.copy(&src.buf, 0, &mut dst.buf, 0, src.len())
    }

    fn model_out_channels(&self) -> usize {
        self.model.map_or(0, GpuUNet::out_channels)
    }

    fn variance(&self) -> VarianceKind {
        self.variance
    }

    fn model(&mut self, x: &GpuTensor, t: usize, out: &mut GpuTensor) -> Result<()> {
        let ts = vec![t as f32; x.shape[0]];
        self.unet()?.forward_into(self.gpu, x, &ts, out)?;
        self.nfe += 1;
        Ok(())
    }

    fn model_for_grad(&mut self, x: &GpuTensor, t: usize, out: &mut GpuTensor) -> Result<GpuTape> {
        let ts = vec![t as f32; x.shape[0]];
        let tape = self.unet()?.forward_for_grad(self.gpu, x, &ts, out)?;
        self.nfe += 1;
        Ok(tape)
    }

    fn model_vjp(&mut self, tape: GpuTape, cotangent: &GpuTensor, grad_x: &mut GpuTensor) -> Result<()> {
        self.unet()?.vjp_into(self.gpu, tape, cotangent, grad_x)
    }

    fn randn(&mut self, rngs: &mut [NoiseStream], out: &mut GpuTensor) -> Result<()> {
        if rngs.len() != out.shape[0] {
            return Err(Error::shape("noise", &out.shape, format!("{} noise streams for this batch", rngs.len())));
        }
        let mut host = vec![0.0f32; out.len()];
        diffinv_model::noise::randn_images(rngs, &mut host);
        self.gpu.stream().memcpy_htod(&host, &mut out.buf.0)?;
        Ok(())
    }

    fn q_sample(&mut self, x0: &GpuTensor, noise: &GpuTensor, abar: f64, out: &mut GpuTensor) -> Result<()> {
        same(x0, noise, "q_sample")?;
        same(x0, out, "q_sample")?;
        let (a, s) = q_sample_coefs(abar);
        self.lin(out, [Some((x0, a)), Some((noise, s)), None])
    }

    fn predict_x0(
        &mut self,
        x_t: &GpuTensor,
        model_out: &GpuTensor,
        c: &StepCoefs,
        clip: bool,
        out: &mut GpuTensor,
    ) -> Result<()> {
        same(x_t, out, "predict_x0")?;
        model_out_fits(x_t, model_out, 1)?;
        let l = x_t.image_len();
        let x = (x_t.p(), l, c.sqrt_recip_abar());
        let e = (model_out.p(), model_out.image_len(), -c.sqrt_recipm1_abar());
        self.lin3((out.p(), l), x, e, NONE, l, x_t.shape[0], clip)
    }

    fn eps_from_x0(&mut self, x_t: &GpuTensor, x0: &GpuTensor, c: &StepCoefs, out: &mut GpuTensor) -> Result<()> {
        same(x_t, x0, "eps_from_x0")?;
        same(x_t, out, "eps_from_x0")?;
        let (a, b) = eps_from_x0_coefs(c);
        self.lin(out, [Some((x_t, a)), Some((x0, b)), None])
    }

    fn posterior_sample(
        &mut self,
        x0: &GpuTensor,
        x_t: &GpuTensor,
        model_out: &GpuTensor,
        c: &StepCoefs,
        kind: VarianceKind,
        z: Option<&GpuTensor>,
        out: &mut GpuTensor,
    ) -> Result<()> {
        same(x0, x_t, "posterior_sample")?;
        same(x0, out, "posterior_sample")?;
        if let Some(z) = z {
            same(x0, z, "posterior_sample noise")?;
        }
        model_out_fits(x0, model_out, if kind == VarianceKind::LearnedRange { 2 } else { 1 })?;
        if kind != VarianceKind::LearnedRange {
            let s = fixed_sigma(c.fixed_log_variance(kind));
            return self.lin(out, [Some((x0, c.coef1)), Some((x_t, c.coef2)), opt(z, s)]);
        }
        let l = x0.image_len();
        let (max_log, min_log) = learned_range_bounds(c);
        let args = [
            P(out.p()),
            P(x0.p()),
            P(x_t.p()),
            P(model_out.buf.at(l)),
            L(model_out.image_len() as i64),
            P(z.map_or(0, GpuTensor::p)),
            F(c.coef1 as f32),
            F(c.coef2 as f32),
            F(max_log as f32),
            F(min_log as f32),
            I(l as i32),
        ];
        self.gpu.launch_planes("posterior_learned", l, x0.shape[0], 1, &args)
    }

    fn ddim_step(
        &mut self,
        x0: &GpuTensor,
        eps: &GpuTensor,
        z: Option<&GpuTensor>,
        abar: f64,
        abar_prev: f64,
        eta: f64,
        out: &mut GpuTensor,
    ) -> Result<()> {
        same(x0, eps, "ddim_step")?;
        same(x0, out, "ddim_step")?;
        let k = DdimCoefs::new(abar, abar_prev, eta);
        let z = if k.z > 0.0 { opt(z, k.z) } else { None };
        self.lin(out, [Some((x0, k.x0)), Some((eps, k.eps)), z])
    }

    fn diffpir_step(
        &mut self,
        x0: &GpuTensor,
        x_t: &GpuTensor,
        z: Option<&GpuTensor>,
        abar: f64,
        abar_prev: f64,
        zeta: f64,
        out: &mut GpuTensor,
    ) -> Result<()> {
        same(x0, x_t, "diffpir_step")?;
        same(x0, out, "diffpir_step")?;
        let (a, b, c) = DiffpirCoefs::new(abar, abar_prev, zeta).linear();
        self.lin(out, [Some((x0, a)), Some((x_t, b)), opt(z, c)])
    }

    fn axpby(&mut self, a: f64, x: &GpuTensor, b: f64, y: &GpuTensor, out: &mut GpuTensor) -> Result<()> {
        same(x, y, "axpby")?;
        same(x, out, "axpby")?;
        self.lin(out, [Some((x, a)), Some((y, b)), None])
    }

    fn axpy(&mut self, a: f64, x: &GpuTensor, y: &mut GpuTensor) -> Result<()> {
        same(x, y, "axpy")?;
        self.lin(y, [Some((y, 1.0)), Some((x, a)), None])
    }

    fn mask_blend(&mut self, x: &GpuTensor, y_t: &GpuTensor, mask: &GpuTensor, out: &mut GpuTensor) -> Result<()> {
        same(x, y_t, "mask_blend")?;
        same(x, out, "mask_blend")?;
        let l = x.image_len();
        if mask.image_len() != l || (mask.shape[0] != 1 && mask.shape[0] != x.shape[0]) {
            return Err(Error::shape("mask", &mask.shape, format!("does not fit images {:?}", x.shape)));
        }
        let sm = if mask.shape[0] == 1 { 0 } else { l };
        let args = [P(out.p()), P(x.p()), P(y_t.p()), P(mask.p()), L(sm as i64), I(l as i32)];
        self.gpu.launch_planes("mask_blend", l, x.shape[0], 1, &args)
    }

    fn clamp(&mut self, x: &mut GpuTensor, lo: f64, hi: f64) -> Result<()> {
        self.gpu.launch_n("clamp_inplace", x.len(), &[P(x.p()), F(lo as f32), F(hi as f32), L(x.len() as i64)])
    }

    fn clip_gradient(&mut self, x0_raw: &GpuTensor, grad: &mut GpuTensor) -> Result<()> {
        same(x0_raw, grad, "clip_gradient")?;
        self.gpu.launch_n("clip_gradient", grad.len(), &[P(x0_raw.p()), P(grad.p()), L(grad.len() as i64)])
    }

    fn norms(&mut self, x: &GpuTensor, out: &mut [f64]) -> Result<()> {
        let n = x.shape[0];
        if out.len() != n {
            return Err(Error::shape("norms", &x.shape, format!("{} outputs for this batch", out.len())));
        }
        let st = self.gpu.stream();
        let s = st.alloc_zeros::<f64>(n)?;
        let sp = {
            use cudarc::driver::DevicePtr;
            s.device_ptr(st).0
        };
        self.gpu.launch("sumsq", (n as u32, 1, 1), 512, &[P(x.p()), P(sp), L(x.image_len() as i64)])?;
        let v = st.clone_dtoh(&s)?;
        for (o, v) in out.iter_mut().zip(v) {
            *o = v.sqrt();
        }
        Ok(())
    }

    fn scale_images(&mut self, x: &mut GpuTensor, s: &[f64]) -> Result<()> {
        if s.len() != x.shape[0] {
            return Err(Error::shape("scale_images", &x.shape, format!("{} scales for this batch", s.len())));
        }
        let sf: Vec<f32> = s.iter().map(|&v| v as f32).collect();
        let sd = self.gpu.upload(&sf)?;
        let args = [P(x.p()), P(sd.p()), L(x.image_len() as i64), L(x.len() as i64)];
        self.gpu.launch_n("scale_images", x.len(), &args)
    }

    fn embed_channels(&mut self, g: &GpuTensor, scale: f64, out: &mut GpuTensor) -> Result<()> {
        let l = g.image_len();
        if out.shape[0] != g.shape[0] || out.image_len() < l || out.shape[2] != g.shape[2] || out.shape[3] != g.shape[3]
        {
            return Err(Error::shape("embed_channels", &g.shape, format!("does not fit {:?}", out.shape)));
        }
        self.gpu.stream().memset_zeros(&mut out.buf.0)?;
        self.lin3((out.p(), out.image_len()), (g.p(), l, scale), NONE, NONE, l, g.shape[0], false)
    }

    fn max_abs(&mut self, x: &GpuTensor) -> Result<f64> {
        let m = self.gpu.alloc(1)?;
        self.gpu.launch("max_abs", (1, 1, 1), 1024, &[P(x.p()), P(m.p()), L(x.len() as i64)])?;
        Ok(self.gpu.download(&m, 1)?[0] as f64)
    }
}
