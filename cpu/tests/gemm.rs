//! Every GEMM kernel against a naive f64 reference with fixed seeds (odd sizes, strides,
//! epilogues), and kernels against each other.

use diffinv_core::NoiseStream;
use diffinv_cpu::gemm::{gemm_with, DenseB, Epilogue, Isa, PackedA};

fn randn(n: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0.0f32; n];
    NoiseStream::new(seed, 0).fill_normal(&mut v);
    v
}

fn naive(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    rsa: usize,
    csa: usize,
    b: &[f32],
    rsb: usize,
    csb: usize,
) -> Vec<f64> {
    let mut c = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += a[i * rsa + p * csa] as f64 * b[p * rsb + j * csb] as f64;
            }
            c[i * n + j] = s;
        }
    }
    c
}

fn check(isa: Isa, m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool, seed: u64) {
    let a = randn(m * k, seed);
    let b = randn(k * n, seed + 1);
    let (rsa, csa) = if trans_a { (1, m) } else { (k, 1) };
    let (rsb, csb) = if trans_b { (1, k) } else { (n, 1) };
    let bias = randn(m, seed + 2);
    let res = randn(m * n, seed + 3);
    let prev = randn(m * n, seed + 4);
    let want = naive(m, n, k, &a, rsa, csa, &b, rsb, csb);
    let pa = PackedA::pack(m, k, &a, rsa, csa);
    let pb = DenseB { data: &b, k, n, rs: rsb, cs: csb };
    // plain, then with bias + residual + accumulate
    let mut c = vec![f32::NAN; m * n];
    gemm_with(isa, &pa, &pb, &mut c, n, Epilogue::default());
    let mut c2 = prev.clone();
    gemm_with(isa, &pa, &pb, &mut c2, n, Epilogue { bias: Some(&bias), residual: Some(&res), accumulate: true });
    let tol = 1e-5 * (k as f64).sqrt().max(1.0) * 4.0;
    for i in 0..m {
        for j in 0..n {
            let w = want[i * n + j];
            let e = (c[i * n + j] as f64 - w).abs();
            assert!(
                e <= tol * (1.0 + w.abs()),
                "{} {m}x{n}x{k} ta={trans_a} tb={trans_b}: C[{i},{j}] = {} want {w}",
                isa.name(),
                c[i * n + j]
            );
            let w2 = w + bias[i] as f64 + res[i * n + j] as f64 + prev[i * n + j] as f64;
            let e2 = (c2[i * n + j] as f64 - w2).abs();
            assert!(e2 <= tol * (1.0 + w2.abs()), "{} epilogue {m}x{n}x{k}: C[{i},{j}]", isa.name());
        }
    }
}

#[test]
fn kernels_match_naive_reference() {
    let shapes = [
        (1, 1, 1),
        (6, 64, 256),
        (7, 65, 257),
        (13, 130, 600),
        (64, 33, 9),
        (3, 1000, 27),
        (100, 5, 1),
        (12, 1100, 40),
        (5, 17, 0),
    ];
    for isa in Isa::all_available() {
        for (i, &(m, n, k)) in shapes.iter().enumerate() {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                check(isa, m, n, k, ta, tb, 100 + i as u64);
            }
        }
    }
}

