//! `diffinv restore`: solve an inverse problem for one image or a folder of images.

use super::model::source;
use crate::common::{CliError, Global, Result};
use crate::device::Device;
use crate::quality::Judge;
use crate::taskargs::OpArgs;
use clap::Args;
use diffinv_cpu::image_io::{load_image, save_image, Fit};
use diffinv_cpu::ops::measure;
use diffinv_cpu::solve::{Method, Settings};
use diffinv_cpu::unet::{load_model, LoadedModel};
use diffinv_cpu::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// dps (default), ald, sdedit, diffpir, adam-tv, hqs-tv, admm-tv, hqs-dncnn.
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
    #[arg(long)]
    steps: Option<usize>,
    /// DPS step size (at 1000 steps; scaled by 1000/steps when respacing) or DiffPIR noise mix.
    #[arg(long)]
    zeta: Option<f64>,
    /// Score-ALD anneal factor, SDEdit data step, DiffPIR data weight, TV weight, or the
    /// plug-and-play weight of hqs-dncnn.
    #[arg(long)]
    lambda: Option<f64>,
    /// SDEdit starting timestep.
    #[arg(long)]
    t0: Option<usize>,
    /// The model checkpoint (default: the shipped 64x64 face model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A preset (ffhq256, celeba64) or a JSON config; needed for PyTorch files.
    #[arg(long)]
    config: Option<String>,
    /// Centre-crop and resize clean inputs to the model's size.
    #[arg(long)]
    resize: bool,
    /// Where the diffusion methods run: cpu, or cuda / cuda:N (a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// With --device cuda: let cuBLAS/cuDNN use TF32 tensor cores (faster; about 1e-3 relative
    /// error per layer, PyTorch's default for convolutions).
    #[arg(long)]
    tf32: bool,
}

struct Job<'a> {
    a: &'a RestoreArgs,
    g: &'a Global,
    model: Option<&'a LoadedModel>,
    method: Method,
    judge: Option<&'a Judge>,
    params: diffinv_cpu::ops::TaskParams,
    device: &'a Device,
}

impl Job<'_> {
    fn run_one(&self, input: &Path, output: &Path, index: u64, save_meas: Option<&Path>) -> Result<serde_json::Value> {
        let a = self.a;
        // Diffusion methods work at the model's size; classical ones at the image's own.
        let size = self.model.map(|m| m.config.image_size);
        let task = a.op.task()?;
        let (clean, y, op) = if a.from_clean {
            let fit = match (size, a.resize) {
                (Some(s), true) => Fit::Resize(s),
                (Some(s), false) => Fit::Exact(s),
                (None, _) => Fit::Any,
            };
            let x = load_image(input, fit)?;
            let op = a.op.op(&self.params, x.shape(), self.g.seed, index)?;
            let y = measure(&op, &x, a.op.noise, self.g.seed, index)?;
            (Some(x), y, op)
        } else {
            let y = load_image(input, Fit::Any)?;
            let f = if task == diffinv_cpu::ops::Task::Sr4 { self.params.scale.unwrap_or(4) } else { 1 };
            let side = size.unwrap_or(y.h() * f);
            let shape = [1, y.c(), side, size.unwrap_or(y.w() * f)];
            let op = a.op.op(&self.params, shape, self.g.seed, index)?;
            let want = op.measurement_shape(shape);
            if y.shape() != want {
                return Err(CliError::runtime(format!(
                    "{}: measurement is {}x{}, --task {} on this model expects {}x{}{}",
                    input.display(),
                    y.w(),
                    y.h(),
                    task.name(),
                    want[3],
                    want[2],
                    if want[2] == side && y.h() != side {
                        " (use --from-clean --resize for a clean image)"
                    } else {
                        ""
                    }
                )));
            }
            (None, y, op)
        };
        let meas_img = op.measurement_image(&y)?;
        if let Some(p) = save_meas {
            save_image(p, &meas_img, 0)?;
        }
        let settings =
            Settings { steps: a.steps, zeta: a.zeta, lambda: a.lambda, t0: a.t0, denoiser: a.denoiser.clone() };
        let name = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let pb = self.g.progress(0, &name);
        let t0 = Instant::now();
        let out = self.device.restore(
            self.model,
            self.method,
            task,
            &settings,
            &op,
            &y,
            a.op.noise,
            self.g.seed,
            index,
            &mut |done, total| {
                pb.set_length(total as u64);
                pb.set(done as u64);
                !crate::common::interrupted()
            },
        );
        pb.finish();
        let out = out.map_err(|e| match e {
            Error::Cancelled => {
                CliError { code: 130, message: "interrupted; nothing was written for this image".into() }
            }
            e => CliError::from(e),
        })?;
        let seconds = t0.elapsed().as_secs_f64();
        save_image(output, &out.x, 0)?;
        let mut m = serde_json::Map::new();
        m.insert("input".into(), input.display().to_string().into());
        m.insert("output".into(), output.display().to_string().into());
        m.insert("method".into(), self.method.name().into());
        m.insert("task".into(), task.name().into());
        m.insert("seed".into(), self.g.seed.into());
        m.insert("device".into(), self.device.name().into());
        m.insert("seconds".into(), seconds.into());
        m.insert("nfe".into(), out.nfe.into());
        m.insert("vjp".into(), out.vjps.into());
        for (k, v) in &out.params {
            m.insert((*k).into(), (*v).into());
        }
        let mut line = format!("{} -> {} ({:.1} s, {} NFE)", input.display(), output.display(), seconds, out.nfe);
        if let (Some(x), Some(j)) = (&clean, self.judge) {
            let q = j.measure(x, &out.x, 0)?;
            let qm = j.measure(x, &meas_img, 0)?;
            q.json("", &mut m);
            qm.json("measurement_", &mut m);
            line += &format!("\n  result:      {}\n  measurement: {}", q.line(), qm.line());
        }
        self.g.say(line);
        Ok(serde_json::Value::Object(m))
    }
}

pub fn run(a: RestoreArgs, g: &Global) -> Result<()> {
    let method = Method::parse(&a.method).map_err(|e| CliError::usage(e.to_string()))?;
    let params = a.op.params()?;
    if a.save_measurement.is_some() && !a.from_clean {
        return Err(CliError::usage("--save-measurement needs --from-clean"));
    }
    if a.resize && !a.from_clean {
        return Err(CliError::usage("--resize applies to clean inputs (--from-clean); a measurement is used as it is"));
    }
    if !a.input.exists() {
        return Err(CliError::runtime(format!("{}: no such file or folder", a.input.display())));
    }
    if a.denoiser.is_some() && method != Method::HqsDncnn {
        return Err(CliError::usage("--denoiser applies to --method hqs-dncnn"));
    }
    let model = if method.is_diffusion() { Some(load_model(&source(&a.model), a.config.as_deref())?) } else { None };
    let judge = if a.from_clean { Some(Judge::load()?) } else { None };
    let device = Device::open(&a.device, model.as_ref(), a.tf32)?;
    let job = Job { a: &a, g, model: model.as_ref(), method, judge: judge.as_ref(), params, device: &device };
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
