//! `eval --noise A,B,...`: quality against the noise level, from the per-level summaries:
//! `noise.md` (a table per task and metric) and `noise_<task>.png` (PSNR against sigma_y).

use crate::common::Result;
use diffinv::cpu::image_io::{save_line_plot, Series};
use diffinv::model::io::write_atomic;
use diffinv::Task;
use serde_json::Value;
use std::path::Path;

/// The value of `key` for `method` on `task` in one level's summary (NaN if absent, +inf for a
/// PSNR that is missing because it is infinite).
fn value(summary: &Value, task: &str, method: &str, key: &str) -> f64 {
    let row =
        summary["summary"].as_array().and_then(|rows| rows.iter().find(|r| r["task"] == task && r["method"] == method));
    match row {
        Some(r) => r[key].as_f64().unwrap_or(if key == "psnr_mean" { f64::INFINITY } else { f64::NAN }),
        None => f64::NAN,
    }
}

/// The methods of a task in the order the first level lists them (the measurement first).
fn methods(per_level: &[(f64, Value)], task: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, j) in per_level {
        for r in j["summary"].as_array().into_iter().flatten().filter(|r| r["task"] == task) {
            if let Some(m) = r["method"].as_str().filter(|m| !out.iter().any(|o| o == m)) {
                out.push(m.to_string());
            }
        }
    }
    out
}

/// Writes `noise.md` and a plot per task into `out`; returns the plots' paths.
pub fn write(out: &Path, tasks: &[Task], per_level: &[(f64, Value)]) -> Result<Vec<String>> {
    let levels: Vec<String> = per_level.iter().map(|(s, _)| format!("{s}")).collect();
    let mut md = String::from(
        "# Quality against noise\n\nMean over images at each noise level sigma_y ([-1, 1] units); each level's full report is in `noise_<sigma>/report.md`. Methods use their noise-dependent defaults unless overridden.\n"
    );
    let mut plots = Vec::new();
    for task in tasks {
        let t = task.name();
        let names = methods(per_level, t);
        md += &format!("\n## {t}\n");
        for (key, title, digits) in
            [("psnr_mean", "PSNR (dB)", 2), ("ssim_mean", "SSIM", 4), ("lpips_alex_mean", "LPIPS-alex", 4)]
        {
            md += &format!("\n{title}\n\n| method | {} |\n|---|{}\n", levels.join(" | "), "---|".repeat(levels.len()));
            for m in &names {
                let cells: Vec<String> = per_level
                    .iter()
                    .map(|(_, j)| match value(j, t, m, key) {
                        v if v.is_nan() => "-".to_string(),
                        v if v.is_infinite() => "inf".to_string(),
                        v => format!("{v:.digits$}"),
                    })
                    .collect();
                md += &format!("| {m} | {} |\n", cells.join(" | "));
            }
        }
        let series: Vec<Series> = names
            .iter()
            .map(|m| Series {
                label: m.replace('_', " "),
                values: per_level.iter().map(|(_, j)| value(j, t, m, "psnr_mean")).collect(),
            })
            .collect();
        let file = format!("noise_{t}.png");
        save_line_plot(&out.join(&file), &format!("{t}: PSNR (dB) against sigma_y"), &levels, &series)?;
        md += &format!("\n![{t}]({file})\n");
        plots.push(out.join(&file).display().to_string());
    }
    write_atomic(&out.join("noise.md"), |w| w.write_all(md.as_bytes()))?;
    Ok(plots)
}
