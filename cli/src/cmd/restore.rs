//! `diffinv restore`: solve an inverse problem for one image or a folder of images.

use crate::args::{f64_in, positive_up_to, usize_in, DeviceArgs, ModelArgs, PrecisionArg, MAX_STEPS, MAX_WEIGHT};
use crate::common::{CliError, Global, Result};
use crate::taskargs::OpArgs;
use clap::Args;
use diffinv::cpu::image_io::{load_image, save_image, Fit, MAX_SIDE};
use diffinv::metrics::Metrics;
use diffinv::{CpuContext, Device, GpuOptions, Method, Model, Op, Restorer, Settings, Task, TaskParams, Tensor};
use std::path::{Path, PathBuf};

pub const EXAMPLES: &str = "Examples:
  # Restore a face from a 50% box hole, simulating the measurement from a clean image:
  diffinv restore --task inpaint-box --from-clean assets/samples/009521.png -o out.png
  # Deblur a measurement made by `diffinv degrade` (same --seed gives the same operator):
  diffinv degrade --task deblur-gauss face.png -o blurred.png
  diffinv restore --task deblur-gauss --method diffpir blurred.png -o restored.png
  # A folder, with metrics, as JSON:
  diffinv restore --task sr4 --from-clean --method dps --steps 250 faces/ -o out/ --json";

#[derive(Args)]
#[command(after_help = EXAMPLES)]
pub struct RestoreArgs {
    /// The measurement (or, with --from-clean, the clean image): a PNG/JPEG file or a folder.
    pub input: PathBuf,
    /// Output image, or folder when INPUT is a folder.
    #[arg(short, long)]
    pub output: PathBuf,
    /// dps (default), ald, sdedit, diffpir, daps, adam-tv, hqs-tv, admm-tv, hqs-dncnn.
    #[arg(long, default_value = "dps")]
    pub method: String,
    /// hqs-dncnn's denoiser: ffdnet_color (default), cdncnn_b_color_blind,
    /// cdncnn_s_color_sigma25, or a weights file.
    #[arg(long)]
    pub denoiser: Option<String>,
    #[command(flatten)]
    pub op: OpArgs,
    /// INPUT is a clean image: simulate the measurement and report PSNR/SSIM/LPIPS.
    #[arg(long)]
    pub from_clean: bool,
    /// With --from-clean: also write the simulated measurement (as an image) here.
    #[arg(long, value_name = "PATH")]
    pub save_measurement: Option<PathBuf>,
    /// Respaced chain length (diffusion methods) or iterations (classical methods).
    #[arg(long, value_parser = usize_in(1, MAX_STEPS))]
    pub steps: Option<usize>,
    /// DPS step size (at 1000 steps; scaled by 1000/steps when respacing) or DiffPIR noise mix.
    #[arg(long, value_parser = f64_in(0.0, MAX_WEIGHT))]
    pub zeta: Option<f64>,
    /// Score-ALD anneal factor, SDEdit data step, DiffPIR data weight, TV weight, or the
    /// plug-and-play weight of hqs-dncnn.
    #[arg(long, value_parser = f64_in(0.0, MAX_WEIGHT))]
    pub lambda: Option<f64>,
    /// SDEdit starting timestep.
    #[arg(long, value_parser = usize_in(0, MAX_STEPS))]
    t0: Option<usize>,
    /// DAPS: Euler steps of the ODE per annealing level, 1..=100 (default 5; --steps is the
    /// number of levels, default 200: DAPS-1K; DAPS-100 is --steps 50 --ode-steps 2).
    #[arg(long, value_parser = usize_in(1, diffinv::cpu::solve::MAX_ODE_STEPS))]
    pub ode_steps: Option<usize>,
    /// DAPS: Langevin steps per level, 0..=10000 (default 100).
    #[arg(long, value_parser = usize_in(0, diffinv::cpu::solve::MAX_LANGEVIN_STEPS))]
    pub langevin_steps: Option<usize>,
    /// DAPS: Langevin step size at the first level, in (0, 1] (default per task, 1e-4 to 2e-5).
    #[arg(long, value_parser = positive_up_to(1.0))]
    pub lr: Option<f64>,
    /// DAPS: the likelihood's scale tau, in (0, 100] (default 0.01).
    #[arg(long, value_parser = positive_up_to(100.0))]
    pub tau: Option<f64>,
    /// DAPS: keep the Langevin noise in the last level's steps, as the official code does (by
    /// default they run without it, so the output does not carry it).
    #[arg(long)]
    pub noisy_last_level: bool,
    /// Draw N restorations with independent sampler seeds and keep the one whose measurement
    /// residual ||A(x) - y|| is smallest (1..=1024; diffusion methods); --json lists them all.
    #[arg(long, value_name = "N", value_parser = usize_in(1, diffinv::MAX_SAMPLES))]
    pub samples: Option<usize>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// How an image of another size than the model's is met (diffusion methods): `tile` (the
    /// default) restores it at its size, the model run on overlapping tiles (smaller images
    /// mirror-padded); `resize` centre-crops and resizes it, `crop` centre-crops it, to the
    /// model's size (the measurement to the size the model's image measures to).
    #[arg(long, value_parser = ["tile", "resize", "crop"])]
    pub fit: Option<String>,
    /// The same as --fit resize.
    #[arg(long, conflicts_with = "fit")]
    pub resize: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub precision: PrecisionArg,
    /// With a folder INPUT: restore only part of its images, `K/N` (image i goes to shard
    /// i mod N + 1), or `auto` / `auto/N` from a Slurm array or Kubernetes Indexed Job
    /// (docs/cluster.md). Every shard writes into the same output folder.
    #[arg(long, value_name = "K/N|auto", value_parser = crate::shard::parse)]
    pub shard: Option<crate::shard::Shard>,
}

