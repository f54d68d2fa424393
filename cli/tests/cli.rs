//! The `diffinv` binary as users meet it: every documented error is one clear line with the right
//! exit code (1 runtime, 2 usage) and no panic; folder runs continue past bad files and resume;
//! outputs do not depend on --threads; `eval` writes its report and resumes.

mod common;
use common::*;
use std::process::Command;

#[test]
fn errors_are_one_clear_line() {
    let d = tmp("errors");
    let face = data("celeba64/009501.png");
    let out = d.join("out.png");
    // Missing input.
    fails(
        &run(&["restore", "--task", "inpaint-box", "--method", "hqs-tv", "/no/such/face.png", "-o", s(&out)]),
        1,
        &["/no/such/face.png"],
    );
    // Not an image.
    let txt = d.join("notes.png");
    std::fs::write(&txt, "hello").unwrap();
    fails(
        &run(&["restore", "--task", "deblur-gauss", "--from-clean", s(&txt), "-o", s(&out)]),
        1,
        &["notes.png", "not a readable image"],
    );
    let txt2 = d.join("notes.txt");
    std::fs::write(&txt2, "hello").unwrap();
    fails(
        &run(&["restore", "--task", "deblur-gauss", "--from-clean", s(&txt2), "-o", s(&out)]),
        1,
        &["notes.txt", "not an image"],
    );
    // Too small for the crop asked for, with the alternatives.
    let small = d.join("small.png");
    std::fs::write(&small, image_bytes(32)).unwrap();
    fails(
        &run(&["restore", "--task", "deblur-gauss", "--from-clean", "--fit", "crop", s(&small), "-o", s(&out)]),
        1,
        &["32x32", "64x64", "resize or tile"],
    );
    // Corrupt and truncated checkpoints.
    let junk = d.join("junk.safetensors");
    std::fs::write(&junk, [7u8; 100]).unwrap();
    fails(&run(&["model", "info", s(&junk)]), 1, &["junk.safetensors", "not a checkpoint"]);
    let good = std::fs::read(data("pt/tiny.safetensors")).unwrap();
    let cut = d.join("cut.safetensors");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    fails(&run(&["model", "info", s(&cut)]), 1, &["cut.safetensors", "outside"]);
    let cutpt = d.join("cut.pt");
    let pt = std::fs::read(data("pt/tiny.pt")).unwrap();
    std::fs::write(&cutpt, &pt[..pt.len() / 2]).unwrap();
    fails(&run(&["model", "info", s(&cutpt), "--config", "celeba64"]), 1, &["cut.pt"]);
    // A PyTorch file without --config.
    fails(&run(&["model", "info", s(&data("pt/tiny.pt"))]), 1, &["--config"]);
    // Unknown task or method, incompatible options: usage errors.
    fails(&run(&["restore", "--task", "colorize", s(&face), "-o", s(&out)]), 2, &["colorize", "inpaint-box"]);
    fails(&run(&["restore", "--task", "sr4", "--method", "magic", s(&face), "-o", s(&out)]), 2, &["magic"]);
    fails(&run(&["restore", "--task", "deblur-gauss", "--box", "1,2,3", s(&face), "-o", s(&out)]), 2, &["--box"]);
    fails(
        &run(&["restore", "--task", "sr4", "--save-measurement", "m.png", s(&face), "-o", s(&out)]),
        2,
        &["--from-clean"],
    );
    fails(&run(&["restore", "--task", "sr4", "--steps", "-3", s(&face), "-o", s(&out)]), 2, &[]);
    // A mask of the wrong size.
    let mask = d.join("mask.png");
    let small = image_bytes(32);
    std::fs::write(&mask, small).unwrap();
    fails(
        &run(&[
            "restore",
            "--task",
            "inpaint-box",
            "--method",
            "hqs-tv",
            "--mask",
            s(&mask),
            "--from-clean",
            s(&face),
            "-o",
            s(&out),
        ]),
        1,
        &["mask", "64x64"],
    );
    // A measurement smaller than the crop the task needs on the 64 px model (any size is
    // tiled by default: a 64x64 SR measurement is then a 64 -> 256 problem).
    let tiny = out.with_file_name("tiny.png");
    std::fs::write(&tiny, image_bytes(8)).unwrap();
    let cropped = run(&["restore", "--task", "sr4", "--method", "dps", "--fit", "crop", s(&tiny), "-o", s(&out)]);
    fails(&cropped, 1, &["8x8", "16x16"]);
    assert!(!out.exists(), "no output after a failure");
}

