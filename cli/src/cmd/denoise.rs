//! `diffinv denoise`: the seed paper's s4.1 experiment: noise a clean image to level T with the
//! forward process, then denoise it in one shot (x0_hat) or by the reverse chain.

use crate::args::{usize_in, DeviceArgs, ModelArgs, PrecisionArg, MAX_STEPS};
use crate::common::{CliError, Global, Result};
use clap::{Args, ValueEnum};
use diffinv::cpu::image_io::{load_image, save_image, Fit};
use diffinv::metrics::Metrics;
use diffinv::{CpuContext, DenoiseMode, Denoising, Device, GpuOptions, Model};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Mode {
    /// Report x0_hat(x_T) after one network evaluation.
    OneShot,
    /// Run the DDPM chain from T down to 0.
    Reverse,
}

#[derive(Args)]
#[command(after_help = "Examples:
  diffinv denoise --t 100 assets/samples/009521.png -o denoised.png --save-noisy noisy.png
  diffinv denoise --t 500 --mode reverse face.png -o out.png --json
  # A folder (outputs that exist are skipped, so a re-run resumes):
  diffinv denoise --t 250 faces/ -o denoised/ --save-noisy noisy/")]
pub struct DenoiseArgs {
    /// The clean image, or a folder of them.
    input: PathBuf,
    /// The denoised image, or folder when INPUT is a folder.
    #[arg(short, long)]
    output: PathBuf,
    /// The noise level: the forward-process timestep (seed paper: 10, 100, 250, 500).
    #[arg(long, value_parser = usize_in(0, MAX_STEPS))]
    t: usize,
    /// one-shot or reverse.
    #[arg(long, value_enum, default_value = "one-shot")]
    mode: Mode,
    /// Also write the noisy image x_T here (a folder when INPUT is a folder).
    #[arg(long, value_name = "PATH")]
    save_noisy: Option<PathBuf>,
    /// Respaced chain length for --mode reverse.
    #[arg(long, value_parser = usize_in(1, MAX_STEPS))]
    steps: Option<usize>,
    /// Centre-crop and resize to the model's size.
    #[arg(long)]
    resize: bool,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    precision: PrecisionArg,
}

pub fn run(a: DenoiseArgs, g: &Global) -> Result<()> {
    if !a.input.exists() {
        return Err(CliError::runtime(format!("{}: no such file or folder", a.input.display())));
    }
    let device = a.device.open()?;
    let mut inputs = vec![a.input.as_path()];
    inputs.extend(a.model.model.as_deref());
    let mut outs = vec![("-o", a.output.as_path())];
    outs.extend(a.save_noisy.as_deref().map(|p| ("--save-noisy", p)));
    crate::common::distinct_outputs(&inputs, &outs)?;
    let m = a.model.load()?;
    if a.t >= m.diffusion().steps {
        return Err(CliError::usage(format!("--t must be below {}, got {}", m.diffusion().steps, a.t)));
    }
    let metrics = Metrics::shipped()?;
    let cpu = a.precision.context()?;
    let job = Job { a: &a, g, m: &m, metrics: &metrics, device, cpu };
    if a.input.is_dir() {
        return crate::folder::run_folder(
            g,
            &a.input,
            &a.output,
            a.save_noisy.as_deref(),
            "denoised",
            None,
            |i, o, k, n| job.one(i, o, k, n),
        );
    }
    if a.output.is_dir() {
        return Err(CliError::usage(format!(
            "{} is a folder; give an output file for a single input",
            a.output.display()
        )));
    }
    let v = job.one(&a.input, &a.output, 0, a.save_noisy.as_deref())?;
    g.emit_json(&v);
    Ok(())
}

struct Job<'a> {
    a: &'a DenoiseArgs,
    g: &'a Global,
    m: &'a Model,
    metrics: &'a Metrics,
    device: (Device, GpuOptions),
    cpu: CpuContext,
}

impl Job<'_> {
    /// Noises image `index` of a run (its own noise stream) to `--t` and denoises it.
    fn one(&self, input: &Path, output: &Path, index: u64, save_noisy: Option<&Path>) -> Result<serde_json::Value> {
        let (a, g) = (self.a, self.g);
        let size = self.m.image_size();
        let x = if a.resize { load_image(input, Fit::Resize(size))? } else { crate::common::load_exact(input, size)? };
        let mode = match a.mode {
            Mode::OneShot => DenoiseMode::OneShot,
            Mode::Reverse => DenoiseMode::Reverse,
        };
        let pb = g.progress(0, "denoise");
        let mut d = Denoising::new(self.m, a.t)
            .mode(mode)
            .seed(g.seed)
            .index(index)
            .device(self.device.0)
            .gpu_options(self.device.1)
            .cpu_context(self.cpu)
            .on_step(pb.monitor());
        if let Some(s) = a.steps {
            d = d.steps(s);
        }
        let out = d.run(&x).map_err(|e| match e {
            diffinv::Error::Cancelled => {
                CliError { code: 130, message: "interrupted; nothing was written for this image".into() }
            }
            e => e.into(),
        })?;
        pb.finish();
        save_image(output, &out.x, 0)?;
        if let Some(p) = save_noisy {
            save_image(p, &out.noisy, 0)?;
        }
        let (q, qn) = (self.metrics.compare_tensors(&x, &out.x, 0)?, self.metrics.compare_tensors(&x, &out.noisy, 0)?);
        let mut mj = serde_json::Map::new();
        mj.insert("input".into(), input.display().to_string().into());
        mj.insert("output".into(), output.display().to_string().into());
        crate::quality::json(&q, "", &mut mj);
        crate::quality::json(&qn, "measurement_", &mut mj);
        mj.insert("t".into(), out.t.into());
        mj.insert("mode".into(), format!("{:?}", a.mode).to_lowercase().into());
        mj.insert("seconds".into(), out.seconds.into());
        mj.insert("nfe".into(), out.nfe.into());
        mj.insert("seed".into(), g.seed.into());
        mj.insert("task".into(), "denoise".into());
        g.say(format!(
            "t={} {:?}: {} -> {}\n  result: {}\n  noisy:  {}",
            out.t,
            a.mode,
            input.display(),
            output.display(),
            q.line(),
            qn.line()
        ));
        Ok(serde_json::Value::Object(mj))
    }
}
