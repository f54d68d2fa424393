//! The binary under careless and hostile use (issue 20): outputs never replace what they should
//! not, every numeric option has a range checked at parse time, nothing panics, images are sized
//! from their headers, and folder runs and `eval` neither lose nor misreport work.

mod common;
use common::*;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::Output;

fn face() -> std::path::PathBuf {
    data("celeba64/009501.png")
}

fn ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status.code());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_png(path: &Path, w: u32, h: u32, shade: u8) {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([shade, (x * 7 + y) as u8, (y * 5) as u8])).save(path).unwrap();
}

/// `-o` writes through devices, follows symlinks and never names an input or another output.
#[test]
fn outputs_never_replace_what_they_should_not() {
    let d = tmp("outputs");
    let input = d.join("face.png");
    std::fs::copy(face(), &input).unwrap();
    let original = std::fs::read(&input).unwrap();
    let degrade = |o: &Path, extra: &[&str]| {
        let mut a = vec!["degrade", "--task", "inpaint-box", s(&input), "-o", s(o)];
        a.extend_from_slice(extra);
        run(&a)
    };

    // A device is written, not replaced. Where the test may make device nodes (as root), it
    // uses private ones, so a regression cannot replace the system's /dev/null.
    let device = |name: &str, minor: &str| {
        let private = d.join(name);
        let made = std::process::Command::new("mknod").args([s(&private), "c", "1", minor]).status();
        if made.is_ok_and(|st| st.success()) {
            private
        } else {
            Path::new("/dev").join(name)
        }
    };
    let null = device("null", "3");
    ok(&degrade(&null, &[]));
    assert!(std::fs::metadata(&null).unwrap().file_type().is_char_device(), "{} is still a device", null.display());
    let full = device("full", "7");
    if full.exists() {
        fails(&degrade(&full, &[]), 1, &["full", "No space left on device"]);
        assert!(std::fs::metadata(&full).unwrap().file_type().is_char_device());
    }
    // A FIFO is written into.
    let fifo = d.join("pipe.png");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    ok(&degrade(&fifo, &[]));
    assert!(reader.join().unwrap().starts_with(b"\x89PNG"), "the PNG went through the pipe");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    // A symlink is followed: its target is replaced, the link stays.
    let target = d.join("target.png");
    std::fs::write(&target, b"old").unwrap();
    let link = d.join("link.png");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    ok(&degrade(&link, &[]));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
    assert!(std::fs::read(&target).unwrap().starts_with(b"\x89PNG"), "its target holds the output");

    // Outputs equal to an input (however spelled) or to each other are usage errors, before work.
    let alias = d.join("alias.png");
    std::os::unix::fs::symlink(&input, &alias).unwrap();
    let dotted = d.join(".").join("face.png");
    let hard = d.join("hard.png");
    std::fs::hard_link(&input, &hard).unwrap();
    for o in [&input, &alias, &dotted, &hard] {
        fails(&degrade(o, &[]), 2, &["would overwrite the input"]);
    }
    let out = d.join("out.png");
    fails(&degrade(&out, &["--save-mask", s(&out)]), 2, &["--save-mask", "-o", "same file"]);
    fails(
        &run(&[
            "restore",
            "--task",
            "sr4",
            "--method",
            "hqs-tv",
            "--from-clean",
            s(&input),
            "-o",
            s(&out),
            "--save-measurement",
            s(&out),
        ]),
        2,
        &["--save-measurement", "same file"],
    );
    fails(&run(&["generate", "-n", "1", "--model", s(&input), "-o", s(&input)]), 2, &["would overwrite the input"]);
    let denoise = ["denoise", "--t", "100", s(&input), "-o", s(&out), "--save-noisy", s(&input)];
    fails(&run(&denoise), 2, &["would overwrite the input"]);
    // A rejected --save-mask leaves no -o behind.
    let mask = d.join("m.png");
    let denoise = ["degrade", "--task", "denoise", s(&input), "-o", s(&out), "--save-mask", s(&mask)];
    fails(&run(&denoise), 2, &["--save-mask"]);
    assert!(!out.exists() && !mask.exists(), "nothing written after a usage error");
    assert_eq!(std::fs::read(&input).unwrap(), original, "the input is untouched");
    let _ = std::fs::remove_dir_all(&d);
}