#[test]
fn every_command_has_help_with_examples() {
    for cmd in ["restore", "degrade", "generate", "denoise", "metrics", "eval"] {
        let out = run(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example"), "{cmd} --help shows examples");
    }
    for sub in [["model", "info"], ["model", "run"], ["bench", "unet"]] {
        let out = run(&[sub[0], sub[1], "--help"]);
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Example"));
    }
}

#[test]
fn folders_continue_past_bad_files_and_resume() {
    let d = tmp("folder");
    let input = two_faces(&d.join("in"));
    std::fs::write(input.join("broken.png"), b"not a png").unwrap();
    let out = d.join("out");
    let args =
        ["--json", "restore", "--task", "deblur-gauss", "--method", "hqs-tv", "--from-clean", s(&input), "-o", s(&out)];
    let r = run(&args);
    assert_eq!(r.status.code(), Some(1), "a failed image makes the run fail");
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["ok"], 2);
    assert_eq!(v["errors"], 1);
    assert!(v["failed"][0]["error"].as_str().unwrap().contains("broken.png"));
    assert!(v["images"][0]["psnr"].as_f64().unwrap() > v["images"][0]["measurement_psnr"].as_f64().unwrap());
    assert!(out.join("009501.png").exists() && out.join("009502.png").exists());
    // Re-running skips finished outputs.
    let v: serde_json::Value = serde_json::from_slice(&run(&args).stdout).unwrap();
    assert_eq!(v["skipped"], 2);
    assert_eq!(v["ok"], 0);
}

#[test]
fn denoise_runs_over_a_folder_and_resumes() {
    let d = tmp("denoise-folder");
    let input = two_faces(&d.join("in"));
    std::fs::write(input.join("broken.png"), b"\x89PNG truncated").unwrap();
    let (out, noisy) = (d.join("out"), d.join("noisy"));
    let args = ["--json", "denoise", "--t", "100", s(&input), "-o", s(&out), "--save-noisy", s(&noisy)];
    let r = run(&args);
    assert_eq!(r.status.code(), Some(1), "a failed image makes the run fail");
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!((v["ok"].as_u64(), v["errors"].as_u64()), (Some(2), Some(1)));
    assert!(v["failed"][0]["error"].as_str().unwrap().contains("broken.png"));
    for f in ["009501.png", "009502.png"] {
        assert!(out.join(f).exists() && noisy.join(f).exists(), "{f} and its noisy image are written");
    }
    // Each image gets its own noise: the two noisy PSNRs differ, both far below the result's.
    let im = &v["images"];
    assert_ne!(im[0]["measurement_psnr"], im[1]["measurement_psnr"]);
    assert!(im[0]["psnr"].as_f64().unwrap() > im[0]["measurement_psnr"].as_f64().unwrap() + 3.0);
    let v: serde_json::Value = serde_json::from_slice(&run(&args).stdout).unwrap();
    assert_eq!((v["ok"].as_u64(), v["skipped"].as_u64()), (Some(0), Some(2)), "finished outputs are skipped");
}

