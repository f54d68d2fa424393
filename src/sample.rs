//! Unconditional sampling ([`Generator`]: ancestral DDPM or DDIM) and the seed paper's denoising
//! experiment ([`Denoising`]: noise a clean image to level `t`, then denoise it), on any device.

use crate::device::{dispatch, exec_methods, sample_err, DeviceBackend, Exec, Job};
use crate::error::{Error, Result};
use crate::models::Model;
use diffinv_core::rng::streams;
use diffinv_core::sampler;
use diffinv_cpu::solve::{streams_for, Schedule};
use diffinv_cpu::Tensor;
use std::time::Instant;

fn schedule(model: &Model, steps: Option<usize>) -> Result<Schedule> {
    let total = model.diffusion().steps;
    if let Some(s) = steps {
        if s == 0 || s > total {
            return Err(Error::Cpu(diffinv_cpu::Error::parameter("steps", s, format!("must be in 1..={total}"))));
        }
    }
    let spec = steps.filter(|&s| s != total).map(|s| s.to_string());
    Ok(Schedule::new(model.diffusion(), spec.as_deref())?)
}

/// Samples drawn from a model.
#[derive(Clone, Debug)]
pub struct Generated {
    /// The samples, `n x C x H x W` in [-1, 1].
    pub images: Tensor,
    /// Network evaluations per sample (the chain's length).
    pub nfe: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Where it ran.
    pub device: String,
}

/// Unconditional samples: ancestral DDPM, or DDIM with `ddim_eta`.
///
/// ```
/// let model = diffinv::Model::shipped()?;
/// let out = diffinv::Generator::new(&model).steps(2).ddim_eta(0.0).seed(1).run(2)?;
/// assert_eq!(out.images.shape(), [2, 3, 64, 64]);
/// # Ok::<(), diffinv::Error>(())
/// ```
pub struct Generator<'m> {
    model: &'m Model,
    steps: Option<usize>,
    ddim_eta: Option<f64>,
    seed: u64,
    batch: usize,
    exec: Exec<'m>,
}

impl<'m> Generator<'m> {
    /// Ancestral sampling on the model's whole chain, seed 0, 4 samples per network call.
    pub fn new(model: &'m Model) -> Self {
        Generator { model, steps: None, ddim_eta: None, seed: 0, batch: 4, exec: Exec::default() }
    }

    /// A respaced chain of `steps` steps.
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = Some(steps);
        self
    }

    /// DDIM with noise `eta` in [0, 1] (0: deterministic).
    pub fn ddim_eta(mut self, eta: f64) -> Self {
        self.ddim_eta = Some(eta);
        self
    }

    /// The seed (sample `i` draws from its own streams, whatever the batch).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Samples per network call.
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    exec_methods!();

    /// Draws `n` samples.
    ///
    /// # Errors
    /// `n`, the batch or the steps out of range, `eta` outside [0, 1], a device this build or
    /// machine lacks, [`Error::Cancelled`].
    pub fn run(&mut self, n: usize) -> Result<Generated> {
        if n == 0 || self.batch == 0 {
            return Err(Error::Cpu(diffinv_cpu::Error::parameter(
                "n and batch",
                format!("{n}, {}", self.batch),
                "must be at least 1",
            )));
        }
        if let Some(e) = self.ddim_eta {
            if !(0.0..=1.0).contains(&e) {
                return Err(Error::Cpu(diffinv_cpu::Error::parameter("ddim_eta", e, "must be in [0, 1]")));
            }
        }
        let sched = schedule(self.model, self.steps)?;
        let t0 = Instant::now();
        let (c, s) = (self.model.config().in_channels, self.model.image_size());
        let (model, n, batch, eta, seed) = (self.model, n, self.batch, self.ddim_eta, self.seed);
        let (device, cpu, gpu) = (self.exec.device, self.exec.cpu, self.exec.gpu);
        let (images, device) = self.exec.install(|monitor| {
            let job = GenerateJob { sched: &sched, n, batch, shape: [c, s, s], eta, seed, monitor };
            dispatch(model, device, cpu, gpu, job)
        })?;
        Ok(Generated { images, nfe: sched.len(), seconds: t0.elapsed().as_secs_f64(), device })
    }
}

