//! LPIPS v0.1 against the official `lpips` 0.1.4 package (tests/data/golden/lpips.json).

mod common;
use diffinv::cpu::image_io::{load_image, Fit};
use diffinv::cpu::metrics::{Lpips, LpipsNet};

fn image(rel: &str) -> diffinv::cpu::Tensor {
    let rel = rel
        .replace("data/lpips_examples/", "images/lpips/")
        .replace("data/ffhq256/", "images/ffhq256/")
        .replace("data/celeba64/", "celeba64/");
    load_image(&common::data(&rel), Fit::Any).unwrap()
}

#[test]
fn lpips_matches_the_official_package() {
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::data("golden/lpips.json")).unwrap()).unwrap();
    for net in [LpipsNet::Alex, LpipsNet::Vgg] {
        let m = Lpips::from_checkpoint(net, &diffinv::assets::lpips(net).unwrap()).unwrap();
        for p in j["pairs"].as_array().unwrap() {
            let (a, b) = (image(p["a"].as_str().unwrap()), image(p["b"].as_str().unwrap()));
            let (d, layers) = m.distance_layers(&a, &b).unwrap()[0];
            let want = p[net.name()]["d_f64"].as_f64().unwrap();
            eprintln!("{} {}: {d:.7} vs {want:.7} ({:.1e})", net.name(), p["name"].as_str().unwrap(), (d - want).abs());
            assert!((d - want).abs() <= 1e-4, "{} {}: {d} vs {want}", net.name(), p["name"]);
            for (k, (l, w)) in layers.iter().zip(p[net.name()]["per_layer"].as_array().unwrap()).enumerate() {
                assert!((l - w.as_f64().unwrap()).abs() <= 1e-4, "layer {k}");
            }
        }
        // A distance to itself is 0.
        let a = image("data/celeba64/009501.png");
        assert!(m.distance(&a, &a).unwrap()[0].abs() < 1e-12);
    }
}
