//! The library API as a Rust program uses it: typed errors for bad settings (before any work),
//! cancellation through the progress callback, a CUDA device in a build without CUDA, images of
//! any size, and the same result through the array and the tensor paths.

mod common;
use diffinv::cpu::Error as CpuError;
use diffinv::{Device, Error, Generator, Method, Model, Restorer, Task};

fn face() -> ndarray::Array3<f32> {
    diffinv::image::load(common::data("celeba64/009503.png")).unwrap()
}

#[test]
fn bad_settings_are_typed_errors_naming_the_parameter() {
    let m = Model::shipped().unwrap();
    let y = Restorer::new(&m).measure(face().view()).unwrap();
    let cases: [(Restorer<'_>, &str); 10] = [
        (Restorer::new(&m).steps(0), "steps"),
        (Restorer::new(&m).steps(5000), "steps"),
        (Restorer::new(&m).method(Method::DiffPir).zeta(1.5), "zeta"),
        (Restorer::new(&m).method(Method::Dps).zeta(-1.0), "zeta"),
        (Restorer::new(&m).method(Method::Dps).zeta(f64::INFINITY), "zeta"),
        (Restorer::new(&m).method(Method::Dps).zeta(1e7), "zeta"),
        (Restorer::new(&m).lambda(f64::NAN), "lambda"),
        (Restorer::new(&m).noise(-0.1), "noise"),
        (Restorer::new(&m).noise(1e30), "noise"),
        (Restorer::new(&m).method(Method::HqsTv).steps(10_000_000), "steps"),
    ];
    for (r, want) in cases {
        // Refused before any step runs.
        match r.on_step(|_, _| panic!("a step ran")).run(y.view()) {
            Err(Error::Cpu(CpuError::Parameter { name, .. })) => assert_eq!(name, want),
            other => panic!("{want}: expected a parameter error, got {other:?}"),
        }
    }
}

#[test]
fn a_false_from_on_step_cancels() {
    let m = Model::shipped().unwrap();
    let y = Restorer::new(&m).measure(face().view()).unwrap();
    let seen = std::sync::atomic::AtomicUsize::new(0);
    let out = Restorer::new(&m)
        .method(Method::DiffPir)
        .steps(10)
        .on_step(|done, _| {
            seen.store(done, std::sync::atomic::Ordering::Relaxed);
            done < 3
        })
        .run(y.view());
    assert!(matches!(out, Err(Error::Cancelled)));
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 3, "stopped at the step that said no");
    let g = Generator::new(&m).steps(10).on_step(|done, _| done < 2).run(1);
    assert!(matches!(g, Err(Error::Cancelled)));
}

#[test]
fn cuda_without_the_feature_is_one_clear_error() {
    if Device::cuda_built() {
        eprintln!("skipped: this build has CUDA (tests/cuda.rs covers it)");
        return;
    }
    let m = Model::shipped().unwrap();
    let y = Restorer::new(&m).measure(face().view()).unwrap();
    let err = Restorer::new(&m).device(Device::Cuda(0)).steps(2).run(y.view()).unwrap_err();
    assert!(matches!(&err, Error::Unavailable { what, .. } if what.contains("CUDA")), "{err}");
    assert!(err.to_string().contains("cuda` feature"), "{err}");
    // Classical methods run on the CPU whatever the device.
    let r = Restorer::classical().device(Device::Cuda(0)).method(Method::HqsTv).run(y.view());
    assert!(r.is_ok(), "{:?}", r.err());
}

#[test]
fn images_of_any_size_are_measured_and_sized_from_the_measurement() {
    let m = Model::shipped().unwrap();
    let small = ndarray::Array3::<f32>::from_elem((32, 48, 3), 0.5);
    // Diffusion methods take any size (the model is tiled: tests/tiling.rs); so do classical ones.
    let y = Restorer::new(&m).task(Task::Sr4).measure(small.view()).unwrap();
    assert_eq!(y.dim(), (8, 12, 3));
    let y = Restorer::classical().task(Task::DeblurGauss).measure(small.view()).unwrap();
    assert_eq!(y.dim(), (32, 48, 3));
    let r = Restorer::new(&m).task(Task::Sr4);
    assert_eq!(r.image_shape([1, 3, 8, 12]), [1, 3, 32, 48]);
    assert!(r.tile_layout([1, 3, 64, 64]).unwrap().is_none(), "the model's size is untiled");
    assert_eq!(r.tile_layout([1, 3, 112, 160]).unwrap().map(|l| l.grid()), Some((2, 3)));
    // An SR measurement whose size the factor does not divide back is refused before any work.
    let odd = ndarray::Array3::<f32>::from_elem((30, 40, 3), 0.5);
    let err = Restorer::new(&m).task(Task::Sr4).measure(odd.view()).unwrap_err();
    assert!(matches!(&err, Error::Cpu(CpuError::Parameter { name, .. }) if name == "scale"), "{err}");
}

