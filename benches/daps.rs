//! What a DAPS Langevin step costs beside a network evaluation: every operator's forward map
//! plus its vector-Jacobian product (one Langevin step's data gradient) on a 64 px face and a
//! 256 px photo, and one forward of the shipped 64 px model for scale (DAPS-1K runs 200 x 100
//! such operator pairs and 1000 network evaluations). Run:
//! `RAYON_NUM_THREADS=2 cargo bench --bench daps`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use diffinv::cpu::Tensor;
use diffinv::{Restorer, Task};

fn image(path: &str) -> Tensor {
    let x = diffinv::image::load(path).unwrap();
    diffinv::image::to_tensor(x.view()).unwrap()
}

fn operator_pairs(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward_and_vjp");
    g.sample_size(20);
    for (name, path) in [("64px", "tests/data/celeba64/009501.png"), ("256px", "tests/data/images/ffhq256/00000.png")] {
        let mut x = image(path);
        for task in Task::EVERY {
            let (y, op) = Restorer::classical().task(task).noise(0.05).measure_tensor(&x).unwrap();
            g.bench_with_input(BenchmarkId::new(name, task.name()), &(y, op), |b, (y, op)| {
                b.iter(|| {
                    // A new point every step, as in a Langevin chain (no operator cache hits
                    // across iterations).
                    x.data_mut()[0] += 1e-6;
                    let mut r = op.forward(&x).unwrap();
                    r.data_mut().iter_mut().zip(y.data()).for_each(|(r, y)| *r -= y);
                    op.vjp(&x, &r).unwrap()
                })
            });
        }
    }
    g.finish();
}

fn network(c: &mut Criterion) {
    let m = diffinv::Model::shipped().unwrap();
    let x = image("tests/data/celeba64/009501.png");
    let (ctx, mut ws) = (diffinv::CpuContext::default(), diffinv::cpu::unet::Workspace::new());
    let mut g = c.benchmark_group("forward_and_vjp");
    g.sample_size(10);
    g.bench_function("64px/unet_forward_for_scale", |b| {
        b.iter(|| m.cpu().forward(&ctx, &x, &[500.0], &mut ws).unwrap())
    });
    g.finish();
}

criterion_group!(benches, operator_pairs, network);
criterion_main!(benches);
