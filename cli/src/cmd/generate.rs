//! `diffinv generate`: unconditional samples (ancestral DDPM or DDIM).

use super::model::source;
use crate::common::{CliError, Global, Result};
use clap::Args;
use diffinv_core::rng::streams;
use diffinv_core::sampler;
use diffinv_core::Backend;
use diffinv_cpu::image_io::{save_grid, save_image, to_rgb8};
use diffinv_cpu::solve::{streams_for, Schedule};
use diffinv_cpu::unet::load_model;
use diffinv_cpu::{CpuBackend, Tensor};
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Examples:
  diffinv generate -n 16 -o grid.png                      # 1000-step ancestral DDPM
  diffinv generate -n 8 --steps 50 --ddim-eta 0 -o faces/  # 50-step DDIM, one PNG per sample")]
pub struct GenerateArgs {
    /// Number of samples.
    #[arg(short, default_value_t = 16)]
    n: usize,
    /// A grid PNG, or a folder (no extension, or an existing folder) for one PNG per sample.
    #[arg(short, long)]
    output: PathBuf,
    /// Respaced chain length (default: all of the model's steps).
    #[arg(long)]
    steps: Option<usize>,
    /// DDIM with this eta (0 = deterministic); without it, ancestral DDPM sampling.
    #[arg(long)]
    ddim_eta: Option<f64>,
    /// Samples per network call.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// The model checkpoint (default: the shipped 64x64 face model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A preset (ffhq256, celeba64) or a JSON config; needed for PyTorch files.
    #[arg(long)]
    config: Option<String>,
}

pub fn run(a: GenerateArgs, g: &Global) -> Result<()> {
    if a.n == 0 || a.batch == 0 {
        return Err(CliError::usage("-n and --batch must be at least 1"));
    }
    if let Some(e) = a.ddim_eta {
        if !(0.0..=1.0).contains(&e) {
            return Err(CliError::usage(format!("--ddim-eta must be in [0, 1], got {e}")));
        }
    }
    let folder = a.output.is_dir() || a.output.extension().is_none();
    let m = load_model(&source(&a.model), a.config.as_deref())?;
    let spec = a.steps.filter(|&s| s != m.diffusion.steps).map(|s| s.to_string());
    let sched = Schedule::new(&m.diffusion, spec.as_deref())?;
    let chain = sched.chain();
    let size = m.config.image_size;
    let mut b = CpuBackend::new(&m.unet, m.diffusion.variance);
    let pb = g.progress((chain.len() * a.n) as u64, "generate");
    let t0 = std::time::Instant::now();
    let mut samples: Vec<Tensor> = Vec::new();
    let mut start = 0;
    while start < a.n {
        let n = a.batch.min(a.n - start);
        let mut x = Tensor::zeros([n, m.config.in_channels, size, size]);
        b.randn(&mut streams_for(g.seed, streams::INIT, start as u64, n), &mut x)?;
        let mut rngs = streams_for(g.seed, streams::STEPS, start as u64, n);
        let base = (start * chain.len()) as u64;
        let per = n as u64;
        let mut mon = |done: usize, _t: usize| {
            pb.set(base + per * done as u64);
            !crate::common::interrupted()
        };
        sampler::reverse(&mut b, &chain, chain.len() - 1, a.ddim_eta, &mut x, &mut rngs, &mut mon).map_err(
            |e| match e {
                diffinv_core::sampler::SampleError::Cancelled => {
                    CliError { code: 130, message: "interrupted; nothing was written".into() }
                }
                e => CliError::runtime(e.to_string()),
            },
        )?;
        b.clamp(&mut x, -1.0, 1.0)?;
        samples.push(x);
        start += n;
    }
    pb.finish();
    let all = Tensor::stack(&samples.iter().collect::<Vec<_>>())?;
    if folder {
        std::fs::create_dir_all(&a.output).map_err(|e| CliError::runtime(format!("{}: {e}", a.output.display())))?;
        for i in 0..all.n() {
            save_image(&a.output.join(format!("{i:04}.png")), &all, i)?;
        }
    } else {
        let tiles: Vec<_> = (0..all.n()).map(|i| to_rgb8(&all, i)).collect();
        let cols = (all.n() as f64).sqrt().ceil() as usize;
        save_grid(&a.output, &tiles, cols, &[])?;
    }
    let secs = t0.elapsed().as_secs_f64();
    g.say(format!("wrote {} sample(s) to {} ({:.1} s, {} steps)", a.n, a.output.display(), secs, chain.len()));
    g.emit_json(&serde_json::json!({"output": a.output.display().to_string(), "n": a.n, "steps": chain.len(), "ddim_eta": a.ddim_eta, "seconds": secs, "nfe": chain.len(), "seed": g.seed}));
    Ok(())
}
