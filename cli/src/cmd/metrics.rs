//! `diffinv metrics`: PSNR, SSIM and LPIPS of one image against a reference.

use crate::common::{CliError, Global, Result};
use clap::Args;
use diffinv::cpu::image_io::{load_image, Fit};
use diffinv::metrics::Metrics;
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Example:\n  diffinv metrics clean.png restored.png --json")]
pub struct MetricsArgs {
    /// The reference image.
    reference: PathBuf,
    /// The image to score.
    image: PathBuf,
}

pub fn run(a: MetricsArgs, g: &Global) -> Result<()> {
    let r = load_image(&a.reference, Fit::Any)?;
    let x = load_image(&a.image, Fit::Any)?;
    if r.shape() != x.shape() {
        return Err(CliError::runtime(format!(
            "{} is {}x{} but the reference {} is {}x{}",
            a.image.display(),
            x.w(),
            x.h(),
            a.reference.display(),
            r.w(),
            r.h()
        )));
    }
    let q = Metrics::shipped()?.compare_tensors(&r, &x, 0)?;
    let mut m = serde_json::Map::new();
    crate::quality::json(&q, "", &mut m);
    if g.json {
        g.emit_json(&serde_json::Value::Object(m));
    } else {
        println!("{}", q.line());
    }
    Ok(())
}
