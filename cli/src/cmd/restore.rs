//! `diffinv restore`: solve an inverse problem for one image or a folder of images.

use crate::args::{f64_in, positive_up_to, usize_in, DeviceArgs, ModelArgs, MAX_STEPS, MAX_WEIGHT};
use crate::common::{CliError, Global, Result};
use crate::taskargs::OpArgs;
use clap::Args;
use diffinv::cpu::image_io::{load_image, save_image, Fit, MAX_SIDE};
use diffinv::metrics::Metrics;
use diffinv::{Device, GpuOptions, Method, Model, Restorer, Settings, Task, TaskParams};
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
    input: PathBuf,
    /// Output image, or folder when INPUT is a folder.
    #[arg(short, long)]
    output: PathBuf,
    /// dps (default), ald, sdedit, diffpir, daps, adam-tv, hqs-tv, admm-tv, hqs-dncnn.
    #[arg(long, default_value = "dps")]
    method: String,
    /// hqs-dncnn's denoiser: ffdnet_color (default), cdncnn_b_color_blind,
    /// cdncnn_s_color_sigma25, or a weights file.
    #[arg(long)]
    denoiser: Option<String>,
    #[command(flatten)]
    op: OpArgs,
    /// INPUT is a clean image: simulate the measurement and report PSNR/SSIM/LPIPS.
    #[arg(long)]
    from_clean: bool,
    /// With --from-clean: also write the simulated measurement (as an image) here.
    #[arg(long, value_name = "PATH")]
    save_measurement: Option<PathBuf>,
    /// Respaced chain length (diffusion methods) or iterations (classical methods).
    #[arg(long, value_parser = usize_in(1, MAX_STEPS))]
    steps: Option<usize>,
    /// DPS step size (at 1000 steps; scaled by 1000/steps when respacing) or DiffPIR noise mix.
    #[arg(long, value_parser = f64_in(0.0, MAX_WEIGHT))]
    zeta: Option<f64>,
    /// Score-ALD anneal factor, SDEdit data step, DiffPIR data weight, TV weight, or the
    /// plug-and-play weight of hqs-dncnn.
    #[arg(long, value_parser = f64_in(0.0, MAX_WEIGHT))]
    lambda: Option<f64>,
    /// SDEdit starting timestep.
    #[arg(long, value_parser = usize_in(0, MAX_STEPS))]
    t0: Option<usize>,
    /// DAPS: Euler steps of the ODE per annealing level, 1..=100 (default 5; --steps is the
    /// number of levels, default 200: DAPS-1K; DAPS-100 is --steps 50 --ode-steps 2).
    #[arg(long, value_parser = usize_in(1, diffinv::cpu::solve::MAX_ODE_STEPS))]
    ode_steps: Option<usize>,
    /// DAPS: Langevin steps per level, 0..=10000 (default 100).
    #[arg(long, value_parser = usize_in(0, diffinv::cpu::solve::MAX_LANGEVIN_STEPS))]
    langevin_steps: Option<usize>,
    /// DAPS: Langevin step size at the first level, in (0, 1] (default per task, 1e-4 to 2e-5).
    #[arg(long, value_parser = positive_up_to(1.0))]
    lr: Option<f64>,
    /// DAPS: the likelihood's scale tau, in (0, 100] (default 0.01).
    #[arg(long, value_parser = positive_up_to(100.0))]
    tau: Option<f64>,
    /// DAPS: keep the Langevin noise in the last level's steps, as the official code does (by
    /// default they run without it, so the output does not carry it).
    #[arg(long)]
    noisy_last_level: bool,
    /// Draw N restorations with independent sampler seeds and keep the one whose measurement
    /// residual ||A(x) - y|| is smallest (1..=1024; diffusion methods); --json lists them all.
    #[arg(long, value_name = "N", value_parser = usize_in(1, diffinv::MAX_SAMPLES))]
    samples: Option<usize>,
    #[command(flatten)]
    model: ModelArgs,
    /// How an image of another size than the model's is met (diffusion methods): `tile` (the
    /// default) restores it at its size, the model run on overlapping tiles (smaller images
    /// mirror-padded); `resize` centre-crops and resizes it, `crop` centre-crops it, to the
    /// model's size (the measurement to the size the model's image measures to).
    #[arg(long, value_parser = ["tile", "resize", "crop"])]
    fit: Option<String>,
    /// The same as --fit resize.
    #[arg(long, conflicts_with = "fit")]
    resize: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

struct Job<'a> {
    a: &'a RestoreArgs,
    g: &'a Global,
    model: Option<&'a Model>,
    method: Method,
    metrics: Option<&'a Metrics>,
    params: TaskParams,
    device: (Device, GpuOptions),
}