struct GenerateJob<'a> {
    sched: &'a Schedule,
    n: usize,
    batch: usize,
    shape: [usize; 3],
    eta: Option<f64>,
    seed: u64,
    monitor: &'a mut (dyn FnMut(usize, usize) -> bool + Send),
}

impl Job for GenerateJob<'_> {
    type Out = Tensor;

    fn run<B: DeviceBackend>(self, b: &mut B) -> Result<Tensor> {
        let chain = self.sched.chain();
        let (total, mut parts) = (chain.len() * self.n, Vec::new());
        let mut start = 0;
        while start < self.n {
            let n = self.batch.min(self.n - start);
            let [c, h, w] = self.shape;
            let mut x = b.zeros([n, c, h, w]).map_err(B::err)?;
            b.randn(&mut streams_for(self.seed, streams::INIT, start as u64, n), &mut x).map_err(B::err)?;
            let mut rngs = streams_for(self.seed, streams::STEPS, start as u64, n);
            let base = start * chain.len();
            let mut mon = |done: usize, _: usize| (self.monitor)(base + n * done, total);
            sampler::reverse(b, &chain, chain.len() - 1, self.eta, &mut x, &mut rngs, &mut mon)
                .map_err(sample_err::<B>)?;
            b.clamp(&mut x, -1.0, 1.0).map_err(B::err)?;
            parts.push(b.download(&x)?);
            start += n;
        }
        Ok(Tensor::stack(&parts.iter().collect::<Vec<_>>())?)
    }
}

/// How [`Denoising`] denoises.
///
/// ```
/// let model = diffinv::Model::shipped()?;
/// let clean = diffinv::image::to_tensor(diffinv::image::load("assets/samples/009522.png")?.view())?;
/// let out = diffinv::Denoising::new(&model, 20).mode(diffinv::DenoiseMode::Reverse).steps(50).run(&clean)?;
/// assert_eq!(out.nfe, out.t / 20 + 1);
/// # Ok::<(), diffinv::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenoiseMode {
    /// `x0_hat(x_t)` after one network evaluation.
    OneShot,
    /// The DDPM chain from `t` down to 0.
    Reverse,
}

/// A denoised image and its noisy input.
#[derive(Clone, Debug)]
pub struct Denoised {
    /// `x_t`, clipped to [-1, 1] (as an image).
    pub noisy: Tensor,
    /// The denoised image, [-1, 1].
    pub x: Tensor,
    /// The timestep of the chain that was used (at or below the one asked for).
    pub t: usize,
    /// Network evaluations.
    pub nfe: usize,
    /// Wall-clock seconds of the denoising.
    pub seconds: f64,
}

/// The seed paper's s4.1 experiment: noise a clean image to timestep `t` with the forward
/// process, then denoise it in one shot or by the reverse chain.
///
/// ```
/// let model = diffinv::Model::shipped()?;
/// let clean = diffinv::image::to_tensor(diffinv::image::load("assets/samples/009522.png")?.view())?;
/// let out = diffinv::Denoising::new(&model, 100).run(&clean)?;
/// assert_eq!((out.t, out.nfe), (100, 1));
/// # Ok::<(), diffinv::Error>(())
/// ```
pub struct Denoising<'m> {
    model: &'m Model,
    t: usize,
    mode: DenoiseMode,
    steps: Option<usize>,
    seed: u64,
    index: u64,
    exec: Exec<'m>,
}

impl<'m> Denoising<'m> {
    /// One-shot denoising from timestep `t`, seed 0.
    pub fn new(model: &'m Model, t: usize) -> Self {
        Denoising { model, t, mode: DenoiseMode::OneShot, steps: None, seed: 0, index: 0, exec: Exec::default() }
    }

    /// One-shot or reverse.
    pub fn mode(mut self, mode: DenoiseMode) -> Self {
        self.mode = mode;
        self
    }