/// Each documented crash or silent misuse of issue 20 is now a usage error (exit 2) naming the
/// option and its range, or a clear runtime error.
#[test]
fn bad_values_are_usage_errors_with_the_range() {
    let d = tmp("values");
    let f = face();
    let o = d.join("o.png");
    let (f, o) = (s(&f), s(&o));
    let (zero_stride, zip64) = (data("hostile/zero_stride.pt"), data("hostile/zip64_lie.pt"));
    let cases: Vec<(Vec<&str>, i32, Vec<&str>)> = vec![
        (
            vec!["restore", "--task", "inpaint-box", "--box", "18446744073709551615,0,1", f, "-o", o],
            2,
            vec!["--box", "65535"],
        ),
        (vec!["restore", "--task", "inpaint-box", "--box", "0,18446744073709551615,1", f, "-o", o], 2, vec!["--box"]),
        (
            vec!["restore", "--task", "inpaint-box", "--box", "60,60,10", "--from-clean", f, "-o", o],
            2,
            vec!["--box", "inside the 64x64"],
        ),
        (vec!["restore", "--task", "deblur-gauss", "--blur-std", "inf", f, "-o", o], 2, vec!["--blur-std", "(0, 256]"]),
        (vec!["restore", "--task", "deblur-gauss", "--blur-std", "1e9", f, "-o", o], 2, vec!["--blur-std"]),
        (
            vec!["restore", "--task", "deblur-gauss", "--kernel-size", "100001", f, "-o", o],
            2,
            vec!["--kernel-size", "1023"],
        ),
        (vec!["restore", "--task", "deblur-motion", "--kernel-size", "10001", f, "-o", o], 2, vec!["--kernel-size"]),
        (vec!["restore", "--task", "deblur-gauss", "--kernel-size", "4", f, "-o", o], 2, vec!["odd"]),
        (vec!["degrade", "--task", "inpaint-box", "--resize", "100000", f, "-o", o], 2, vec!["--resize", "4096"]),
        (vec!["bench", "unet", "--size", "1048576"], 2, vec!["--size", "8..=1024"]),
        (vec!["--threads", "1000000000000", "metrics", f, f], 2, vec!["--threads", "1..=1024"]),
        (
            vec!["restore", "--task", "sr4", "--method", "dps", "--zeta=-1", f, "-o", o],
            2,
            vec!["--zeta", "[0, 1000000]"],
        ),
        (vec!["restore", "--task", "sr4", "--from-clean", "--noise", "1e30", f, "-o", o], 2, vec!["--noise", "[0, 1]"]),
        (vec!["restore", "--task", "sr4", "--from-clean", "--steps", "0", f, "-o", o], 2, vec!["--steps"]),
        (
            vec!["restore", "--task", "sr4", "--from-clean", "--steps", "1001", f, "-o", o],
            2,
            vec!["--steps", "1..=1000"],
        ),
        (
            vec!["denoise", "--t", "250", "--mode", "reverse", "--steps", "3", f, "-o", o],
            2,
            vec!["--t", "nearest: 0, 500"],
        ),
        (vec!["denoise", "--t", "1000", f, "-o", o], 2, vec!["--t"]),
        (vec!["model", "info", s(&d)], 1, vec!["is a directory"]),
        (vec!["model", "run", "--input", s(&zero_stride), "-o", o], 1, vec!["zero_stride.pt", "repeats elements"]),
        (vec!["model", "info", s(&zip64), "--config", "celeba64"], 1, vec!["zip64_lie.pt", "more than its data"]),
        (vec!["restore", "--task", "sr4", "--model", s(&d), "--from-clean", f, "-o", o], 1, vec!["is a directory"]),
    ];
    for (args, code, needles) in cases {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: '{n}' in {err}");
        }
        assert!(!Path::new(o).exists(), "{args:?} wrote an output");
    }
    // --threads above the core count is capped with a warning.
    let out = run(&["--threads", "1024", "metrics", f, f]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--threads 1024 is more than the") || err.is_empty(), "{err}");
}