impl Job<'_> {
    /// The restorer of image `index`, reporting progress on `pb` and stopping on Ctrl-C.
    fn restorer(&self, index: u64, pb: &crate::common::Progress) -> Result<Restorer<'_>> {
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
                .samples(a.samples.unwrap_or(1))
                .on_step(pb.monitor());
        if let Some(d) = &a.denoiser {
            r = r.denoiser(d);
        }
        Ok(r)
    }

    /// How an input is loaded: `side` is what the model's image size comes to for this input
    /// (the model's side for a clean image, the measured side for a measurement); the header is
    /// checked before any pixel is decoded.
    fn fit(&self, side: usize) -> Fit {
        let diffusion = self.model.is_some() && self.method.is_diffusion();
        match (diffusion, self.a.fit.as_deref(), self.a.resize) {
            (true, Some("resize"), _) | (true, _, true) => Fit::Resize(side),
            (true, Some("crop"), _) => Fit::Crop(side),
            _ => Fit::Max(MAX_SIDE as usize),
        }
    }

    fn run_one(&self, input: &Path, output: &Path, index: u64, save_meas: Option<&Path>) -> Result<serde_json::Value> {
        let a = self.a;
        let task = a.op.task()?;
        let name = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let pb = self.g.progress(0, &name);
        let mut r = self.restorer(index, &pb)?;
        let side = self.model.map_or(0, Model::image_size);
        let (clean, y, op) = if a.from_clean {
            let x = load_image(input, self.fit(side))?;
            let (y, op) = r.measure_tensor(&x)?;
            (Some(x), y, op)
        } else {
            // The side the model's image measures to (the SR factor divides it).
            let factor = if task == Task::Sr4 { self.params.scale.unwrap_or(4) } else { 1 };
            let y = load_image(input, self.fit((side / factor).max(1)))?;
            let op = r.operator(r.image_shape(y.shape()))?;
            (None, y, op)
        };
        let meas_img = op.measurement_image(&y)?;
        let meas_file = save_meas.map(|_| op.measurement_file(&y)).transpose()?;
        let out = r.run_with(&op, &y);
        pb.finish();
        let out = out.map_err(|e| match e {
            diffinv::Error::Cancelled => {
                CliError { code: 130, message: "interrupted; nothing was written for this image".into() }
            }
            e => CliError::from(e),
        })?;
        let mut m = serde_json::Map::new();
        m.insert("input".into(), input.display().to_string().into());
        m.insert("output".into(), output.display().to_string().into());
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
        let mut line = format!("{} -> {} ({:.1} s, {} NFE)", input.display(), output.display(), out.seconds, out.nfe);
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
            let qm = j.compare_tensors(x, &meas_img, 0)?;
            crate::quality::json(&q, "", &mut m);
            crate::quality::json(&qm, "measurement_", &mut m);
            line += &format!("\n  result:      {}\n  measurement: {}", q.line(), qm.line());
        }
        // Written last, when everything they report has been computed.
        if let (Some(p), Some(m)) = (save_meas, &meas_file) {
            save_image(p, m, 0)?;
        }
        save_image(output, &out.x, 0)?;
        self.g.say(line);
        Ok(serde_json::Value::Object(m))
    }
}

pub fn run(a: RestoreArgs, g: &Global) -> Result<()> {
    let method = Method::parse(&a.method).map_err(|e| CliError::usage(e.to_string()))?;
    let params = a.op.params()?;
    if a.from_clean {
        a.op.simulated_noise()?;
    }
    if a.save_measurement.is_some() && !a.from_clean {
        return Err(CliError::usage("--save-measurement needs --from-clean"));
    }
    if !a.input.exists() {
        return Err(CliError::runtime(format!("{}: no such file or folder", a.input.display())));
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
    let device = a.device.open()?;
    let mut inputs = vec![a.input.as_path()];
    inputs.extend(a.model.model.as_deref());
    let mut outs = vec![("-o", a.output.as_path())];
    outs.extend(a.save_measurement.as_deref().map(|p| ("--save-measurement", p)));
    crate::common::distinct_outputs(&inputs, &outs)?;
    let model = if method.is_diffusion() { Some(a.model.load()?) } else { None };
    let metrics = if a.from_clean { Some(Metrics::shipped()?) } else { None };
    let job = Job { a: &a, g, model: model.as_ref(), method, metrics: metrics.as_ref(), params, device };
    if a.input.is_dir() {
        return run_folder(&job);
    }
    if a.output.is_dir() {
        return Err(CliError::usage(format!(
            "{} is a folder; give an output file for a single input",
            a.output.display()
        )));
    }
    let v = job.run_one(&a.input, &a.output, 0, a.save_measurement.as_deref())?;
    g.emit_json(&v);
    Ok(())
}

fn run_folder(job: &Job<'_>) -> Result<()> {
    let a = job.a;
    crate::folder::run_folder(job.g, &a.input, &a.output, a.save_measurement.as_deref(), "restored", |i, o, k, m| {
        job.run_one(i, o, k, m)
    })
}
