//! The linear algebra of the patch estimator: the eigenvalues of a small symmetric matrix
//! (sorted, from the operators' Jacobi solver), the noise level they imply (Chen, Zhu and Heng 2015), and the covariance of
//! patches with missing entries (Gaussian EM).

use rayon::prelude::*;

/// Rows per parallel EM task.
const CHUNK: usize = 128;

/// The eigenvalues of the symmetric `n x n` matrix `a` (row-major), ascending: the operators'
/// Jacobi solver ([`crate::ops::linalg::sym_eigen`]), sorted.
pub fn sym_eigenvalues(a: &[f64], n: usize) -> Vec<f64> {
    assert_eq!(a.len(), n * n, "an n x n matrix");
    let (mut ev, _) = crate::ops::linalg::sym_eigen(a, n);
    ev.sort_by(f64::total_cmp);
    ev
}

/// The noise standard deviation implied by a patch covariance's eigenvalues (ascending): the
/// largest set of smallest eigenvalues whose mean is also their median is taken to be noise
/// (Chen, Zhu and Heng, "An efficient statistical method for image noise level estimation",
/// ICCV 2015). Signal lives in a few large eigenvalues; white noise spreads evenly over all.
pub fn chen_sigma(ev: &[f64]) -> f64 {
    for m in (1..=ev.len()).rev() {
        let part = &ev[..m];
        let tau = part.iter().sum::<f64>() / m as f64;
        let above = part.iter().filter(|&&v| v > tau).count();
        let below = part.iter().filter(|&&v| v < tau).count();
        if above == below {
            return tau.max(0.0).sqrt();
        }
    }
    ev.first().map_or(0.0, |v| v.max(0.0).sqrt())
}

/// The sample covariance (`d x d`, row-major) of `rows` (each `d` long).
pub fn covariance<'a>(rows: impl Iterator<Item = &'a [f64]>, d: usize) -> Vec<f64> {
    let mut n = 0usize;
    let mut sum = vec![0.0; d];
    let mut sq = vec![0.0; d * d];
    for r in rows {
        n += 1;
        for i in 0..d {
            sum[i] += r[i];
            let ri = r[i];
            for j in 0..=i {
                sq[i * d + j] += ri * r[j];
            }
        }
    }
    finish(n, &sum, &mut sq, d);
    sq
}

/// Turns sums and lower-triangle cross sums of `n` rows into the symmetric covariance.
fn finish(n: usize, sum: &[f64], sq: &mut [f64], d: usize) {
    let nf = n.max(1) as f64;
    for i in 0..d {
        for j in 0..=i {
            let v = sq[i * d + j] / nf - sum[i] * sum[j] / (nf * nf);
            sq[i * d + j] = v;
            sq[j * d + i] = v;
        }
    }
}

/// In-place Cholesky factor (lower) of the `k x k` SPD matrix `a`; false if not positive.
fn cholesky(a: &mut [f64], k: usize) -> bool {
    for j in 0..k {
        let mut s = a[j * k + j];
        for l in 0..j {
            s -= a[j * k + l] * a[j * k + l];
        }
        if s <= 0.0 {
            return false;
        }
        let d = s.sqrt();
        a[j * k + j] = d;
        for i in j + 1..k {
            let mut s = a[i * k + j];
            for l in 0..j {
                s -= a[i * k + l] * a[j * k + l];
            }
            a[i * k + j] = s / d;
        }
    }
    true
}

/// Solves `L L^T x = b` in place with the factor from [`cholesky`].
fn cholesky_solve(l: &[f64], k: usize, b: &mut [f64]) {
    for i in 0..k {
        let mut s = b[i];
        for j in 0..i {
            s -= l[i * k + j] * b[j];
        }
        b[i] = s / l[i * k + i];
    }
    for i in (0..k).rev() {
        let mut s = b[i];
        for j in i + 1..k {
            s -= l[j * k + i] * b[j];
        }
        b[i] = s / l[i * k + i];
    }
}

