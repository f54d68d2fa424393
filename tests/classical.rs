//! The classical baselines: the CNN denoisers against their reference runs, the TV prox against
//! brute force, and each solver's behaviour (monotone objective, shrinking ADMM residuals, gains
//! over the measurement on real faces).

mod common;
use common::{golden, randn, rel_err, tensor};
use diffinv::core::NoiseStream;
use diffinv::cpu::classical::{self, tv, Denoiser, PnpConfig, TvConfig};
use diffinv::cpu::image_io::{load_image, Fit};
use diffinv::cpu::metrics::psnr;
use diffinv::cpu::ops::{build, measure, Task, TaskParams};
use diffinv::cpu::Tensor;

#[test]
fn denoisers_match_their_reference_runs() {
    let g = golden("dncnn");
    let noisy = tensor(&g, "noisy");
    for (name, key) in [
        ("cdncnn_s_color_sigma25", "cdncnn_s25_clean"),
        ("cdncnn_b_color_blind", "cdncnn_b_clean"),
        ("ffdnet_color", "ffdnet_clean"),
    ] {
        let d = Denoiser::from_checkpoint(&diffinv::assets::denoiser(name).unwrap().unwrap()).unwrap();
        let out = d.denoise(&noisy, 25.0 / 255.0).unwrap();
        let e = rel_err(out.data(), &g.f32(key).unwrap().1);
        eprintln!("{name}: {e:.2e}");
        assert!(e <= 1e-4, "{name}: relative error {e:.3e}");
    }
}

/// `1/2 ||x - z||^2 + lambda TV(x)`.
fn prox_objective(x: &[f32], z: &[f32], h: usize, w: usize, lambda: f64) -> f64 {
    0.5 * x.iter().zip(z).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>() + lambda * tv::value(x, h, w, 0.0)
}

#[test]
fn tv_prox_matches_brute_force() {
    let (h, w) = (6, 7);
    for seed in 0..4 {
        let z = randn([1, 1, h, w], seed);
        let lambda = 0.3;
        let mut p = vec![0.0; h * w];
        tv::prox(z.data(), h, w, lambda, 5000, &mut p);
        let best = prox_objective(&p, z.data(), h, w, lambda);
        // Brute force: long gradient descent on the smoothed objective with a vanishing eps.
        let mut x = z.data().to_vec();
        let mut g = vec![0.0; h * w];
        for it in 0..40_000 {
            let eps = (1e-1 * (0.9997f64).powi(it)).max(1e-4);
            tv::gradient(&x, h, w, eps, &mut g);
            let step = 0.5 * eps;
            for k in 0..h * w {
                x[k] -= (step * ((x[k] - z.data()[k]) as f64 + lambda * g[k] as f64)) as f32;
            }
        }
        let brute = prox_objective(&x, z.data(), h, w, lambda);
        assert!(best <= brute + 1e-3, "seed {seed}: Chambolle {best} vs brute force {brute}");
        // And no random perturbation of the prox does better.
        let mut rng = NoiseStream::new(seed, 5);
        for _ in 0..200 {
            let q: Vec<f32> = p.iter().map(|v| v + 0.01 * rng.next_normal() as f32).collect();
            assert!(prox_objective(&q, z.data(), h, w, lambda) >= best - 1e-6);
        }
    }
}

fn face(i: usize) -> Tensor {
    load_image(&common::data(&format!("celeba64/0095{:02}.png", i)), Fit::Exact(64)).unwrap()
}

#[test]
fn tv_solvers_behave_and_beat_the_measurement() {
    let x = face(1);
    for task in [Task::DeblurGauss, Task::InpaintRandom] {
        let op = build(task, &TaskParams::default(), x.shape(), 0, 0).unwrap();
        let y = measure(&op, &x, 0.05, 0, 0).unwrap();
        let base = psnr(&x, &op.measurement_image(&y).unwrap(), 0).unwrap();
        let cfg = TvConfig { lambda: 0.02, iters: 40, tol: 0.0 };
        let hqs = classical::hqs_tv(&op, &y, &cfg, 0.1, 1.5, &mut |_, _| true).unwrap();
        let admm = classical::admm_tv(&op, &y, &cfg, 1.0, &mut |_, _| true).unwrap();
        let adam = classical::adam_tv(&op, &y, &TvConfig { iters: 300, ..cfg }, 0.01, 1e-3, &mut |_, _| true).unwrap();
        // Adam is not a descent method, but on this smooth objective it ends below its start
        // and within 1% of the lowest value it reached.
        let h = &adam.history;
        let start = classical::tv_objective(&op, &op.init_estimate(&y).unwrap(), &y, cfg.lambda, 1e-3).unwrap();
        let (last, min) = (h[h.len() - 1], h.iter().copied().fold(f64::INFINITY, f64::min));
        assert!(last < start && last <= 1.01 * min, "{task:?} adam objective {start} -> {last} (min {min})");
        // HQS ends with a lower objective than it started from.
        let hq = &hqs.history;
        assert!(hq[hq.len() - 1] < start, "{task:?} hqs objective {start} -> {}", hq[hq.len() - 1]);
        // ADMM residuals shrink (the dual slowly: ADMM's tail is linear at best).
        let (p, d) = (&admm.history, &admm.dual);
        assert!(p[p.len() - 1] < 0.1 * p[0] && d[d.len() - 1] < 0.5 * d[1], "{task:?} ADMM residuals {p:?} {d:?}");
        assert!(
            d.windows(2).skip(1).filter(|w| w[1] > w[0]).count() <= d.len() / 10,
            "{task:?} dual residuals mostly decrease"
        );
        for (name, out, margin) in [("hqs-tv", &hqs.x, 1.0), ("admm-tv", &admm.x, 1.0), ("adam-tv", &adam.x, 0.5)] {
            let q = psnr(&x, out, 0).unwrap();
            eprintln!("{task:?} {name}: {q:.2} dB (measurement {base:.2})");
            assert!(q > base + margin, "{task:?} {name}: {q:.2} dB vs measurement {base:.2}");
        }
    }
}

#[test]
fn hqs_dncnn_beats_hqs_tv_on_gaussian_deblurring() {
    let d = Denoiser::from_checkpoint(&diffinv::assets::denoiser("ffdnet_color").unwrap().unwrap()).unwrap();
    let (mut pnp, mut tvs) = (0.0, 0.0);
    for i in 1..=2 {
        let x = face(i);
        let op = build(Task::DeblurGauss, &TaskParams::default(), x.shape(), 0, i as u64).unwrap();
        let y = measure(&op, &x, 0.05, 0, i as u64).unwrap();
        let a = classical::hqs_denoiser(
            &op,
            &y,
            &d,
            &PnpConfig { lambda: 0.23, iters: 8, sigma_start: 49.0 / 255.0 },
            0.05,
            &mut |_, _| true,
        )
        .unwrap();
        let b =
            classical::hqs_tv(&op, &y, &TvConfig { lambda: 0.02, iters: 40, tol: 1e-4 }, 0.1, 1.5, &mut |_, _| true)
                .unwrap();
        pnp += psnr(&x, &a.x, 0).unwrap();
        tvs += psnr(&x, &b.x, 0).unwrap();
    }
    eprintln!("HQS-DnCNN {:.2} dB vs HQS-TV {:.2} dB", pnp / 2.0, tvs / 2.0);
    assert!(pnp > tvs + 0.3, "HQS-DnCNN {pnp} vs HQS-TV {tvs}");
}
