//! The CUDA backend against the same PyTorch references as the CPU backend, and against the CPU
//! backend itself (every architecture variant, every element-wise step, whole restorations).
//! Where no GPU (or no CUDA library) is found each test says SKIPPED and passes, unless
//! DIFFINV_REQUIRE_GPU is set (the GPU runner sets it, so a broken setup fails there).
#![cfg(feature = "cuda")]

mod common;
use common::{golden, randn, rel_err, tensor};
use diffinv::core::sampler::{dps_step, DpsWork};
use diffinv::core::schedule::Chain;
use diffinv::core::{Backend, NoiseStream, Operator, VarianceKind};
use diffinv::cpu::image_io::{load_image, Fit};
use diffinv::cpu::ops::{self, Op};
use diffinv::cpu::CpuBackend;
use diffinv::cuda::{CudaBackend, Error, Gpu, GpuOptions, GpuTensor, GpuUNet};
use diffinv::{gpu_operator, CpuOnHost, Device, Method, Model, Restorer, Settings, Task, TaskParams, Tensor};

/// The GPU's options for these tests: cuDNN convolutions when DIFFINV_CUDNN=1 (the GPU runner
/// runs the tests once each way).
fn options() -> GpuOptions {
    GpuOptions { cudnn: std::env::var_os("DIFFINV_CUDNN").is_some_and(|v| v == "1"), ..Default::default() }
}

fn up(g: &Gpu, t: &Tensor) -> GpuTensor {
    GpuTensor::from_host(g, t.shape(), t.data()).unwrap()
}

fn down(g: &Gpu, t: &GpuTensor) -> Tensor {
    Tensor::from_vec(t.shape(), t.to_host(g).unwrap()).unwrap()
}

