//! `diffinv degrade`: write the simulated measurement of a clean image.

use crate::common::{CliError, Global, Result};
use crate::taskargs::OpArgs;
use clap::Args;
use diffinv::cpu::image_io::{load_image, save_image, Fit};
use diffinv::{Restorer, Tensor};
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Examples:
  diffinv degrade --task inpaint-box assets/samples/009521.png -o masked.png --save-mask mask.png
  diffinv degrade --task deblur-motion --intensity 0.5 --seed 3 face.png -o blurred.png
  diffinv degrade --task sr4 face.png -o small.png")]
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
    /// Centre-crop and resize to this side first.
    #[arg(long, value_name = "SIZE")]
    resize: Option<usize>,
}

pub fn run(a: DegradeArgs, g: &Global) -> Result<()> {
    let params = a.op.params()?;
    let fit = a.resize.map_or(Fit::Any, Fit::Resize);
    let x = load_image(&a.input, fit)?;
    let r = a.op.apply(Restorer::classical(), &params)?.seed(g.seed);
    let (y, op) = r.measure_tensor(&x)?;
    let img = op.measurement_image(&y)?;
    save_image(&a.output, &img, 0)?;
    if let Some(p) = &a.save_mask {
        let m = op.mask().ok_or_else(|| CliError::usage("--save-mask needs an inpainting task"))?;
        let mut shown = Tensor::zeros(m.shape());
        shown.data_mut().iter_mut().zip(m.data()).for_each(|(o, v)| *o = 2.0 * v - 1.0);
        save_image(p, &shown, 0)?;
    }
    g.say(format!("wrote {} ({} {}x{}, sigma {})", a.output.display(), a.op.task, img.w(), img.h(), a.op.noise));
    g.emit_json(&serde_json::json!({"output": a.output.display().to_string(), "task": a.op.task, "width": img.w(), "height": img.h(), "noise": a.op.noise, "seed": g.seed}));
    Ok(())
}
