//! [`Restorer`]: one inverse problem (task, method, settings, seed, device) set up once and run
//! on any number of measurements: the one place where a method meets a device.

use crate::assets;
use crate::device::{dispatch, exec_methods, sample_err, sample_err_with, DeviceBackend, Exec, Job};
use crate::error::{Error, Result};
use crate::image::{from_tensor, to_tensor};
use crate::models::Model;
use crate::tiled::{Tiled, TiledOp};
use diffinv_core::sampler::{Monitor, Stats};
use diffinv_core::Backend;
use diffinv_core::Shape;
use diffinv_cpu::classical::Denoiser;
use diffinv_cpu::ops::{build, measure, poisson, NoiseModel, Op, Task, TaskParams};
use diffinv_cpu::solve::{restore_classical, Method, Plan, Settings};
use diffinv_cpu::tiles::TileLayout;
use diffinv_cpu::Tensor;
use ndarray::{Array3, ArrayView3};
use std::time::Instant;

/// A restoration and what it cost.
#[derive(Clone, Debug)]
pub struct Restored {
    /// The restored image, `H x W x 3` in [0, 1] (clipped).
    pub image: Array3<f32>,
    /// The same as a `1 x 3 x H x W` tensor in [-1, 1].
    pub x: Tensor,
    /// Network evaluations.
    pub nfe: usize,
    /// Network input-gradients (DPS's backward passes).
    pub vjps: usize,
    /// Wall-clock seconds of the method.
    pub seconds: f64,
    /// The parameters the method used, by name (steps, zeta, lambda, ...).
    pub params: Vec<(&'static str, f64)>,
    /// Where it ran (`cpu`, or the GPU's name).
    pub device: String,
    /// The noise level `sigma_y` the method assumed ([-1, 1] units).
    pub sigma_y: f64,
    /// With [`Restorer::noise_auto`]: the estimate (the mean over a batch) that `sigma_y` is.
    pub sigma_y_estimated: Option<f64>,
    /// Model-sized tiles per network evaluation (1: the image is the model's size, untiled).
    pub tiles: usize,
    /// `||A(x) - y||` of the returned image (the whole batch).
    pub residual: f64,
    /// With [`Restorer::samples`]: every draw's sampler seed and residual, in order; the
    /// returned image is the draw with the smallest residual. One entry for a single draw.
    pub samples: Vec<Sample>,
}

/// One draw of a best-of-N restoration.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The seed of the draw's sampler noise (the operator and measurement keep the run's seed).
    pub seed: u64,
    /// `||A(x) - y||` of the draw.
    pub residual: f64,
    /// The draw (NCHW, [-1, 1], clipped), kept only when the run has more than one.
    pub x: Option<Tensor>,
}