fn gpu() -> Option<Gpu> {
    match Gpu::new(0, options()) {
        Ok(g) => {
            eprintln!("GPU: {}, convolutions: {}", g.name(), g.conv_engine());
            Some(g)
        }
        Err(Error::Unavailable(m)) if std::env::var_os("DIFFINV_REQUIRE_GPU").is_none() => {
            eprintln!("SKIPPED (no GPU): {m}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Forward and input gradient of `m` on the GPU: (output, grad_x).
fn gpu_fwd_grad(g: &Gpu, m: &Model, x: &Tensor, t: &[f32], cot: &Tensor) -> (Tensor, Tensor) {
    let gu = m.with_description(|d| GpuUNet::new(g, d)).unwrap();
    let gx = up(g, x);
    let (out, tape) = gu.forward_with_tape(g, &gx, t).unwrap();
    let plain = down(g, &gu.forward(g, &gx, t).unwrap());
    let out = down(g, &out);
    assert_eq!(plain.data(), out.data(), "forward with and without tape");
    let grad = gu.vjp(g, tape, &up(g, cot)).unwrap();
    (out, down(g, &grad))
}

#[test]
fn missing_device_is_a_clear_error() {
    match Gpu::new(97, GpuOptions::default()) {
        Err(Error::Unavailable(m)) => assert!(m.contains("97") || m.contains("cannot load"), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("device 97 exists?"),
    }
}

#[test]
fn adm_tiny_forward_and_grad_match_reference() {
    let Some(g) = gpu() else { return };
    let io = golden("adm_tiny_io");
    let m = Model::load(common::data("golden/adm_tiny.safetensors"), None).unwrap();
    let (x, cot) = (tensor(&io, "x"), tensor(&io, "g"));
    let t = io.f32("t_f32").unwrap().1;
    let (out, grad) = gpu_fwd_grad(&g, &m, &x, &t, &cot);
    let (eo, eg) = (rel_err(out.data(), &io.f32("out").unwrap().1), rel_err(grad.data(), &io.f32("grad_x").unwrap().1));
    eprintln!("GPU adm_tiny: out {eo:.2e}, grad_x {eg:.2e}");
    assert!(eo <= 1e-4 && eg <= 1e-4, "adm_tiny on the GPU: out {eo:.3e}, grad_x {eg:.3e}");
}

#[test]
fn celeba64_forward_and_grad_match_reference() {
    let Some(g) = gpu() else { return };
    let io = golden("celeba64_io");
    let m = Model::shipped().unwrap();
    let (x, cot) = (tensor(&io, "x_t"), tensor(&io, "g"));
    let t = io.f32("t_f32").unwrap().1;
    let (out, grad) = gpu_fwd_grad(&g, &m, &x, &t, &cot);
    let (eo, eg) = (rel_err(out.data(), &io.f32("eps").unwrap().1), rel_err(grad.data(), &io.f32("grad_x").unwrap().1));
    eprintln!("GPU celeba64: eps {eo:.2e}, grad_x {eg:.2e}");
    assert!(eo <= 1e-4 && eg <= 1e-4, "celeba64 on the GPU: eps {eo:.3e}, grad_x {eg:.3e}");
}

#[test]
fn every_architecture_variant_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    for (i, (cfg, what)) in common::unet_variants().into_iter().enumerate() {
        let c = common::variant_case(i, &cfg);
        let (out, grad) = (&c.out, &c.grad);
        let (gout, ggrad) = gpu_fwd_grad(&g, &c.model, &c.x, &c.t, &c.cot);
        let (eo, eg) = (rel_err(gout.data(), out.data()), rel_err(ggrad.data(), grad.data()));
        eprintln!("variant {i} ({what}): out {eo:.2e}, grad {eg:.2e}");
        assert!(eo <= 1e-4 && eg <= 1e-4, "variant {what}: out {eo:.3e}, grad {eg:.3e}");
    }
}

/// Each model family's fixture (guided-diffusion ImageNet topology, diffusers layouts) on the GPU
/// against PyTorch's float64 output and input gradient (the CPU's tolerances, 1e-4 / 1e-3).
#[test]
fn every_model_family_matches_pytorch() {
    let Some(g) = gpu() else { return };
    let cfg = common::data("families/imagenet_tiny.json");
    let models = [
        ("imagenet_tiny", Model::load(common::data("families/imagenet_tiny.pt"), Some(cfg.to_str().unwrap()))),
        ("cifar10_tiny", Model::load(common::data("families/diffusers/cifar10_tiny"), None)),
        ("celebahq_tiny", Model::load(common::data("families/diffusers/celebahq_tiny"), None)),
        ("variant_tiny", Model::load(common::data("families/diffusers/variant_tiny"), None)),
    ];
    for (name, m) in models {
        let m = m.unwrap();
        let io = diffinv::model::checkpoint::Checkpoint::open(common::data(&format!("families/{name}_io.safetensors")))
            .unwrap();
        let t: Vec<f32> = io.i64("t").unwrap().1.iter().map(|&v| v as f32).collect();
        let (gout, ggrad) = gpu_fwd_grad(&g, &m, &tensor(&io, "x"), &[t[0], t[1]], &tensor(&io, "cotangent"));
        let eo = rel_err(gout.data(), &io.f32("out").unwrap().1);
        let eg = rel_err(ggrad.data(), &io.f32("grad_x").unwrap().1);
        eprintln!("{name} on the GPU: out {eo:.2e}, grad {eg:.2e}");
        assert!(eo <= 1e-4 && eg <= 1e-3, "{name}: out {eo:.3e}, grad {eg:.3e}");
    }
}

#[test]
fn dps_steps_match_the_official_code() {
    let Some(gpu) = gpu() else { return };
    let g = golden("dps_steps");
    let m = Model::shipped().unwrap();
    let gm = m.with_description(|d| GpuUNet::new(&gpu, d)).unwrap();
    let mut b = CudaBackend::new(&gpu, &gm, m.diffusion().variance);
    let (steps, betas, abar) = common::linear_schedule();
    let chain = Chain::new(&steps, &betas, &abar).unwrap();
    let op = Op::Mask(tensor(&g, "mask"));
    let host = CpuOnHost(&op);
    let gop = gpu_operator(&b, &host).unwrap();
    let up = |t: &Tensor| up(&gpu, t);
    let y = up(&tensor(&g, "y"));
    let zeta = g.f32("zeta").unwrap().1[0] as f64;
    let mut w = DpsWork::new(&mut b, &up(&tensor(&g, "x_T")), &y).unwrap();
    for key in ["step0", "step1", "step2", "mid"] {
        let v = |n: &str| g.f32(&format!("{key}.{n}")).unwrap().1;
        let t = g.i64(&format!("{key}.t")).unwrap().1[0] as usize;
        let c = chain.coefs(t);
        let x_t = up(&tensor(&g, &format!("{key}.x_t")));
        let z = up(&tensor(&g, &format!("{key}.z")));
        let mut next = GpuTensor::zeros(&gpu, x_t.shape()).unwrap();
        let out = dps_step(&mut b, &c, &gop, &y, zeta, &x_t, Some(&z), &mut w, &mut next).unwrap();
        // The CPU test's tolerances (see tests/dps_golden.rs for the doubled ones).
        let x0_tol = if t >= 997 { 5e-4 } else { 1e-4 };
        let grad_tol = if t == 998 || t == 997 { 2e-4 } else { 1e-4 };
        let d = |x: &GpuTensor| down(&gpu, x);
        let checks = [
            ("eps", d(out.model_out), 1e-4),
            ("x0_raw", d(out.x0_raw), x0_tol),
            ("x0_hat", d(out.x0), x0_tol),
            ("sample", d(out.sample), 1e-4),
            ("grad", d(out.grad), grad_tol),
        ];
        for (name, got, tol) in checks {
            let e = rel_err(got.data(), &v(name));
            eprintln!("GPU {key} (t={t}) {name}: {e:.2e}");
            assert!(e <= tol, "{key} {name}: relative error {e:.3e} > {tol:e}");
        }
        let e = rel_err(d(&next).data(), &v("x_next"));
        assert!(e <= 1e-4, "{key} x_next: {e:.3e}");
    }
}

/// Runs `f` on the CPU and the GPU backend with the same inputs; the outputs must agree.
fn agree(
    gpu: &Gpu,
    what: &str,
    ins: &[Tensor],
    f_cpu: &dyn Fn(&mut CpuBackend<'_>, &[Tensor], &mut Tensor),
    f_gpu: &dyn Fn(&mut CudaBackend<'_>, &[GpuTensor], &mut GpuTensor),
) {
    let mut cb = CpuBackend::without_model();
    let mut gb = CudaBackend::without_model(gpu);
    let mut co = Tensor::zeros(ins[0].shape());
    f_cpu(&mut cb, ins, &mut co);
    let gins: Vec<GpuTensor> = ins.iter().map(|t| up(gpu, t)).collect();
    let mut go = GpuTensor::zeros(gpu, ins[0].shape()).unwrap();
    f_gpu(&mut gb, &gins, &mut go);
    let e = rel_err(down(gpu, &go).data(), co.data());
    eprintln!("{what}: {e:.2e}");
    assert!(e <= 2e-6, "{what}: GPU vs CPU relative error {e:.3e}");
}

#[test]
fn elementwise_steps_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let s = [2, 3, 8, 8];
    let (a, b, c) = (randn(s, 1), randn(s, 2), randn(s, 3));
    let wide = randn([2, 6, 8, 8], 4);
    let coefs = {
        let (steps, betas, abar) = common::linear_schedule();
        Chain::new(&steps, &betas, &abar).unwrap().coefs(400)
    };
    let ins = [a.clone(), b.clone(), c.clone()];
    macro_rules! both {
        ($what:expr, $ins:expr, |$bk:ident, $x:ident, $o:ident| $body:expr) => {
            agree(&gpu, $what, $ins, &|$bk, $x, $o| $body.unwrap(), &|$bk, $x, $o| $body.unwrap())
        };
    }
    both!("q_sample", &ins, |bk, x, o| bk.q_sample(&x[0], &x[1], 0.3, o));
    both!("eps_from_x0", &ins, |bk, x, o| bk.eps_from_x0(&x[0], &x[1], &coefs, o));
    both!("axpby", &ins, |bk, x, o| bk.axpby(0.7, &x[0], -1.3, &x[1], o));
    both!("ddim_step", &ins, |bk, x, o| bk.ddim_step(&x[0], &x[1], Some(&x[2]), 0.4, 0.6, 0.5, o));
    both!("diffpir_step", &ins, |bk, x, o| bk.diffpir_step(&x[0], &x[1], Some(&x[2]), 0.4, 0.6, 0.3, o));
    for kind in [VarianceKind::FixedSmall, VarianceKind::FixedLarge] {
        both!("posterior_sample", &[a.clone(), b.clone(), c.clone(), a.clone()], |bk, x, o| {
            bk.posterior_sample(&x[0], &x[1], &x[3], &coefs, kind, Some(&x[2]), o)
        });
    }
    let with_v = [a.clone(), b.clone(), c.clone(), wide.clone()];
    both!("posterior_sample learned", &with_v, |bk, x, o| {
        bk.posterior_sample(&x[0], &x[1], &x[3], &coefs, VarianceKind::LearnedRange, Some(&x[2]), o)
    });
    both!("predict_x0 clip", &with_v, |bk, x, o| bk.predict_x0(&x[0], &x[3], &coefs, true, o));
    let mask = {
        let mut m = randn([1, 3, 8, 8], 9);
        m.data_mut().iter_mut().for_each(|v| *v = (*v > 0.0) as u8 as f32);
        m
    };
    both!("mask_blend", &[a.clone(), b.clone(), mask.clone()], |bk, x, o| bk.mask_blend(&x[0], &x[1], &x[2], o));
    both!("axpy", &ins, |bk, x, o| { bk.copy(&x[1], o).and_then(|_| bk.axpy(0.25, &x[0], o)) });
    both!("clamp", &ins, |bk, x, o| bk.copy(&x[0], o).and_then(|_| bk.clamp(o, -0.5, 0.7)));
    both!("clip_gradient", &ins, |bk, x, o| bk.copy(&x[1], o).and_then(|_| bk.clip_gradient(&x[0], o)));
    both!("scale_images", &ins, |bk, x, o| bk.copy(&x[0], o).and_then(|_| bk.scale_images(o, &[0.5, -2.0])));
    // Reductions and the noise.
    let mut cb = CpuBackend::without_model();
    let mut gb = CudaBackend::without_model(&gpu);
    let ga = up(&gpu, &a);
    let (mut nc, mut ng) = ([0.0; 2], [0.0; 2]);
    cb.norms(&a, &mut nc).unwrap();
    gb.norms(&ga, &mut ng).unwrap();
    assert!((nc[0] - ng[0]).abs() < 1e-9 * nc[0] && (nc[1] - ng[1]).abs() < 1e-9 * nc[1], "{nc:?} vs {ng:?}");
    assert_eq!(cb.max_abs(&a).unwrap(), gb.max_abs(&ga).unwrap());
    let mut nan = a.clone();
    nan.data_mut()[77] = f32::NAN;
    assert!(gb.max_abs(&up(&gpu, &nan)).unwrap().is_nan());
    let mut r1 = vec![NoiseStream::new(5, 1), NoiseStream::new(5, 2)];
    let mut r2 = r1.clone();
    let mut xc = Tensor::zeros(s);
    let mut xg = GpuTensor::zeros(&gpu, s).unwrap();
    cb.randn(&mut r1, &mut xc).unwrap();
    gb.randn(&mut r2, &mut xg).unwrap();
    assert_eq!(down(&gpu, &xg).data(), xc.data(), "same noise on both backends");
    let mut emb = GpuTensor::zeros(&gpu, [2, 6, 8, 8]).unwrap();
    let mut embc = Tensor::zeros([2, 6, 8, 8]);
    cb.embed_channels(&a, 3.0, &mut embc).unwrap();
    gb.embed_channels(&ga, 3.0, &mut emb).unwrap();
    assert_eq!(down(&gpu, &emb).data(), embc.data());
}

#[test]
fn operators_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let s = [2, 3, 16, 16];
    let x = randn(s, 3);
    for task in [Task::InpaintBox, Task::InpaintRandom, Task::DeblurGauss, Task::Sr4] {
        let op = ops::build(task, &TaskParams::default(), s, 1, 0).unwrap();
        let mut gb = CudaBackend::without_model(&gpu);
        let host = CpuOnHost(&op);
        let gop = gpu_operator(&gb, &host).unwrap();
        let gx = up(&gpu, &x);
        let ys = op.measurement_shape(s);
        let mut y = GpuTensor::zeros(&gpu, ys).unwrap();
        gop.forward(&mut gb, &gx, &mut y).unwrap();
        let yc = op.forward(&x).unwrap();
        assert!(rel_err(down(&gpu, &y).data(), yc.data()) < 1e-6, "{task:?} forward");
        let mut at = GpuTensor::zeros(&gpu, s).unwrap();
        gop.adjoint(&mut gb, &y, &mut at).unwrap();
        assert!(rel_err(down(&gpu, &at).data(), op.adjoint(&yc).unwrap().data()) < 1e-6, "{task:?} adjoint");
        let mut sol = GpuTensor::zeros(&gpu, s).unwrap();
        gop.data_solve(&mut gb, &y, &gx, 0.3, &mut sol).unwrap();
        let want = op.data_solve(&yc, &x, 0.3).unwrap();
        assert!(rel_err(down(&gpu, &sol).data(), want.data()) < 1e-6, "{task:?} data_solve");
        // A caller-owned output of the wrong shape is refused, not replaced.
        let mut wrong = GpuTensor::zeros(&gpu, [1, 3, 4, 4]).unwrap();
        assert!(gop.forward(&mut gb, &gx, &mut wrong).is_err(), "{task:?} output shape");
    }
}

/// Whole restorations: the CPU and the GPU backend, same seeds, agree to float rounding. The
/// model is adm_tiny (random weights, the FFHQ topology with learned variances, so the learned-
/// range posterior runs too). DPS runs with zeta = 0.1: larger steps make DPS on this random
/// model chaotic (measured on the CPU alone, 20 steps, box inpainting: a 1e-7 change of y changes
/// the result by 11% at zeta = 1, by 7e-6 at zeta = 0.1), which would test nothing.
#[test]
fn restorations_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    drop(gpu);
    let m = Model::load(common::data("golden/adm_tiny.safetensors"), None).unwrap();
    assert_eq!(m.diffusion().variance, VarianceKind::LearnedRange);
    let x = load_image(&common::data("celeba64/009501.png"), Fit::Exact(64)).unwrap();
    let runs = [
        (Task::InpaintBox, Method::Dps),
        (Task::DeblurGauss, Method::Dps),
        (Task::DeblurGauss, Method::DiffPir),
        (Task::Sr4, Method::Ald),
        (Task::InpaintRandom, Method::Sdedit),
        // The nonlinear operators (host-run on the GPU, through their VJPs) and DAPS.
        (Task::Hdr, Method::Dps),
        (Task::Hdr, Method::Daps),
        (Task::PhaseRetrieval, Method::Daps),
        (Task::DeblurMotion, Method::Daps),
    ];
    for (task, method) in runs {
        let op = ops::build(task, &TaskParams::default(), x.shape(), 7, 0).unwrap();
        let y = ops::measure(&op, &x, 0.05, 7, 0).unwrap();
        let on = |device: Device| {
            let mut r = Restorer::new(&m).task(task).method(method).steps(20).seed(7).device(device);
            if method == Method::Dps {
                r = r.zeta(0.1);
            }
            if method == Method::Daps {
                let s =
                    Settings { steps: Some(20), ode_steps: Some(2), langevin_steps: Some(10), ..Default::default() };
                r = r.settings(s);
            }
            let opts = diffinv::GpuOptions { cudnn: options().cudnn, ..Default::default() };
            r.gpu_options(opts).run_with(&op, &y).unwrap()
        };
        let (cpu, gpu_out) = (on(Device::Cpu), on(Device::Cuda(0)));
        let e = rel_err(gpu_out.x.data(), cpu.x.data());
        eprintln!("{task:?} {method:?} 20 steps: GPU vs CPU {e:.2e}");
        assert_eq!((gpu_out.nfe, gpu_out.vjps), (cpu.nfe, cpu.vjps));
        assert!(e < 1e-3, "{task:?} {method:?}: GPU vs CPU relative difference {e:.3e}");
    }
}

/// Images of another size than the model's run tiled on the GPU too, matching the CPU: a 96 x 80
/// image (2 x 2 tiles of adm_tiny's 64 px) with DPS (the tiles' VJPs) and DiffPIR, and a 40 x 48
/// one (mirror-padded to one tile) with SDEdit.
#[test]
fn tiled_restorations_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    drop(gpu);
    let m = Model::load(common::data("golden/adm_tiny.safetensors"), None).unwrap();
    let face = load_image(&common::data("images/tiles_160x112.png"), Fit::Any).unwrap();
    for (task, method, h, w) in [
        (Task::InpaintBox, Method::Dps, 80, 96),
        (Task::DeblurGauss, Method::DiffPir, 80, 96),
        (Task::Denoise, Method::Sdedit, 40, 48),
    ] {
        let mut x = Tensor::zeros([1, 3, h, w]);
        for c in 0..3 {
            for i in 0..h {
                let row = (c * 112 + i) * 160;
                let at = (c * h + i) * w;
                x.data_mut()[at..at + w].copy_from_slice(&face.data()[row..row + w]);
            }
        }
        let op = ops::build(task, &TaskParams::default(), x.shape(), 7, 0).unwrap();
        let y = ops::measure(&op, &x, 0.05, 7, 0).unwrap();
        let on = |device: Device| {
            let mut r = Restorer::new(&m).task(task).method(method).steps(10);
            if method == Method::Dps {
                r = r.zeta(0.1);
            }
            let opts = diffinv::GpuOptions { cudnn: options().cudnn, ..Default::default() };
            r.seed(7).device(device).gpu_options(opts).run_with(&op, &y).unwrap()
        };
        let (cpu, gpu_out) = (on(Device::Cpu), on(Device::Cuda(0)));
        let e = rel_err(gpu_out.x.data(), cpu.x.data());
        eprintln!("{task:?} {method:?} {h}x{w}, {} tiles: GPU vs CPU {e:.2e}", cpu.tiles);
        assert_eq!((gpu_out.tiles, gpu_out.nfe), (cpu.tiles, cpu.nfe));
        assert!(e < 1e-3, "{task:?} {method:?}: GPU vs CPU relative difference {e:.3e}");
    }
}
