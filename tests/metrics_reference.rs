//! PSNR and SSIM against scikit-image (tests/data/metrics_reference.json, made by
//! scripts/metrics_reference.py), plus hand-checkable cases.

mod common;
use diffinv::cpu::image_io::{load_image, Fit};
use diffinv::cpu::metrics::{psnr, ssim};
use diffinv::cpu::Tensor;

#[test]
fn psnr_and_ssim_match_scikit_image() {
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::data("metrics_reference.json")).unwrap()).unwrap();
    for p in j["pairs"].as_array().unwrap() {
        let a = load_image(&common::data(p["a"].as_str().unwrap()), Fit::Any).unwrap();
        let b = load_image(&common::data(p["b"].as_str().unwrap()), Fit::Any).unwrap();
        let (s, q) = (ssim(&a, &b, 0).unwrap(), psnr(&a, &b, 0).unwrap());
        let (ws, wq) = (p["ssim"].as_f64().unwrap(), p["psnr"].as_f64().unwrap());
        assert!((s - ws).abs() < 1e-6, "{}: SSIM {s} vs {ws}", p["b"]);
        assert!((q - wq).abs() < 1e-6, "{}: PSNR {q} vs {wq}", p["b"]);
    }
}

#[test]
fn hand_checked_cases() {
    // A uniform offset of 0.1 on [0, 1] (0.2 in [-1, 1] units): MSE 0.01, PSNR 20 dB.
    let a = Tensor::full([1, 3, 16, 16], 0.0);
    let b = Tensor::full([1, 3, 16, 16], 0.2);
    assert!((psnr(&a, &b, 0).unwrap() - 20.0).abs() < 1e-4);
    assert!(psnr(&a, &a, 0).unwrap().is_infinite());
    assert!((ssim(&a, &a, 0).unwrap() - 1.0).abs() < 1e-12);
    // Constant images: SSIM = (2 mu_x mu_y + C1)/(mu_x^2 + mu_y^2 + C1) = (2*0.5*0.6 + 1e-4)/(0.25 + 0.36 + 1e-4).
    let want = (0.6 + 1e-4) / (0.61 + 1e-4);
    assert!((ssim(&a, &b, 0).unwrap() - want).abs() < 1e-9);
    assert!(ssim(&Tensor::zeros([1, 3, 8, 8]), &Tensor::zeros([1, 3, 8, 8]), 0).is_err(), "too small");
    assert!(psnr(&a, &Tensor::zeros([1, 3, 8, 8]), 0).is_err(), "shape mismatch");
}
