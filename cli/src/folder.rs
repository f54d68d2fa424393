//! Folder runs shared by `restore` and `denoise`: every image of a folder in sorted order, past
//! bad ones (reported, and the run exits 1 at the end), skipping images whose output exists, so
//! an interrupted run resumes where it stopped.

use crate::common::{CliError, Global, Result};
use diffinv::metrics::Quality;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Lists the images of a folder, sorted; two with the same stem (`x.jpg`, `x.png`) would map to
/// one output and are refused.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| CliError::runtime(format!("{}: {e}", dir.display())))?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        })
        .collect();
    v.sort();
    let stem = |p: &PathBuf| p.file_stem().map(|s| s.to_string_lossy().into_owned());
    let mut stems: Vec<(Option<String>, &PathBuf)> = v.iter().map(|p| (stem(p), p)).collect();
    stems.sort();
    if let Some(w) = stems.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(CliError::usage(format!(
            "{} and {} would both be written as {}.png; rename one",
            w[0].1.display(),
            w[1].1.display(),
            w[0].0.as_deref().unwrap_or_default()
        )));
    }
    Ok(v)
}

/// Runs `one(input, output, index, side_output)` for each image of `input` into `output/STEM.png`
/// (and `side/STEM.png` when a side folder is given: a measurement or noisy image), then prints
/// a summary with the mean quality and emits `{"images", "failed", "ok", "skipped", "errors"}`.
pub fn run_folder(
    g: &Global,
    input: &Path,
    output: &Path,
    side: Option<&Path>,
    verb: &str,
    shard: Option<crate::shard::Shard>,
    mut one: impl FnMut(&Path, &Path, u64, Option<&Path>) -> Result<Value>,
) -> Result<()> {
    if let Some(p) = side.filter(|p| p.exists() && !p.is_dir()) {
        return Err(CliError::usage(format!("with a folder INPUT, {} must be a folder", p.display())));
    }
    let same = diffinv::model::io::same_file;
    for d in std::iter::once(output).chain(side) {
        if same(d, input) {
            return Err(CliError::usage(format!("{} is the input folder; write the outputs elsewhere", d.display())));
        }
    }
    if side.is_some_and(|s| same(s, output)) {
        return Err(CliError::usage("the measurement/noisy folder and the output folder must differ"));
    }
    let inputs = list_images(input)?;
    if inputs.is_empty() {
        return Err(CliError::runtime(format!("{}: no PNG or JPEG images", input.display())));
    }
    // Output folders are made by the first write: an interrupted run leaves no empty folder.
    let (mut results, mut failed, mut skipped) = (Vec::new(), Vec::new(), 0usize);
    let (mut sums, mut scored) = (Quality::default(), 0usize);
    // A shard takes its images by their place in the whole folder's sorted list.
    for (i, path) in inputs.iter().enumerate().filter(|(i, _)| shard.is_none_or(|s| s.owns(*i))) {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let out = output.join(format!("{stem}.png"));
        if out.exists() {
            skipped += 1;
            continue;
        }
        let side_out = side.map(|d| d.join(format!("{stem}.png")));
        match one(path, &out, i as u64, side_out.as_deref()) {
            Ok(v) => {
                if let Some(p) = v.get("psnr").and_then(Value::as_f64) {
                    sums.psnr += p;
                    sums.ssim += v["ssim"].as_f64().unwrap_or(0.0);
                    sums.lpips_alex += v["lpips_alex"].as_f64().unwrap_or(0.0);
                    sums.lpips_vgg += v["lpips_vgg"].as_f64().unwrap_or(0.0);
                    scored += 1;
                }
                results.push(v)
            }
            Err(e) if e.code == 130 => return Err(e),
            Err(e) => {
                g.say(format!("diffinv: {}: {}", path.display(), e.message));
                failed.push(json!({"input": path.display().to_string(), "error": e.message}));
            }
        }
    }
    let mut summary = format!("{} {verb}, {} skipped (output exists), {} failed", results.len(), skipped, failed.len());
    if scored > 0 {
        let n = scored as f64;
        summary += &format!(
            "; mean PSNR {:.2} dB, SSIM {:.4}, LPIPS alex {:.4} vgg {:.4}",
            sums.psnr / n,
            sums.ssim / n,
            sums.lpips_alex / n,
            sums.lpips_vgg / n
        );
    }
    g.say(summary);
    g.emit_json(
        &json!({"images": results, "failed": failed, "ok": results.len(), "skipped": skipped, "errors": failed.len()}),
    );
    if !failed.is_empty() {
        return Err(CliError::runtime(format!("{} of {} images failed", failed.len(), inputs.len())));
    }
    Ok(())
}
