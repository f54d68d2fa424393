//! The noise estimator (`--noise auto`) per task on a 64 px face and a 256 px photo, and the
//! tiling overhead (cutting a tile and blending it back) next to one network evaluation of the
//! 64 px model. Run: `RAYON_NUM_THREADS=2 cargo bench --bench noise`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use diffinv::cpu::noise_level::estimate;
use diffinv::cpu::tiles::TileLayout;
use diffinv::cpu::Tensor;
use diffinv::{Restorer, Task};

fn image(path: &str) -> Tensor {
    let x = diffinv::image::load(path).unwrap();
    diffinv::image::to_tensor(x.view()).unwrap()
}

fn estimator(c: &mut Criterion) {
    let mut g = c.benchmark_group("estimate_noise");
    g.sample_size(10);
    for (name, path) in [("64px", "tests/data/celeba64/009501.png"), ("256px", "tests/data/images/ffhq256/00000.png")] {
        let x = image(path);
        for task in Task::ALL {
            let r = Restorer::classical().task(task).noise(0.05);
            let (y, op) = r.measure_tensor(&x).unwrap();
            g.bench_with_input(BenchmarkId::new(name, task.name()), &(y, op), |b, (y, op)| {
                b.iter(|| estimate(y, op, 0).unwrap())
            });
        }
    }
    g.finish();
}

fn tiling(c: &mut Criterion) {
    let mut g = c.benchmark_group("tiles");
    let x = image("tests/data/images/ffhq256/00000.png");
    let layout = TileLayout::new(256, 256, 64, 16).unwrap();
    let mut tile = Tensor::zeros([1, 3, 64, 64]);
    let mut acc = Tensor::zeros([1, 3, 256, 256]);
    g.bench_function("crop_and_blend_25_tiles_256px", |b| {
        b.iter(|| {
            for k in 0..layout.len() {
                layout.crop(k, &x, &mut tile).unwrap();
                layout.paste_weighted(k, &tile, &mut acc).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, estimator, tiling);
criterion_main!(benches);
