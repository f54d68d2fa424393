//! The diffusion methods on real faces from the dev set (64 px, the shipped model), with short
//! respaced chains so the suite fits CI: each beats its own measurement baseline by a stated
//! margin, DPS beats SDEdit on LPIPS, and a fixed seed reproduces the output bit for bit on any
//! thread count.

mod common;
use diffinv::cpu::image_io::{load_image, Fit};
use diffinv::cpu::metrics::{psnr, Lpips, LpipsNet};
use diffinv::cpu::ops::{build, measure};
use diffinv::{Method, Model, Op, Restorer, Settings, Task, TaskParams, Tensor};

const FACES: [usize; 2] = [1, 2];

struct Scores {
    psnr: f64,
    lpips: f64,
}

/// `method` on `y` through the library's restorer (sigma_y = 0.05).
#[allow(clippy::too_many_arguments)]
fn restore(m: &Model, method: Method, task: Task, s: &Settings, op: &Op, y: &Tensor, seed: u64, index: u64) -> Tensor {
    let mut r = Restorer::new(m).task(task).method(method).settings(s.clone()).noise(0.05).seed(seed).index(index);
    r.run_with(op, y).unwrap().x
}

fn lpips_vgg() -> Lpips {
    Lpips::from_checkpoint(LpipsNet::Vgg, &diffinv::assets::lpips(LpipsNet::Vgg).unwrap()).unwrap()
}

fn face(i: usize) -> Tensor {
    load_image(&common::data(&format!("celeba64/0095{i:02}.png")), Fit::Exact(64)).unwrap()
}

/// Mean PSNR and LPIPS-vgg over FACES of `method` (None: the measurement baseline).
fn score(m: &Model, lp: &Lpips, task: Task, method: Option<(Method, Settings)>) -> Scores {
    let (mut p, mut l) = (0.0, 0.0);
    for &i in &FACES {
        let x = face(i);
        let op = build(task, &TaskParams::default(), x.shape(), 0, i as u64).unwrap();
        let y = measure(&op, &x, 0.05, 0, i as u64).unwrap();
        let out = match &method {
            // Inpainting's baseline is the masked input with holes filled by the mean colour.
            None if task.is_inpainting() => op.init_estimate(&y).unwrap(),
            None => op.measurement_image(&y).unwrap(),
            Some((me, s)) => restore(m, *me, task, s, &op, &y, 0, i as u64),
        };
        p += psnr(&x, &out, 0).unwrap();
        l += lp.distance(&x, &out).unwrap()[0];
    }
    let n = FACES.len() as f64;
    Scores { psnr: p / n, lpips: l / n }
}

fn steps(s: usize) -> Settings {
    Settings { steps: Some(s), ..Default::default() }
}

#[test]
fn every_method_beats_its_measurement() {
    let m = Model::shipped().unwrap();
    let lp = lpips_vgg();
    // (task, method, settings, min PSNR gain in dB, min LPIPS drop)
    let cases = [
        (Task::InpaintBox, Method::Dps, steps(100), 4.0, 0.15),
        (Task::InpaintBox, Method::Ald, steps(100), 2.0, 0.1),
        (Task::InpaintBox, Method::Sdedit, steps(100), 2.0, 0.1),
        (Task::InpaintBox, Method::DiffPir, steps(50), 4.0, 0.15),
        (Task::DeblurGauss, Method::Dps, steps(100), 1.5, 0.03),
        (Task::DeblurGauss, Method::Ald, steps(100), 1.5, 0.03),
        (Task::DeblurGauss, Method::Sdedit, steps(100), 1.0, 0.03),
        (Task::DeblurGauss, Method::DiffPir, steps(50), 1.5, 0.03),
        // x4 SR against the bicubic upsampling: Score-ALD halves LPIPS at a PSNR cost.
        (Task::Sr4, Method::Ald, steps(100), -2.0, 0.15),
        (Task::Sr4, Method::DiffPir, steps(50), 1.5, 0.15),
    ];
    let mut dps_box = None;
    let mut sdedit_box = None;
    for (task, method, s, dp, dl) in cases {
        let base = score(&m, &lp, task, None);
        let got = score(&m, &lp, task, Some((method, s)));
        eprintln!(
            "{} {}: {:.2} dB / LPIPS {:.3} (measurement {:.2} dB / {:.3})",
            task.name(),
            method.name(),
            got.psnr,
            got.lpips,
            base.psnr,
            base.lpips
        );
        assert!(
            got.psnr >= base.psnr + dp,
            "{} {}: PSNR {:.2} vs baseline {:.2} + {dp}",
            task.name(),
            method.name(),
            got.psnr,
            base.psnr
        );
        assert!(
            got.lpips <= base.lpips - dl,
            "{} {}: LPIPS {:.3} vs baseline {:.3} - {dl}",
            task.name(),
            method.name(),
            got.lpips,
            base.lpips
        );
        if task == Task::InpaintBox && method == Method::Dps {
            dps_box = Some(got.lpips);
        }
        if task == Task::InpaintBox && method == Method::Sdedit {
            sdedit_box = Some(got.lpips);
        }
    }
    let (d, s) = (dps_box.unwrap(), sdedit_box.unwrap());
    assert!(d < s, "DPS LPIPS {d:.3} should beat SDEdit's {s:.3} on box inpainting");
}

#[test]
fn same_seed_same_output_on_any_thread_count() {
    let m = Model::shipped().unwrap();
    let x = face(3);
    let op = build(Task::InpaintBox, &TaskParams::default(), x.shape(), 7, 0).unwrap();
    let y = measure(&op, &x, 0.05, 7, 0).unwrap();
    let run = |threads: usize| {
        let mut r = Restorer::new(&m).method(Method::Dps).steps(8).seed(7).threads(threads);
        r.run_with(&op, &y).unwrap().x
    };
    let a = run(1);
    assert_eq!(a.data(), run(2).data(), "1 vs 2 threads");
    assert_eq!(a.data(), run(3).data(), "1 vs 3 threads");
    let other = {
        let y2 = measure(&op, &x, 0.05, 8, 0).unwrap();
        restore(&m, Method::Dps, Task::InpaintBox, &steps(8), &op, &y2, 8, 0)
    };
    assert_ne!(a.data(), other.data(), "another seed gives another sample");
}

#[test]
fn a_batch_gives_the_images_of_single_runs() {
    let m = Model::shipped().unwrap();
    let faces: Vec<Tensor> = [4, 5].iter().map(|&i| face(i)).collect();
    let x = Tensor::stack(&faces.iter().collect::<Vec<_>>()).unwrap();
    // Per-image masks and noise: image k of the batch is image `k` of the run either way.
    let op = build(Task::InpaintBox, &TaskParams::default(), x.shape(), 3, 0).unwrap();
    let y = measure(&op, &x, 0.05, 3, 0).unwrap();
    let batch = restore(&m, Method::Dps, Task::InpaintBox, &steps(5), &op, &y, 3, 0);
    for (k, f) in faces.iter().enumerate() {
        let op1 = build(Task::InpaintBox, &TaskParams::default(), f.shape(), 3, k as u64).unwrap();
        let y1 = measure(&op1, f, 0.05, 3, k as u64).unwrap();
        assert_eq!(y1.data(), y.image(k), "measurement {k}");
        let one = restore(&m, Method::Dps, Task::InpaintBox, &steps(5), &op1, &y1, 3, k as u64);
        assert_eq!(one.data(), batch.image(k), "image {k}: batched DPS equals the single run");
    }
}
