//! diffinv-core's schedule and respacing against guided-diffusion's, computed by numpy in f64.

mod common;
use diffinv::core::respace::{respaced, Spacing};
use diffinv::core::schedule::{alphas_cumprod, BetaSchedule, Chain};

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / y.abs().max(1e-300)).fold(0.0, f64::max)
}

#[test]
fn base_schedule_matches_guided_diffusion() {
    let g = common::golden("schedule");
    let v = |k: &str| g.f64(k).unwrap().1;
    let mut betas = vec![0.0; 1000];
    BetaSchedule::LINEAR.fill_betas(&mut betas);
    assert_eq!(betas, v("betas"), "numpy linspace, bit for bit");
    let mut abar = vec![0.0; 1000];
    alphas_cumprod(&betas, &mut abar);
    assert_eq!(abar, v("alphas_cumprod"), "numpy cumprod, bit for bit");
    let steps: Vec<usize> = (0..1000).collect();
    let chain = Chain::new(&steps, &betas, &abar).unwrap();
    let cs: Vec<_> = (0..1000).map(|k| chain.coefs(k)).collect();
    let col = |f: &dyn Fn(&diffinv::core::StepCoefs) -> f64| cs.iter().map(f).collect::<Vec<f64>>();
    assert!(max_rel(&col(&|c| c.abar_prev), &v("alphas_cumprod_prev")) < 1e-15);
    assert!(max_rel(&col(&|c| c.posterior_variance)[1..], &v("posterior_variance")[1..]) < 1e-13);
    assert_eq!(cs[0].posterior_variance, 0.0);
    assert!(max_rel(&col(&|c| c.posterior_log_variance_clipped), &v("posterior_log_variance_clipped")) < 1e-13);
    assert!(max_rel(&col(&|c| c.coef1), &v("posterior_mean_coef1")) < 1e-13);
    assert!(max_rel(&col(&|c| c.coef2), &v("posterior_mean_coef2")) < 1e-13);
    assert!(max_rel(&col(&|c| c.sqrt_recip_abar()), &v("sqrt_recip_alphas_cumprod")) < 1e-14);
    assert!(max_rel(&col(&|c| c.sqrt_recipm1_abar()), &v("sqrt_recipm1_alphas_cumprod")) < 1e-13);
    assert!(max_rel(&col(&|c| c.sqrt_one_minus_abar()), &v("sqrt_one_minus_alphas_cumprod")) < 1e-13);
}

#[test]
fn respacing_matches_guided_diffusion() {
    let g = common::golden("schedule");
    let mut base_b = vec![0.0; 1000];
    BetaSchedule::LINEAR.fill_betas(&mut base_b);
    let mut base = vec![0.0; 1000];
    alphas_cumprod(&base_b, &mut base);
    for (spec, key) in [("100", "100"), ("250", "250"), ("25,25,25,25", "25_25_25_25"), ("ddim50", "ddim50")] {
        let want: Vec<usize> =
            g.i64(&format!("respace_{key}_timesteps")).unwrap().1.iter().map(|&v| v as usize).collect();
        let sp = Spacing::parse(spec).unwrap();
        let mut steps = vec![0; sp.len(1000).unwrap()];
        sp.fill(1000, &mut steps).unwrap();
        assert_eq!(steps, want, "{spec}: kept timesteps (banker's rounding)");
        let (mut b, mut a) = (vec![0.0; steps.len()], vec![0.0; steps.len()]);
        respaced(&base, &steps, &mut b, &mut a).unwrap();
        assert!(max_rel(&b, &g.f64(&format!("respace_{key}_betas")).unwrap().1) < 1e-12, "{spec} betas");
        assert!(max_rel(&a, &g.f64(&format!("respace_{key}_alphas_cumprod")).unwrap().1) < 1e-12, "{spec} abar");
    }
}
