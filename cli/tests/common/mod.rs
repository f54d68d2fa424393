//! What the CLI tests share: the binary, the test data, scratch folders and the failure check.
#![allow(dead_code)] // each test binary uses its own part

pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_diffinv"))
}

pub fn data(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data").join(p)
}

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffinv-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("runs")
}

/// Asserts a clean failure: the exit code, one `diffinv: error:` line containing `needles`.
pub fn fails(out: &Output, code: i32, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "exit code for: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "no panic: {err}");
    if code == 1 {
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {err}");
        assert!(lines[0].starts_with("diffinv: error: "), "{err}");
    }
    for n in needles {
        assert!(err.contains(n), "'{n}' in: {err}");
    }
}

/// A folder `dir` holding two dev faces, 009501 and 009502.
pub fn two_faces(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for f in ["009501.png", "009502.png"] {
        std::fs::copy(data(&format!("celeba64/{f}")), dir.join(f)).unwrap();
    }
    dir.to_path_buf()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A white PNG of `side x side`.
pub fn image_bytes(side: u32) -> Vec<u8> {
    let d = tmp(&format!("img{side}"));
    let p = d.join("w.png");
    let img = image::RgbImage::from_pixel(side, side, image::Rgb([255, 255, 255]));
    img.save(&p).unwrap();
    std::fs::read(&p).unwrap()
}
