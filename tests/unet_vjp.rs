//! The UNet's input gradient against the PyTorch float64 reference, and against finite
//! differences on small random models of every architecture variant.

mod common;
use common::{golden, randn, rel_err, tensor, CTX};
use diffinv::cpu::unet::{UNet, Workspace};
use diffinv::cpu::Tensor;
use diffinv::Model;

#[test]
fn adm_tiny_grad_x_matches_reference() {
    let io = golden("adm_tiny_io");
    let m = Model::load(common::data("golden/adm_tiny.safetensors"), None).unwrap();
    let (x, g) = (tensor(&io, "x"), tensor(&io, "g"));
    let t = io.f32("t_f32").unwrap().1;
    let mut ws = Workspace::new();
    let (out, tape) = m.cpu().forward_with_tape(&CTX, &x, &t, &mut ws).unwrap();
    assert!(rel_err(out.data(), &io.f32("out").unwrap().1) < 1e-4);
    let gx = m.cpu().vjp(&CTX, tape, &g, &mut ws).unwrap();
    let e = rel_err(gx.data(), &io.f32("grad_x").unwrap().1);
    eprintln!("adm_tiny grad_x relative error {e:.2e}");
    assert!(e <= 1e-4, "grad_x relative error {e:.3e}");
}

#[test]
fn celeba64_grad_x_matches_reference() {
    let io = golden("celeba64_io");
    let m = Model::shipped().unwrap();
    let (x, g) = (tensor(&io, "x_t"), tensor(&io, "g"));
    let t = io.f32("t_f32").unwrap().1;
    let mut ws = Workspace::new();
    let (_, tape) = m.cpu().forward_with_tape(&CTX, &x, &t, &mut ws).unwrap();
    let gx = m.cpu().vjp(&CTX, tape, &g, &mut ws).unwrap();
    let e = rel_err(gx.data(), &io.f32("grad_x").unwrap().1);
    eprintln!("celeba64 grad_x relative error {e:.2e}");
    assert!(e <= 1e-4, "grad_x relative error {e:.3e}");
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.data().iter().zip(b.data()).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Directional finite differences `(f(x + h v) - f(x - h v))/2h` against `<grad, v>`, with
/// `f(x) = <model(x), g>`, on tiny models covering every architecture switch.
#[test]
fn vjp_matches_finite_differences_on_all_variants() {
    for (i, (cfg, what)) in common::unet_variants().into_iter().enumerate() {
        let common::VariantCase { model, x, t, cot: g, grad: gx, .. } = common::variant_case(i, &cfg);
        let u = model.cpu();
        for dir in 0..3 {
            let v = randn(x.shape(), 100 + dir);
            // Fourth-order central differences: the truncation error stays small at a step large
            // enough that f32 rounding of f (about 1e-6 relative) is not amplified much; these
            // random-weight models are strongly nonlinear (measured: h = 0.01 agrees to 5e-5).
            let h = 1e-2f32;
            let shifted = |s: f32| {
                let mut xs = x.clone();
                xs.data_mut().iter_mut().zip(v.data()).for_each(|(a, b)| *a += s * b);
                dot(&u.forward(&CTX, &xs, &t, &mut Workspace::new()).unwrap(), &g)
            };
            let fd = (8.0 * (shifted(h) - shifted(-h)) - (shifted(2.0 * h) - shifted(-2.0 * h))) / (12.0 * h as f64);
            let an = dot(&gx, &v);
            // For v ~ N(0, I), <grad, v> has standard deviation |grad|: measure the error against
            // that scale, so a direction with a small derivative (cancellation) does not turn f32
            // rounding noise into a large relative error.
            let scale = an.abs().max(dot(&gx, &gx).sqrt());
            let e = (fd - an).abs() / scale;
            assert!(e < 5e-4, "{what}: direction {dir}: finite difference {fd} vs vjp {an} (rel {e:.2e})");
        }
    }
}

#[test]
fn lean_backward_gives_identical_gradients() {
    let io = golden("adm_tiny_io");
    let m = Model::load(common::data("golden/adm_tiny.safetensors"), None).unwrap();
    let (x, g) = (tensor(&io, "x"), tensor(&io, "g"));
    let t = io.f32("t_f32").unwrap().1;
    let mut ws = Workspace::new();
    let grad = |u: &diffinv::cpu::unet::UNet, ws: &mut Workspace| {
        let (_, tape) = u.forward_with_tape(&CTX, &x, &t, ws).unwrap();
        u.vjp(&CTX, tape, &g, ws).unwrap()
    };
    let cached = grad(m.cpu(), &mut ws);
    let mut lean = m.with_description(UNet::from_desc);
    lean.set_lean_backward(true);
    assert_eq!(grad(&lean, &mut ws).data(), cached.data());
}

/// The tape is an explicit value: one from another model is refused with an error, and a
/// cotangent or output of the wrong shape too (caller-owned outputs are never replaced).
#[test]
fn tapes_and_outputs_are_checked() {
    let (cfg, _) = common::unet_variants().remove(0);
    let (a, b) = (Model::random(&cfg, 1).unwrap(), Model::random(&cfg, 2).unwrap());
    let x = randn([1, 3, 16, 16], 3);
    let mut ws = Workspace::new();
    let (out, tape) = a.cpu().forward_with_tape(&CTX, &x, &[10.0], &mut ws).unwrap();
    let err = b.cpu().vjp(&CTX, tape, &out, &mut ws).expect_err("a tape of another model");
    assert!(err.to_string().contains("another model"), "{err}");
    let (_, tape) = a.cpu().forward_with_tape(&CTX, &x, &[10.0], &mut ws).unwrap();
    assert!(a.cpu().vjp(&CTX, tape, &randn([1, 3, 16, 16], 4), &mut ws).is_err(), "cotangent shape");
    let mut small = Tensor::zeros([1, 6, 8, 8]);
    assert!(a.cpu().forward_into(&CTX, &x, &[10.0], &mut ws, &mut small).is_err(), "output shape");
    assert_eq!(small.data(), Tensor::zeros([1, 6, 8, 8]).data(), "a refused output is untouched");
    for t in [f32::NAN, -1.0] {
        assert!(a.cpu().forward(&CTX, &x, &[t], &mut ws).is_err(), "timestep {t}");
    }
}

/// The context chooses the kernel, the precision and Winograd per call: every combination this
/// CPU runs gives the model's output to f32 rounding, and the default call is unchanged by them.
#[test]
fn every_context_gives_the_same_network() {
    use diffinv::cpu::gemm::Isa;
    let m = Model::shipped().unwrap();
    let x = randn([1, 3, 64, 64], 5);
    let mut ws = Workspace::new();
    let want = m.cpu().forward(&CTX, &x, &[300.0], &mut ws).unwrap();
    for isa in Isa::all_available() {
        for wino in [true, false] {
            let ctx = diffinv::CpuContext::with_isa(isa).unwrap().winograd(wino);
            let got = m.cpu().forward(&ctx, &x, &[300.0], &mut ws).unwrap();
            let e = rel_err(got.data(), want.data());
            assert!(e < 2e-5, "{} winograd {wino}: {e:.2e}", isa.name());
        }
    }
    assert_eq!(m.cpu().forward(&CTX, &x, &[300.0], &mut ws).unwrap().data(), want.data());
}
