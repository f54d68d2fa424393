//! Operators: adjoint identities over random sizes, direct vs FFT blur, and every solve against
//! its defining equations.

use diffinv_core::NoiseStream;
use diffinv_cpu::ops::blur::{circular_forward, Method};
use diffinv_cpu::ops::kernels::{gaussian, motion};
use diffinv_cpu::ops::linalg::{cg, sym_eigen};
use diffinv_cpu::ops::mask::{box_mask, random_mask, BoxSpec};
use diffinv_cpu::ops::{Blur, Kernel, Op, Resize};
use diffinv_cpu::Tensor;
use proptest::prelude::*;

fn randn(shape: [usize; 4], seed: u64) -> Tensor {
    let mut t = Tensor::zeros(shape);
    NoiseStream::new(seed, 0).fill_normal(t.data_mut());
    t
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.data().iter().zip(b.data()).map(|(x, y)| *x as f64 * *y as f64).sum()
}

fn random_kernel(size: usize, seed: u64) -> Kernel {
    let mut rng = NoiseStream::new(seed, 9);
    let mut d: Vec<f32> = (0..size * size).map(|_| rng.next_uniform() as f32).collect();
    let s: f32 = d.iter().sum();
    d.iter_mut().for_each(|v| *v /= s);
    Kernel { size, data: d }
}