/// Every numeric option of every command, given hostile values: exit 2 for an invalid value,
/// else the command goes on to fail on its missing input (exit 1); never a panic, never a hang.
#[test]
fn numeric_options_are_fuzzed() {
    let d = tmp("fuzz");
    let missing = d.join("missing.png");
    let out = d.join("o.png");
    let (m, o) = (s(&missing), s(&out));
    let model = d.join("missing.safetensors");
    let model = s(&model); // a missing model file, and a missing config file for `bench`
    let restore = ["restore", "--task", "deblur-gauss", m, "-o", o];
    let cmds: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            restore.to_vec(),
            vec![
                "--missing",
                "--blur-std",
                "--kernel-size",
                "--intensity",
                "--scale",
                "--noise",
                "--steps",
                "--zeta",
                "--lambda",
                "--t0",
                "--threads",
                "--seed",
            ],
        ),
        (vec!["degrade", "--task", "inpaint-random", m, "-o", o], vec!["--missing", "--resize", "--noise", "--scale"]),
        (vec!["denoise", "--t", "100", m, "-o", o], vec!["--t", "--steps"]),
        (vec!["generate", "--model", model, "-o", o], vec!["-n", "--steps", "--ddim-eta", "--batch"]),
        (
            vec!["eval", "--tasks", "sr4", "--methods", "hqs-tv", "--data", m, "-o", o],
            vec!["-n", "--noise", "--grid-rows"],
        ),
        (vec!["bench", "unet", "--config", model], vec!["--batch", "--size", "--reps"]),
    ];
    let values = [
        "0",
        "-0",
        "-1",
        "1",
        "3",
        "0.5",
        "1e-300",
        "inf",
        "-inf",
        "nan",
        "1e309",
        "1e30",
        "18446744073709551615",
        "18446744073709551616",
        "4294967297",
        "1000000000000",
        "100001",
        "1025",
        "0x10",
        "1,2",
        "",
        "abc",
    ];
    let mut runs = 0;
    for (cmd, opts) in &cmds {
        for opt in opts {
            for v in values {
                let mut args = cmd.clone();
                let flag = format!("{opt}={v}");
                if opt.starts_with("--") {
                    args.push(&flag);
                } else {
                    args.extend([opt, v]);
                }
                let out = run(&args);
                let err = String::from_utf8_lossy(&out.stderr);
                let code = out.status.code();
                assert!(code == Some(1) || code == Some(2), "{args:?}: exit {code:?}: {err}");
                assert!(!err.contains("panicked"), "{args:?}: {err}");
                if code == Some(2) {
                    assert!(err.contains(opt.trim_start_matches('-')) || err.contains(v), "{args:?}: {err}");
                }
                runs += 1;
            }
        }
    }
    assert!(runs > 500, "{runs} runs");
}

/// Images below the metrics' windows get the metrics that apply (n/a for the rest); an image
/// declaring 16384 x 16384 is refused from its header with the limit, by every command.
#[test]
fn image_sizes_are_checked_from_headers() {
    let d = tmp("sizes");
    for side in [1u32, 11, 20, 30] {
        let (a, b) = (d.join(format!("a{side}.png")), d.join(format!("b{side}.png")));
        write_png(&a, side, side, 90);
        write_png(&b, side, side, 120);
        let text = ok(&run(&["metrics", s(&a), s(&b)]));
        assert!(text.contains("PSNR") && text.contains("n/a"), "{side}px: {text}");
        let v: serde_json::Value = serde_json::from_str(&ok(&run(&["--json", "metrics", s(&a), s(&b)]))).unwrap();
        assert!(v["psnr"].is_number() && v["lpips_alex"].is_null(), "{side}px: {v}");
    }
    // restore --from-clean on a 20 px image computes its quality before writing its output.
    let (a, r) = (d.join("a20.png"), d.join("r20.png"));
    let out = run(&["restore", "--task", "inpaint-box", "--method", "hqs-tv", "--from-clean", s(&a), "-o", s(&r)]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("LPIPS alex n/a") && r.exists(), "{text}");

    // A valid PNG header declaring 16384 x 16384 (once decoded to 10 GB before the error).
    let big = d.join("big.png");
    std::fs::write(&big, png_with_size(16384, 16384)).unwrap();
    let o = d.join("o.png");
    for args in [
        vec!["metrics", s(&big), s(&big)],
        vec!["degrade", "--task", "sr4", s(&big), "-o", s(&o)],
        vec!["restore", "--task", "sr4", "--method", "hqs-tv", "--from-clean", s(&big), "-o", s(&o)],
        vec!["restore", "--task", "sr4", s(&big), "-o", s(&o)],
        vec!["denoise", "--t", "100", s(&big), "-o", s(&o)],
    ] {
        fails(&run(&args), 1, &["big.png", "16384x16384"]);
    }
    // metrics has its own, smaller limit, read from the header too.
    let two_k = d.join("two_k.png");
    std::fs::write(&two_k, png_with_size(2048, 2048)).unwrap();
    fails(&run(&["metrics", s(&two_k), s(&two_k)]), 1, &["2048x2048", "768x768"]);
    assert!(!o.exists());
}

