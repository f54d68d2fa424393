//! The library API as a Rust program uses it: typed errors for bad settings (before any work),
//! cancellation through the progress callback, a CUDA device in a build without CUDA, images of
//! the wrong size, and the same result through the array and the tensor paths.

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
    let cases: [(Restorer<'_>, &str); 5] = [
        (Restorer::new(&m).steps(0), "steps"),
        (Restorer::new(&m).steps(5000), "steps"),
        (Restorer::new(&m).method(Method::DiffPir).zeta(1.5), "zeta"),
        (Restorer::new(&m).lambda(f64::NAN), "lambda"),
        (Restorer::new(&m).noise(-0.1), "noise"),
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
fn images_of_another_size_are_refused_for_diffusion_methods() {
    let m = Model::shipped().unwrap();
    let small = ndarray::Array3::<f32>::from_elem((32, 32, 3), 0.5);
    let err = Restorer::new(&m).measure(small.view()).unwrap_err();
    assert!(matches!(&err, Error::Cpu(CpuError::Shape { what, .. }) if what == "clean image"), "{err}");
    // A classical method takes any size.
    let y = Restorer::classical().task(Task::DeblurGauss).measure(small.view()).unwrap();
    assert_eq!(y.dim(), (32, 32, 3));
    // A measurement that the task does not produce on this model is refused before any work.
    let err = Restorer::new(&m).task(Task::Sr4).run(small.view()).unwrap_err();
    assert!(matches!(&err, Error::Cpu(CpuError::Shape { what, .. }) if what == "measurement"), "{err}");
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
