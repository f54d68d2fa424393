//! `--noise auto` (the estimate in the JSON, the default for measurement files) and images of
//! any size (`--fit tile|resize|crop`, tiles in the JSON, memory that does not grow with them).

mod common;
use common::*;
use serde_json::Value;

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

fn size(p: &std::path::Path) -> (u32, u32) {
    image::image_dimensions(p).unwrap()
}

#[test]
fn a_measurement_file_gets_an_estimated_noise_level() {
    let d = tmp("auto");
    let (y, out) = (d.join("y.png"), d.join("out.png"));
    let face = data("celeba64/009504.png");
    let ok = run(&["degrade", "--task", "deblur-motion", "--noise", "0.1", "--seed", "4", s(&face), "-o", s(&y)]);
    assert!(ok.status.success());
    // The default for a measurement file is auto: the estimate is printed and in the JSON.
    let j = json(&run(&[
        "restore",
        "--task",
        "deblur-motion",
        "--seed",
        "4",
        "--method",
        "hqs-tv",
        s(&y),
        "-o",
        s(&out),
        "--json",
    ]));
    let est = j["sigma_y_estimated"].as_f64().unwrap();
    assert!((est - 0.1).abs() < 0.015, "estimated {est}");
    assert_eq!(j["sigma_y"].as_f64(), Some(est));
    // A given level is used as it is.
    let j = json(&run(&[
        "restore",
        "--task",
        "deblur-motion",
        "--noise",
        "0.08",
        "--method",
        "hqs-tv",
        s(&y),
        "-o",
        s(&out),
        "--json",
    ]));
    assert_eq!((j["sigma_y"].as_f64(), j.get("sigma_y_estimated")), (Some(0.08), None));
    // Simulating a measurement needs a level.
    let face_s = s(&face);
    fails(
        &run(&["restore", "--task", "denoise", "--from-clean", "--noise", "auto", face_s, "-o", s(&out)]),
        2,
        &["--noise auto"],
    );
    fails(&run(&["degrade", "--task", "denoise", "--noise", "auto", face_s, "-o", s(&out)]), 2, &["--noise auto"]);
    fails(&run(&["degrade", "--task", "denoise", "--noise", "loud", face_s, "-o", s(&out)]), 2, &["'auto'"]);
}

#[test]
fn fit_resizes_crops_or_tiles() {
    let d = tmp("fit");
    let big = data("images/ffhq256/00000.png");
    let out = d.join("out.png");
    for fit in ["resize", "crop"] {
        let j = json(&run(&[
            "restore",
            "--task",
            "inpaint-box",
            "--from-clean",
            "--method",
            "diffpir",
            "--steps",
            "2",
            "--fit",
            fit,
            s(&big),
            "-o",
            s(&out),
            "--json",
        ]));
        assert_eq!((size(&out), j["tiles"].as_u64()), ((64, 64), Some(1)), "{fit}");
    }
    // Tiling is the default: a 100 x 72 measurement restores at its size on 2 x 2 tiles.
    let y = d.join("y.png");
    image::imageops::resize(&image::open(&big).unwrap().to_rgb8(), 100, 72, image::imageops::FilterType::Triangle)
        .save(&y)
        .unwrap();
    let j = json(&run(&[
        "restore",
        "--task",
        "denoise",
        "--method",
        "diffpir",
        "--steps",
        "2",
        s(&y),
        "-o",
        s(&out),
        "--json",
    ]));
    assert_eq!((size(&out), j["tiles"].as_u64()), ((100, 72), Some(4)));
}

/// DPS keeps one tile's tape at a time: a 192 x 192 image (16 tiles) peaks within 150 MiB of
/// a 64 x 64 one (one tape of the 64 px model is about 60 MiB; sixteen would add about 1 GiB).
#[test]
fn memory_does_not_grow_with_the_tile_count() {
    let d = tmp("mem");
    let (y, out) = (d.join("y.png"), d.join("out.png"));
    let peak = |img: &std::path::Path| {
        let j = json(&run(&[
            "restore",
            "--task",
            "denoise",
            "--method",
            "dps",
            "--steps",
            "1",
            "--noise",
            "0.05",
            s(img),
            "-o",
            s(&out),
            "--json",
            "--threads",
            "2",
        ]));
        (j["peak_rss_mib"].as_f64().unwrap(), j["tiles"].as_u64().unwrap())
    };
    let (small, t1) = peak(&data("celeba64/009501.png"));
    image::imageops::resize(
        &image::open(data("images/ffhq256/00000.png")).unwrap().to_rgb8(),
        192,
        192,
        image::imageops::FilterType::Triangle,
    )
    .save(&y)
    .unwrap();
    let (big, t16) = peak(&y);
    assert_eq!((t1, t16), (1, 16));
    assert!(big < small + 150.0, "peak RSS {big:.0} MiB on 16 tiles vs {small:.0} MiB on one");
}
