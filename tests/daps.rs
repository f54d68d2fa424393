//! DAPS, the nonlinear tasks (phase retrieval, HDR) and best-of-N on real faces (64 px, the
//! shipped model), with short runs so the suite fits CI: determinism on any thread count,
//! quality margins over the measurement, the residual rule of best-of-N, and the refusals of
//! methods that need a linear operator.

mod common;
use diffinv::cpu::image_io::{load_image, Fit};
use diffinv::cpu::metrics::{psnr, Lpips, LpipsNet};
use diffinv::cpu::ops::{build, measure};
use diffinv::{Method, Model, Op, Restorer, Settings, Task, TaskParams, Tensor};

fn face(i: usize) -> Tensor {
    load_image(&common::data(&format!("celeba64/0095{i:02}.png")), Fit::Exact(64)).unwrap()
}

fn measured(task: Task, i: usize) -> (Tensor, Op, Tensor) {
    let x = face(i);
    let op = build(task, &TaskParams::default(), x.shape(), 0, i as u64).unwrap();
    let y = measure(&op, &x, 0.05, 0, i as u64).unwrap();
    (x, op, y)
}

/// DAPS-100's structure: 50 levels x 2 ODE steps.
fn daps100() -> Settings {
    Settings { steps: Some(50), ode_steps: Some(2), ..Default::default() }
}

fn lpips_vgg() -> Lpips {
    Lpips::from_checkpoint(LpipsNet::Vgg, &diffinv::assets::lpips(LpipsNet::Vgg).unwrap()).unwrap()
}

#[test]
fn daps_is_deterministic_on_any_thread_count_and_per_image_in_a_batch() {
    let m = Model::shipped().unwrap();
    let tiny = Settings { steps: Some(4), ode_steps: Some(2), langevin_steps: Some(5), ..Default::default() };
    let (_, op, y) = measured(Task::Hdr, 3);
    let run = |threads: usize, seed: u64| {
        let mut r = Restorer::new(&m).task(Task::Hdr).method(Method::Daps).settings(tiny.clone()).seed(seed);
        r = r.threads(threads);
        let out = r.run_with(&op, &y).unwrap();
        assert_eq!((out.nfe, out.vjps), (8, 0), "4 levels x 2 ODE steps, no network gradient");
        out.x
    };
    let a = run(1, 0);
    assert_eq!(a.data(), run(2, 0).data(), "1 vs 2 threads");
    assert_ne!(a.data(), run(2, 1).data(), "another seed, another sample");
    // A batch of two gives each image its single run.
    let faces = [face(3), face(4)];
    let x = Tensor::stack(&faces.iter().collect::<Vec<_>>()).unwrap();
    let op2 = build(Task::Hdr, &TaskParams::default(), x.shape(), 0, 0).unwrap();
    let y2 = measure(&op2, &x, 0.05, 0, 0).unwrap();
    let mut r = Restorer::new(&m).task(Task::Hdr).method(Method::Daps).settings(tiny.clone());
    let batch = r.run_with(&op2, &y2).unwrap().x;
    for (k, f) in faces.iter().enumerate() {
        let op1 = build(Task::Hdr, &TaskParams::default(), f.shape(), 0, k as u64).unwrap();
        let y1 = measure(&op1, f, 0.05, 0, k as u64).unwrap();
        let mut r = Restorer::new(&m).task(Task::Hdr).method(Method::Daps).settings(tiny.clone()).index(k as u64);
        assert_eq!(r.run_with(&op1, &y1).unwrap().x.data(), batch.image(k), "image {k}");
    }
}

