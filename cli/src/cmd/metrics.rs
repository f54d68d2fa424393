//! `diffinv metrics`: PSNR, SSIM and LPIPS of one image against a reference.

use crate::common::{CliError, Global, Result};
use clap::Args;
use diffinv::cpu::image_io::{dimensions, load_image, Fit};
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

/// The largest image side `metrics` compares: the library's LPIPS limit (about 800 MB peak).
pub const MAX_METRICS_SIDE: usize = Metrics::MAX_LPIPS_SIDE;

pub fn run(a: MetricsArgs, g: &Global) -> Result<()> {
    // Sizes from the headers first: nothing is decoded for images that cannot be compared.
    let (rw, rh) = dimensions(&a.reference)?;
    let (w, h) = dimensions(&a.image)?;
    if (rw, rh) != (w, h) {
        return Err(CliError::runtime(format!(
            "{} is {w}x{h} but the reference {} is {rw}x{rh}",
            a.image.display(),
            a.reference.display()
        )));
    }
    if w > MAX_METRICS_SIDE || h > MAX_METRICS_SIDE {
        return Err(CliError::runtime(format!(
            "{}: {w}x{h} is larger than the {MAX_METRICS_SIDE}x{MAX_METRICS_SIDE} metrics compares",
            a.image.display()
        )));
    }
    let r = load_image(&a.reference, Fit::Any)?;
    let x = load_image(&a.image, Fit::Any)?;
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
