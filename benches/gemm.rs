//! GEMM on the FFHQ-256 convolution shapes (M = Cout, K = Cin*9, N = pixels): our kernels
//! (every ISA this CPU has, and bf16) against matrixmultiply and the `gemm` crate.
//! Throughput is FLOP/s (criterion's "elements"). Run: `RAYON_NUM_THREADS=2 cargo bench --bench gemm`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use diffinv::cpu::gemm::{gemm_with, DenseB, Epilogue, Isa, PackedA};

const SHAPES: [(usize, usize, usize); 4] = [(128, 1152, 16384), (256, 2304, 1024), (512, 4608, 256), (64, 576, 4096)];

fn data(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i * 7919 + seed) % 1000) as f32 - 500.0) * 1e-3).collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm");
    g.sample_size(10);
    for &(m, k, n) in &SHAPES {
        let (a, b) = (data(m * k, 1), data(k * n, 2));
        let mut out = vec![0.0f32; m * n];
        let id = format!("{m}x{k}x{n}");
        g.throughput(Throughput::Elements((2 * m * n * k) as u64));
        let pb = DenseB { data: &b, k, n, rs: n, cs: 1 };
        for isa in Isa::all_available().into_iter().chain(Isa::Avx512Bf16.available().then_some(Isa::Avx512Bf16)) {
            let pa = if isa.is_bf16() { PackedA::pack_bf16(m, k, &a, k, 1) } else { PackedA::pack(m, k, &a, k, 1) };
            g.bench_function(BenchmarkId::new(format!("diffinv-{}", isa.name()), &id), |bch| {
                bch.iter(|| gemm_with(isa, &pa, &pb, &mut out, n, Epilogue::default()))
            });
        }
        g.bench_function(BenchmarkId::new("matrixmultiply", &id), |bch| {
            bch.iter(|| unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    k as isize,
                    1,
                    b.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    out.as_mut_ptr(),
                    n as isize,
                    1,
                )
            })
        });
        g.bench_function(BenchmarkId::new("gemm-crate", &id), |bch| {
            bch.iter(|| unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    out.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(0),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