#[test]
fn hdr_daps_and_dps_beat_the_clipped_measurement() {
    let m = Model::shipped().unwrap();
    let lp = lpips_vgg();
    let dps100 = Settings { steps: Some(100), ..Default::default() };
    for (method, s, dp, dl) in [(Method::Daps, daps100(), 5.0, 0.03), (Method::Dps, dps100, 3.0, 0.02)] {
        let (mut gain, mut drop) = (0.0, 0.0);
        for i in [1, 2] {
            let (x, op, y) = measured(Task::Hdr, i);
            let mut r = Restorer::new(&m).task(Task::Hdr).method(method).settings(s.clone()).index(i as u64);
            let out = r.run_with(&op, &y).unwrap().x;
            let meas = op.measurement_image(&y).unwrap();
            gain += (psnr(&x, &out, 0).unwrap() - psnr(&x, &meas, 0).unwrap()) / 2.0;
            drop += (lp.distance(&x, &meas).unwrap()[0] - lp.distance(&x, &out).unwrap()[0]) / 2.0;
        }
        eprintln!("hdr {}: +{gain:.2} dB, LPIPS-vgg -{drop:.3} over the clipped measurement", method.name());
        assert!(gain >= dp, "hdr {}: PSNR gain {gain:.2} < {dp}", method.name());
        assert!(drop >= dl, "hdr {}: LPIPS drop {drop:.3} < {dl}", method.name());
    }
}

#[test]
fn daps_beats_the_measurement_on_linear_tasks() {
    let m = Model::shipped().unwrap();
    for (task, dp) in [(Task::InpaintBox, 4.0), (Task::DeblurGauss, 1.0)] {
        let mut gain = 0.0;
        for i in [1, 2] {
            let (x, op, y) = measured(task, i);
            let mut r = Restorer::new(&m).task(task).method(Method::Daps).settings(daps100()).index(i as u64);
            let out = r.run_with(&op, &y).unwrap().x;
            let base = if task.is_inpainting() { op.init_estimate(&y) } else { op.measurement_image(&y) }.unwrap();
            gain += (psnr(&x, &out, 0).unwrap() - psnr(&x, &base, 0).unwrap()) / 2.0;
        }
        eprintln!("{} daps-100: +{gain:.2} dB over the measurement", task.name());
        assert!(gain >= dp, "{} daps-100: PSNR gain {gain:.2} < {dp}", task.name());
    }
}

#[test]
fn best_of_n_keeps_the_smallest_residual_and_its_first_draw_is_the_plain_run() {
    let m = Model::shipped().unwrap();
    let (_, op, y) = measured(Task::InpaintBox, 5);
    let mk = || Restorer::new(&m).task(Task::InpaintBox).method(Method::DiffPir).steps(5).seed(9).index(5);
    let best = mk().samples(3).run_with(&op, &y).unwrap();
    assert_eq!(best.samples.len(), 3);
    assert_eq!(best.samples[0].seed, 9);
    let min = best.samples.iter().map(|s| s.residual).fold(f64::INFINITY, f64::min);
    assert_eq!(best.residual, min, "the returned draw has the smallest residual");
    let seeds: std::collections::BTreeSet<u64> = best.samples.iter().map(|s| s.seed).collect();
    assert_eq!(seeds.len(), 3, "independent seeds");
    let one = mk().run_with(&op, &y).unwrap();
    assert_eq!(one.samples.len(), 1);
    assert_eq!(one.x.data(), best.samples[0].x.as_ref().unwrap().data(), "draw 0 is the single run");
    assert!(mk().samples(0).run_with(&op, &y).is_err());
}

#[test]
fn methods_that_need_a_linear_operator_refuse_nonlinear_tasks() {
    let m = Model::shipped().unwrap();
    let (_, op, y) = measured(Task::PhaseRetrieval, 1);
    let e = Restorer::classical().task(Task::PhaseRetrieval).method(Method::HqsTv).run_with(&op, &y).unwrap_err();
    assert!(e.to_string().contains("linear"), "{e}");
    let e = Restorer::new(&m).task(Task::PhaseRetrieval).method(Method::Sdedit).run_with(&op, &y).unwrap_err();
    assert!(e.to_string().contains("phase retrieval"), "{e}");
    let (_, hop, hy) = measured(Task::Hdr, 1);
    let e = Restorer::classical().task(Task::Hdr).method(Method::AdamTv).run_with(&hop, &hy).unwrap_err();
    assert!(e.to_string().contains("linear"), "{e}");
    // --noise auto has no image to read phase retrieval's level from.
    let e = Restorer::new(&m).task(Task::PhaseRetrieval).method(Method::Daps).noise_auto().run_with(&op, &y);
    assert!(e.unwrap_err().to_string().contains("noise"));
}
