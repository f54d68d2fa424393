//! Property tests of the identities of methods.md §2, the respacing rule, DDIM and the RNG.

use diffinv_core::diffusion::{
    eps_from_x0, posterior_mean, predict_x0, q_sample, score_from_eps, start_from_measurement,
};
use diffinv_core::respace::{respaced, Spacing};
use diffinv_core::schedule::{alphas_cumprod, BetaSchedule, Chain};
use diffinv_core::update::ddim_step;
use diffinv_core::NoiseStream;
use proptest::prelude::*;

const T: usize = 1000;

struct Base {
    steps: Vec<usize>,
    betas: Vec<f64>,
    abar: Vec<f64>,
}

fn base(kind: BetaSchedule) -> Base {
    let mut betas = vec![0.0; T];
    kind.fill_betas(&mut betas);
    let mut abar = vec![0.0; T];
    alphas_cumprod(&betas, &mut abar);
    Base { steps: (0..T).collect(), betas, abar }
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let m = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(b).fold(0.0f64, |e, (x, y)| e.max((x - y).abs())) / m
}

fn vec_strategy(n: usize, lim: f64) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-lim..lim, n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// DAPS's levels on a discrete chain: the snapped level is the nearest in log sigma of all
    /// the chain's levels, and a VE state at that level is the chain's VP state (`x_VP =
    /// sqrt(abar) x_VE` with `sigma^2 = (1 - abar)/abar`, i.e. `abar = 1/(1 + sigma^2)`).
    #[test]
    fn daps_levels_snap_to_the_nearest_chain_level(log_sigma in -5.0f64..6.0, cosine in any::<bool>()) {
        use diffinv_core::anneal::{snap, ve_sigma};
        let b = base(if cosine { BetaSchedule::COSINE } else { BetaSchedule::LINEAR });
        let sigma = libm::exp(log_sigma);
        let k = snap(&b.abar, sigma);
        let d = |i: usize| (libm::log(ve_sigma(b.abar[i])) - log_sigma).abs();
        for i in 0..T {
            prop_assert!(d(k) <= d(i) + 1e-12, "snap {k} (d {}) but level {i} is nearer (d {})", d(k), d(i));
        }
        let s = ve_sigma(b.abar[k]);
        prop_assert!((1.0 / (1.0 + s * s) - b.abar[k]).abs() < 1e-12);
    }

    /// Poly-7 spacing falls monotonically from its first to its last level.
    #[test]
    fn poly7_levels_fall_monotonically(hi in 1.0f64..200.0, lo in 0.001f64..0.9, n in 2usize..300) {
        use diffinv_core::anneal::level_sigma;
        let mut prev = f64::INFINITY;
        for i in 0..n {
            let s = level_sigma(hi, lo, i, n);
            prop_assert!(s < prev && s >= lo, "level {i}: {s} after {prev}");
            prev = s;
        }
        prop_assert_eq!(level_sigma(hi, lo, n, n), 0.0);
    }

    /// Starting a chain from a denoising measurement `y = x0 + sigma n`: `a y + c z` has
    /// `x_t`'s law (mean `sqrt(abar) x0`, variance `1 - abar`) at the first step whose noise
    /// reaches `sigma`, and the step before has less.
    #[test]
    fn a_denoising_measurement_starts_the_chain_exactly(sigma in 0.0f64..2.0, cosine in any::<bool>()) {
        let b = base(if cosine { BetaSchedule::COSINE } else { BetaSchedule::LINEAR });
        let (k, a, c) = start_from_measurement(&b.abar, sigma);
        let abar = b.abar[k];
        prop_assert!((a - abar.sqrt()).abs() < 1e-15);
        prop_assert!(((a * sigma).powi(2) + c * c - (1.0 - abar)).abs() < 1e-12, "variance at k={k}");
        if k > 0 {
            prop_assert!((1.0 - b.abar[k - 1]) < b.abar[k - 1] * sigma * sigma, "k={k} is the first");
        }
    }

    /// x0_hat(q_sample(x0, z), z) = x0 and eps(x0_hat) = eps, for both schedules.
    #[test]
    fn x0_and_eps_round_trip(x0 in vec_strategy(32, 1.0), z in vec_strategy(32, 4.0), t in 0usize..T, cosine in any::<bool>()) {
        let b = base(if cosine { BetaSchedule::COSINE } else { BetaSchedule::LINEAR });
        let chain = Chain::new(&b.steps, &b.betas, &b.abar).unwrap();
        let c = chain.coefs(t);
        let mut xt = vec![0.0; 32];
        q_sample(&x0, &z, c.abar, &mut xt);
        let mut x0h = vec![0.0; 32];
        predict_x0(&xt, &z, &c, false, &mut x0h);
        // x0_hat divides by sqrt(abar): its rounding error grows like 1/sqrt(abar).
        let tol = 1e-12 / c.abar.sqrt();
        prop_assert!(rel_err(&x0h, &x0) < tol.max(1e-12), "x0 round trip at t={t}: {}", rel_err(&x0h, &x0));
        let mut e = vec![0.0; 32];
        eps_from_x0(&xt, &x0h, &c, &mut e);
        prop_assert!(rel_err(&e, &z) < 1e-9 / (1.0 - c.abar).sqrt(), "eps round trip at t={t}");
    }

    /// The posterior mean of (x0, x_t) equals the DDPM mean computed from eps without clipping:
    /// `(x_t - beta/sqrt(1 - abar) eps)/sqrt(alpha)`.
    #[test]
    fn posterior_mean_equals_eps_form(x0 in vec_strategy(16, 1.0), z in vec_strategy(16, 3.0), t in 1usize..T) {
        let b = base(BetaSchedule::LINEAR);
        let chain = Chain::new(&b.steps, &b.betas, &b.abar).unwrap();
        let c = chain.coefs(t);
        let mut xt = vec![0.0; 16];
        q_sample(&x0, &z, c.abar, &mut xt);
        let mut m = vec![0.0; 16];
        posterior_mean(&x0, &xt, &c, &mut m);
        let want: Vec<f64> = xt.iter().zip(&z)
            .map(|(x, e)| (x - c.beta / (1.0 - c.abar).sqrt() * e) / (1.0 - c.beta).sqrt())
            .collect();
        prop_assert!(rel_err(&m, &want) < 1e-10);
    }

    /// score = -eps/sqrt(1 - abar), and it is the gradient of log N(x_t; sqrt(abar) x0, 1 - abar).
    #[test]
    fn score_is_gaussian_gradient(x0 in vec_strategy(8, 1.0), z in vec_strategy(8, 3.0), t in 0usize..T) {
        let b = base(BetaSchedule::LINEAR);
        let chain = Chain::new(&b.steps, &b.betas, &b.abar).unwrap();
        let c = chain.coefs(t);
        let mut xt = vec![0.0; 8];
        q_sample(&x0, &z, c.abar, &mut xt);
        let mut s = vec![0.0; 8];
        score_from_eps(&z, c.abar, &mut s);
        let want: Vec<f64> = xt.iter().zip(&x0).map(|(x, x0)| -(x - c.abar.sqrt() * x0) / (1.0 - c.abar)).collect();
        prop_assert!(rel_err(&s, &want) < 1e-8);
    }

    /// With eta = 0 DDIM is deterministic (no noise is read) and invertible: stepping back up
    /// with the same eps recovers x_t.
    #[test]
    fn ddim_eta0_deterministic_and_invertible(x in vec_strategy(16, 3.0), eps in vec_strategy(16, 3.0), k in 1usize..50, seed in any::<u64>()) {
        let b = base(BetaSchedule::LINEAR);
        let spacing = Spacing::parse("ddim50").unwrap();
        let mut steps = vec![0; 50];
        spacing.fill(T, &mut steps).unwrap();
        let (mut betas, mut abar) = (vec![0.0; 50], vec![0.0; 50]);
        respaced(&b.abar, &steps, &mut betas, &mut abar).unwrap();
        let chain = Chain::new(&steps, &betas, &abar).unwrap();
        let c = chain.coefs(k);
        let mut x0 = vec![0.0; 16];
        predict_x0(&x, &eps, &c, false, &mut x0);
        let mut noise = vec![0.0f64; 16];
        NoiseStream::new(seed, 0).fill_normal(&mut noise);
        let (mut a, mut a2) = (vec![0.0; 16], vec![0.0; 16]);
        ddim_step(&x0, &eps, None, c.abar, c.abar_prev, 0.0, &mut a);
        ddim_step(&x0, &eps, Some(&noise), c.abar, c.abar_prev, 0.0, &mut a2);
        prop_assert_eq!(&a, &a2);
        // Invert: x0 from x_{t-1} at abar_prev, then forward to abar.
        let cp = chain.coefs(k - 1);
        let mut x0b = vec![0.0; 16];
        predict_x0(&a, &eps, &cp, false, &mut x0b);
        let mut back = vec![0.0; 16];
        ddim_step(&x0b, &eps, None, cp.abar, c.abar, 0.0, &mut back);
        prop_assert!(rel_err(&back, &x) < 1e-9, "DDIM inversion error {}", rel_err(&back, &x));
    }

    /// Any section spec keeps distinct ascending steps, inside [0, T), the right count per section,
    /// and `abar` at the kept steps.
    #[test]
    fn respacing_keeps_abar(counts in prop::collection::vec(1usize..200, 1..6)) {
        let spec = counts.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
        let sp = Spacing::parse(&spec).unwrap();
        let n = sp.len(T).unwrap();
        prop_assert_eq!(n, counts.iter().sum::<usize>());
        let mut steps = vec![0; n];
        sp.fill(T, &mut steps).unwrap();
        prop_assert!(steps.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(*steps.last().unwrap() < T);
        let b = base(BetaSchedule::LINEAR);
        let (mut betas, mut abar) = (vec![0.0; n], vec![0.0; n]);
        respaced(&b.abar, &steps, &mut betas, &mut abar).unwrap();
        let kept: Vec<f64> = steps.iter().map(|&s| b.abar[s]).collect();
        prop_assert!(rel_err(&abar, &kept) < 1e-12);
        // Every section starts at its first step and ends at its last.
        let mut start = 0;
        let mut w = 0;
        for (i, &cnt) in counts.iter().enumerate() {
            let size = T / counts.len() + usize::from(i < T % counts.len());
            prop_assert_eq!(steps[w], start);
            if cnt > 1 { prop_assert_eq!(steps[w + cnt - 1], start + size - 1); }
            w += cnt;
            start += size;
        }
    }

    /// A noise stream gives the same numbers however a fill is split.
    #[test]
    fn noise_is_position_addressed(seed in any::<u64>(), stream in any::<u64>(), n in 1usize..100) {
        let mut a = vec![0.0f64; n];
        NoiseStream::new(seed, stream).fill_normal(&mut a);
        let s = NoiseStream::new(seed, stream);
        for (i, v) in a.iter().enumerate() {
            prop_assert_eq!(*v, s.normal_at(i as u64));
        }
    }
}