    /// A respaced chain (the noise level becomes the chain's step at or below `t`).
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = Some(steps);
        self
    }

    /// The seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The image's number in a run of many.
    pub fn index(mut self, index: u64) -> Self {
        self.index = index;
        self
    }

    exec_methods!();

    /// Noises and denoises `clean` (`1 x C x H x W` at the model's size, [-1, 1]).
    ///
    /// # Errors
    /// `t` not below the model's steps or below the chain's first step, an image of another
    /// size, a device this build or machine lacks, [`Error::Cancelled`].
    pub fn run(&mut self, clean: &Tensor) -> Result<Denoised> {
        let total = self.model.diffusion().steps;
        if self.t >= total {
            return Err(Error::Cpu(diffinv_cpu::Error::parameter("t", self.t, format!("must be below {total}"))));
        }
        let s = self.model.image_size();
        if clean.h() != s || clean.w() != s || clean.c() != self.model.config().in_channels {
            let reason = format!("the model takes {s}x{s} images");
            return Err(Error::Cpu(diffinv_cpu::Error::shape("clean image", &clean.shape(), reason)));
        }
        let sched = schedule(self.model, self.steps)?;
        let chain = sched.chain();
        // A respaced chain has its own steps: `t` must be one of them, not silently rounded.
        let k = chain.index_at_or_below(self.t).filter(|&k| chain.steps()[k] == self.t).ok_or_else(|| {
            let near: Vec<String> = chain.steps().windows(2).find(|w| w[0] <= self.t && self.t <= w[1]).map_or_else(
                || chain.steps().iter().take(2).map(|s| s.to_string()).collect(),
                |w| w.iter().map(|s| s.to_string()).collect(),
            );
            let reason = format!("must be a step of the {}-step chain (nearest: {})", chain.len(), near.join(", "));
            Error::Cpu(diffinv_cpu::Error::parameter("t", self.t, reason))
        })?;
        let (model, k, mode, seed, index) = (self.model, k, self.mode, self.seed, self.index);
        let (device, cpu, gpu) = (self.exec.device, self.exec.cpu, self.exec.gpu);
        let ((noisy, x, nfe, seconds), _) = self.exec.install(|monitor| {
            let job = DenoiseJob { sched: &sched, k, clean, mode, seed, index, monitor };
            dispatch(model, device, cpu, gpu, job)
        })?;
        Ok(Denoised { noisy, x, t: chain.steps()[k], nfe, seconds })
    }
}

struct DenoiseJob<'a> {
    sched: &'a Schedule,
    k: usize,
    clean: &'a Tensor,
    mode: DenoiseMode,
    seed: u64,
    index: u64,
    monitor: &'a mut (dyn FnMut(usize, usize) -> bool + Send),
}

impl Job for DenoiseJob<'_> {
    type Out = (Tensor, Tensor, usize, f64);

    fn run<B: DeviceBackend>(self, b: &mut B) -> Result<Self::Out> {
        let chain = self.sched.chain();
        let c = chain.coefs(self.k);
        let x = b.upload(self.clean)?;
        let shape = self.clean.shape();
        let mut noise = b.zeros(shape).map_err(B::err)?;
        b.randn(&mut streams_for(self.seed, streams::FORWARD, self.index, 1), &mut noise).map_err(B::err)?;
        let mut xt = b.zeros(shape).map_err(B::err)?;
        b.q_sample(&x, &noise, c.abar, &mut xt).map_err(B::err)?;
        let mut noisy = b.zeros(shape).map_err(B::err)?;
        b.copy(&xt, &mut noisy).map_err(B::err)?;
        b.clamp(&mut noisy, -1.0, 1.0).map_err(B::err)?;
        let t0 = Instant::now();
        let (out, nfe) = match self.mode {
            DenoiseMode::OneShot => {
                let mut o = b.zeros(shape).map_err(B::err)?;
                let s = sampler::denoise_one_shot(b, &c, &xt, true, &mut o).map_err(sample_err::<B>)?;
                (o, s.nfe)
            }
            DenoiseMode::Reverse => {
                let mut rngs = streams_for(self.seed, streams::STEPS, self.index, 1);
                let s = sampler::reverse(b, &chain, self.k, None, &mut xt, &mut rngs, &mut |d, t| (self.monitor)(d, t))
                    .map_err(sample_err::<B>)?;
                b.clamp(&mut xt, -1.0, 1.0).map_err(B::err)?;
                (xt, s.nfe)
            }
        };
        let seconds = t0.elapsed().as_secs_f64();
        Ok((b.download(&noisy)?, b.download(&out)?, nfe, seconds))
    }
}