/// The exit code of a run stopped by Ctrl-C (or, in `diffinv serve`, by its client).
pub const CANCELLED: i32 = 130;

/// One restoration: the options, and what they resolve to.
pub struct Job<'a> {
    pub a: &'a RestoreArgs,
    pub g: &'a Global,
    pub model: Option<&'a Model>,
    pub method: Method,
    pub metrics: Option<&'a Metrics>,
    pub params: TaskParams,
    pub device: (Device, GpuOptions),
    /// How the CPU computes (`--precision`).
    pub cpu: CpuContext,
}

/// A watcher of a run's estimate, `(done, total, x0)` (see `Restorer::on_estimate`).
pub type Estimate<'a> = Box<dyn FnMut(usize, usize, &Tensor) + Send + 'a>;

/// A restoration set up: the restorer, its measurement, and the clean image when simulated.
pub struct Prepared<'a> {
    r: Restorer<'a>,
    clean: Option<Tensor>,
    y: Tensor,
    op: Op,
    /// The measurement as an image (what the method sees).
    pub measurement: Tensor,
}

/// What one restoration made, in memory: the CLI writes it, `diffinv serve` serves it.
pub struct Outcome {
    /// The restored image, `1 x 3 x H x W` in [-1, 1].
    pub x: Tensor,
    /// The measurement as `degrade` would write it (for --save-measurement).
    pub measurement_file: Option<Tensor>,
    /// The JSON report's fields (without the file names).
    pub json: serde_json::Map<String, serde_json::Value>,
    /// The human-readable summary after `A -> B`.
    pub line: String,
}

impl<'a> Job<'a> {
    /// The restorer of image `index`, reporting progress to `on_step` (false cancels).
    fn restorer(&self, index: u64, on_step: impl FnMut(usize, usize) -> bool + Send + 'a) -> Result<Restorer<'a>> {
        let a = self.a;
        let r = match self.model {
            Some(m) => Restorer::new(m),
            None => Restorer::classical(),
        };
        let settings = Settings {
            steps: a.steps,
            zeta: a.zeta,
            lambda: a.lambda,
            t0: a.t0,
            ode_steps: a.ode_steps,
            langevin_steps: a.langevin_steps,
            lr: a.lr,
            tau: a.tau,
            quiet_last: a.noisy_last_level.then_some(false),
        };
        let mut r =
            a.op.apply(r, &self.params, a.from_clean)?
                .method(self.method)
                .settings(settings)
                .seed(self.g.seed)
                .index(index)
                .device(self.device.0)
                .gpu_options(self.device.1)
                .cpu_context(self.cpu)
                .samples(a.samples.unwrap_or(1))
                .on_step(on_step);
        if let Some(d) = &a.denoiser {
            r = r.denoiser(d);
        }
        Ok(r)
    }

    /// How the input is read (see [`input_fit`]).
    pub fn input_fit(&self) -> Result<Fit> {
        let side = self.model.filter(|_| self.method.is_diffusion()).map(Model::image_size);
        input_fit(self.a, &self.params, side)
    }

    /// Sets up the restoration of `input` (the clean image with --from-clean, else the
    /// measurement), already read with [`Job::input_fit`].
    pub fn prepare(
        &self,
        input: Tensor,
        index: u64,
        on_step: impl FnMut(usize, usize) -> bool + Send + 'a,
    ) -> Result<Prepared<'a>> {
        let r = self.restorer(index, on_step)?;
        let (clean, y, op) = if self.a.from_clean {
            let (y, op) = r.measure_tensor(&input)?;
            (Some(input), y, op)
        } else {
            let op = r.operator(r.image_shape(input.shape()))?;
            (None, input, op)
        };
        let measurement = op.measurement_image(&y)?;
        Ok(Prepared { r, clean, y, op, measurement })
    }

