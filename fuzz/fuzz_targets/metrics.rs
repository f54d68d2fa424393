//! Two images of any size from 1 to 300 px a side through PSNR, SSIM and both LPIPS networks:
//! a number or NaN (too small for a window), never a panic.
#![no_main]
use diffinv::metrics::Metrics;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static METRICS: OnceLock<Metrics> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let side = |b: &[u8]| 1 + u16::from_le_bytes([b[0], b[1]]) as usize % 300;
    let (h, w) = (side(&data[0..2]), side(&data[2..4]));
    let px = |i: usize| data.get(4 + i % (data.len() - 4).max(1)).map_or(0.5, |&b| b as f32 / 255.0);
    let a = ndarray::Array3::from_shape_fn((h, w, 3), |(y, x, c)| px(3 * (y * w + x) + c));
    let b = ndarray::Array3::from_shape_fn((h, w, 3), |(y, x, c)| px(7 * (y * w + x) + c + 1));
    let m = METRICS.get_or_init(|| Metrics::shipped().expect("shipped LPIPS weights"));
    let q = m.compare(a.view(), b.view()).expect("same shapes compare");
    assert!(q.psnr.is_nan() || q.psnr > 0.0);
});