#[test]
fn kernels_agree_with_each_other() {
    let (m, n, k) = (37, 300, 777);
    let a = randn(m * k, 9);
    let b = randn(k * n, 10);
    let pa = PackedA::pack(m, k, &a, k, 1);
    let pb = DenseB { data: &b, k, n, rs: n, cs: 1 };
    let mut outs = Vec::new();
    for isa in Isa::all_available() {
        let mut c = vec![0.0; m * n];
        gemm_with(isa, &pa, &pb, &mut c, n, Epilogue::default());
        outs.push((isa, c));
    }
    for (isa, c) in &outs[1..] {
        let max = c.iter().zip(&outs[0].1).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(max < 1e-3, "{} vs scalar: {max}", isa.name());
    }
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let (m, n, k) = (70, 2500, 600);
    let a = randn(m * k, 11);
    let b = randn(k * n, 12);
    let pa = PackedA::pack(m, k, &a, k, 1);
    let pb = DenseB { data: &b, k, n, rs: n, cs: 1 };
    // Every kernel, the portable one included.
    for isa in Isa::all_available() {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut c = vec![0.0; m * n];
            pool.install(|| diffinv_cpu::gemm::gemm_with(isa, &pa, &pb, &mut c, n, Epilogue::default()));
            c
        };
        let one = run(1);
        assert_eq!(one, run(2), "{}", isa.name());
        assert_eq!(one, run(5), "{}", isa.name());
    }
}

/// bf16 rounding (nearest even), as the packing does it.
fn bf16(v: f32) -> f32 {
    half::bf16::from_f32(v).to_f32()
}

#[test]
fn bf16_kernel_matches_reference_of_rounded_inputs() {
    if !Isa::Avx512Bf16.available() {
        eprintln!("skipped: this CPU has no AVX512-BF16");
        return;
    }
    for (i, &(m, n, k)) in
        [(6, 64, 256), (7, 65, 257), (13, 130, 601), (64, 33, 9), (3, 1000, 27), (5, 17, 1)].iter().enumerate()
    {
        for (ta, tb) in [(false, false), (true, true)] {
            let a = randn(m * k, 300 + i as u64);
            let b = randn(k * n, 400 + i as u64);
            let (rsa, csa) = if ta { (1, m) } else { (k, 1) };
            let (rsb, csb) = if tb { (1, k) } else { (n, 1) };
            let ar: Vec<f32> = a.iter().map(|&v| bf16(v)).collect();
            let br: Vec<f32> = b.iter().map(|&v| bf16(v)).collect();
            let want = naive(m, n, k, &ar, rsa, csa, &br, rsb, csb);
            let pa = PackedA::pack_bf16(m, k, &a, rsa, csa);
            let pb = DenseB { data: &b, k, n, rs: rsb, cs: csb };
            let mut c = vec![f32::NAN; m * n];
            gemm_with(Isa::Avx512Bf16, &pa, &pb, &mut c, n, Epilogue::default());
            for (j, (got, w)) in c.iter().zip(&want).enumerate() {
                let tol = 1e-5 * (k as f64).sqrt() * 4.0 * (1.0 + w.abs());
                assert!((*got as f64 - w).abs() <= tol, "{m}x{n}x{k}: C[{j}] = {got} want {w}");
            }
            // And against the f32 product, bf16 stays within its precision.
            let full = naive(m, n, k, &a, rsa, csa, &b, rsb, csb);
            let scale = full.iter().fold(0.0f64, |s, v| s.max(v.abs())).max(1.0);
            let e = c.iter().zip(&full).fold(0.0f64, |e, (x, y)| e.max((*x as f64 - y).abs())) / scale;
            assert!(e < 3e-2, "bf16 vs f32: {e}");
        }
    }
}

#[test]
fn calibration_measures_both_kernels_and_follows_its_rule() {
    use diffinv_cpu::context::{Calibration, CpuContext, Precision};
    let c = Calibration::get();
    assert!(c.f32_gflops.is_finite() && c.f32_gflops > 0.0, "{c:?}");
    assert_eq!(c.bf16_gflops.is_some(), Isa::Avx512Bf16.available(), "{c:?}");
    let faster = c.bf16_gflops.is_some_and(|b| b.is_finite() && b >= Calibration::BF16_MARGIN * c.f32_gflops);
    assert_eq!(c.choice, if faster { Precision::Bf16 } else { Precision::F32 }, "{c:?}");
    // Measured once per process: the context it gives is the same on every call.
    assert_eq!(Calibration::get(), c);
    assert_eq!(CpuContext::fastest().precision, c.choice);
}