    /// Runs a prepared restoration; `on_estimate` watches its running estimate. A cancelled run
    /// is the error with [`CANCELLED`] as its code.
    pub fn finish(
        &self,
        p: Prepared<'a>,
        want_measurement_file: bool,
        on_estimate: Option<(usize, Estimate<'a>)>,
    ) -> Result<Outcome> {
        let Prepared { mut r, clean, y, op, measurement } = p;
        if let Some((every, f)) = on_estimate {
            r = r.on_estimate(every, f);
        }
        let measurement_file = want_measurement_file.then(|| op.measurement_file(&y)).transpose()?;
        let out = r.run_with(&op, &y).map_err(|e| match e {
            diffinv::Error::Cancelled => {
                CliError { code: CANCELLED, message: "interrupted; nothing was written for this image".into() }
            }
            e => CliError::from(e),
        })?;
        let mut m = serde_json::Map::new();
        let task = self.a.op.task()?;
        m.insert("method".into(), self.method.name().into());
        m.insert("task".into(), task.name().into());
        m.insert("seed".into(), self.g.seed.into());
        m.insert("device".into(), out.device.clone().into());
        m.insert("seconds".into(), out.seconds.into());
        m.insert("nfe".into(), out.nfe.into());
        m.insert("vjp".into(), out.vjps.into());
        for (k, v) in &out.params {
            m.insert((*k).into(), (*v).into());
        }
        m.insert("sigma_y".into(), out.sigma_y.into());
        m.insert("residual".into(), out.residual.into());
        if out.samples.len() > 1 {
            let list: Vec<serde_json::Value> =
                out.samples.iter().map(|s| serde_json::json!({"seed": s.seed, "residual": s.residual})).collect();
            m.insert("samples".into(), list.into());
        }
        let mut line = format!("({:.1} s, {} NFE)", out.seconds, out.nfe);
        m.insert("tiles".into(), out.tiles.into());
        m.insert("peak_rss_mib".into(), crate::common::peak_rss_mib().into());
        if out.tiles > 1 {
            line += &format!(", {} tiles", out.tiles);
        }
        if let Some(s) = out.sigma_y_estimated {
            m.insert("sigma_y_estimated".into(), s.into());
            line += &format!(", sigma_y estimated {s:.4}");
        }
        if let (Some(x), Some(j)) = (&clean, self.metrics) {
            let q = j.compare_tensors(x, &out.x, 0)?;
            let qm = j.compare_tensors(x, &measurement, 0)?;
            crate::quality::json(&q, "", &mut m);
            crate::quality::json(&qm, "measurement_", &mut m);
            line += &format!("\n  result:      {}\n  measurement: {}", q.line(), qm.line());
        }
        Ok(Outcome { x: out.x, measurement_file, json: m, line })
    }

    fn run_one(&self, input: &Path, output: &Path, index: u64, save_meas: Option<&Path>) -> Result<serde_json::Value> {
        let name = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let pb = self.g.progress(0, &name);
        let loaded = load_image(input, self.input_fit()?)?;
        let out = self.prepare(loaded, index, pb.monitor()).inspect_err(|_| pb.finish())?;
        let out = self.finish(out, save_meas.is_some(), None);
        pb.finish();
        let o = out?;
        let mut m = serde_json::Map::new();
        m.insert("input".into(), input.display().to_string().into());
        m.insert("output".into(), output.display().to_string().into());
        m.extend(o.json);
        // Written last, when everything they report has been computed.
        if let (Some(p), Some(f)) = (save_meas, &o.measurement_file) {
            save_image(p, f, 0)?;
        }
        save_image(output, &o.x, 0)?;
        self.g.say(format!("{} -> {} {}", input.display(), output.display(), o.line));
        Ok(serde_json::Value::Object(m))
    }
}

/// How an input is read, its header checked before any pixel is decoded: `model_side` is the
/// diffusion model's image size (`None` for the classical methods, which take any size), which
/// --fit resize / crop bring a clean image to, and a measurement to the side the model's image
/// measures to (the SR factor divides it).
pub fn input_fit(a: &RestoreArgs, params: &TaskParams, model_side: Option<usize>) -> Result<Fit> {
    let Some(side) = model_side else { return Ok(Fit::Max(MAX_SIDE as usize)) };
    let factor = if !a.from_clean && a.op.task()? == Task::Sr4 { params.scale.unwrap_or(4) } else { 1 };
    let side = (side / factor).max(1);
    Ok(match (a.fit.as_deref(), a.resize) {
        (Some("resize"), _) | (_, true) => Fit::Resize(side),
        (Some("crop"), _) => Fit::Crop(side),
        _ => Fit::Max(MAX_SIDE as usize),
    })
}

/// The checks of the options alone (no file is read but the ones they name): the method, the
/// task's parameters, and the flags that apply only to some methods.
pub fn check_options(a: &RestoreArgs) -> Result<(Method, TaskParams)> {
    let method = Method::parse(&a.method).map_err(|e| CliError::usage(e.to_string()))?;
    let params = a.op.params()?;
    if a.from_clean {
        a.op.simulated_noise()?;
    }
    if a.save_measurement.is_some() && !a.from_clean {
        return Err(CliError::usage("--save-measurement needs --from-clean"));
    }
    if a.denoiser.is_some() && method != Method::HqsDncnn {
        return Err(CliError::usage("--denoiser applies to --method hqs-dncnn"));
    }
    let daps_only = [("--ode-steps", a.ode_steps.is_some()), ("--langevin-steps", a.langevin_steps.is_some())];
    let daps_only = daps_only.into_iter().chain([
        ("--lr", a.lr.is_some()),
        ("--tau", a.tau.is_some()),
        ("--noisy-last-level", a.noisy_last_level),
    ]);
    if let Some((flag, _)) = daps_only.into_iter().find(|(_, set)| *set).filter(|_| method != Method::Daps) {
        return Err(CliError::usage(format!("{flag} applies to --method daps")));
    }
    if a.samples.is_some_and(|n| n > 1) && !method.is_diffusion() {
        return Err(CliError::usage("--samples needs a diffusion method (the classical ones are deterministic)"));
    }
    method.check_task(a.op.task()?).map_err(|e| CliError::usage(e.to_string()))?;
    if a.op.task()? == Task::PhaseRetrieval && !a.from_clean {
        return Err(CliError::usage(
            "phase retrieval's measurement is Fourier magnitudes, not an image file: simulate it with --from-clean",
        ));
    }
    a.op.noise_model()?;
    Ok((method, params))
}

pub fn run(a: RestoreArgs, g: &Global) -> Result<()> {
    let (method, params) = check_options(&a)?;
    if !a.input.exists() {
        return Err(CliError::runtime(format!("{}: no such file or folder", a.input.display())));
    }
    let device = a.device.open()?;
    let mut inputs = vec![a.input.as_path()];
    inputs.extend(a.model.model.as_deref());
    let mut outs = vec![("-o", a.output.as_path())];
    outs.extend(a.save_measurement.as_deref().map(|p| ("--save-measurement", p)));
    crate::common::distinct_outputs(&inputs, &outs)?;
    let model = if method.is_diffusion() { Some(a.model.load()?) } else { None };
    let metrics = if a.from_clean { Some(Metrics::shipped()?) } else { None };
    let cpu = a.precision.context()?;
    let job = Job { a: &a, g, model: model.as_ref(), method, metrics: metrics.as_ref(), params, device, cpu };
    if a.input.is_dir() {
        return run_folder(&job);
    }
    if a.output.is_dir() {
        return Err(CliError::usage(format!(
            "{} is a folder; give an output file for a single input",
            a.output.display()
        )));
    }
    if a.shard.is_some() {
        return Err(CliError::usage("--shard applies to a folder INPUT"));
    }
    let v = job.run_one(&a.input, &a.output, 0, a.save_measurement.as_deref())?;
    g.emit_json(&v);
    Ok(())
}

fn run_folder(job: &Job<'_>) -> Result<()> {
    let a = job.a;
    let side = a.save_measurement.as_deref();
    crate::folder::run_folder(job.g, &a.input, &a.output, side, "restored", a.shard, |i, o, k, m| {
        job.run_one(i, o, k, m)
    })
}
