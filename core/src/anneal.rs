//! DAPS's noise levels (daps.md §1-§4): poly-7 spacing of the variance-exploding sigma of
//! `x0 + sigma eps`, their place on a discrete VP chain, and the Langevin step size.
//!
//! A VP state `x_t = sqrt(abar) x0 + sqrt(1 - abar) eps` is `sqrt(abar) (x0 + sigma eps)` with
//! `sigma = sqrt((1 - abar)/abar)`. The official code calls the network at the continuous VP
//! time of a sigma; diffinv snaps every sigma to the nearest (in log) of the model's own
//! discrete levels and uses that level's sigma exactly, so the network is always evaluated at a
//! timestep and noise level it was trained on (a deliberate deviation, daps.md §1).

/// The VE sigma of a VP level `abar`.
#[inline]
pub fn ve_sigma(abar: f64) -> f64 {
    libm::sqrt((1.0 - abar) / abar)
}

/// `(from^(1/7) + r (to^(1/7) - from^(1/7)))^7`: EDM's poly-7 interpolation, `r` in [0, 1].
#[inline]
pub fn poly7(from: f64, to: f64, r: f64) -> f64 {
    let (a, b) = (libm::pow(from, 1.0 / 7.0), libm::pow(to, 1.0 / 7.0));
    libm::pow(a + r * (b - a), 7.0)
}

/// The index of `abar` (decreasing along the chain) whose [`ve_sigma`] is nearest `sigma` in
/// log scale; `abar` must not be empty.
pub fn snap(abar: &[f64], sigma: f64) -> usize {
    let n = abar.len();
    // First index whose sigma reaches `sigma` (sigmas increase with the index).
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if ve_sigma(abar[mid]) < sigma {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo == 0 {
        return 0;
    }
    if lo == n {
        return n - 1;
    }
    let (below, above) = (ve_sigma(abar[lo - 1]), ve_sigma(abar[lo]));
    if libm::log(sigma / below) <= libm::log(above / sigma) {
        lo - 1
    } else {
        lo
    }
}

/// The annealing level `i` of `levels` (official main code): poly-7 from `sigma_max` at 0 to
/// `sigma_min` at `r = 1`, sampled at `r = i/levels`; level `levels` is 0 (the output).
pub fn level_sigma(sigma_max: f64, sigma_min: f64, i: usize, levels: usize) -> f64 {
    if i >= levels {
        0.0
    } else {
        poly7(sigma_max, sigma_min, i as f64 / levels as f64)
    }
}

/// Langevin step size at level `i` of `levels`: `lr (1 + i/(levels + 1) (ratio - 1))`, falling
/// linearly from `lr` to about `ratio lr` (official main code: `N' = levels + 1`).
pub fn langevin_lr(lr: f64, ratio: f64, i: usize, levels: usize) -> f64 {
    lr * (1.0 + i as f64 / (levels + 1) as f64 * (ratio - 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poly7_ends_and_the_spec_grid() {
        assert!((poly7(100.0, 0.1, 0.0) - 100.0).abs() < 1e-9);
        assert!((poly7(100.0, 0.1, 1.0) - 0.1).abs() < 1e-12);
        // daps.md §3: the ODE grid from 100 to 0.01 in 5 steps.
        let want = [100.0, 33.03, 8.856, 1.748, 0.2106, 0.01];
        for (k, w) in want.iter().enumerate() {
            let g = poly7(100.0, 0.01, k as f64 / 5.0);
            assert!((g - w).abs() / w < 2e-3, "{k}: {g} vs {w}");
        }
        // daps.md §2: main's last level.
        assert!((level_sigma(100.0, 0.1, 199, 200) - 0.1060).abs() < 5e-4);
        assert_eq!(level_sigma(100.0, 0.1, 200, 200), 0.0);
    }

    #[test]
    fn snap_takes_the_nearest_level_in_log() {
        let abar = [0.99, 0.9, 0.5, 0.1, 0.01];
        for (i, &a) in abar.iter().enumerate() {
            assert_eq!(snap(&abar, ve_sigma(a)), i);
            assert_eq!(snap(&abar, ve_sigma(a) * 1.01), i);
            assert_eq!(snap(&abar, ve_sigma(a) * 0.99), i);
        }
        assert_eq!(snap(&abar, 1e-6), 0);
        assert_eq!(snap(&abar, 1e6), 4);
    }

    #[test]
    fn langevin_lr_falls_to_the_ratio() {
        assert_eq!(langevin_lr(1e-4, 0.01, 0, 200), 1e-4);
        let last = langevin_lr(1e-4, 0.01, 200, 200);
        assert!((last - 1e-4 * (1.0 - 200.0 / 201.0 * 0.99)).abs() < 1e-15);
    }
}
