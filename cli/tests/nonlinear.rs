//! The nonlinear tasks, DAPS, Poisson noise and best-of-N from the command line: the JSON they
//! report, and the usage errors of flags that do not apply.

mod common;
use common::*;
use serde_json::Value;

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

fn usage_error(args: &[&str], says: &str) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(says), "{args:?}: '{err}' should mention '{says}'");
}

#[test]
fn daps_on_phase_retrieval_reports_its_draws() {
    let d = tmp("pr");
    let (face, out) = (data("celeba64/009506.png"), d.join("out.png"));
    let j = json(&run(&[
        "restore",
        "--task",
        "phase-retrieval",
        "--method",
        "daps",
        "--steps",
        "3",
        "--ode-steps",
        "1",
        "--langevin-steps",
        "3",
        "--samples",
        "2",
        "--from-clean",
        s(&face),
        "-o",
        s(&out),
        "--json",
    ]));
    assert_eq!(j["task"], "phase-retrieval");
    assert_eq!(j["nfe"], 3);
    assert_eq!(j["vjp"], 0);
    let draws = j["samples"].as_array().unwrap();
    assert_eq!(draws.len(), 2);
    let min = draws.iter().map(|d| d["residual"].as_f64().unwrap()).fold(f64::INFINITY, f64::min);
    assert_eq!(j["residual"].as_f64().unwrap(), min);
    assert_eq!(image::image_dimensions(&out).unwrap(), (64, 64));
}

#[test]
fn poisson_noise_is_simulated_and_reported() {
    let d = tmp("poisson");
    let (face, y, out) = (data("celeba64/009507.png"), d.join("y.png"), d.join("out.png"));
    let j = json(&run(&[
        "degrade",
        "--task",
        "deblur-gauss",
        "--noise-model",
        "poisson",
        "--rate",
        "100",
        s(&face),
        "-o",
        s(&y),
        "--json",
    ]));
    assert_eq!(j["rate"], 100.0);
    let j = json(&run(&[
        "restore",
        "--task",
        "deblur-gauss",
        "--method",
        "dps",
        "--steps",
        "3",
        "--noise-model",
        "poisson",
        "--from-clean",
        s(&face),
        "-o",
        s(&out),
        "--json",
    ]));
    // The methods see the Gaussian level of equal variance: 2 sqrt(mean/400) for rate 400.
    let sigma = j["sigma_y"].as_f64().unwrap();
    assert!(sigma > 0.03 && sigma < 0.11, "{sigma}");
}

#[test]
fn flags_that_do_not_apply_are_usage_errors() {
    let d = tmp("nl-usage");
    let face = data("celeba64/009506.png");
    let out = d.join("o.png");
    let base = ["restore", "--from-clean", s(&face), "-o", s(&out)];
    let with = |extra: &[&'static str]| -> Vec<&str> { base.iter().copied().chain(extra.iter().copied()).collect() };
    usage_error(&with(&["--task", "phase-retrieval", "--method", "hqs-tv"]), "linear");
    usage_error(&with(&["--task", "phase-retrieval", "--method", "sdedit"]), "phase retrieval");
    usage_error(&with(&["--task", "hdr", "--method", "dps", "--lr", "1e-4"]), "--lr applies to --method daps");
    usage_error(&with(&["--task", "hdr", "--method", "hqs-tv", "--samples", "2"]), "--samples");
    usage_error(&with(&["--task", "hdr", "--noise-model", "poisson", "--noise", "0.1"]), "--rate");
    usage_error(&with(&["--task", "hdr", "--rate", "10"]), "--noise-model poisson");
    usage_error(&with(&["--task", "phase-retrieval", "--noise-model", "poisson"]), "phase retrieval");
    usage_error(&with(&["--task", "hdr", "--method", "daps", "--tau", "0"]), "tau");
    usage_error(&with(&["--task", "sr4", "--oversample", "2"]), "--oversample");
    usage_error(&["restore", "--task", "phase-retrieval", "--method", "daps", s(&face), "-o", s(&out)], "--from-clean");
    // Phase retrieval's measurement is not an image file.
    let e = run(&["degrade", "--task", "phase-retrieval", s(&face), "-o", s(&out)]);
    assert_eq!(e.status.code(), Some(2), "{}", String::from_utf8_lossy(&e.stderr));
    assert!(String::from_utf8_lossy(&e.stderr).contains("not an image"));
    assert!(!out.exists(), "nothing written");
}
