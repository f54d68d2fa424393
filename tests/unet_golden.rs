//! The UNet forward pass against the PyTorch float64 reference: every block of the random-weight
//! FFHQ-topology model (adm_tiny), and the shipped real model's output.

mod common;
use common::{golden, rel_err, tensor, CTX};
use diffinv::cpu::unet::Workspace;
use diffinv::model::timestep_embedding;
use diffinv::Model;

#[test]
fn adm_tiny_every_block_matches_reference() {
    let io = golden("adm_tiny_io");
    let m = Model::load(common::data("golden/adm_tiny.safetensors"), None).unwrap();
    assert_eq!(m.cpu().num_params(), 5_719_686);
    let x = tensor(&io, "x");
    let t = io.f32("t_f32").unwrap().1;
    let sin = timestep_embedding(&t, 32, diffinv::model::Sinusoid::ADM);
    assert!(rel_err(&sin, &io.f32("temb_sinusoid").unwrap().1) < 1e-6, "sinusoid");
    let e = rel_err(&m.cpu().embed(&t), &io.f32("emb").unwrap().1);
    assert!(e < 1e-5, "emb: {e}");
    let mut ws = Workspace::new();
    let mut worst = (String::new(), 0.0f64);
    let mut seen = 0;
    let out = m
        .cpu()
        .forward_traced(&CTX, &x, &t, &mut ws, &mut |name, a| {
            let r = io.f32(name).unwrap_or_else(|e| panic!("{e}")).1;
            let e = rel_err(a.data(), &r);
            assert!(e <= 1e-4, "{name}: relative error {e:.3e}");
            if e > worst.1 {
                worst = (name.to_string(), e);
            }
            seen += 1;
        })
        .unwrap();
    assert_eq!(seen, 12 + 1 + 12 + 1, "every block traced");
    eprintln!("adm_tiny worst block error {:.2e} at {}", worst.1, worst.0);
    assert_eq!(out.shape(), [2, 6, 64, 64]);
    // The plain forward gives the same numbers as the traced one.
    let again = m.cpu().forward(&CTX, &x, &t, &mut ws).unwrap();
    assert_eq!(again.data(), out.data());
}

#[test]
fn celeba64_output_matches_reference() {
    let io = golden("celeba64_io");
    let m = Model::shipped().unwrap();
    assert_eq!(m.cpu().num_params(), 7_829_443);
    let x = tensor(&io, "x_t");
    let t = io.f32("t_f32").unwrap().1;
    let mut ws = Workspace::new();
    // Every GEMM kernel this CPU runs, the portable one (what non-x86 CPUs run) included.
    for isa in diffinv::cpu::gemm::Isa::all_available() {
        let ctx = diffinv::CpuContext::with_isa(isa).unwrap();
        let eps = m.cpu().forward(&ctx, &x, &t, &mut ws).unwrap();
        let e = rel_err(eps.data(), &io.f32("eps").unwrap().1);
        eprintln!("celeba64 eps relative error ({}) {e:.2e}", isa.name());
        assert!(e <= 1e-4, "{}: eps relative error {e:.3e}", isa.name());
    }
}

#[test]
fn gflop_counts_match_the_documented_figures() {
    use diffinv::model::UNetConfig;
    for (preset, params, gflop) in [("ffhq256", 93_563_910usize, 387.9), ("celeba64", 7_829_443, 9.8)] {
        let cfg = UNetConfig::preset(preset).unwrap();
        let u = Model::random(&cfg, 1).unwrap();
        assert_eq!(u.num_params(), params, "{preset} parameters");
        let g = u.gflop();
        assert!((g - gflop).abs() < 0.06, "{preset}: {g} GFLOP, documented {gflop}");
    }
}

#[test]
fn bf16_convolutions_stay_within_one_percent() {
    use diffinv::cpu::gemm::Isa;
    use diffinv::cpu::nn::Precision;
    if !Isa::Avx512Bf16.available() {
        eprintln!("skipped: this CPU has no AVX512-BF16");
        return;
    }
    let io = golden("celeba64_io");
    let m = Model::shipped().unwrap();
    let (x, g) = (tensor(&io, "x_t"), tensor(&io, "g"));
    let t = io.f32("t_f32").unwrap().1;
    let mut ws = Workspace::new();
    let bf16 = CTX.precision(Precision::Bf16);
    let (eps, tape) = m.cpu().forward_with_tape(&bf16, &x, &t, &mut ws).unwrap();
    let gx = m.cpu().vjp(&bf16, tape, &g, &mut ws).unwrap();
    let (e1, e2) = (rel_err(eps.data(), &io.f32("eps").unwrap().1), rel_err(gx.data(), &io.f32("grad_x").unwrap().1));
    eprintln!("bf16: eps {e1:.2e}, grad_x {e2:.2e}");
    assert!(e1 <= 1e-2 && e2 <= 1e-2, "bf16 eps {e1:.3e}, grad_x {e2:.3e}");
    assert!(e1 > 1e-6, "bf16 was used");
}
