//! `diffinv degrade`: write the simulated measurement of a clean image.

use crate::args::usize_in;
use crate::common::{CliError, Global, Result};
use crate::taskargs::OpArgs;
use clap::Args;
use diffinv::cpu::image_io::{load_image, save_image, Fit, MAX_SIDE};
use diffinv::{Restorer, Tensor};
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Examples:
  diffinv degrade --task inpaint-box assets/samples/009521.png -o masked.png --save-mask mask.png
  diffinv degrade --task deblur-motion --intensity 0.5 --seed 3 face.png -o blurred.png
  diffinv degrade --task sr4 face.png -o small.png
  diffinv degrade --task deblur-gauss --noise-model poisson --rate 400 face.png -o counts.png
  diffinv degrade --task hdr face.png -o overexposed.png")]
pub struct DegradeArgs {
    /// The clean image.
    input: PathBuf,
    /// The measurement image (the mask applied for inpainting: holes are 0, mid-gray).
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    op: OpArgs,
    /// Also write the inpainting mask (white = observed).
    #[arg(long, value_name = "PNG")]
    save_mask: Option<PathBuf>,
    /// Centre-crop and resize to this side first (1..=4096).
    #[arg(long, value_name = "SIZE", value_parser = usize_in(1, 4096))]
    resize: Option<usize>,
}

pub fn run(a: DegradeArgs, g: &Global) -> Result<()> {
    let params = a.op.params()?;
    let noise = a.op.simulated_noise()?;
    let model = a.op.noise_model()?;
    let shown = match model {
        diffinv::NoiseModel::Poisson { rate } => format!("poisson rate {rate}"),
        diffinv::NoiseModel::Gaussian => format!("sigma {noise}"),
    };
    if a.save_mask.is_some() && !a.op.task()?.is_inpainting() {
        return Err(CliError::usage("--save-mask needs an inpainting task"));
    }
    let mut outs = vec![("-o", a.output.as_path())];
    outs.extend(a.save_mask.as_deref().map(|p| ("--save-mask", p)));
    crate::common::distinct_outputs(&[&a.input], &outs)?;
    let fit = a.resize.map_or(Fit::Max(MAX_SIDE as usize), Fit::Resize);
    let x = load_image(&a.input, fit)?;
    let r = a.op.apply(Restorer::classical(), &params, true)?.seed(g.seed);
    let (y, op) = r.measure_tensor(&x)?;
    let img = op.measurement_file(&y)?;
    // Every output is ready before the first is written.
    let mask = op.mask().map(|m| {
        let mut shown = Tensor::zeros(m.shape());
        shown.data_mut().iter_mut().zip(m.data()).for_each(|(o, v)| *o = 2.0 * v - 1.0);
        shown
    });
    save_image(&a.output, &img, 0)?;
    if let (Some(p), Some(m)) = (&a.save_mask, &mask) {
        save_image(p, m, 0)?;
    }
    g.say(format!("wrote {} ({} {}x{}, {shown})", a.output.display(), a.op.task, img.w(), img.h()));
    let rate = match model {
        diffinv::NoiseModel::Poisson { rate } => serde_json::Value::from(rate),
        diffinv::NoiseModel::Gaussian => serde_json::Value::Null,
    };
    g.emit_json(&serde_json::json!({"output": a.output.display().to_string(), "task": a.op.task, "width": img.w(), "height": img.h(), "noise": noise, "rate": rate, "seed": g.seed}));
    Ok(())
}
