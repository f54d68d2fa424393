//! The subcommands.

mod bench;
mod degrade;
mod denoise;
mod eval;
mod generate;
mod metrics;
mod model;
pub mod restore;

use crate::common::{Global, Result};
use clap::Subcommand;

/// Examples shown by `diffinv --help`.
pub const EXAMPLES: &str = "Examples:
  diffinv restore --task inpaint-box --from-clean assets/samples/009521.png -o restored.png
  diffinv degrade --task deblur-gauss face.png -o blurred.png
  diffinv restore --task deblur-gauss --method diffpir blurred.png -o restored.png
  diffinv generate -n 16 --steps 100 -o samples.png
  diffinv denoise --t 250 --mode reverse face.png -o denoised.png
  diffinv metrics clean.png restored.png
  diffinv eval --data faces/ --tasks inpaint-box,deblur-gauss --methods dps,diffpir,hqs-tv -n 20 -o report/
  diffinv model info ffhq_10m.pt
  diffinv bench unet --config ffhq256 --backward --threads 2
  diffinv serve                      # the web page: http://127.0.0.1:7860/";

#[derive(Subcommand)]
pub enum Command {
    /// Solve an inverse problem (inpainting, deblurring, super-resolution, denoising).
    Restore(Box<restore::RestoreArgs>),
    /// Write the simulated measurement of a clean image.
    Degrade(degrade::DegradeArgs),
    /// Draw unconditional samples from the model.
    Generate(generate::GenerateArgs),
    /// Noise a clean image to level T and denoise it (one-shot or reverse chain).
    Denoise(denoise::DenoiseArgs),
    /// PSNR, SSIM and LPIPS (alex, vgg) of an image against a reference.
    Metrics(metrics::MetricsArgs),
    /// Run a grid of tasks x methods over a folder; write report.md, results.csv/json, grids.
    Eval(eval::EvalArgs),
    /// Inspect or run a UNet checkpoint.
    #[command(subcommand)]
    Model(model::ModelCmd),
    /// Time the UNet on seeded random weights.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Restore images in the browser: a local web page and its JSON API (docs/serve.md).
    Serve(Box<crate::serve::ServeArgs>),
}

pub fn run(c: Command, g: &Global) -> Result<()> {
    match c {
        Command::Restore(a) => restore::run(*a, g),
        Command::Degrade(a) => degrade::run(a, g),
        Command::Generate(a) => generate::run(a, g),
        Command::Denoise(a) => denoise::run(a, g),
        Command::Metrics(a) => metrics::run(a, g),
        Command::Eval(a) => eval::run(a, g),
        Command::Model(m) => model::run(m, g),
        Command::Bench(b) => bench::run(b, g),
        Command::Serve(a) => crate::serve::run(*a, g),
    }
}