/// The sampler seed of draw `k` of a best-of-N run: the run's seed for the first draw (so that
/// one draw is the plain run), a splitmix64 step away for the others.
pub fn sample_seed(seed: u64, k: usize) -> u64 {
    if k == 0 {
        return seed;
    }
    let mut z = seed.wrapping_add((k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The most draws of a best-of-N run.
pub const MAX_SAMPLES: usize = 1024;

/// `||A(x) - y||` over the batch.
fn residual(op: &Op, y: &Tensor, x: &Tensor) -> Result<f64> {
    let ax = op.forward(x)?;
    Ok(ax.data().iter().zip(y.data()).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>().sqrt())
}

/// When a diffusion method runs its model on tiles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tiling {
    /// When the image is not the model's size: overlapping model-sized tiles blended with
    /// smooth weights (images smaller than the model are mirror-padded and cropped back).
    #[default]
    Auto,
    /// Always through the tiling path (one tile for a model-sized image: the same result as
    /// untiled, at the cost of the host round trips).
    Always,
}

/// An inverse problem and how to solve it, set up with builder calls and run on measurements.
///
/// ```
/// use diffinv::{Device, Method, Model, Restorer, Task};
/// let model = Model::shipped()?;
/// let clean = diffinv::image::load("assets/samples/009521.png")?;       // 64 x 64 x 3 in [0, 1]
/// let y = Restorer::new(&model).task(Task::InpaintBox).seed(0).measure(clean.view())?;
/// let out = Restorer::new(&model)
///     .task(Task::InpaintBox).method(Method::DiffPir).steps(3).noise(0.05).seed(0)
///     .device(Device::Cpu).threads(2)
///     .on_step(|step, total| step <= total)                            // false would cancel
///     .run(y.view())?;
/// assert_eq!(out.image.dim(), (64, 64, 3));
/// println!("{} NFE, {:.1} s", out.nfe, out.seconds);
/// # Ok::<(), diffinv::Error>(())
/// ```
pub struct Restorer<'m> {
    model: Option<&'m Model>,
    task: Task,
    method: Method,
    settings: Settings,
    params: TaskParams,
    /// `None`: estimated from each measurement.
    noise: Option<f64>,
    seed: u64,
    index: u64,
    exec: Exec<'m>,
    tiling: Tiling,
    denoiser: Option<String>,
    loaded_denoiser: Option<Denoiser>,
    noise_model: NoiseModel,
    samples: usize,
    on_estimate: Option<(usize, EstimateFn<'m>)>,
}

/// A watcher of the running estimate: `(done, total, x0)`.
type EstimateFn<'m> = Box<EstimateDyn<'m>>;
type EstimateDyn<'m> = dyn FnMut(usize, usize, &Tensor) + Send + 'm;

impl<'m> Restorer<'m> {
    fn with_model(model: Option<&'m Model>) -> Self {
        Restorer {
            model,
            task: Task::InpaintBox,
            method: if model.is_some() { Method::Dps } else { Method::HqsTv },
            settings: Settings::default(),
            params: TaskParams::default(),
            noise: Some(0.05),
            seed: 0,
            index: 0,
            exec: Exec::default(),
            tiling: Tiling::Auto,
            denoiser: None,
            loaded_denoiser: None,
            noise_model: NoiseModel::Gaussian,
            samples: 1,
            on_estimate: None,
        }
    }

    /// Called every `every` steps (0: about 20 times a run), and after the last, of a diffusion
    /// method with
    /// `(done, total, x0)`: its current estimate of the clean image, a `1 x 3 x H x W` tensor in
    /// [-1, 1] (a live preview; reading it from a GPU costs a transfer). The classical methods
    /// do not call it.
    ///
    /// ```
    /// # let model = diffinv::Model::shipped()?;
    /// # let y = diffinv::Restorer::new(&model).measure(ndarray::Array3::zeros((64, 64, 3)).view())?;
    /// let mut seen = Vec::new();
    /// diffinv::Restorer::new(&model)
    ///     .method(diffinv::Method::DiffPir)
    ///     .steps(4)
    ///     .on_estimate(2, |done, _, x0| seen.push((done, x0.shape())))
    ///     .run(y.view())?;
    /// assert_eq!(seen, [(2, [1, 3, 64, 64]), (4, [1, 3, 64, 64])]);
    /// # Ok::<(), diffinv::Error>(())
    /// ```
    pub fn on_estimate(mut self, every: usize, f: impl FnMut(usize, usize, &Tensor) + Send + 'm) -> Self {
        self.on_estimate = Some((every, Box::new(f)));
        self
    }

    /// A restorer with `model`'s prior: box inpainting by DPS with the tuned defaults,
    /// `sigma_y = 0.05`, seed 0, on the CPU.
    pub fn new(model: &'m Model) -> Self {
        Self::with_model(Some(model))
    }

    /// A restorer without a diffusion model, for the classical methods (HQS-TV by default);
    /// images may then have any size.
    pub fn classical() -> Restorer<'static> {
        Restorer::with_model(None)
    }

    /// The inverse problem.
    pub fn task(mut self, task: Task) -> Self {
        self.task = task;
        self
    }

    /// The method.
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Respaced chain length (diffusion methods) or iterations (classical ones).
    pub fn steps(mut self, steps: usize) -> Self {
        self.settings.steps = Some(steps);
        self
    }

    /// DPS's step size or DiffPIR's noise mix.
    pub fn zeta(mut self, zeta: f64) -> Self {
        self.settings.zeta = Some(zeta);
        self
    }

    /// Score-ALD's anneal factor, SDEdit's data step, DiffPIR's data weight, the TV weight, or
    /// the plug-and-play weight.
    pub fn lambda(mut self, lambda: f64) -> Self {
        self.settings.lambda = Some(lambda);
        self
    }

    /// SDEdit's starting timestep.
    pub fn t0(mut self, t0: usize) -> Self {
        self.settings.t0 = Some(t0);
        self
    }

    /// All method settings at once (unset ones take the tuned defaults).
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// The operator's options (box, mask, kernel, blur std, SR factor, ...).
    pub fn params(mut self, params: TaskParams) -> Self {
        self.params = params;
        self
    }

    /// The measurement noise `sigma_y` in [-1, 1] units (simulated by [`Restorer::measure`],
    /// assumed by the methods).
    pub fn noise(mut self, sigma_y: f64) -> Self {
        self.noise = Some(sigma_y);
        self
    }

    /// An unknown noise level: each run estimates `sigma_y` from the measurement
    /// ([`crate::estimate_noise`]; inpainting from the observed pixels of the operator's mask)
    /// and sets the methods up for it. [`Restorer::measure`] then has no level to simulate.
    ///
    /// ```
    /// use diffinv::{Method, Restorer, Task};
    /// let clean = diffinv::image::load("assets/samples/009521.png")?;
    /// let y = Restorer::classical().task(Task::DeblurGauss).noise(0.05).measure(clean.view())?;
    /// let out = Restorer::classical().task(Task::DeblurGauss).method(Method::HqsTv).steps(5)
    ///     .noise_auto().run(y.view())?;
    /// let est = out.sigma_y_estimated.unwrap();
    /// assert!((est - 0.05).abs() < 0.0075, "{est}");
    /// # Ok::<(), diffinv::Error>(())
    /// ```
    pub fn noise_auto(mut self) -> Self {
        self.noise = None;
        self
    }

    /// How the measurement is corrupted (default Gaussian at [`Restorer::noise`]'s level).
    /// With [`NoiseModel::Poisson`], [`Restorer::measure`] simulates photon counts, DPS and DAPS
    /// use the Poisson likelihood (weighted least squares, [`poisson::sqrt_weights`]), and the
    /// other methods assume Gaussian noise of the same mean variance
    /// ([`poisson::equivalent_sigma`]).
    pub fn noise_model(mut self, model: NoiseModel) -> Self {
        self.noise_model = model;
        self
    }

    /// Best of `n` draws: the method runs `n` times with independent sampler seeds
    /// ([`sample_seed`]) and returns the draw whose measurement residual `||A(x) - y||` is the
    /// smallest (never chosen against a clean image); [`Restored::samples`] lists them all.
    /// `n` must be in `1..=MAX_SAMPLES` (checked when run), and above 1 only for diffusion
    /// methods.
    ///
    /// ```
    /// use diffinv::{Method, Model, Restorer, Settings, Task};
    /// let model = Model::shipped()?;
    /// let clean = diffinv::image::load("assets/samples/009521.png")?;
    /// let r = || Restorer::new(&model).task(Task::PhaseRetrieval).seed(0);
    /// let (y, op) = r().measure_tensor(&diffinv::image::to_tensor(clean.view())?)?;
    /// // DAPS with 3 levels of 1 ODE step and 2 Langevin steps (DAPS-1K is the default).
    /// let tiny = Settings { steps: Some(3), ode_steps: Some(1), langevin_steps: Some(2), ..Default::default() };
    /// let out = r().method(Method::Daps).settings(tiny).samples(2).run_with(&op, &y)?;
    /// assert_eq!(out.samples.len(), 2);
    /// assert!(out.samples.iter().all(|s| s.residual >= out.residual));
    /// # Ok::<(), diffinv::Error>(())
    /// ```
    pub fn samples(mut self, n: usize) -> Self {
        self.samples = n;
        self
    }

    /// The seed of every random draw (operator, measurement noise, sampler noise).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The image's number in a run of many (each number draws from its own streams).
    pub fn index(mut self, index: u64) -> Self {
        self.index = index;
        self
    }

    exec_methods!();

    /// When the model runs on tiles (default [`Tiling::Auto`]: for images of another size than
    /// the model's).
    pub fn tiling(mut self, tiling: Tiling) -> Self {
        self.tiling = tiling;
        self
    }

    /// HQS-DnCNN's denoiser: a shipped name (`ffdnet_color`, the default,
    /// `cdncnn_b_color_blind`, `cdncnn_s_color_sigma25`) or a weights file.
    pub fn denoiser(mut self, name_or_path: &str) -> Self {
        self.denoiser = Some(name_or_path.to_string());
        self.loaded_denoiser = None;
        self
    }

    /// The restored image's shape for a measurement of shape `y`: the measurement's (times the
    /// SR factor). Any size: diffusion methods tile the model over other sizes than its own.
    pub fn image_shape(&self, y: Shape) -> Shape {
        if self.task == Task::PhaseRetrieval {
            let os = self.params.oversample.unwrap_or(diffinv_cpu::ops::phase::OVERSAMPLE);
            let side = |p: usize| diffinv_cpu::ops::phase::image_side(p, os).unwrap_or(0);
            return [y[0], y[1], side(y[2]), side(y[3])];
        }
        let f = if self.task == Task::Sr4 { self.params.scale.unwrap_or(4) } else { 1 };
        [y[0], y[1], y[2] * f, y[3] * f]
    }

    /// The tiles a diffusion method runs its model on for images of `shape` (`None`: untiled).
    ///
    /// # Errors
    /// An image with no pixels.
    pub fn tile_layout(&self, shape: Shape) -> Result<Option<TileLayout>> {
        let Some(m) = self.model.filter(|_| self.method.is_diffusion()) else { return Ok(None) };
        let s = m.image_size();
        if self.tiling == Tiling::Auto && shape[2] == s && shape[3] == s {
            return Ok(None);
        }
        Ok(Some(TileLayout::new(shape[2], shape[3], s, TileLayout::default_overlap(s))?))
    }

    /// The measurement operator for images of `shape` (seeded masks, boxes and motion kernels
    /// from the seed and the image number).
    ///
    /// # Errors
    /// Task parameters that do not fit the shape.
    pub fn operator(&self, shape: Shape) -> Result<Op> {
        Ok(build(self.task, &self.params, shape, self.seed, self.index)?)
    }

    /// Simulates the measurement `y = A x + sigma_y n` of a clean batch `x` (NCHW, [-1, 1]);
    /// returns it with its operator.
    ///
    /// # Errors
    /// Task parameters that do not fit, a noise level out of range or [`Restorer::noise_auto`].
    pub fn measure_tensor(&self, clean: &Tensor) -> Result<(Tensor, Op)> {
        let noise = self.noise.ok_or_else(|| {
            Error::Cpu(diffinv_cpu::Error::parameter("noise", "auto", "a measurement is simulated at a given level"))
        })?;
        let op = self.operator(clean.shape())?;
        let y = match self.noise_model {
            NoiseModel::Gaussian => measure(&op, clean, noise, self.seed, self.index)?,
            NoiseModel::Poisson { rate } => poisson::measure(&op, clean, rate, self.seed, self.index)?,
        };
        Ok((y, op))
    }

    /// Simulates the measurement of a clean image (`H x W x 3` in [0, 1]); the result is in
    /// the same units (`(y + 1)/2`, not clipped; smaller for super-resolution).
    ///
    /// # Errors
    /// As [`Restorer::measure_tensor`].
    pub fn measure(&self, clean: ArrayView3<'_, f32>) -> Result<Array3<f32>> {
        Ok(from_tensor(&self.measure_tensor(&to_tensor(clean)?)?.0, 0))
    }

    /// Restores a measurement (`H x W x 3`, in [`Restorer::measure`]'s units).
    ///
    /// # Errors
    /// As [`Restorer::run_tensor`].
    pub fn run(&mut self, y: ArrayView3<'_, f32>) -> Result<Restored> {
        self.run_tensor(&to_tensor(y)?)
    }

    /// Restores a measurement batch (NCHW, [-1, 1]), building its operator.
    ///
    /// # Errors
    /// A measurement whose shape the task on this model does not produce, invalid settings,
    /// a device this build or machine lacks, a diverging iterate, or [`Error::Cancelled`].
    pub fn run_tensor(&mut self, y: &Tensor) -> Result<Restored> {
        let shape = self.image_shape(y.shape());
        let op = self.operator(shape)?;
        let want = op.measurement_shape(shape);
        if y.shape() != want {
            return Err(Error::Cpu(diffinv_cpu::Error::shape(
                "measurement",
                &y.shape(),
                format!("task {} with this model and method measures {want:?}", self.task.name()),
            )));
        }
        self.run_with(&op, y)
    }

    /// Restores `y` measured by `op` (from [`Restorer::measure_tensor`] or
    /// [`Restorer::operator`]).
    ///
    /// # Errors
    /// As [`Restorer::run_tensor`].
    pub fn run_with(&mut self, op: &Op, y: &Tensor) -> Result<Restored> {
        let max = diffinv_cpu::ops::MAX_NOISE;
        if let Some(s) = self.noise.filter(|s| !(0.0..=max).contains(s)) {
            return Err(Error::Cpu(diffinv_cpu::Error::parameter("noise", s, format!("must be in [0, {max}]"))));
        }
        self.settings.check(self.method)?;
        self.method.check_task(self.task)?;
        self.noise_model.check()?;
        if !(1..=MAX_SAMPLES).contains(&self.samples) {
            let e = diffinv_cpu::Error::parameter("samples", self.samples, format!("must be in 1..={MAX_SAMPLES}"));
            return Err(Error::Cpu(e));
        }
        if self.samples > 1 && !self.method.is_diffusion() {
            let e = diffinv_cpu::Error::parameter(
                "samples",
                self.samples,
                "needs a diffusion method (the others are deterministic)",
            );
            return Err(Error::Cpu(e));
        }
        let estimated = match (self.noise_model, self.noise) {
            (NoiseModel::Poisson { rate }, _) => Some(poisson::equivalent_sigma(y, rate)),
            (_, Some(_)) => None,
            (_, None) => Some(self.estimate_noise(op, y)?),
        };
        if self.method == Method::HqsDncnn && self.loaded_denoiser.is_none() {
            self.loaded_denoiser = Some(load_denoiser(self.denoiser.as_deref().unwrap_or("ffdnet_color"))?);
        }
        let t0 = Instant::now();
        let noise = match self.noise_model {
            NoiseModel::Poisson { .. } => estimated.unwrap_or_default(),
            NoiseModel::Gaussian => self.noise.or(estimated).unwrap_or_default(),
        };
        let (noise_model, n_samples) = (self.noise_model, self.samples);
        let (method, task, settings, seed, index) = (self.method, self.task, &self.settings, self.seed, self.index);
        let (model, den) = (self.model, self.loaded_denoiser.as_ref());
        let (device, cpu, gpu) = (self.exec.device, self.exec.cpu, self.exec.gpu);
        let shape = self.image_shape(y.shape());
        let layout = self.tile_layout(shape)?;
        let tiles = layout.as_ref().map_or(1, TileLayout::len);
        let mut on_estimate = self.on_estimate.as_mut().map(|(n, f)| (*n, &mut **f));
        let (x, nfe, vjps, params, device, samples) = self.exec.install(|monitor| {
            // A noiseless denoising measurement is the image: the posterior is a point mass.
            if task == Task::Denoise && noise == 0.0 && noise_model == NoiseModel::Gaussian {
                let mut x = y.clone();
                x.data_mut().iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
                return Ok((x, 0, 0, vec![("identity", 1.0)], "cpu".to_string(), vec![]));
            }
            if !method.is_diffusion() {
                let o = restore_classical(method, task, settings, den, op, y, noise, monitor)?;
                return Ok((o.x, 0, 0, o.params, "cpu".to_string(), vec![]));
            }
            let model = model.ok_or_else(|| {
                Error::Cpu(diffinv_cpu::Error::parameter("method", method.name(), "needs a diffusion model"))
            })?;
            let plan = Plan::new(model.config(), model.diffusion(), method, task, settings, noise, shape)?;
            // The likelihood the method sees: Poisson's weighted least squares for DPS and DAPS.
            let weighted = match noise_model {
                NoiseModel::Poisson { .. } if matches!(method, Method::Dps | Method::Daps) => {
                    Some(poisson::weighted(op, y)?)
                }
                _ => None,
            };
            let (lop, ly) = weighted.as_ref().map_or((op, y), |(o, w)| (o, w));
            let mut best: Option<(Tensor, Stats, f64, String)> = None;
            let mut samples = Vec::with_capacity(n_samples);
            for k in 0..n_samples {
                let s = sample_seed(seed, k);
                let watch = Watch {
                    step: &mut *monitor,
                    estimate: on_estimate.as_mut().map(|(n, f)| (*n, &mut **f as &mut EstimateDyn<'_>)),
                    draw: k,
                    draws: n_samples,
                };
                let job =
                    RestoreJob { plan: &plan, op: lop, y: ly, seed: s, index, layout: layout.clone(), monitor: watch };
                let ((x, stats), device) = dispatch(model, device, cpu, gpu, job)?;
                let r = residual(op, y, &x)?;
                samples.push(Sample { seed: s, residual: r, x: (n_samples > 1).then(|| x.clone()) });
                if best.as_ref().is_none_or(|b| r < b.2) {
                    best = Some((x, stats, r, device));
                }
            }
            let (x, stats, _, device) = best.expect("at least one draw");
            Ok((x, stats.nfe, stats.vjps, plan.params, device, samples))
        })?;
        let seconds = t0.elapsed().as_secs_f64();
        // A diffusion run measured every draw's residual; the returned draw has the smallest.
        let residual = match samples.iter().map(|s| s.residual).reduce(f64::min) {
            Some(r) => r,
            None => residual(op, y, &x)?,
        };
        let mut image = from_tensor(&x, 0);
        image.mapv_inplace(|v| v.clamp(0.0, 1.0));
        Ok(Restored {
            image,
            x,
            nfe,
            vjps,
            seconds,
            params,
            device,
            sigma_y: noise,
            sigma_y_estimated: estimated.filter(|_| self.noise_model == NoiseModel::Gaussian),
            tiles,
            residual,
            samples,
        })
    }

    /// The noise level of `y` measured by `op`, estimated from `y` alone (the mean over a
    /// batch), in [-1, 1] units; see [`crate::estimate_noise`].
    ///
    /// # Errors
    /// A measurement that does not match `op`, or too few (observed) pixels to estimate from.
    pub fn estimate_noise(&self, op: &Op, y: &Tensor) -> Result<f64> {
        let mut sum = 0.0;
        for i in 0..y.n() {
            sum += diffinv_cpu::noise_level::estimate(y, op, i)?.sigma;
        }
        Ok((sum / y.n().max(1) as f64).min(diffinv_cpu::ops::MAX_NOISE))
    }
}

/// A diffusion method's run on any backend.
struct RestoreJob<'a> {
    plan: &'a Plan,
    op: &'a Op,
    y: &'a Tensor,
    seed: u64,
    index: u64,
    layout: Option<TileLayout>,
    monitor: Watch<'a>,
}

/// A diffusion run's monitor: progress (and cancellation) through the caller's step callback,
/// steps counted over every draw of a best-of-N run; previews through its estimate callback.
struct Watch<'a> {
    step: &'a mut (dyn FnMut(usize, usize) -> bool + Send),
    estimate: Option<(usize, &'a mut EstimateDyn<'a>)>,
    draw: usize,
    draws: usize,
}

impl Monitor for Watch<'_> {
    fn step(&mut self, done: usize, total: usize) -> bool {
        (self.step)(self.draw * total + done, self.draws * total)
    }

    fn estimate<B: Backend>(
        &mut self,
        b: &mut B,
        x0: &B::Tensor,
        done: usize,
        total: usize,
    ) -> std::result::Result<(), B::Error> {
        let Some((every, f)) = self.estimate.as_mut() else { return Ok(()) };
        let every = if *every == 0 { (total / 20).max(1) } else { *every };
        if !done.is_multiple_of(every) && done != total {
            return Ok(());
        }
        let shape = b.shape(x0);
        let mut v = vec![0.0; shape.iter().product()];
        b.read_f32(x0, &mut v)?;
        let x = Tensor::from_vec(shape, v).expect("the backend's shape");
        f(self.draw * total + done, self.draws * total, &x);
        Ok(())
    }
}

