//! `diffinv denoise`: the seed paper's s4.1 experiment: noise a clean image to level T with the
//! forward process, then denoise it in one shot (x0_hat) or by the reverse chain.

use super::model::source;
use crate::common::{CliError, Global, Result};
use crate::quality::Judge;
use clap::{Args, ValueEnum};
use diffinv_core::rng::streams;
use diffinv_core::sampler;
use diffinv_core::Backend;
use diffinv_cpu::image_io::{load_image, save_image, Fit};
use diffinv_cpu::solve::{streams_for, Schedule};
use diffinv_cpu::unet::{load_model, LoadedModel};
use diffinv_cpu::{CpuBackend, Tensor};
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
    #[arg(long)]
    t: usize,
    /// one-shot or reverse.
    #[arg(long, value_enum, default_value = "one-shot")]
    mode: Mode,
    /// Also write the noisy image x_T here (a folder when INPUT is a folder).
    #[arg(long, value_name = "PATH")]
    save_noisy: Option<PathBuf>,
    /// Respaced chain length for --mode reverse.
    #[arg(long)]
    steps: Option<usize>,
    /// Centre-crop and resize to the model's size.
    #[arg(long)]
    resize: bool,
    /// The model checkpoint (default: the shipped 64x64 face model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A preset (ffhq256, celeba64) or a JSON config; needed for PyTorch files.
    #[arg(long)]
    config: Option<String>,
}

pub fn run(a: DenoiseArgs, g: &Global) -> Result<()> {
    if !a.input.exists() {
        return Err(CliError::runtime(format!("{}: no such file or folder", a.input.display())));
    }
    let m = load_model(&source(&a.model), a.config.as_deref())?;
    if a.t >= m.diffusion.steps {
        return Err(CliError::usage(format!("--t must be below {}, got {}", m.diffusion.steps, a.t)));
    }
    let judge = Judge::load()?;
    if a.input.is_dir() {
        return crate::folder::run_folder(g, &a.input, &a.output, a.save_noisy.as_deref(), "denoised", |i, o, k, n| {
            denoise_one(&a, g, &m, &judge, i, o, k, n)
        });
    }
    if a.output.is_dir() {
        return Err(CliError::usage(format!(
            "{} is a folder; give an output file for a single input",
            a.output.display()
        )));
    }
    let v = denoise_one(&a, g, &m, &judge, &a.input, &a.output, 0, a.save_noisy.as_deref())?;
    g.emit_json(&v);
    Ok(())
}

/// Noises image `index` of a run (its own noise stream) to `--t` and denoises it.
#[allow(clippy::too_many_arguments)]
fn denoise_one(
    a: &DenoiseArgs,
    g: &Global,
    m: &LoadedModel,
    judge: &Judge,
    input: &Path,
    output: &Path,
    index: u64,
    save_noisy: Option<&Path>,
) -> Result<serde_json::Value> {
    let size = m.config.image_size;
    let x = load_image(input, if a.resize { Fit::Resize(size) } else { Fit::Exact(size) })?;
    let spec = a.steps.filter(|&s| s != m.diffusion.steps).map(|s| s.to_string());
    let sched = Schedule::new(&m.diffusion, spec.as_deref())?;
    let chain = sched.chain();
    let k = chain.index_at_or_below(a.t).ok_or_else(|| CliError::usage("--t is below the chain's first step"))?;
    let c = chain.coefs(k);
    let mut b = CpuBackend::new(&m.unet, m.diffusion.variance);
    let mut noise = Tensor::zeros(x.shape());
    b.randn(&mut streams_for(g.seed, streams::FORWARD, index, 1), &mut noise)?;
    let mut xt = Tensor::zeros(x.shape());
    b.q_sample(&x, &noise, c.abar, &mut xt)?;
    let noisy = {
        let mut n = xt.clone();
        b.clamp(&mut n, -1.0, 1.0)?;
        n
    };
    let t0 = std::time::Instant::now();
    let (out, nfe) = match a.mode {
        Mode::OneShot => {
            let mut o = Tensor::zeros(x.shape());
            let s = sampler::denoise_one_shot(&mut b, &c, &xt, true, &mut o)
                .map_err(|e| CliError::runtime(e.to_string()))?;
            (o, s.nfe)
        }
        Mode::Reverse => {
            let pb = g.progress(k as u64 + 1, "denoise");
            let mut o = xt.clone();
            let mut rngs = streams_for(g.seed, streams::STEPS, index, 1);
            let s = sampler::reverse(&mut b, &chain, k, None, &mut o, &mut rngs, &mut pb.monitor()).map_err(
                |e| match e {
                    sampler::SampleError::Cancelled => {
                        CliError { code: 130, message: "interrupted; nothing was written for this image".into() }
                    }
                    e => CliError::runtime(e.to_string()),
                },
            )?;
            pb.finish();
            b.clamp(&mut o, -1.0, 1.0)?;
            (o, s.nfe)
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    save_image(output, &out, 0)?;
    if let Some(p) = save_noisy {
        save_image(p, &noisy, 0)?;
    }
    let (q, qn) = (judge.measure(&x, &out, 0)?, judge.measure(&x, &noisy, 0)?);
    let mut mj = serde_json::Map::new();
    mj.insert("input".into(), input.display().to_string().into());
    mj.insert("output".into(), output.display().to_string().into());
    q.json("", &mut mj);
    qn.json("measurement_", &mut mj);
    mj.insert("t".into(), chain.steps()[k].into());
    mj.insert("mode".into(), format!("{:?}", a.mode).to_lowercase().into());
    mj.insert("seconds".into(), secs.into());
    mj.insert("nfe".into(), nfe.into());
    mj.insert("seed".into(), g.seed.into());
    mj.insert("task".into(), "denoise".into());
    g.say(format!(
        "t={} {:?}: {} -> {}\n  result: {}\n  noisy:  {}",
        chain.steps()[k],
        a.mode,
        input.display(),
        output.display(),
        q.line(),
        qn.line()
    ));
    Ok(serde_json::Value::Object(mj))
}
