//! The model families diffinv loads besides the ADM face models: guided-diffusion's ImageNet-256
//! topology (learned sigma, attention at three levels, two res blocks; a `.pt` from
//! `torch.save`) and diffusers `UNet2DModel` folders (the google/ddpm-* block layouts, both
//! attention naming schemes, safetensors and `.bin`). Random weights, scaled-down channels;
//! references from PyTorch in float64 (`scripts/make_family_fixtures.py`).

mod common;
use common::{rel_err, tensor, CTX};
use diffinv::core::{BetaSchedule, VarianceKind};
use diffinv::cpu::unet::Workspace;
use diffinv::cpu::Tensor;
use diffinv::model::checkpoint::Checkpoint;
use diffinv::Model;

/// Output within 1e-4 and input gradient within 1e-3 of PyTorch (relative to the largest value).
fn check(name: &str, m: &Model) {
    let io = Checkpoint::open(common::data(&format!("families/{name}_io.safetensors"))).unwrap();
    let x = tensor(&io, "x");
    let t: Vec<f32> = io.i64("t").unwrap().1.iter().map(|&v| v as f32).collect();
    let mut ws = Workspace::new();
    let (out, tape) = m.cpu().forward_with_tape(&CTX, &x, &t, &mut ws).unwrap();
    let e_out = rel_err(out.data(), &io.f32("out").unwrap().1);
    let (cs, cd) = io.f32("cotangent").unwrap();
    let cot = Tensor::from_vec([cs[0], cs[1], cs[2], cs[3]], cd).unwrap();
    let gx = m.cpu().vjp(&CTX, tape, &cot, &mut ws).unwrap();
    let e_grad = rel_err(gx.data(), &io.f32("grad_x").unwrap().1);
    eprintln!("{name}: output {e_out:.2e}, grad_x {e_grad:.2e}");
    assert!(e_out < 1e-4, "{name}: output relative error {e_out:.3e}");
    assert!(e_grad < 1e-3, "{name}: grad_x relative error {e_grad:.3e}");
}

fn diffusers(name: &str) -> Model {
    Model::load(common::data(&format!("families/diffusers/{name}")), None).unwrap()
}

#[test]
fn imagenet_topology_pt_matches_pytorch() {
    let cfg = common::data("families/imagenet_tiny.json");
    let m = Model::load(common::data("families/imagenet_tiny.pt"), Some(cfg.to_str().unwrap())).unwrap();
    assert_eq!(m.config().out_channels, 6);
    assert_eq!(m.diffusion().variance, VarianceKind::LearnedRange);
    assert_eq!(m.config().family_name(), "adm");
    check("imagenet_tiny", &m);
}

#[test]
fn diffusers_cifar10_layout_matches_pytorch() {
    let m = diffusers("cifar10_tiny");
    assert_eq!(m.config().family_name(), "diffusers");
    assert_eq!(m.format(), "safetensors");
    let d = m.diffusion();
    assert_eq!((d.steps, d.schedule, d.variance), (1000, BetaSchedule::LINEAR, VarianceKind::FixedSmall));
    check("cifar10_tiny", &m);
}

#[test]
fn diffusers_celebahq_layout_bin_with_early_names_matches_pytorch() {
    let m = diffusers("celebahq_tiny");
    assert_eq!(m.format(), "pytorch-zip");
    assert_eq!(m.image_size(), 64);
    check("celebahq_tiny", &m);
}

#[test]
fn diffusers_options_heads_flip_padding_learned_range_match_pytorch() {
    let m = diffusers("variant_tiny");
    let d = m.diffusion();
    assert_eq!((d.steps, d.schedule, d.variance), (500, BetaSchedule::COSINE, VarianceKind::LearnedRange));
    check("variant_tiny", &m);
}