impl Job for RestoreJob<'_> {
    type Out = (Tensor, Stats);

    fn run<B: DeviceBackend>(self, b: &mut B) -> Result<(Tensor, Stats)> {
        let y = b.upload(self.y)?;
        let RestoreJob { plan, op, seed, index, layout, mut monitor, .. } = self;
        let (x, stats) = b.with_operator(op, |b, op| match layout {
            None => plan.run(b, op, &y, seed, index, &mut monitor).map_err(sample_err::<B>),
            Some(layout) => {
                let mut tiled = Tiled::new(b, layout);
                plan.run(&mut tiled, &TiledOp(op), &y, seed, index, &mut monitor).map_err(|e| sample_err_with(e, |e| e))
            }
        })??;
        Ok((b.download(&x)?, stats))
    }
}

/// A shipped denoiser by name, or a weights file.
fn load_denoiser(name: &str) -> Result<Denoiser> {
    if let Some(ck) = assets::denoiser(name)? {
        return Ok(Denoiser::from_checkpoint(&ck)?);
    }
    let p = std::path::Path::new(name);
    if p.exists() {
        return Ok(Denoiser::from_file(p)?);
    }
    Err(Error::Cpu(diffinv_cpu::Error::parameter(
        "denoiser",
        format!("'{name}'"),
        format!("must be a file or one of {}", diffinv_cpu::classical::denoiser::SHIPPED.join(", ")),
    )))
}