#[test]
fn the_array_and_tensor_paths_agree() {
    let m = Model::shipped().unwrap();
    let x = face();
    let r = || Restorer::new(&m).task(Task::InpaintRandom).method(Method::DiffPir).steps(4).seed(5);
    let y = r().measure(x.view()).unwrap();
    let a = r().run(y.view()).unwrap();
    let (yt, op) = r().measure_tensor(&diffinv::image::to_tensor(x.view()).unwrap()).unwrap();
    let b = r().run_with(&op, &yt).unwrap();
    let e = common::rel_err(a.x.data(), b.x.data());
    assert!(e < 1e-5, "array vs tensor path: {e:.2e}");
    assert_eq!((a.nfe, b.nfe), (4, 4));
    assert!(a.image.iter().all(|v| (0.0..=1.0).contains(v)), "the image is clipped to [0, 1]");
}

/// Every height from 1 to 300 px (by 16 px, the smallest VGG takes), every size up to 64 x 64
/// and a few larger go through PSNR, SSIM and both LPIPS networks: a number, or NaN where the
/// image is smaller than the metric's window (SSIM 11 px, AlexNet 31, VGG 16), never a panic.
/// (The `metrics` fuzz target covers all sizes to 300 x 300.)
#[test]
fn metrics_take_every_image_size() {
    let m = diffinv::metrics::Metrics::shipped().unwrap();
    let img = |h: usize, w: usize, k: f32| {
        ndarray::Array3::from_shape_fn((h, w, 3), |(y, x, c)| {
            (((y * 7 + x * 13 + c * 5) as f32 * k).sin() * 0.5 + 0.5).clamp(0.0, 1.0)
        })
    };
    let small = (1..=64)
        .flat_map(|h| (1..=64).map(move |w| (h, w)))
        .filter(|&(h, w)| h == w || h.min(w) == 1 || w == 16 || (h == 31 && w >= 31));
    let large = [(97, 97), (128, 128), (255, 255), (300, 300), (300, 31), (31, 300), (16, 300)];
    let sizes = (1..=300).map(|s| (s, 16)).chain(small).chain(large);
    for (h, w) in sizes {
        let q = m.compare(img(h, w, 0.1).view(), img(h, w, 0.13).view()).unwrap();
        let side = h.min(w);
        assert!(q.psnr.is_finite() && q.psnr > 0.0, "{h}x{w}: {q:?}");
        assert_eq!(q.ssim.is_nan(), side < 11, "{h}x{w}: {q:?}");
        assert!(q.ssim.is_nan() || q.ssim.abs() <= 1.0, "{h}x{w}: {q:?}");
        for d in [q.lpips_alex, q.lpips_vgg] {
            assert!(d.is_nan() || (d.is_finite() && d >= 0.0), "{h}x{w}: {q:?}");
        }
        if side >= 64 {
            assert!(!q.lpips_alex.is_nan() && !q.lpips_vgg.is_nan(), "{h}x{w}: {q:?}");
        }
    }
    // Above the LPIPS limit, PSNR and SSIM only.
    let side = diffinv::metrics::Metrics::MAX_LPIPS_SIDE;
    for (h, w) in [(side, 16), (side + 1, 16), (16, side + 1)] {
        let q = m.compare(img(h, w, 0.1).view(), img(h, w, 0.13).view()).unwrap();
        assert_eq!(q.lpips_vgg.is_nan(), h.max(w) > side, "{h}x{w}: {q:?}");
        assert!(q.psnr.is_finite() && q.ssim.is_finite(), "{h}x{w}: {q:?}");
    }
}