#[test]
fn folder_problems_are_named() {
    let dir = std::env::temp_dir().join(format!("diffinv-families-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = common::data("families/diffusers/cifar10_tiny");
    let err = |d: &std::path::Path| Model::load(d, None).err().expect("an error").to_string();
    // No config.json at all.
    let e = err(&dir);
    assert!(e.contains("diffusers model") && e.contains(&dir.display().to_string()), "{e}");
    // A config without weights.
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let e = err(&dir);
    assert!(e.contains("diffusion_pytorch_model"), "{e}");
    std::fs::copy(src.join("diffusion_pytorch_model.safetensors"), dir.join("diffusion_pytorch_model.safetensors"))
        .unwrap();
    assert!(Model::load(&dir, None).is_ok());
    // An unsupported block, a prediction type, a schedule: each named with its file and key.
    let cfg = std::fs::read_to_string(src.join("config.json")).unwrap();
    std::fs::write(dir.join("config.json"), cfg.replace("\"AttnDownBlock2D\"", "\"CrossAttnDownBlock2D\"")).unwrap();
    let e = err(&dir);
    assert!(e.contains("config.json") && e.contains("down_block_types") && e.contains("CrossAttnDownBlock2D"), "{e}");
    // Sizes past diffinv's limits are refused from the config alone, before any weight is read.
    for (from, to, key) in [
        ("\"layers_per_block\": 2", "\"layers_per_block\": 1000", "num_res_blocks"),
        ("\"sample_size\": 32", "\"sample_size\": 1000000", "image_size"),
        ("\"norm_eps\": 1e-06", "\"norm_eps\": -1", "norm_eps"),
        ("\"block_out_channels\": [\n    32,", "\"block_out_channels\": [\n    8192,", "block_out_channels"),
    ] {
        assert!(cfg.contains(from), "{from} in {cfg}");
        std::fs::write(dir.join("config.json"), cfg.replace(from, to)).unwrap();
        let e = err(&dir);
        assert!(e.contains("config.json") && e.contains(key), "{to}: {e}");
    }
    std::fs::write(dir.join("config.json"), &cfg).unwrap();
    for (bad, key) in [
        (r#"{"prediction_type": "v_prediction"}"#, "prediction_type"),
        (r#"{"beta_schedule": "sigmoid"}"#, "beta_schedule"),
        (r#"{"num_train_timesteps": 0}"#, "num_train_timesteps"),
        (r#"{"variance_type": "learned_range"}"#, "variance_type"),
        (r#"[1, 2]"#, "JSON object"),
    ] {
        std::fs::write(dir.join("scheduler_config.json"), bad).unwrap();
        let e = err(&dir);
        assert!(e.contains("scheduler_config.json") && e.contains(key), "{bad}: {e}");
    }
    std::fs::write(dir.join("scheduler_config.json"), r#"{"num_train_timesteps": 250, "beta_schedule": "linear"}"#)
        .unwrap();
    // diffusers' linear betas are not rescaled by 1000/T: beta_0 stays 1e-4.
    let m = Model::load(&dir, None).unwrap();
    match m.diffusion().schedule {
        BetaSchedule::Linear { start, .. } => assert!((start * 1000.0 / 250.0 - 1e-4).abs() < 1e-15),
        s => panic!("{s:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pt_without_config_names_the_presets() {
    let err = Model::load(common::data("families/imagenet_tiny.pt"), None).err().expect("not a preset");
    let msg = err.to_string();
    assert!(msg.contains("imagenet_tiny.pt") && msg.contains("imagenet256") && msg.contains("ffhq256"), "{msg}");
}

#[test]
fn bare_state_dict_is_recognised_by_its_shapes() {
    use diffinv::model::checkpoint::{write_safetensors, WriteTensor};
    let ship = diffinv::assets::model().unwrap();
    let names: Vec<String> = ship.tensors().keys().cloned().collect();
    let data: Vec<(Vec<usize>, Vec<f32>)> = names.iter().map(|n| ship.f32(n).unwrap()).collect();
    // `module.` prefixed, as DataParallel saves them, and without any metadata.
    let full: Vec<String> = names.iter().map(|n| format!("module.{n}")).collect();
    let tensors: Vec<WriteTensor> = full.iter().zip(&data).map(|(n, (s, v))| WriteTensor::f32(n, s, v)).collect();
    let path = std::env::temp_dir().join(format!("diffinv-bare-{}.safetensors", std::process::id()));
    write_safetensors(&path, &tensors, &Default::default()).unwrap();
    let m = Model::load(&path, None).unwrap();
    assert_eq!(m.config(), &diffinv::model::UNetConfig::preset("celeba64").unwrap());
    assert_eq!(m.config_source(), "detected");
    std::fs::remove_file(&path).unwrap();
}

/// One image of a batch as its own tensor.
fn image(t: &Tensor, i: usize) -> Tensor {
    let [_, c, h, w] = t.shape();
    Tensor::from_vec([1, c, h, w], t.data()[i * c * h * w..(i + 1) * c * h * w].to_vec()).unwrap()
}

/// The ancestral step every sampling method takes (DDPM, DPS, Score-ALD, SDEdit) draws from the
/// learned-range variance as guided-diffusion's `p_sample` does, on the full chain and on a
/// respaced one (whose betas, and so both ends of the range, change).
#[test]
fn learned_range_steps_match_guided_diffusion() {
    use diffinv::core::schedule::{alphas_cumprod, Chain};
    use diffinv::core::Backend;
    use diffinv::cpu::{CpuBackend, CpuContext};
    let io = Checkpoint::open(common::data("families/imagenet_tiny_io.safetensors")).unwrap();
    let ps = Checkpoint::open(common::data("families/imagenet_tiny_psample.safetensors")).unwrap();
    let cfg = common::data("families/imagenet_tiny.json");
    let m = Model::load(common::data("families/imagenet_tiny.pt"), Some(cfg.to_str().unwrap())).unwrap();
    let mut b = CpuBackend::new(m.cpu(), m.diffusion().variance, CpuContext::default());
    let (x, out, noise) = (tensor(&io, "x"), tensor(&io, "out"), tensor(&ps, "noise"));
    let ts = io.i64("t").unwrap().1;
    // The model output is recomputed, so the check covers the network and the step together.
    let mine = m.cpu().forward(&CTX, &x, &ts.iter().map(|&v| v as f32).collect::<Vec<_>>(), &mut Workspace::new());
    assert!(rel_err(mine.unwrap().data(), out.data()) < 1e-4);
    let (steps, betas, abar) = common::linear_schedule();
    let sub: Vec<usize> = ps.i64("sub_steps").unwrap().1.iter().map(|&v| v as usize).collect();
    let sub_abar: Vec<f64> = sub.iter().map(|&s| abar[s]).collect();
    let sub_betas: Vec<f64> =
        sub_abar.iter().enumerate().map(|(k, a)| 1.0 - a / if k == 0 { 1.0 } else { sub_abar[k - 1] }).collect();
    let mut check_abar = vec![0.0; sub.len()];
    alphas_cumprod(&sub_betas, &mut check_abar);
    let chains = [
        ("full", Chain::new(&steps, &betas, &abar).unwrap()),
        ("sub", Chain::new(&sub, &sub_betas, &check_abar).unwrap()),
    ];
    for (tag, chain) in chains {
        let want = tensor(&ps, &format!("x_prev_{tag}"));
        for (i, &t) in ts.iter().enumerate() {
            let k = chain.steps().iter().position(|&s| s == t as usize).unwrap();
            let c = chain.coefs(k);
            let (xi, oi, zi) = (image(&x, i), image(&out, i), image(&noise, i));
            let mut x0 = Tensor::zeros(xi.shape());
            b.predict_x0(&xi, &oi, &c, true, &mut x0).unwrap();
            let mut next = Tensor::zeros(xi.shape());
            b.posterior_sample(&x0, &xi, &oi, &c, b.variance(), Some(&zi), &mut next).unwrap();
            let e = rel_err(next.data(), image(&want, i).data());
            eprintln!("{tag} chain, t = {t}: {e:.2e}");
            assert!(e < 1e-5, "{tag} chain at t = {t}: relative error {e:.3e}");
        }
    }
}

/// Every diffusion method on every task it accepts, with a diffusers model (learned range, a
/// 500-step cosine schedule) through the library: a restored image of the input's size, finite,
/// with the model's evaluations counted. A few steps each: this checks the plumbing, not quality.
#[test]
fn every_method_and_task_runs_with_a_diffusers_model() {
    use diffinv::{Method, Restorer, Task};
    let m = diffusers("variant_tiny");
    let face = diffinv::image::load(common::data("celeba64/009503.png")).unwrap();
    // 16 px, the model's size: 4x4 means of the 64 px face.
    let small = ndarray::Array3::from_shape_fn((16, 16, 3), |(i, j, c)| {
        (0..16).map(|k| face[[4 * i + k / 4, 4 * j + k % 4, c]]).sum::<f32>() / 16.0
    });
    for task in Task::EVERY {
        let y = Restorer::new(&m).task(task).seed(1).measure(small.view()).unwrap();
        for method in Method::ALL.into_iter().filter(|m| m.is_diffusion()) {
            if method.check_task(task).is_err() {
                continue;
            }
            let mut r = Restorer::new(&m).task(task).method(method).steps(3).seed(2);
            if method == Method::Daps {
                let s = diffinv::Settings {
                    steps: Some(3),
                    ode_steps: Some(1),
                    langevin_steps: Some(2),
                    ..Default::default()
                };
                r = r.settings(s);
            }
            let out = r.run(y.view()).unwrap_or_else(|e| panic!("{} on {}: {e}", method.name(), task.name()));
            assert_eq!(out.image.dim(), (16, 16, 3), "{} on {}", method.name(), task.name());
            assert!(out.x.data().iter().all(|v| v.is_finite()), "{} on {}", method.name(), task.name());
            assert!(out.nfe > 0 && out.tiles == 1, "{} on {}: {} NFE", method.name(), task.name(), out.nfe);
        }
    }
    // The defaults are tables for 1000-step models: on this 500-step one, DPS runs all 500 steps
    // and SDEdit starts at the same fraction of the chain (t0 250 of 500, where 1000 steps use 500).
    let y = Restorer::new(&m).task(Task::InpaintBox).seed(1).measure(small.view()).unwrap();
    let out = Restorer::new(&m).method(Method::Dps).run(y.view()).unwrap();
    assert_eq!(out.nfe, 500);
    let out = Restorer::new(&m).method(Method::Sdedit).run(y.view()).unwrap();
    assert!(out.params.contains(&("t0", 250.0)), "{:?}", out.params);
}
