//! The operators against DPS's (scipy kernels, ReflectionPad2d + depthwise conv2d), computed in
//! float64 by PyTorch.

mod common;
use common::{golden, rel_err, tensor};
use diffinv::core::NoiseStream;
use diffinv::cpu::ops::blur::Method;
use diffinv::cpu::ops::kernels::{gaussian, gaussian_f64};
use diffinv::cpu::ops::mask::{box_mask, random_mask, BoxSpec};
use diffinv::cpu::ops::{Blur, Op};

#[test]
fn gaussian_kernels_match_scipy() {
    let g = golden("operators");
    for (key, size, std) in [("gauss_k15_s0_75", 15, 0.75), ("gauss_k61_s3", 61, 3.0)] {
        let want64 = g.f64(&format!("{key}_f64")).unwrap().1;
        let got = gaussian_f64(size, std);
        let e = got.iter().zip(&want64).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(e < 1e-15, "{key}: f64 kernel differs by {e}");
        assert_eq!(gaussian(size, std).data, g.f32(key).unwrap().1, "{key}: f32 kernel bit for bit");
    }
}

#[test]
fn blur_matches_dps_at_64_and_256() {
    let g = golden("operators");
    let b15 = Blur::new(vec![gaussian(15, 0.75)]).unwrap();
    let x = tensor(&g, "x");
    for m in [Method::Direct, Method::Fft] {
        let e = rel_err(b15.forward(&x, m).unwrap().data(), &g.f32("y_blur").unwrap().1);
        assert!(e <= 1e-5, "64 px {m:?}: {e:.2e}");
    }
    let b61 = Blur::new(vec![gaussian(61, 3.0)]).unwrap();
    let x256 = tensor(&g, "x256");
    let e = rel_err(b61.forward(&x256, Method::Auto).unwrap().data(), &g.f32("y_blur256").unwrap().1);
    eprintln!("256 px 61x61 FFT blur error {e:.2e}");
    assert!(e <= 1e-5, "256 px: {e:.2e}");
}

#[test]
fn masks_match_dps() {
    let g = golden("operators");
    let x = tensor(&g, "x");
    let m = box_mask(3, 64, 64, BoxSpec { x: 16, y: 16, size: 32 }).unwrap();
    assert_eq!(m.data(), g.f32("mask_box").unwrap().1);
    let y = Op::Mask(m).forward(&x).unwrap();
    assert_eq!(y.data(), g.f32("y_box").unwrap().1);
    // DPS's random mask: exactly int(0.7 * 4096) = 2867 pixels missing, in every channel alike.
    for want in
        [g.f32("mask_random").unwrap().1, random_mask(3, 64, 64, 0.7, &mut NoiseStream::new(1, 2)).unwrap().into_vec()]
    {
        let (r, gr, b) = (&want[..4096], &want[4096..8192], &want[8192..]);
        assert_eq!(r.iter().filter(|v| **v == 0.0).count(), 2867);
        assert_eq!(r, gr);
        assert_eq!(r, b);
    }
}
