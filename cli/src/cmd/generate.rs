//! `diffinv generate`: unconditional samples (ancestral DDPM or DDIM).

use crate::args::{f64_in, usize_in, DeviceArgs, ModelArgs, PrecisionArg, MAX_STEPS};
use crate::common::{CliError, Global, Result};
use clap::Args;
use diffinv::cpu::image_io::{save_grid, save_image, to_rgb8};
use diffinv::Generator;
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Examples:
  diffinv generate -n 16 -o grid.png                      # 1000-step ancestral DDPM
  diffinv generate -n 8 --steps 50 --ddim-eta 0 -o faces/  # 50-step DDIM, one PNG per sample")]
pub struct GenerateArgs {
    /// Number of samples.
    #[arg(short, default_value_t = 16, value_parser = usize_in(1, 100_000))]
    n: usize,
    /// A grid PNG, or a folder (no extension, or an existing folder) for one PNG per sample.
    #[arg(short, long)]
    output: PathBuf,
    /// Respaced chain length (default: all of the model's steps).
    #[arg(long, value_parser = usize_in(1, MAX_STEPS))]
    steps: Option<usize>,
    /// DDIM with this eta (0 = deterministic); without it, ancestral DDPM sampling.
    #[arg(long, value_parser = f64_in(0.0, 1.0))]
    ddim_eta: Option<f64>,
    /// Samples per network call.
    #[arg(long, default_value_t = 4, value_parser = usize_in(1, 64))]
    batch: usize,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    precision: PrecisionArg,
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
    let (device, gpu) = a.device.open()?;
    let inputs: Vec<&std::path::Path> = a.model.model.as_deref().into_iter().collect();
    crate::common::distinct_outputs(&inputs, &[("-o", a.output.as_path())])?;
    let folder = a.output.is_dir() || a.output.extension().is_none();
    let m = a.model.load()?;
    let pb = g.progress(0, "generate");
    let mut gen = Generator::new(&m)
        .seed(g.seed)
        .batch(a.batch)
        .device(device)
        .gpu_options(gpu)
        .cpu_context(a.precision.context()?)
        .on_step(pb.monitor());
    if let Some(s) = a.steps {
        gen = gen.steps(s);
    }
    if let Some(e) = a.ddim_eta {
        gen = gen.ddim_eta(e);
    }
    let out = gen.run(a.n).map_err(|e| match e {
        diffinv::Error::Cancelled => CliError { code: 130, message: "interrupted; nothing was written".into() },
        e => e.into(),
    })?;
    pb.finish();
    let all = out.images;
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
    g.say(format!("wrote {} sample(s) to {} ({:.1} s, {} steps)", a.n, a.output.display(), out.seconds, out.nfe));
    g.emit_json(&serde_json::json!({"output": a.output.display().to_string(), "n": a.n, "steps": out.nfe, "ddim_eta": a.ddim_eta, "seconds": out.seconds, "nfe": out.nfe, "seed": g.seed, "device": out.device}));
    Ok(())
}
