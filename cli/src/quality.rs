//! Quality numbers in the CLI's JSON and text.

use diffinv::metrics::Quality;

/// `psnr`, `ssim`, `lpips_alex`, `lpips_vgg` with an optional prefix (`measurement_`); an
/// infinite PSNR (identical images) is `null`.
pub fn json(q: &Quality, prefix: &str, map: &mut serde_json::Map<String, serde_json::Value>) {
    let f = |v: f64| if v.is_finite() { serde_json::json!(v) } else { serde_json::json!(null) };
    map.insert(format!("{prefix}psnr"), f(q.psnr));
    map.insert(format!("{prefix}ssim"), f(q.ssim));
    map.insert(format!("{prefix}lpips_alex"), f(q.lpips_alex));
    map.insert(format!("{prefix}lpips_vgg"), f(q.lpips_vgg));
}
