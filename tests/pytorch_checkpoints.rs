//! PyTorch checkpoints (zip and legacy formats, f32 and f16) load through the restricted
//! unpickler and give the same network as the safetensors copy of the same weights.

mod common;
use common::{rel_err, tensor, CTX};
use diffinv::cpu::unet::Workspace;
use diffinv::model::checkpoint::Checkpoint;
use diffinv::Model;

fn run(file: &str, config: Option<&str>) -> (Vec<f32>, &'static str) {
    let io = Checkpoint::open(common::data("pt/tiny_io.safetensors")).unwrap();
    let m = Model::load(common::data(&format!("pt/{file}")), config).unwrap();
    let t: Vec<f32> = io.i64("t").unwrap().1.iter().map(|&v| v as f32).collect();
    let out = m.cpu().forward(&CTX, &tensor(&io, "x"), &t, &mut Workspace::new()).unwrap();
    (out.into_vec(), m.format())
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
    use diffinv::model::Error as M;
    let err = Model::load(common::data("pt/tiny.pt"), None).err().expect("needs a config");
    assert!(matches!(&err, diffinv::Error::Model(M::NoConfig { file }) if file.ends_with("tiny.pt")), "{err}");
    assert!(err.to_string().contains("no config"), "{err}");
    let err = Model::load(common::data("pt/tiny.pt"), Some("celeba64")).err().expect("wrong config");
    let msg = err.to_string();
    assert!(msg.contains("tiny.pt") && msg.contains("tensor"), "{msg}");
    match err {
        diffinv::Error::Model(M::TensorShape { tensor, found, expected, .. }) => {
            assert!(!tensor.is_empty() && found != expected, "{tensor}: {found:?} vs {expected:?}")
        }
        diffinv::Error::Model(M::MissingTensor { tensor, .. }) => assert!(!tensor.is_empty()),
        e => panic!("expected a tensor error naming the tensor, got {e:?}"),
    }
}
