//! PyTorch checkpoints (zip and legacy formats, f32 and f16) load through the restricted
//! unpickler and give the same network as the safetensors copy of the same weights.

mod common;
use common::{rel_err, tensor};
use diffinv::cpu::checkpoint::Checkpoint;
use diffinv::cpu::unet::{load_model, ModelSource, Workspace};

fn run(file: &str, config: Option<&str>) -> (Vec<f32>, &'static str) {
    let io = Checkpoint::open(common::data("pt/tiny_io.safetensors")).unwrap();
    let m = load_model(&ModelSource::Path(common::data(&format!("pt/{file}"))), config).unwrap();
    let t: Vec<f32> = io.i64("t").unwrap().1.iter().map(|&v| v as f32).collect();
    let out = m.unet.forward(&tensor(&io, "x"), &t, &mut Workspace::new()).unwrap();
    (out.into_vec(), m.format)
}

#[test]
fn pytorch_files_load_like_safetensors() {
    let cfg = r#"{"image_size": 16, "in_channels": 3, "model_channels": 32, "out_channels": 6, "num_res_blocks": 1,
                 "attention_resolutions": [8], "channel_mult": [1, 1], "num_head_channels": 16}"#;
    let io = Checkpoint::open(common::data("pt/tiny_io.safetensors")).unwrap();
    let want = io.f32("out").unwrap().1;
    let (st, fmt) = run("tiny.safetensors", None);
    assert_eq!(fmt, "safetensors");
    let e = rel_err(&st, &want);
    assert!(e < 1e-4, "safetensors vs PyTorch float64: {e:.2e}");
    let (zip, fmt) = run("tiny.pt", Some(cfg));
    assert_eq!(fmt, "pytorch-zip");
    assert_eq!(zip, st, "zip .pt gives bit-identical outputs");
    let (legacy, fmt) = run("tiny_legacy.pt", Some(cfg));
    assert_eq!(fmt, "pytorch-legacy");
    assert_eq!(legacy, st, "legacy .pt gives bit-identical outputs");
    let (half, _) = run("tiny_f16.pt", Some(cfg));
    let e = rel_err(&half, &st);
    assert!(e > 0.0 && e < 1e-2, "f16 weights stay close: {e:.2e}");
}

#[test]
fn pytorch_file_without_config_is_a_clear_error() {
    let err =
        load_model(&ModelSource::Path(common::data("pt/tiny.pt")), None).err().expect("needs a config").to_string();
    assert!(err.contains("no config") && err.contains("--config"), "{err}");
    let err = load_model(&ModelSource::Path(common::data("pt/tiny.pt")), Some("celeba64"))
        .err()
        .expect("wrong config")
        .to_string();
    assert!(err.contains("tiny.pt") && err.contains("tensor"), "{err}");
}
