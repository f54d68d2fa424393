//! The nonlinear operators (phase retrieval, HDR) and the Poisson likelihood's weighted
//! operator: forward maps against NumPy (scripts/nonlinear_fixture.py), vector-Jacobian
//! products against central finite differences, and their proximal solves.

use diffinv_core::NoiseStream;
use diffinv_cpu::ops::phase::image_side;
use diffinv_cpu::ops::{poisson, Hdr, Op, PhaseRetrieval, Resize};
use diffinv_cpu::Tensor;
use proptest::prelude::*;

fn uniform(shape: [usize; 4], lo: f32, hi: f32, seed: u64) -> Tensor {
    let mut rng = NoiseStream::new(seed, 3);
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| lo + (hi - lo) * rng.next_uniform() as f32).collect()).unwrap()
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.data().iter().zip(b.data()).map(|(x, y)| *x as f64 * *y as f64).sum()
}

fn axpy(a: f32, d: &Tensor, x: &Tensor) -> Tensor {
    let mut y = x.clone();
    y.data_mut().iter_mut().zip(d.data()).for_each(|(y, d)| *y += a * d);
    y
}

/// `<v, (A(x + e d) - A(x - e d))/2e>` against `<J^T v, d>`, to `tol ||v|| ||d||` (f32
/// outputs: the difference quotient carries their rounding).
fn check_vjp(op: &Op, x: &Tensor, d: &Tensor, v: &Tensor, eps: f32, tol: f64) -> Result<(), TestCaseError> {
    let (p, m) = (op.forward(&axpy(eps, d, x)).unwrap(), op.forward(&axpy(-eps, d, x)).unwrap());
    let fd = (dot(v, &p) - dot(v, &m)) / (2.0 * eps as f64);
    let an = dot(&op.vjp(x, v).unwrap(), d);
    let scale = (dot(v, v) * dot(d, d)).sqrt();
    prop_assert!((fd - an).abs() <= tol * scale, "{}: finite difference {fd}, vjp {an}", op.name());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn phase_retrieval_vjp_matches_finite_differences(h in 3usize..20, w in 3usize..20, os in 0.5f64..4.0,
                                                      seed in 0u64..1000) {
        let op = Op::PhaseRetrieval(PhaseRetrieval::new(h, w, os).unwrap());
        let x = uniform([2, 3, h, w], -0.9, 0.9, seed);
        let d = uniform([2, 3, h, w], -1.0, 1.0, seed + 1);
        let v = uniform(op.measurement_shape([2, 3, h, w]), -1.0, 1.0, seed + 2);
        // A magnitude |z| has a kink where z = 0: a coefficient within the step's reach of zero
        // shows as a large second difference (smooth points: about eps^2 |F d|^2/|z|, 1e-6 here;
        // at a kink about eps |F d|, 1e-3), and no difference quotient is meant to match there.
        let eps = 2e-3;
        let (p, m, c) = (op.forward(&axpy(eps, &d, &x)).unwrap(), op.forward(&axpy(-eps, &d, &x)).unwrap(), op.forward(&x).unwrap());
        let curve = p.data().iter().zip(m.data()).zip(c.data()).map(|((p, m), c)| (p + m - 2.0 * c).abs()).fold(0.0f32, f32::max);
        prop_assume!(curve < 1e-4, "a coefficient passes near zero");
        check_vjp(&op, &x, &d, &v, eps, 1e-4)?;
    }

    #[test]
    fn hdr_vjp_matches_finite_differences(h in 2usize..24, alpha in 1.0f64..4.0, seed in 0u64..1000) {
        let op = Op::Hdr(Hdr::new(alpha).unwrap());
        // Keep pixels away from the clip's kinks, where the derivative jumps.
        let mut x = uniform([1, 3, h, h], -0.95, 0.95, seed);
        let k = (1.0 / alpha) as f32;
        x.data_mut().iter_mut().for_each(|v| if (v.abs() - k).abs() < 0.05 { *v = 0.5 * k * v.signum() });
        let d = uniform([1, 3, h, h], -1.0, 1.0, seed + 1);
        let v = uniform([1, 3, h, h], -1.0, 1.0, seed + 2);
        check_vjp(&op, &x, &d, &v, 1e-2, 1e-4)?;
    }

    #[test]
    fn weighted_operator_vjp_is_its_adjoint_and_matches_differences(h in 4usize..24, seed in 0u64..1000) {
        let x = uniform([1, 3, 4 * h, 4 * h], -1.0, 1.0, seed);
        let inner = Op::Resize(Resize::new(4 * h, 4 * h, 4).unwrap());
        let y = uniform(inner.measurement_shape(x.shape()), -1.0, 1.0, seed + 3);
        let (op, _) = poisson::weighted(&inner, &y).unwrap();
        let d = uniform(x.shape(), -1.0, 1.0, seed + 1);
        let v = uniform(y.shape(), -1.0, 1.0, seed + 2);
        check_vjp(&op, &x, &d, &v, 1e-2, 1e-4)?;
        let (l, r) = (dot(&op.forward(&d).unwrap(), &v), dot(&d, &op.adjoint(&v).unwrap()));
        prop_assert!((l - r).abs() <= 1e-5 * l.abs().max(r.abs()).max(1.0));
    }
}