/// Respacing with all 1000 steps reproduces the base schedule.
#[test]
fn full_respacing_is_identity() {
    for kind in [BetaSchedule::LINEAR, BetaSchedule::COSINE] {
        let b = base(kind);
        for spec in ["1000", "ddim1000", "500,500", "250,250,250,250"] {
            let sp = Spacing::parse(spec).unwrap();
            let mut steps = vec![0; sp.len(T).unwrap()];
            sp.fill(T, &mut steps).unwrap();
            assert_eq!(steps, b.steps, "{spec}");
            let (mut betas, mut abar) = (vec![0.0; T], vec![0.0; T]);
            respaced(&b.abar, &steps, &mut betas, &mut abar).unwrap();
            assert!(rel_err(&betas, &b.betas) < 1e-9, "{spec}: betas");
            assert!(rel_err(&abar, &b.abar) < 1e-12, "{spec}: abar");
            let full = Chain::new(&b.steps, &b.betas, &b.abar).unwrap();
            let resp = Chain::new(&steps, &betas, &abar).unwrap();
            for k in [0, 1, 2, 500, 999] {
                let (x, y) = (full.coefs(k), resp.coefs(k));
                assert!((x.coef1 - y.coef1).abs() <= 1e-9 * x.coef1.abs().max(1e-30), "{spec} coef1 {k}");
                assert!((x.coef2 - y.coef2).abs() <= 1e-9, "{spec} coef2 {k}");
                assert!((x.posterior_log_variance_clipped - y.posterior_log_variance_clipped).abs() < 1e-6);
            }
        }
    }
}