#[test]
fn output_does_not_depend_on_threads() {
    let d = tmp("threads");
    let face = data("celeba64/009503.png");
    let mut outs = Vec::new();
    for t in ["1", "2"] {
        let o = d.join(format!("t{t}.png"));
        let r = run(&[
            "--threads",
            t,
            "--seed",
            "5",
            "restore",
            "--task",
            "inpaint-box",
            "--method",
            "dps",
            "--steps",
            "4",
            "--from-clean",
            s(&face),
            "-o",
            s(&o),
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        outs.push(std::fs::read(&o).unwrap());
    }
    assert_eq!(outs[0], outs[1], "identical output bytes with --threads 1 and 2");
}

#[test]
fn json_fields_of_restore_are_the_documented_ones() {
    let d = tmp("json");
    let r = run(&[
        "--json",
        "restore",
        "--task",
        "sr4",
        "--method",
        "diffpir",
        "--steps",
        "5",
        "--from-clean",
        s(&data("celeba64/009504.png")),
        "-o",
        s(&d.join("o.png")),
    ]);
    assert!(r.status.success());
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    for k in [
        "psnr",
        "ssim",
        "lpips_alex",
        "lpips_vgg",
        "measurement_psnr",
        "measurement_ssim",
        "measurement_lpips_alex",
        "measurement_lpips_vgg",
        "seconds",
        "nfe",
        "method",
        "task",
        "seed",
    ] {
        assert!(!v[k].is_null(), "field {k} in {v}");
    }
    assert_eq!(v["nfe"], 5);
}

#[test]
fn ctrl_c_leaves_no_output() {
    let d = tmp("sigint");
    let out = d.join("out.png");
    let mut child = bin()
        .args([
            "restore",
            "--task",
            "inpaint-box",
            "--method",
            "dps",
            "--from-clean",
            s(&data("celeba64/009501.png")),
            "-o",
            s(&out),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(4000));
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "interrupted runs exit 130");
    assert!(!out.exists(), "no output after an interruption");
    let left: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
    assert!(left.is_empty(), "no temporary files left: {left:?}");
}

#[test]
fn eval_writes_the_report_and_resumes() {
    let d = tmp("eval");
    let input = two_faces(&d.join("faces"));
    let out = d.join("report");
    let args = [
        "--json",
        "eval",
        "--data",
        s(&input),
        "--tasks",
        "inpaint-box",
        "--methods",
        "hqs-tv,diffpir:3",
        "-n",
        "2",
        "-o",
        s(&out),
    ];
    let r = run(&args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!((v["cells"].as_u64(), v["computed"].as_u64()), (Some(4), Some(4)));

    // The files: a table row per method, a CSV row per cell, a grid.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in ["## inpaint-box", "| measurement |", "| hqs-tv |", "| diffpir_3 |", "grid_inpaint-box.png"] {
        assert!(md.contains(needle), "'{needle}' in report.md:\n{md}");
    }
    let png = std::fs::read(out.join("grid_inpaint-box.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 1000);
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 6, "2 images x (measurement + 2 methods):\n{csv}");

    // The numbers: each summary mean is the mean of its cells, and a cell's PSNR is what
    // `diffinv metrics` gives for its saved image (up to 8-bit rounding of the PNG).
    let psnr = |method: &str| -> Vec<f64> {
        rows.iter().filter(|r| r[1] == method).map(|r| r[3].parse::<f64>().unwrap()).collect()
    };
    for m in &v["summary"].as_array().unwrap()[..] {
        let cells = psnr(m["method"].as_str().unwrap());
        assert_eq!(m["images"], 2);
        let mean = cells.iter().sum::<f64>() / 2.0;
        assert!((m["psnr_mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{m}");
    }
    let mean = |m: &str| psnr(m).iter().sum::<f64>() / 2.0;
    assert!(mean("hqs-tv") > mean("measurement") + 1.0, "HQS-TV fills the hole better than the measurement");
    let cell = out.join("cells/inpaint-box/hqs-tv/009502.png");
    let m: serde_json::Value = serde_json::from_slice(
        &run(&["--json", "metrics", s(&out.join("cells/inpaint-box/truth/009502.png")), s(&cell)]).stdout,
    )
    .unwrap();
    let row = rows.iter().find(|r| r[1] == "hqs-tv" && r[2] == "009502").unwrap();
    assert!((m["psnr"].as_f64().unwrap() - row[3].parse::<f64>().unwrap()).abs() < 0.1, "{m} vs {row:?}");

    // Resuming: nothing is recomputed; a removed cell is, and only it.
    let kept = out.join("cells/inpaint-box/diffpir_3/009501.json");
    let before = std::fs::metadata(&kept).unwrap().modified().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&run(&args).stdout).unwrap();
    assert_eq!((v["computed"].as_u64(), v["read_back"].as_u64()), (Some(0), Some(4)));
    std::fs::remove_file(out.join("cells/inpaint-box/diffpir_3/009502.json")).unwrap();
    // --report-only computes nothing and marks the partial row with the images it covers.
    let report_only: Vec<&str> = args.iter().copied().chain(["--report-only"]).collect();
    let v: serde_json::Value = serde_json::from_slice(&run(&report_only).stdout).unwrap();
    assert_eq!((v["computed"].as_u64(), v["read_back"].as_u64(), v["missing"].as_u64()), (Some(0), Some(3), Some(1)));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| diffpir_3 (1/2) |") && md.contains("| hqs-tv |"), "{md}");
    assert!(!out.join("cells/inpaint-box/diffpir_3/009502.json").exists());
    let v: serde_json::Value = serde_json::from_slice(&run(&args).stdout).unwrap();
    assert_eq!(v["computed"].as_u64(), Some(1));
    assert_eq!(std::fs::metadata(&kept).unwrap().modified().unwrap(), before, "finished cells are not rewritten");
    // The same numbers as before (same seed), all but the timing column.
    let untimed = |t: &str| -> Vec<String> {
        t.lines().map(|l| l.split(',').enumerate().filter(|(i, _)| *i != 7).map(|(_, f)| f).collect()).collect()
    };
    assert_eq!(untimed(&std::fs::read_to_string(out.join("results.csv")).unwrap()), untimed(&csv));
}

#[test]
fn precision_auto_is_the_measured_choice() {
    // `bench unet` reports the kernel measurement and what `--precision auto` picks from it.
    let b = run(&["--json", "bench", "unet", "--config", "celeba64", "--size", "16", "--reps", "1"]);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let v: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
    let cal = &v["kernel_calibration"];
    assert!(cal["f32_gflops"].as_f64().unwrap() > 0.0, "{cal}");
    let choice = cal["auto"].as_str().unwrap().to_string();
    let bf16 = cal["bf16_gflops"].as_f64();
    assert_eq!(choice == "bf16", bf16.is_some_and(|b| b >= 1.3 * cal["f32_gflops"].as_f64().unwrap()), "{cal}");
    let d = tmp("precision");
    let face = data("celeba64/009503.png");
    let restore = |p: &str| {
        let o = d.join(format!("{p}.png"));
        let args = ["--seed", "3", "restore", "--task", "sr4", "--method", "dps", "--steps", "3", "--precision", p];
        let r = run(&[&args[..], &["--from-clean", s(&face), "-o", s(&o)]].concat());
        (r, o)
    };
    let (auto, auto_png) = restore("auto");
    assert!(auto.status.success(), "{}", String::from_utf8_lossy(&auto.stderr));
    let (chosen, chosen_png) = restore(&choice);
    assert!(chosen.status.success(), "{}", String::from_utf8_lossy(&chosen.stderr));
    assert_eq!(std::fs::read(auto_png).unwrap(), std::fs::read(chosen_png).unwrap(), "auto is {choice}");
    if bf16.is_none() {
        fails(&restore("bf16").0, 1, &["--precision bf16", "AVX512-BF16"]);
    }
}
