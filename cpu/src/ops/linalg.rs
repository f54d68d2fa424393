//! Small dense linear algebra for the operators' solves: conjugate gradient and the symmetric
//! eigendecomposition (cyclic Jacobi) behind the closed-form super-resolution solve.

/// A linear map applied in place of a matrix: `out = M v`.
pub type LinMap<'a> = &'a mut dyn FnMut(&[f32], &mut [f32]);

/// Solves `A x = b` for symmetric positive definite `A` by (preconditioned) conjugate gradient,
/// starting from `x`. Returns the iterations used and the final relative residual.
pub fn cg(
    apply: &mut dyn FnMut(&[f32], &mut [f32]),
    precond: Option<LinMap<'_>>,
    b: &[f32],
    x: &mut [f32],
    tol: f64,
    max_iter: usize,
) -> (usize, f64) {
    let n = b.len();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum::<f64>();
    let bn = dot(b, b).sqrt().max(1e-30);
    let mut ax = vec![0.0f32; n];
    apply(x, &mut ax);
    let mut r: Vec<f32> = b.iter().zip(&ax).map(|(b, a)| b - a).collect();
    let mut pc = precond;
    let mut z = vec![0.0f32; n];
    let mut precondition = |r: &[f32], z: &mut [f32]| match pc.as_mut() {
        Some(p) => p(r, z),
        None => z.copy_from_slice(r),
    };
    precondition(&r, &mut z);
    let mut p = z.clone();
    let mut rz = dot(&r, &z);
    let mut ap = vec![0.0f32; n];
    for it in 0..max_iter {
        let res = dot(&r, &r).sqrt() / bn;
        if res <= tol {
            return (it, res);
        }
        apply(&p, &mut ap);
        let pap = dot(&p, &ap);
        if pap.is_nan() || pap <= 0.0 {
            return (it, res);
        }
        let alpha = rz / pap;
        for i in 0..n {
            x[i] += (alpha * p[i] as f64) as f32;
            r[i] -= (alpha * ap[i] as f64) as f32;
        }
        precondition(&r, &mut z);
        let rz_new = dot(&r, &z);
        let beta = rz_new / rz;
        rz = rz_new;
        for i in 0..n {
            p[i] = z[i] + (beta * p[i] as f64) as f32;
        }
    }
    (max_iter, dot(&r, &r).sqrt() / bn)
}

/// Eigenvalues and eigenvectors (columns of the returned `n x n` row-major matrix) of the
/// symmetric matrix `a` (row-major), by cyclic Jacobi rotations in f64.
pub fn sym_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        let total: f64 = a.iter().map(|x| x * x).sum();
        if off <= 1e-30 * total.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}
