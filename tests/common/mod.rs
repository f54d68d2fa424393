//! Helpers shared by the integration tests: fixture paths and error measures.
#![allow(dead_code)]

use diffinv::cpu::Tensor;
use diffinv::model::checkpoint::Checkpoint;
use diffinv::CpuContext;
use std::path::PathBuf;
use std::sync::LazyLock;

/// The default CPU context (the best kernel this CPU has, f32, Winograd).
pub static CTX: LazyLock<CpuContext> = LazyLock::new(CpuContext::default);

/// A file under `tests/data`.
pub fn data(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(p)
}

/// A golden fixture.
pub fn golden(name: &str) -> Checkpoint {
    Checkpoint::open(data(&format!("golden/{name}.safetensors"))).expect("golden fixture")
}

/// A 4-D f32 tensor from a fixture.
pub fn tensor(c: &Checkpoint, name: &str) -> Tensor {
    let (s, v) = c.f32(name).unwrap_or_else(|e| panic!("{e}"));
    let mut shape = [1usize; 4];
    let off = 4 - s.len();
    shape[off..].copy_from_slice(&s);
    Tensor::from_vec(shape, v).unwrap()
}

/// `max|a - b| / max|b|`, the measure the fixtures' tolerances are stated in.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let m = b.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64)).max(1e-30);
    a.iter().zip(b).fold(0.0f64, |e, (x, y)| e.max((*x as f64 - *y as f64).abs())) / m
}

/// Standard normal noise of `shape` from stream (seed, 0).
pub fn randn(shape: [usize; 4], seed: u64) -> Tensor {
    let mut t = Tensor::zeros(shape);
    diffinv::core::NoiseStream::new(seed, 0).fill_normal(t.data_mut());
    t
}

/// A variant's random-weight model with an input, timesteps, a cotangent, and its CPU output
/// and input gradient.
pub struct VariantCase {
    pub model: diffinv::Model,
    pub x: Tensor,
    pub t: [f32; 2],
    pub cot: Tensor,
    pub out: Tensor,
    pub grad: Tensor,
}

/// The `i`-th of [`unet_variants`] run forward and backward on the CPU (seeded weights and data).
pub fn variant_case(i: usize, cfg: &diffinv::model::UNetConfig) -> VariantCase {
    use diffinv::cpu::unet::Workspace;
    let model = diffinv::Model::random(cfg, 10 + i as u64).unwrap();
    let unet = model.cpu();
    let x = randn([2, 3, 16, 16], 1);
    let t = [37.0f32, 801.0];
    let mut ws = Workspace::new();
    let (out, tape) = unet.forward_with_tape(&CTX, &x, &t, &mut ws).unwrap();
    let cot = randn(out.shape(), 2);
    let grad = unet.vjp(&CTX, tape, &cot, &mut ws).unwrap();
    VariantCase { model, x, t, cot, out, grad }
}

/// The tiny architecture variants that cover every switch of the UNet: (config, what it covers).
pub fn unet_variants() -> Vec<(diffinv::model::UNetConfig, &'static str)> {
    let base = r#"{"image_size": 16, "in_channels": 3, "model_channels": 32, "num_res_blocks": 1,
        "attention_resolutions": [8, 4], "channel_mult": [1, 2, 2], "num_head_channels": 16"#;
    [
        (r#", "out_channels": 6}"#, "learned sigma, scale-shift, resblock up/down, legacy attention"),
        (
            r#", "use_scale_shift_norm": false, "resblock_updown": false, "use_new_attention_order": true}"#,
            "no scale-shift, conv resampling, new attention order",
        ),
        (
            r#", "resblock_updown": false, "conv_resample": false, "num_res_blocks": 2}"#,
            "pool/nearest resampling, two ResBlocks per level",
        ),
    ]
    .into_iter()
    .map(|(extra, what)| (diffinv::model::UNetConfig::from_json(&format!("{base}{extra}")).unwrap(), what))
    .chain(std::iter::once((
        diffinv::model::UNetConfig::from_json(
            r#"{"_class_name": "UNet2DModel", "sample_size": 16, "block_out_channels": [32, 64, 64],
                "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"], "layers_per_block": 1,
                "attention_head_dim": 16, "norm_num_groups": 16, "norm_eps": 1e-6, "downsample_padding": 0,
                "flip_sin_to_cos": false, "freq_shift": 1}"#,
        )
        .unwrap(),
        "diffusers UNet2DModel: right/bottom-padded downsampling, [sin, cos] embedding, eps 1e-6, 16 groups",
    )))
    .collect()
}

/// The betas and cumulative alphas of the 1000-step linear schedule, and its timesteps, for
/// `Chain::new(&steps, &betas, &abar)`.
pub fn linear_schedule() -> (Vec<usize>, Vec<f64>, Vec<f64>) {
    use diffinv::core::schedule::{alphas_cumprod, BetaSchedule};
    let mut betas = vec![0.0; 1000];
    BetaSchedule::LINEAR.fill_betas(&mut betas);
    let mut abar = vec![0.0; 1000];
    alphas_cumprod(&betas, &mut abar);
    ((0..1000).collect(), betas, abar)
}
