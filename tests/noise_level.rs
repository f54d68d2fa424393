//! The noise level estimated from the measurement alone (`--noise auto`,
//! `diffinv::estimate_noise`): on held-out CelebA faces, every task, the true sigma_y in
//! {0, 0.01, 0.025, 0.05, 0.1, 0.2}, measurements saved as 8-bit files (as `degrade` writes
//! them): the mean relative error is at most 15 % from 0.025 up and the mean absolute error at
//! most 0.01 below. Prints the table the README shows.

mod common;
use diffinv::{Restorer, Task, Tensor};

const LEVELS: [f64; 6] = [0.0, 0.01, 0.025, 0.05, 0.1, 0.2];
const FACES: usize = 10;

/// `y` as a PNG file holds it: clipped to [-1, 1] and quantised to 8 bits (holes stay 0).
fn as_saved(y: &Tensor) -> Tensor {
    let mut q = y.clone();
    q.data_mut().iter_mut().for_each(|v| *v = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() / 127.5 - 1.0);
    q
}

fn face(i: usize) -> Tensor {
    let x = diffinv::image::load(common::data(&format!("celeba64/0095{:02}.png", i + 1))).unwrap();
    diffinv::image::to_tensor(x.view()).unwrap()
}

#[test]
fn the_estimate_is_within_15_percent_on_every_task_and_level() {
    let faces: Vec<Tensor> = (0..FACES).map(face).collect();
    let mut failures = Vec::new();
    println!("| task | {} |", LEVELS.map(|s| format!("{s}")).join(" | "));
    for task in Task::ALL {
        let mut row = format!("| {} |", task.name());
        for (l, &sigma) in LEVELS.iter().enumerate() {
            let mut errs = Vec::new();
            for (i, x) in faces.iter().enumerate() {
                let r = Restorer::classical().task(task).noise(sigma).seed(7 + l as u64).index(i as u64);
                let (y, op) = r.measure_tensor(x).unwrap();
                let est = r.estimate_noise(&op, &as_saved(&y)).unwrap();
                errs.push(if sigma >= 0.025 { (est - sigma).abs() / sigma } else { (est - sigma).abs() });
            }
            let mean = errs.iter().sum::<f64>() / errs.len() as f64;
            let worst = errs.iter().cloned().fold(0.0, f64::max);
            let limit = if sigma >= 0.025 { 0.15 } else { 0.01 };
            row += &if sigma >= 0.025 {
                format!(" {:.1} % ({:.0} %) |", 100.0 * mean, 100.0 * worst)
            } else {
                format!(" {mean:.4} ({worst:.4}) |")
            };
            if mean > limit {
                failures.push(format!("{} at {sigma}: mean error {mean:.4} > {limit}", task.name()));
            }
        }
        println!("{row}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The free function finds inpainting holes by value (0, i.e. 0.5 in image units) and gives the
/// operator-mask estimate's answer on a box-inpainted face.
#[test]
fn the_library_function_finds_holes_by_value() {
    let x = diffinv::image::load(common::data("celeba64/009507.png")).unwrap();
    let r = Restorer::classical().task(Task::InpaintBox).noise(0.05).seed(2);
    let y = r.measure(x.view()).unwrap();
    let est = diffinv::estimate_noise(y.view(), Task::InpaintBox).unwrap();
    assert!((est - 0.05).abs() < 0.0075, "{est}");
    // Too little to estimate from is an error, not a guess.
    let tiny = ndarray::Array3::<f32>::from_elem((4, 4, 3), 0.3);
    assert!(diffinv::estimate_noise(tiny.view(), Task::Denoise).is_err());
}

/// Restoring with the estimated level (`noise_auto`, settings following it) loses at most 0.3 dB
/// against restoring with the true one, mean over faces, on every task (HQS-TV) and on three
/// tasks with DiffPIR (a short chain).
#[test]
fn restoring_with_the_estimate_is_within_0_3_db_of_the_true_level() {
    use diffinv::{Method, Model};
    let m = Model::shipped().unwrap();
    let faces: Vec<Tensor> = (10..14).map(face).collect();
    let psnr = |a: &Tensor, b: &Tensor| diffinv::cpu::metrics::psnr(a, b, 0).unwrap();
    let mut cases: Vec<(Method, Task)> = Task::ALL.iter().map(|&t| (Method::HqsTv, t)).collect();
    cases.extend([Task::InpaintBox, Task::DeblurGauss, Task::Sr4].map(|t| (Method::DiffPir, t)));
    for (method, task) in cases {
        for sigma in [0.025, 0.1] {
            let (mut known, mut auto) = (0.0, 0.0);
            for (i, x) in faces.iter().enumerate() {
                let r = || Restorer::new(&m).task(task).method(method).steps(10).seed(i as u64);
                let (y, op) = r().noise(sigma).measure_tensor(x).unwrap();
                let y = as_saved(&y);
                known += psnr(x, &r().noise(sigma).run_with(&op, &y).unwrap().x);
                auto += psnr(x, &r().noise_auto().run_with(&op, &y).unwrap().x);
            }
            let (known, auto) = (known / faces.len() as f64, auto / faces.len() as f64);
            assert!(
                auto > known - 0.3,
                "{} {} at {sigma}: {auto:.2} dB estimated vs {known:.2} dB known",
                method.name(),
                task.name()
            );
        }
    }
}