/// Bad specs are errors, not panics.
#[test]
fn bad_specs_are_errors() {
    assert!(Spacing::parse("").is_err());
    assert!(Spacing::parse("ddimx").is_err());
    assert!(Spacing::parse("10,a").is_err());
    assert!(Spacing::parse("2000").unwrap().len(T).is_err());
    assert!(Spacing::parse("ddim999").unwrap().len(T).is_err(), "strides 1 and 2 give 1000 and 500 steps");
    assert_eq!(Spacing::parse("ddim7").unwrap().len(T), Ok(7), "stride 143");
    assert!(Spacing::parse("0").unwrap().len(T).is_err());
    let mut short = [0usize; 3];
    assert!(Spacing::parse("10").unwrap().fill(T, &mut short).is_err());
}

/// The normal stream has mean 0 and variance 1, and different streams differ.
#[test]
fn noise_moments() {
    let mut a = vec![0.0f64; 200_000];
    NoiseStream::new(7, 1).fill_normal(&mut a);
    let mean = a.iter().sum::<f64>() / a.len() as f64;
    let var = a.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / a.len() as f64;
    assert!(mean.abs() < 0.01, "mean {mean}");
    assert!((var - 1.0).abs() < 0.01, "var {var}");
    let mut b = vec![0.0f64; 16];
    NoiseStream::new(7, 2).fill_normal(&mut b);
    assert_ne!(&a[..16], &b[..]);
}

/// Philox4x32-10 known-answer test (Random123's kat_vectors).
#[test]
fn philox_known_answers() {
    use diffinv_core::rng::philox4x32_10;
    assert_eq!(philox4x32_10([0, 0, 0, 0], [0, 0]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    assert_eq!(philox4x32_10([0xffffffff; 4], [0xffffffff; 2]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
    assert_eq!(
        philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
}
