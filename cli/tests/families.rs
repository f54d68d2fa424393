//! The model families from the command line: `model info` on a diffusers folder and on a bare
//! `.pt` that is no preset, and a restoration with a diffusers folder as `--model`.

mod common;
use common::*;
use serde_json::Value;

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[test]
fn model_info_describes_a_diffusers_folder() {
    let dir = data("families/diffusers/cifar10_tiny");
    let j = json(&run(&["--json", "model", "info", s(&dir)]));
    assert_eq!(j["family"], "diffusers");
    assert_eq!(j["config_source"], "config.json");
    assert_eq!(j["params"], 2_245_763, "PyTorch's count");
    assert_eq!(j["image_size"], 32);
    assert_eq!(j["diffusion_steps"], 1000);
    assert_eq!(j["variance"], "FixedSmall");
    assert!(j["schedule"].as_str().unwrap().starts_with("linear"), "{}", j["schedule"]);
    assert_eq!(j["config"]["down_block_types"][1], "AttnDownBlock2D");
    assert!(j["gflop"].as_f64().unwrap() > 0.0);
}

#[test]
fn model_info_on_a_pt_of_no_preset_names_the_presets() {
    let pt = data("families/imagenet_tiny.pt");
    let out = run(&["model", "info", s(&pt)]);
    fails(&out, 1, &["imagenet_tiny.pt", "ffhq256", "imagenet256", "celeba64"]);
    let cfg = data("families/imagenet_tiny.json");
    let j = json(&run(&["--json", "model", "info", s(&pt), "--config", s(&cfg)]));
    assert_eq!((j["family"].as_str(), j["variance"].as_str()), (Some("adm"), Some("LearnedRange")));
}

#[test]
fn restore_takes_a_diffusers_folder() {
    let d = tmp("families");
    let (face, out) = (data("celeba64/009506.png"), d.join("out.png"));
    let model = data("families/diffusers/cifar10_tiny");
    let j = json(&run(&[
        "--json",
        "restore",
        "--model",
        s(&model),
        "--task",
        "inpaint-box",
        "--method",
        "dps",
        "--steps",
        "3",
        "--from-clean",
        s(&face),
        "-o",
        s(&out),
    ]));
    assert!(out.is_file(), "{j}");
    // The 64 px face runs through the 32 px model in tiles.
    assert!(j.to_string().contains("tiles"), "{j}");
}