/// `<A x, y> = <x, A^T y>` to 1e-5 relative.
fn check_adjoint(op: &Op, shape: [usize; 4], seed: u64) -> Result<(), TestCaseError> {
    let x = randn(shape, seed);
    let y = randn(op.measurement_shape(shape), seed + 1);
    let ax = op.forward(&x).unwrap();
    let aty = op.adjoint(&y).unwrap();
    let (l, r) = (dot(&ax, &y), dot(&x, &aty));
    let scale = (dot(&ax, &ax) * dot(&y, &y)).sqrt().max(1e-12);
    prop_assert!((l - r).abs() <= 1e-5 * scale, "{op:?}: <Ax,y> = {l}, <x,A^T y> = {r}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn mask_adjoint(h in 4usize..40, w in 4usize..40, seed in 0u64..1000) {
        let m = random_mask(3, h, w, 0.6, &mut NoiseStream::new(seed, 1)).unwrap();
        check_adjoint(&Op::Mask(m), [2, 3, h, w], seed)?;
    }

    #[test]
    fn blur_adjoint_direct_and_fft(h in 8usize..48, w in 8usize..48, k in 0usize..4, seed in 0u64..1000) {
        let ks = 2 * k + 3;
        let b = Blur::new(vec![random_kernel(ks, seed)]).unwrap();
        let x = randn([1, 3, h, w], seed);
        let y = randn([1, 3, h, w], seed + 1);
        for m in [Method::Direct, Method::Fft] {
            let (ax, aty) = (b.forward(&x, m).unwrap(), b.adjoint(&y, m).unwrap());
            let (l, r) = (dot(&ax, &y), dot(&x, &aty));
            prop_assert!((l - r).abs() <= 1e-5 * (dot(&ax, &ax) * dot(&y, &y)).sqrt(), "{m:?} {h}x{w} k{ks}: {l} vs {r}");
        }
        // Direct and FFT give the same numbers to rounding.
        let (d, f) = (b.forward(&x, Method::Direct).unwrap(), b.forward(&x, Method::Fft).unwrap());
        let e = d.data().iter().zip(f.data()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        prop_assert!(e < 1e-5, "direct vs fft forward: {e}");
        let (d, f) = (b.adjoint(&y, Method::Direct).unwrap(), b.adjoint(&y, Method::Fft).unwrap());
        let e = d.data().iter().zip(f.data()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        prop_assert!(e < 1e-5, "direct vs fft adjoint: {e}");
    }

    #[test]
    fn sr_adjoint(hq in 2usize..20, wq in 2usize..20, f in 2usize..5, seed in 0u64..1000) {
        let (h, w) = (hq * f, wq * f);
        check_adjoint(&Op::Resize(Resize::new(h, w, f).unwrap()), [2, 3, h, w], seed)?;
    }

    #[test]
    fn per_image_motion_blur_adjoint(h in 16usize..40, seed in 0u64..1000) {
        let ks: Vec<Kernel> = (0..2).map(|i| motion(7, 0.5, &mut NoiseStream::new(seed, i))).collect();
        check_adjoint(&Op::Blur(Blur::new(ks).unwrap()), [2, 3, h, h], seed)?;
    }
}

#[test]
fn identity_adjoint_and_solve() {
    let op = Op::Identity;
    let (y, z) = (randn([1, 3, 8, 8], 1), randn([1, 3, 8, 8], 2));
    let x = op.data_solve(&y, &z, 0.5).unwrap();
    for ((x, y), z) in x.data().iter().zip(y.data()).zip(z.data()) {
        assert!((x - (y + 0.5 * z) / 1.5).abs() < 1e-6);
    }
}

#[test]
fn sr_keeps_constants_and_averages() {
    for f in [2, 4] {
        let r = Resize::new(64, 64, f).unwrap();
        let y = r.forward(&Tensor::full([1, 3, 64, 64], 0.37)).unwrap();
        assert_eq!(y.shape(), [1, 3, 64 / f, 64 / f]);
        assert!(y.data().iter().all(|v| (v - 0.37).abs() < 1e-6), "x{f} downsampling keeps a constant");
        let u = r.upsample(&y).unwrap();
        assert!(u.data().iter().all(|v| (v - 0.37).abs() < 1e-6), "x{f} upsampling keeps a constant");
    }
    // MATLAB's antialiased x1/2 cubic weights away from the border: output pixel 5 (1-based)
    // sits at u = 9.5 and takes inputs 6..13 (1-based) with weights cubic(d/2)/2, d = u - i.
    let m = diffinv_cpu::ops::resize::resize_matrix(16, 8);
    let row = &m[4 * 16..5 * 16];
    let want = [-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875];
    for (j, w) in want.iter().enumerate() {
        assert!((row[5 + j] - w).abs() < 1e-12, "weight {j}: {} vs {w}", row[5 + j]);
    }
    assert!(row[..5].iter().chain(&row[13..]).all(|v| *v == 0.0));
}

/// Dense `A` of an operator on tiny images, column by column.
fn dense(op: &Op, shape: [usize; 4]) -> (Vec<f64>, usize, usize) {
    let n: usize = shape.iter().product();
    let m: usize = op.measurement_shape(shape).iter().product();
    let mut a = vec![0.0; m * n];
    for j in 0..n {
        let mut e = Tensor::zeros(shape);
        e.data_mut()[j] = 1.0;
        for (i, v) in op.forward(&e).unwrap().data().iter().enumerate() {
            a[i * n + j] = *v as f64;
        }
    }
    (a, m, n)
}

/// `(A^T A + rho I) x = A^T y + rho z`, checked with the dense matrix.
fn check_data_solve(op: &Op, shape: [usize; 4], rho: f64, tol: f64) {
    let (a, m, n) = dense(op, shape);
    let y = randn(op.measurement_shape(shape), 3);
    let z = randn(shape, 4);
    let x = op.data_solve(&y, &z, rho).unwrap();
    let xd: Vec<f64> = x.data().iter().map(|&v| v as f64).collect();
    let mut worst = 0.0f64;
    let mut scale = 0.0f64;
    for j in 0..n {
        let mut lhs = rho * xd[j];
        let mut rhs = rho * z.data()[j] as f64;
        for i in 0..m {
            let mut ax = 0.0;
            for k in 0..n {
                ax += a[i * n + k] * xd[k];
            }
            lhs += a[i * n + j] * ax;
            rhs += a[i * n + j] * y.data()[i] as f64;
        }
        worst = worst.max((lhs - rhs).abs());
        scale = scale.max(rhs.abs());
    }
    assert!(worst <= tol * scale, "{op:?}: normal-equation residual {worst} (scale {scale})");
}

#[test]
fn data_solves_satisfy_the_normal_equations() {
    let shape = [1, 1, 12, 12];
    let mask = box_mask(1, 12, 12, BoxSpec { x: 3, y: 4, size: 5 }).unwrap();
    for rho in [1e-3, 0.1, 10.0] {
        check_data_solve(&Op::Mask(mask.clone()), shape, rho, 1e-5);
        check_data_solve(&Op::Blur(Blur::new(vec![random_kernel(5, 7)]).unwrap()), shape, rho, 1e-4);
        check_data_solve(&Op::Resize(Resize::new(12, 12, 4).unwrap()), shape, rho, 1e-4);
        check_data_solve(&Op::Identity, shape, rho, 1e-6);
    }
}

#[test]
fn cg_matches_the_closed_form_solves() {
    // Mask: plain CG on (M + rho) x = b equals the elementwise closed form.
    let mask = random_mask(3, 16, 16, 0.7, &mut NoiseStream::new(5, 1)).unwrap();
    let op = Op::Mask(mask.clone());
    let b = randn([1, 3, 16, 16], 8);
    let rho = 0.05;
    let closed = op.normal_solve(&b, rho).unwrap();
    let mut x = vec![0.0f32; b.data().len()];
    let mut apply = |v: &[f32], out: &mut [f32]| {
        for ((o, v), m) in out.iter_mut().zip(v).zip(mask.data()) {
            *o = (m + rho as f32) * v;
        }
    };
    let (it, res) = cg(&mut apply, None, b.data(), &mut x, 1e-7, 200);
    assert!(res < 1e-6, "CG residual {res} after {it}");
    let e = x.iter().zip(closed.data()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(e < 1e-4, "CG vs closed form: {e}");
    // Blur: the FFT closed form is exact for the circular-boundary operator.
    let k = gaussian(7, 1.2);
    let blur = Blur::new(vec![k.clone()]).unwrap();
    let xs = randn([1, 1, 20, 20], 9);
    let ax = circular_forward(xs.data(), 20, 20, &k);
    let flipped = Kernel { size: 7, data: k.data.iter().rev().copied().collect() };
    let atax = circular_forward(&ax, 20, 20, &flipped);
    let rhs_data: Vec<f32> = atax.iter().zip(xs.data()).map(|(a, x)| a + 0.01 * x).collect();
    let rhs = Tensor::from_vec([1, 1, 20, 20], rhs_data).unwrap();
    let back = blur.circular_solve(&rhs, 0.01).unwrap();
    let e = back.data().iter().zip(xs.data()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(e < 1e-3, "circular FFT solve: {e}");
}

#[test]
fn jacobi_eigen_reconstructs() {
    let n = 9;
    let mut a = vec![0.0; n * n];
    let mut rng = NoiseStream::new(3, 3);
    for i in 0..n {
        for j in 0..=i {
            let v = rng.next_normal();
            a[i * n + j] = v;
            a[j * n + i] = v;
        }
    }
    let (l, q) = sym_eigen(&a, n);
    for i in 0..n {
        for j in 0..n {
            let r: f64 = (0..n).map(|k| q[i * n + k] * l[k] * q[j * n + k]).sum();
            assert!((r - a[i * n + j]).abs() < 1e-10);
        }
    }
}

#[test]
fn motion_kernels_are_normalised_and_seeded() {
    let a = motion(15, 0.5, &mut NoiseStream::new(1, 4));
    let b = motion(15, 0.5, &mut NoiseStream::new(1, 4));
    let c = motion(15, 0.5, &mut NoiseStream::new(2, 4));
    assert_eq!(a, b, "same seed, same kernel");
    assert_ne!(a, c);
    let s: f32 = a.data.iter().sum();
    assert!((s - 1.0).abs() < 1e-5 && a.data.iter().all(|v| *v >= 0.0));
    // A motion trajectory spreads over more than a couple of pixels.
    assert!(a.data.iter().filter(|v| **v > 1e-3).count() > 4);
}
