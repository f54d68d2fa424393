//! DPS steps of the official code (box inpainting, the shipped model), computed by PyTorch in
//! float64, reproduced through diffinv-core's `dps_step` on the CPU backend.

mod common;
use common::{golden, rel_err, tensor};
use diffinv::core::sampler::{dps_step, DpsWork};
use diffinv::core::schedule::Chain;
use diffinv::core::Backend;
use diffinv::cpu::ops::Op;
use diffinv::cpu::{CpuBackend, CpuContext, Tensor};
use diffinv::Model;

#[test]
fn dps_steps_match_the_official_code() {
    let g = golden("dps_steps");
    let m = Model::shipped().unwrap();
    let mut b = CpuBackend::new(m.cpu(), m.diffusion().variance, CpuContext::default());
    let (steps, betas, abar) = common::linear_schedule();
    let chain = Chain::new(&steps, &betas, &abar).unwrap();
    let op = Op::Mask(tensor(&g, "mask"));
    let y = tensor(&g, "y");
    let zeta = g.f32("zeta").unwrap().1[0] as f64;
    let mut w = DpsWork::new(&mut b, &tensor(&g, "x_T"), &y).unwrap();
    for key in ["step0", "step1", "step2", "mid"] {
        let v = |n: &str| g.f32(&format!("{key}.{n}")).unwrap().1;
        let t = g.i64(&format!("{key}.t")).unwrap().1[0] as usize;
        let c = chain.coefs(t);
        assert!((c.abar - g.f64(&format!("{key}.alphas_cumprod")).unwrap().1[0]).abs() < 1e-15);
        let x_t = tensor(&g, &format!("{key}.x_t"));
        let z = tensor(&g, &format!("{key}.z"));
        let mut next = Tensor::zeros(x_t.shape());
        let out = dps_step(&mut b, &c, &op, &y, zeta, &x_t, Some(&z), &mut w, &mut next).unwrap();
        // x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) amplifies the network's error by up to
        // sqrt(1/abar - 1) = 156 at t = 999, and clipping concentrates it on the few unclipped
        // elements. With F(4x4, 3x3) Winograd on the 64 and 32 px maps the network's f32 error
        // is 1.6e-6 (F(2x2, 3x3) only: 3.1e-7), x0_hat's 9.7e-4 at t = 999 (1.1e-4). So eps
        // is held to 1e-5 here, the source, and x0 near t = 1000 to 2e-3; t = 500 keeps 1e-4.
        let x0_tol = if t >= 997 { 2e-3 } else { 1e-4 };
        // At t = 998 and 997 almost every x0 element is clipped, and the gradient is the
        // difference g/sqrt(abar) - sqrt(1/abar - 1) J^T g of two terms about 56 times larger than
        // the result, so the rounding of any f32 VJP is amplified as much. Measured with
        // F(2x2, 3x3) only: PyTorch f32 6.1e-5/4.5e-5; ours 9.8e-5/9.5e-5 (AVX-512, AVX2),
        // 9.4e-5/4.7e-5 (scalar kernel); with F(4x4, 3x3) on the 64 and 32 px maps 1.7e-4/1.6e-4.
        // These two use 5e-4; t = 999 (few clipped) and t = 500 keep 1e-4.
        let grad_tol = if t == 998 || t == 997 { 5e-4 } else { 1e-4 };
        let checks = [
            ("eps", out.model_out.data(), 1e-5),
            ("x0_raw", out.x0_raw.data(), x0_tol),
            ("x0_hat", out.x0.data(), x0_tol),
            ("sample", out.sample.data(), 1e-4),
            ("grad", out.grad.data(), grad_tol),
        ];
        for (name, got, tol) in checks {
            let e = rel_err(got, &v(name));
            eprintln!("{key} (t={t}) {name}: {e:.2e}");
            assert!(e <= tol, "{key} {name}: relative error {e:.3e} > {tol:e}");
        }
        let norm = g.f64(&format!("{key}.norm_f64")).unwrap().1[0];
        assert!((out.norms[0] - norm).abs() <= 1e-4 * norm, "{key} norm {} vs {norm}", out.norms[0]);
        let e = rel_err(next.data(), &v("x_next"));
        eprintln!("{key} (t={t}) x_next: {e:.2e}");
        assert!(e <= 1e-4, "{key} x_next: {e:.3e}");
    }
    assert_eq!(b.shape(&y), [1, 3, 64, 64]);
}