/// A 1 px PNG with its IHDR rewritten to `w x h` and the CRC fixed: a valid header, no pixels.
fn png_with_size(w: u32, h: u32) -> Vec<u8> {
    let d = tmp(&format!("png{w}x{h}"));
    let p = d.join("one.png");
    write_png(&p, 1, 1, 0);
    let mut b = std::fs::read(&p).unwrap();
    b[16..20].copy_from_slice(&w.to_be_bytes());
    b[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&b[12..29]);
    b[29..33].copy_from_slice(&crc.to_be_bytes());
    b
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

/// Folder runs refuse ambiguous or self-overwriting layouts, and an interrupted run leaves no
/// empty output folder.
#[test]
fn folder_runs_refuse_what_would_lose_work() {
    let d = tmp("folders");
    let input = two_faces(&d.join("faces"));
    let hqs = ["restore", "--task", "sr4", "--method", "hqs-tv", "--from-clean"];
    // Two images with one stem would map to one output.
    image::open(input.join("009501.png")).unwrap().to_rgb8().save(input.join("009501.jpg")).unwrap();
    let out = d.join("out");
    let args: Vec<&str> = hqs.iter().copied().chain([s(&input), "-o", s(&out)]).collect();
    fails(&run(&args), 2, &["009501.jpg", "009501.png"]);
    assert!(!out.exists(), "no output folder after a refusal");
    std::fs::remove_file(input.join("009501.jpg")).unwrap();
    // -o the input folder.
    let args: Vec<&str> = hqs.iter().copied().chain([s(&input), "-o", s(&input)]).collect();
    fails(&run(&args), 2, &["would overwrite the input"]);

    // Ctrl-C before the first image finishes leaves no output folder.
    let mut child = bin()
        .args(["restore", "--task", "inpaint-box", "--method", "dps", "--from-clean", s(&input), "-o", s(&out)])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let _ = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert!(!out.exists(), "no empty output folder after an interruption");
}

/// `eval` keys each cell on every setting that changes it (a changed --noise recomputes), never
/// shows a tampered cell, and skips corrupt images, listing them.
#[test]
fn eval_cells_are_keyed_and_corrupt_images_skipped() {
    let d = tmp("eval-keys");
    let data = two_faces(&d.join("faces"));
    std::fs::write(data.join("broken.png"), b"\x89PNG not really").unwrap();
    let out = d.join("report");
    let eval = |noise: &str| -> serde_json::Value {
        let args = [
            "--json",
            "eval",
            "--data",
            s(&data),
            "--tasks",
            "inpaint-box",
            "--methods",
            "hqs-tv",
            "-n",
            "3",
            "--noise",
            noise,
            "-o",
            s(&out),
        ];
        serde_json::from_str(&ok(&run(&args))).unwrap()
    };
    let first = eval("0.05");
    assert_eq!((first["cells"].as_u64(), first["computed"].as_u64()), (Some(2), Some(2)), "{first}");
    let skipped = first["skipped"].to_string();
    assert!(skipped.contains("broken.png"), "{first}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Skipped images") && md.contains("broken.png"), "{md}");
    let psnr = |v: &serde_json::Value| v["summary"][0]["psnr_mean"].as_f64().unwrap();

    // Same settings: read back. Another noise level: recomputed, with other numbers.
    assert_eq!(eval("0.05")["read_back"].as_u64(), Some(2));
    let noisier = eval("0.2");
    assert_eq!(noisier["computed"].as_u64(), Some(2), "{noisier}");
    assert!(psnr(&noisier) < psnr(&first) - 0.5, "{} vs {}", psnr(&noisier), psnr(&first));

    // A tampered cell (its numbers edited) is recomputed, not shown.
    let cell = out.join("cells/inpaint-box/hqs-tv/009501.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cell).unwrap()).unwrap();
    v["psnr"] = serde_json::json!(-0.0);
    v["ssim"] = serde_json::json!(7.5);
    std::fs::write(&cell, v.to_string()).unwrap();
    let again = eval("0.2");
    assert_eq!((again["computed"].as_u64(), again["read_back"].as_u64()), (Some(1), Some(1)), "{again}");
    assert!((psnr(&again) - psnr(&noisier)).abs() < 1e-9, "the recomputed cell has its true numbers");

    // The report folder may not be the data folder.
    let args = ["eval", "--data", s(&data), "--tasks", "inpaint-box", "--methods", "hqs-tv", "-o", s(&data)];
    fails(&run(&args), 2, &["-o"]);
}