fn fixture() -> serde_json::Value {
    let s = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/nonlinear_ops.json")).unwrap();
    serde_json::from_str(&s).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

fn pattern(shape: [usize; 4], f: impl Fn(f64, f64, f64) -> f64) -> Tensor {
    let [_, c, h, w] = shape;
    let mut d = Vec::with_capacity(c * h * w);
    for k in 0..c {
        for i in 0..h {
            for j in 0..w {
                d.push(f(i as f64, j as f64, k as f64) as f32);
            }
        }
    }
    Tensor::from_vec(shape, d).unwrap()
}

fn assert_close(got: &Tensor, want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.data().len(), want.len(), "{what}");
    let max = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (k, (g, w)) in got.data().iter().zip(want).enumerate() {
        assert!((*g as f64 - w).abs() <= tol * max, "{what}[{k}]: {g} vs NumPy {w}");
    }
}

#[test]
fn forward_maps_and_vjp_match_numpy() {
    let f = fixture();
    let shape = [1, 3, 8, 12];
    let x = pattern(shape, |i, j, k| 0.9 * (0.7 * i + 1.3 * j + 2.0 * k).sin());
    let pr = PhaseRetrieval::new(8, 12, f["oversample"].as_f64().unwrap()).unwrap();
    assert_eq!(pr.padded(), (12, 18));
    assert_close(&pr.forward(&x).unwrap(), &floats(&f["pr"]), 1e-6, "phase retrieval");
    let v = pattern([1, 3, 12, 18], |i, j, k| (0.3 * i - 0.5 * j + k).cos());
    assert_close(&pr.vjp(&x, &v).unwrap(), &floats(&f["pr_vjp"]), 1e-5, "phase retrieval vjp");
    let hdr = Hdr::new(f["alpha"].as_f64().unwrap()).unwrap();
    assert_close(&hdr.forward(&x), &floats(&f["hdr"]), 1e-7, "hdr");
}

#[test]
fn phase_retrieval_keeps_energy_and_inverts_its_padding() {
    // The centred FFT is unitary: sum |Z|^2 = sum u^2 with u = x/2 + 1/2.
    let x = uniform([1, 3, 16, 10], -1.0, 1.0, 5);
    let pr = PhaseRetrieval::new(16, 10, 2.0).unwrap();
    let y = pr.forward(&x).unwrap();
    let e_y: f64 = y.data().iter().map(|v| (*v as f64).powi(2)).sum();
    let e_u: f64 = x.data().iter().map(|v| (0.5 * *v as f64 + 0.5).powi(2)).sum();
    assert!((e_y / e_u - 1.0).abs() < 1e-5, "{e_y} vs {e_u}");
    for s in [1usize, 7, 64, 256] {
        let p = PhaseRetrieval::new(s, s, 2.0).unwrap().padded().0;
        assert_eq!(image_side(p, 2.0), Some(s));
    }
    // Linear operators refuse nothing; phase retrieval refuses an adjoint.
    assert!(Op::PhaseRetrieval(pr).adjoint(&y).is_err());
}