/// The maximum-likelihood covariance of Gaussian rows with missing entries (`observed[r][i]`),
/// by EM from the diagonal of the observed variances: each E-step fills a row's missing entries
/// with their conditional mean given its observed ones and adds their conditional covariance.
pub fn em_covariance(rows: &[Vec<f64>], observed: &[Vec<bool>], d: usize, iterations: usize) -> Vec<f64> {
    let n = rows.len();
    let mut mu = vec![0.0; d];
    let mut var = vec![0.0; d];
    for i in 0..d {
        let vals: Vec<f64> = rows.iter().zip(observed).filter(|(_, o)| o[i]).map(|(r, _)| r[i]).collect();
        let m = vals.iter().sum::<f64>() / vals.len().max(1) as f64;
        mu[i] = m;
        var[i] = vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / vals.len().max(1) as f64;
    }
    let jitter = 1e-9 * var.iter().fold(0.0f64, |a, &v| a.max(v)).max(1e-12);
    let mut s = vec![0.0; d * d];
    (0..d).for_each(|i| s[i * d + i] = var[i] + jitter);
    for _ in 0..iterations {
        // Fixed chunks summed in order: the same result on any number of threads.
        let parts: Vec<(Vec<f64>, Vec<f64>)> = rows
            .par_chunks(CHUNK)
            .zip(observed.par_chunks(CHUNK))
            .map(|(rs, os)| {
                let mut sum = vec![0.0; d];
                let mut sq = vec![0.0; d * d];
                for (r, o) in rs.iter().zip(os) {
                    em_row(r, o, &mu, &s, d, jitter, &mut sum, &mut sq);
                }
                (sum, sq)
            })
            .collect();
        let mut sum = vec![0.0; d];
        let mut sq = vec![0.0; d * d];
        for (a, b) in parts {
            sum.iter_mut().zip(a).for_each(|(x, y)| *x += y);
            sq.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
        for i in 0..d {
            mu[i] = sum[i] / n.max(1) as f64;
        }
        finish(n, &sum, &mut sq, d);
        s = sq;
    }
    s
}

/// One row's E-step, added to the sums: the filled row and the conditional covariance of its
/// missing entries.
#[allow(clippy::too_many_arguments)]
fn em_row(r: &[f64], o: &[bool], mu: &[f64], s: &[f64], d: usize, jitter: f64, sum: &mut [f64], sq: &mut [f64]) {
    let obs: Vec<usize> = (0..d).filter(|&i| o[i]).collect();
    let mis: Vec<usize> = (0..d).filter(|&i| !o[i]).collect();
    let (k, m) = (obs.len(), mis.len());
    let mut x: Vec<f64> = mu.to_vec();
    obs.iter().for_each(|&i| x[i] = r[i]);
    let mut cond = vec![0.0; m * m];
    if k == 0 {
        (0..m).for_each(|a| (0..m).for_each(|b| cond[a * m + b] = s[mis[a] * d + mis[b]]));
    } else if m > 0 {
        let mut l: Vec<f64> = obs.iter().flat_map(|&a| obs.iter().map(move |&b| s[a * d + b])).collect();
        (0..k).for_each(|a| l[a * k + a] += jitter);
        if !cholesky(&mut l, k) {
            return;
        }
        // Conditional mean: mu_m + S_mo S_oo^-1 (x_o - mu_o).
        let mut resid: Vec<f64> = obs.iter().map(|&i| r[i] - mu[i]).collect();
        cholesky_solve(&l, k, &mut resid);
        // K^T columns: S_oo^-1 S_om, one per missing entry.
        let mut kt = vec![0.0; m * k];
        for (a, &mi) in mis.iter().enumerate() {
            let col = &mut kt[a * k..(a + 1) * k];
            obs.iter().enumerate().for_each(|(b, &oi)| col[b] = s[oi * d + mi]);
            cholesky_solve(&l, k, col);
            x[mi] = mu[mi] + obs.iter().enumerate().map(|(b, &oi)| s[mi * d + oi] * resid[b]).sum::<f64>();
        }
        for a in 0..m {
            for b in 0..=a {
                let dot: f64 = obs.iter().enumerate().map(|(c, &oi)| s[mis[a] * d + oi] * kt[b * k + c]).sum();
                let v = s[mis[a] * d + mis[b]] - dot;
                cond[a * m + b] = v;
                cond[b * m + a] = v;
            }
        }
    }
    for i in 0..d {
        sum[i] += x[i];
        for j in 0..=i {
            sq[i * d + j] += x[i] * x[j];
        }
    }
    for a in 0..m {
        for b in 0..=a {
            let (i, j) = if mis[a] >= mis[b] { (mis[a], mis[b]) } else { (mis[b], mis[a]) };
            sq[i * d + j] += cond[a * m + b];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }

    /// Eigenvalues of `Q diag(l) Q^T` for a random orthogonal `Q` (Gram-Schmidt) come back.
    #[test]
    fn jacobi_recovers_known_eigenvalues() {
        let mut seed = 7;
        for n in [1, 2, 3, 12, 27, 48] {
            let want: Vec<f64> = (0..n).map(|i| (i as f64 - 3.0) * 0.37 + lcg(&mut seed) * 1e-3).collect();
            let mut q: Vec<Vec<f64>> = Vec::new();
            while q.len() < n {
                let mut v: Vec<f64> = (0..n).map(|_| lcg(&mut seed)).collect();
                for u in &q {
                    let dot: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
                    v.iter_mut().zip(u).for_each(|(a, b)| *a -= dot * b);
                }
                let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
                if norm > 1e-6 {
                    q.push(v.into_iter().map(|a| a / norm).collect());
                }
            }
            let mut a = vec![0.0; n * n];
            for i in 0..n {
                for j in 0..n {
                    a[i * n + j] = (0..n).map(|k| q[k][i] * want[k] * q[k][j]).sum();
                }
            }
            let got = sym_eigenvalues(&a, n);
            let mut sorted = want.clone();
            sorted.sort_by(f64::total_cmp);
            for (g, w) in got.iter().zip(&sorted) {
                assert!((g - w).abs() < 1e-12, "n {n}: {got:?} vs {sorted:?}");
            }
        }
    }

    /// White noise alone: every eigenvalue is noise and the estimate is its level.
    #[test]
    fn chen_on_flat_and_spiked_spectra() {
        assert!((chen_sigma(&[4.0; 10]) - 2.0).abs() < 1e-12);
        let mut ev = vec![0.25; 20];
        ev.extend([9.0, 30.0, 100.0]);
        assert!((chen_sigma(&ev) - 0.5).abs() < 1e-12, "signal eigenvalues are left out");
    }

    /// With nothing missing, EM is the sample covariance; with entries missing at random from
    /// correlated Gaussian rows, it recovers the covariance the full rows give.
    #[test]
    fn em_matches_the_full_covariance() {
        let (d, n) = (4, 4000);
        let mut seed = 11;
        let rows: Vec<Vec<f64>> = (0..n)
            .map(|_| {
                let (a, b) = (lcg(&mut seed) * 3.5, lcg(&mut seed));
                vec![a, a + 0.3 * b, -a + b, 0.5 * lcg(&mut seed)]
            })
            .collect();
        let full = covariance(rows.iter().map(|r| r.as_slice()), d);
        let all = vec![vec![true; d]; n];
        let em = em_covariance(&rows, &all, d, 3);
        full.iter().zip(&em).for_each(|(a, b)| assert!((a - b).abs() < 1e-12));
        let some: Vec<Vec<bool>> = (0..n).map(|_| (0..d).map(|_| lcg(&mut seed) > -0.2).collect()).collect();
        let em = em_covariance(&rows, &some, d, 40);
        for (i, (a, b)) in full.iter().zip(&em).enumerate() {
            assert!((a - b).abs() < 0.05 * full[(i / d) * d + i / d].max(full[(i % d) * d + i % d]), "{i}: {a} vs {b}");
        }
    }
}