#[test]
fn hdr_data_solve_is_the_exact_minimiser() {
    let hdr = Hdr::new(2.0).unwrap();
    let y = uniform([1, 3, 6, 6], -1.3, 1.3, 1);
    let z = uniform([1, 3, 6, 6], -1.0, 1.0, 2);
    for rho in [0.01, 0.3, 4.0] {
        let x = hdr.data_solve(&y, &z, rho).unwrap();
        for ((x, y), z) in x.data().iter().zip(y.data()).zip(z.data()) {
            let cost = |v: f64| ((2.0 * v).clamp(-1.0, 1.0) - *y as f64).powi(2) + rho * (v - *z as f64).powi(2);
            let brute = (-3000..=3000).map(|k| k as f64 / 1000.0).fold(f64::INFINITY, |m, v| m.min(cost(v)));
            assert!(cost(*x as f64) <= brute + 1e-6, "rho {rho}: x {x} cost {} > grid {brute}", cost(*x as f64));
        }
    }
}

#[test]
fn phase_retrieval_data_solve_lowers_the_objective() {
    let pr = PhaseRetrieval::new(12, 12, 2.0).unwrap();
    let truth = uniform([1, 3, 12, 12], -0.8, 0.8, 7);
    let y = pr.forward(&truth).unwrap();
    let z = uniform([1, 3, 12, 12], -0.8, 0.8, 8);
    let obj = |x: &Tensor, rho: f64| {
        let ax = pr.forward(x).unwrap();
        let d: f64 = ax.data().iter().zip(y.data()).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
        d + rho * x.data().iter().zip(z.data()).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>()
    };
    for rho in [0.05, 1.0, 20.0] {
        let x = pr.data_solve(&y, &z, rho).unwrap();
        // A large rho keeps x near z: a smaller drop.
        let want = if rho > 1.0 { 0.995 } else { 0.9 };
        assert!(obj(&x, rho) < want * obj(&z, rho), "rho {rho}: {} vs {}", obj(&x, rho), obj(&z, rho));
    }
}

#[test]
fn poisson_measurements_have_shot_noise_and_weights_of_mean_one() {
    let x = uniform([1, 3, 32, 32], -0.9, 0.9, 1);
    let rate = 400.0;
    let y = poisson::measure(&Op::Identity, &x, rate, 3, 0).unwrap();
    // Counts: 2 k/R - 1 on a lattice, variance x01/R per pixel (in [0, 1] units).
    let mut z2 = 0.0;
    for (a, b) in x.data().iter().zip(y.data()) {
        let (x01, y01) = ((*a as f64 + 1.0) / 2.0, (*b as f64 + 1.0) / 2.0);
        let k = y01 * rate;
        assert!((k - k.round()).abs() < 1e-3, "{k} is not a count");
        z2 += (y01 - x01).powi(2) / (x01 / rate);
    }
    let mean_z2 = z2 / x.data().len() as f64;
    assert!((mean_z2 - 1.0).abs() < 0.1, "standardised variance {mean_z2}");
    let w = poisson::sqrt_weights(&y);
    let mean_w: f64 = w.data().iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.data().len() as f64;
    assert!((mean_w - 1.0).abs() < 1e-4);
    // Same seed, same counts.
    assert_eq!(y.data(), poisson::measure(&Op::Identity, &x, rate, 3, 0).unwrap().data());
}
