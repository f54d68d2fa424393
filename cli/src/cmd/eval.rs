//! `diffinv eval`: a grid of tasks x methods over a folder of clean images, resumable, with
//! `report.md` (mean +- std tables), `results.csv`, `results.json` and one comparison grid PNG
//! per task.

use crate::args::{f64_in, usize_in, DeviceArgs, ModelArgs};
use crate::common::{interrupted, CliError, Global, Result};
use crate::folder::list_images;
use crate::shard::Shard;
use clap::Args;
use diffinv::cpu::image_io::{load_image, save_grid, save_image, to_rgb8, Fit, MAX_SIDE};
use diffinv::cpu::solve::Defaults;
use diffinv::metrics::Metrics;
use diffinv::model::io::write_atomic;
use diffinv::{Method, Restorer, Settings, Task};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Clone)]
#[command(after_help = "Examples:
  diffinv eval --data tests/data/celeba64 --tasks inpaint-box,deblur-gauss --methods dps,sdedit,hqs-tv -n 4 -o report/
  # method variants: METHOD:STEPS or METHOD:key=value,... (keys: steps, zeta, lambda, t0)
  diffinv eval --data faces/ --tasks deblur-gauss --methods dps:1000,dps:250,diffpir:20,diffpir:100 -o speed/
  # quality against noise: one report per level (noise_0.05/ ...), noise.md and one plot per task
  diffinv eval --data faces/ --tasks sr4 --methods diffpir,hqs-tv -n 4 --noise 0,0.01,0.05,0.1,0.2 -o sweep/
Re-running the same command resumes: finished cells are read back, not recomputed.")]
pub struct EvalArgs {
    /// Folder of clean images (PNG/JPEG), used in sorted order.
    #[arg(long, required_unless_present = "merge")]
    data: Option<PathBuf>,
    /// Comma-separated tasks.
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// Comma-separated methods, each `METHOD`, `METHOD:STEPS` or `METHOD:key=value;...`.
    #[arg(long, value_delimiter = ',')]
    methods: Vec<String>,
    /// Use the first N images.
    #[arg(short, default_value_t = 20, value_parser = usize_in(1, 100_000))]
    n: usize,
    /// The report folder.
    #[arg(short, long)]
    output: PathBuf,
    /// Measurement noise sigma_y in [-1, 1] units; several (comma-separated) run the grid at
    /// each level, each in its own folder, and plot quality against noise per task.
    #[arg(long, value_delimiter = ',', default_value = "0.05", value_parser = f64_in(0.0, diffinv::cpu::ops::MAX_NOISE))]
    noise: Vec<f64>,
    /// The level this grid runs at (one of --noise).
    #[arg(skip)]
    level: f64,
    /// Images per comparison grid.
    #[arg(long, default_value_t = 6, value_parser = usize_in(1, 100))]
    grid_rows: usize,
    #[command(flatten)]
    model: ModelArgs,
    /// Compute nothing: write the report from the cells finished so far (a long run can be
    /// looked at while it goes on); a method missing cells shows how many images it covers.
    #[arg(long)]
    report_only: bool,
    /// Best of N: each cell draws N restorations with independent sampler seeds and keeps the
    /// one with the smallest measurement residual (diffusion methods; classical ones draw
    /// once); the report adds the mean +- std over the draws (1..=1024).
    #[arg(long, default_value_t = 1, value_parser = usize_in(1, diffinv::MAX_SAMPLES))]
    samples: usize,
    #[command(flatten)]
    device: DeviceArgs,
    /// CPU convolution arithmetic: f32, or bf16 (needs AVX512-BF16). No `auto` here: a report
    /// (and its shards, possibly on other machines) is made in one stated precision.
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    precision: String,
    /// Run only part of the images: `K/N` (image i goes to shard i mod N + 1), or `auto` (Slurm
    /// job arrays) / `auto/N` (Kubernetes Indexed Jobs of N completions). Each shard writes its
    /// own resumable report folder; `--merge` joins them (docs/cluster.md).
    #[arg(long, value_name = "K/N|auto", value_parser = crate::shard::parse, conflicts_with = "merge")]
    shard: Option<Shard>,
    /// Join the report folders of every shard of a run into -o (the run's settings are read from
    /// their eval.json; --data must still be readable): the report one process would write.
    #[arg(long, value_name = "DIR", num_args = 1..)]
    merge: Vec<PathBuf>,
}

/// A method with its overrides, and the label its results are filed under.
struct Spec {
    method: Method,
    settings: Settings,
    label: String,
}

fn parse_spec(s: &str) -> Result<Spec> {
    let (name, rest) = s.split_once(':').unwrap_or((s, ""));
    let method = Method::parse(name).map_err(|e| CliError::usage(e.to_string()))?;
    let mut settings = Settings::default();
    for kv in rest.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or(("steps", kv));
        let bad = || CliError::usage(format!("method '{s}': bad value '{v}' for {k}"));
        match k {
            "steps" => settings.steps = Some(v.parse().map_err(|_| bad())?),
            "zeta" => settings.zeta = Some(v.parse().map_err(|_| bad())?),
            "lambda" => settings.lambda = Some(v.parse().map_err(|_| bad())?),
            "t0" => settings.t0 = Some(v.parse().map_err(|_| bad())?),
            "ode_steps" => settings.ode_steps = Some(v.parse().map_err(|_| bad())?),
            "langevin_steps" => settings.langevin_steps = Some(v.parse().map_err(|_| bad())?),
            "lr" => settings.lr = Some(v.parse().map_err(|_| bad())?),
            "tau" => settings.tau = Some(v.parse().map_err(|_| bad())?),
            "noisy_last_level" => settings.quiet_last = Some(!v.parse::<bool>().map_err(|_| bad())?),
            _ => {
                return Err(CliError::usage(format!(
                    "method '{s}': unknown key '{k}' (steps, zeta, lambda, t0, ode_steps, langevin_steps, lr, tau, noisy_last_level)"
                )))
            }
        }
    }
    let label = if rest.is_empty() { name.to_string() } else { format!("{name}_{}", rest.replace([';', '='], "_")) };
    Ok(Spec { method, settings, label })
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    Ok(write_atomic(path, |w| w.write_all(serde_json::to_string_pretty(v).expect("json").as_bytes()))?)
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// A cell read back when it was made with the same settings (`key`) and holds numbers in their
/// ranges; anything else is recomputed (or, with --report-only, counted missing).
fn read_cell(path: &Path, key: &Value) -> Option<Value> {
    let v = read_json(path)?;
    let in_range = |k: &str, lo: f64, hi: f64| match &v[k] {
        Value::Null => k != "seconds" && k != "nfe",
        x => x.as_f64().is_some_and(|f| f.is_finite() && (lo..=hi).contains(&f)),
    };
    let ok = v.get("key") == Some(key)
        && in_range("psnr", 0.0, 400.0)
        && in_range("ssim", -1.0, 1.0)
        && in_range("lpips_alex", 0.0, 10.0)
        && in_range("lpips_vgg", 0.0, 10.0)
        && in_range("seconds", 0.0, 1e9)
        && v["nfe"].as_u64().is_some();
    ok.then_some(v)
}

/// The settings that make a run's cells, as `eval.json` records them (a shard's own place in
/// the split beside them).
fn settings_json(a: &EvalArgs, g: &Global) -> Value {
    json!({
        "data": a.data, "tasks": a.tasks, "methods": a.methods, "n": a.n, "noise": a.noise,
        "grid_rows": a.grid_rows, "samples": a.samples, "seed": g.seed,
        "model": a.model.model, "config": a.model.config,
        "device": a.device.device, "tf32": a.device.tf32, "cudnn": a.device.cudnn,
        "precision": a.precision,
    })
}

pub fn run(a: EvalArgs, g: &Global) -> Result<()> {
    if !a.merge.is_empty() {
        return merge(a, g);
    }
    if a.data.is_none() {
        return Err(CliError::usage("--data is required (the folder of clean images)"));
    }
    std::fs::create_dir_all(&a.output).map_err(|e| CliError::runtime(format!("{}: {e}", a.output.display())))?;
    let record = json!({"settings": settings_json(&a, g), "shard": a.shard.map(|s| s.label())});
    write_json(&a.output.join("eval.json"), &record)?;
    let levels = a.noise.clone();
    if levels.windows(2).any(|w| w[1] <= w[0]) {
        return Err(CliError::usage("--noise: give distinct levels in increasing order"));
    }
    if levels.len() > 16 {
        return Err(CliError::usage("--noise: at most 16 levels"));
    }
    if levels.len() == 1 {
        let (json, line) = run_level(EvalArgs { level: levels[0], ..a }, g)?;
        g.emit_json(&json);
        g.say(line);
        return Ok(());
    }
    let mut per_level = Vec::new();
    for &sigma in &levels {
        let out = a.output.join(format!("noise_{sigma}"));
        let (json, line) = run_level(EvalArgs { level: sigma, output: out, ..a.clone() }, g)?;
        g.say(format!("sigma_y {sigma}: {line}"));
        per_level.push((sigma, json));
    }
    let tasks: Vec<Task> = a.tasks.iter().filter_map(|t| Task::parse(t).ok()).collect();
    let plots = crate::noise_report::write(&a.output, &tasks, &per_level)?;
    g.emit_json(&json!({
        "report": a.output.join("noise.md").display().to_string(),
        "plots": plots,
        "levels": per_level.iter().map(|(s, j)| json!({"noise": s, "result": j})).collect::<Vec<_>>(),
    }));
    g.say(format!("quality against noise: {}", a.output.join("noise.md").display()));
    Ok(())
}

/// The grid at one noise level (`a.level`): its JSON summary and a line for the terminal.
fn run_level(a: EvalArgs, g: &Global) -> Result<(Value, String)> {
    let tasks: Vec<Task> = a
        .tasks
        .iter()
        .map(|t| Task::parse(t))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| CliError::usage(e.to_string()))?;
    let specs: Vec<Spec> = a.methods.iter().map(|m| parse_spec(m)).collect::<Result<_>>()?;
    if tasks.is_empty() || specs.is_empty() {
        return Err(CliError::usage("give at least one task and one method"));
    }
    let data = a.data.as_deref().ok_or_else(|| CliError::usage("--data is required"))?;
    let images: Vec<PathBuf> = list_images(data)?.into_iter().take(a.n).collect();
    if images.is_empty() {
        return Err(CliError::runtime(format!("{}: no PNG or JPEG images", data.display())));
    }
    let owned = |i: usize| a.shard.is_none_or(|s| s.owns(i));
    if diffinv::model::io::same_file(&a.output, data) {
        return Err(CliError::usage("-o is the --data folder; write the report elsewhere"));
    }
    let model = if specs.iter().any(|s| s.method.is_diffusion()) { Some(a.model.load()?) } else { None };
    let size = model.as_ref().map(|m| m.image_size());
    // Opening names the device without starting it: a report of cells made on a GPU is built on
    // any machine given the same --device.
    let (device, gpu) = a.device.open()?;
    // Everything that changes a cell's numbers; a cell made with other settings is recomputed.
    let model_key = model
        .as_ref()
        .map_or(Value::Null, |m| json!({"file": m.file(), "params": m.num_params(), "config": m.config().to_json()}));
    let mut device_key = json!({"device": device.to_string(), "tf32": gpu.tf32, "cudnn": gpu.cudnn});
    let cpu = crate::args::cpu_context(&a.precision)?;
    if a.precision != "f32" {
        // Only then, so that cells made before the flag existed (f32) keep their keys.
        device_key["precision"] = a.precision.clone().into();
    }
    let mut skipped: Vec<Value> = Vec::new();
    let judge = Metrics::shipped()?;
    let total = tasks.len() * specs.len() * (0..images.len()).filter(|&i| owned(i)).count();
    let pb = g.progress(total as u64, "eval");
    let mut done = 0u64;
    let mut rows = Vec::new();
    let started = Instant::now();
    let mut computed = 0usize;
    let mut missing = 0usize;
    let mut unreadable = 0usize;
    for &task in &tasks {
        let tdir = a.output.join("cells").join(task.name());
        for (i, img) in images.iter().enumerate().filter(|(i, _)| owned(*i)) {
            let name = stem(img);
            let fit = size.map_or(Fit::Max(MAX_SIDE as usize), Fit::Resize);
            // A corrupt image is skipped (once, listed in the report), not the end of the run.
            let x = match load_image(img, fit) {
                Ok(x) => x,
                Err(e) => {
                    if !skipped.iter().any(|s| s["image"] == img.display().to_string()) {
                        g.say(format!("diffinv: skipping {}: {e}", img.display()));
                        skipped.push(json!({"image": img.display().to_string(), "error": e.to_string()}));
                    }
                    done += specs.len() as u64;
                    unreadable += specs.len();
                    continue;
                }
            };
            let bytes = std::fs::metadata(img).map_or(0, |m| m.len());
            let mkey = json!({"image": name, "bytes": bytes, "index": i, "task": task.name(), "noise": a.level,
                "seed": g.seed, "size": size});
            fn setup<'m>(r: Restorer<'m>, task: Task, noise: f64, seed: u64, i: usize) -> Restorer<'m> {
                r.task(task).noise(noise).seed(seed).index(i as u64)
            }
            let (y, op) = setup(Restorer::classical(), task, a.level, g.seed, i).measure_tensor(&x)?;
            // The measurement row: the measurement seen as an image.
            let mdir = tdir.join("measurement");
            let mjson = mdir.join(format!("{name}.json"));
            let mrec = match read_cell(&mjson, &mkey) {
                Some(v) => v,
                None => {
                    let mi = op.measurement_image(&y)?;
                    save_image(&mdir.join(format!("{name}.png")), &mi, 0)?;
                    save_image(&tdir.join("truth").join(format!("{name}.png")), &x, 0)?;
                    let mut m = serde_json::Map::new();
                    crate::quality::json(&judge.compare_tensors(&x, &mi, 0)?, "", &mut m);
                    m.insert("seconds".into(), 0.0.into());
                    m.insert("nfe".into(), 0.into());
                    m.insert("key".into(), mkey.clone());
                    let v = Value::Object(m);
                    write_json(&mjson, &v)?;
                    v
                }
            };
            rows.push((task, "measurement".to_string(), name.clone(), mrec));
            for spec in &specs {
                let cdir = tdir.join(&spec.label);
                let cjson = cdir.join(format!("{name}.json"));
                let settings = &spec.settings;
                // The defaults the method resolves at this task and level are part of the key: a
                // cell made before the defaults changed is recomputed, not read back.
                let d = Defaults::for_task(spec.method, task, a.level);
                let mut defaults = format!("{d:?}");
                if spec.method == Method::Daps {
                    let levels = settings.steps.unwrap_or(d.steps);
                    defaults += &format!(" {:?}", diffinv::cpu::solve::daps_config(task, settings, levels));
                }
                let draws = if spec.method.is_diffusion() { a.samples } else { 1 };
                let key = json!({"measurement": mkey, "method": spec.method.name(), "steps": settings.steps,
                    "zeta": settings.zeta, "lambda": settings.lambda, "t0": settings.t0, "defaults": defaults,
                    "ode_steps": settings.ode_steps, "langevin_steps": settings.langevin_steps, "lr": settings.lr,
                    "tau": settings.tau, "samples": draws,
                    "model": if spec.method.is_diffusion() { model_key.clone() } else { Value::Null },
                    "device": if spec.method.is_diffusion() { device_key.clone() } else { Value::Null }});
                let rec = match read_cell(&cjson, &key) {
                    Some(v) => v,
                    None if a.report_only => {
                        missing += 1;
                        done += 1;
                        continue;
                    }
                    None => {
                        if interrupted() {
                            return Err(CliError {
                                code: 130,
                                message: "interrupted; finished cells are kept, re-run to resume".into(),
                            });
                        }
                        let t0 = Instant::now();
                        let base = done;
                        let (pbc, label, tname) = (pb.clone(), spec.label.clone(), task.name());
                        let cell = name.clone();
                        let r = match (&model, spec.method.is_diffusion()) {
                            (Some(m), true) => Restorer::new(m),
                            _ => Restorer::classical(),
                        };
                        let out = setup(r, task, a.level, g.seed, i)
                            .method(spec.method)
                            .settings(spec.settings.clone())
                            .device(device)
                            .gpu_options(gpu)
                            .cpu_context(cpu)
                            .samples(draws)
                            .on_step(move |k, n| {
                                pbc.set(base);
                                pbc.set_message(&format!("{tname} {label} {cell} {k}/{n}"));
                                !interrupted()
                            })
                            .run_with(&op, &y)
                            .map_err(|e| match e {
                                diffinv::Error::Cancelled => CliError {
                                    code: 130,
                                    message: "interrupted; finished cells are kept, re-run to resume".into(),
                                },
                                e => CliError::runtime(format!(
                                    "{} {} on {}: {e}",
                                    task.name(),
                                    spec.label,
                                    img.display()
                                )),
                            })?;
                        let secs = t0.elapsed().as_secs_f64();
                        save_image(&cdir.join(format!("{name}.png")), &out.x, 0)?;
                        let mut m = serde_json::Map::new();
                        crate::quality::json(&judge.compare_tensors(&x, &out.x, 0)?, "", &mut m);
                        m.insert("seconds".into(), secs.into());
                        m.insert("nfe".into(), out.nfe.into());
                        m.insert("vjp".into(), out.vjps.into());
                        m.insert("key".into(), key);
                        for (k, v) in &out.params {
                            m.insert((*k).into(), (*v).into());
                        }
                        m.insert("residual".into(), out.residual.into());
                        if draws > 1 {
                            let mut list = Vec::new();
                            for sm in &out.samples {
                                let mut d = serde_json::Map::new();
                                d.insert("seed".into(), sm.seed.into());
                                d.insert("residual".into(), sm.residual.into());
                                if let Some(xs) = &sm.x {
                                    crate::quality::json(&judge.compare_tensors(&x, xs, 0)?, "", &mut d);
                                }
                                list.push(Value::Object(d));
                            }
                            m.insert("samples".into(), list.into());
                        }
                        let v = Value::Object(m);
                        write_json(&cjson, &v)?;
                        computed += 1;
                        v
                    }
                };
                rows.push((task, spec.label.clone(), name.clone(), rec));
                done += 1;
                pb.set(done);
            }
        }
    }
    pb.finish();
    let labels: Vec<String> =
        std::iter::once("measurement".to_string()).chain(specs.iter().map(|s| s.label.clone())).collect();
    let summary = write_outputs(&a, g, &tasks, &labels, &images, &rows, &skipped)?;
    // The cells of the images that could be read.
    let total = total - unreadable;
    let json = json!({
        "report": a.output.join("report.md").display().to_string(),
        "cells": total,
        "computed": computed,
        "read_back": total - computed - missing,
        "missing": missing,
        "summary": summary,
        "skipped": skipped,
    });
    let unread =
        if skipped.is_empty() { String::new() } else { format!(", {} unreadable images skipped", skipped.len()) };
    let line = format!(
        "{} cells ({} computed now, {} read back, {} missing{unread}) in {:.1} s; report in {}",
        total,
        computed,
        total - computed - missing,
        missing,
        started.elapsed().as_secs_f64(),
        a.output.join("report.md").display()
    );
    Ok((json, line))
}

type Row = (Task, String, String, Value);

/// `--merge DIR...`: checks that the folders are every shard of one run, copies their cells into
/// -o, and writes the report from them.
fn merge(a: EvalArgs, g: &Global) -> Result<()> {
    let mut settings: Option<Value> = None;
    let mut seen: Vec<(usize, usize, &Path)> = Vec::new();
    for dir in &a.merge {
        let rec = read_json(&dir.join("eval.json")).ok_or_else(|| {
            CliError::runtime(format!("{}: not an eval report folder (no readable eval.json)", dir.display()))
        })?;
        match &settings {
            None => settings = Some(rec["settings"].clone()),
            Some(s) if *s != rec["settings"] => {
                return Err(CliError::usage(format!(
                    "{} was made with other settings than {} (merge the shards of one run)",
                    dir.display(),
                    a.merge[0].display()
                )))
            }
            _ => {}
        }
        let shard = rec["shard"].as_str().map(crate::shard::parse).transpose().map_err(CliError::runtime)?;
        let shard = shard.unwrap_or(Shard { index: 0, count: 1 });
        if let Some(other) = seen.iter().find(|s| s.0 == shard.index) {
            return Err(CliError::usage(format!(
                "shard {} is given twice ({} and {})",
                shard.label(),
                other.2.display(),
                dir.display()
            )));
        }
        seen.push((shard.index, shard.count, dir));
        if diffinv::model::io::same_file(dir, &a.output) {
            return Err(CliError::usage(format!(
                "-o {} is one of the shards; merge into a new folder",
                a.output.display()
            )));
        }
    }
    let count = seen[0].1;
    if let Some(s) = seen.iter().find(|s| s.1 != count) {
        return Err(CliError::usage(format!("{} is a shard of {} parts, the others of {count}", s.2.display(), s.1)));
    }
    if let Some(k) = (0..count).find(|k| !seen.iter().any(|s| s.0 == *k)) {
        return Err(CliError::usage(format!("shard {}/{count} is missing", k + 1)));
    }
    for (_, _, dir) in &seen {
        copy_cells(dir, &a.output)?;
    }
    let s = settings.expect("at least one folder");
    let strings = |k: &str| -> Vec<String> {
        s[k].as_array().map(|v| v.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    let text = |k: &str| s[k].as_str().map(String::from);
    let bad = |k: &str| CliError::runtime(format!("{}: eval.json lacks '{k}'", a.merge[0].display()));
    let merged = EvalArgs {
        data: Some(PathBuf::from(text("data").ok_or_else(|| bad("data"))?)),
        tasks: strings("tasks"),
        methods: strings("methods"),
        n: s["n"].as_u64().ok_or_else(|| bad("n"))? as usize,
        output: a.output.clone(),
        noise: s["noise"].as_array().ok_or_else(|| bad("noise"))?.iter().filter_map(Value::as_f64).collect(),
        level: 0.0,
        grid_rows: s["grid_rows"].as_u64().ok_or_else(|| bad("grid_rows"))? as usize,
        model: ModelArgs { model: text("model").map(PathBuf::from), config: text("config") },
        report_only: true,
        samples: s["samples"].as_u64().ok_or_else(|| bad("samples"))? as usize,
        device: DeviceArgs {
            device: text("device").unwrap_or_else(|| "cpu".into()),
            tf32: s["tf32"].as_bool().unwrap_or(false),
            cudnn: s["cudnn"].as_bool().unwrap_or(false),
        },
        precision: text("precision").unwrap_or_else(|| "f32".into()),
        shard: None,
        merge: Vec::new(),
    };
    let g = Global { seed: s["seed"].as_u64().ok_or_else(|| bad("seed"))?, ..g.clone() };
    g.say(format!("merging {count} shards into {}", a.output.display()));
    run(merged, &g)
}

/// Copies every file under a `cells` folder of `from` to the same place under `to` (files
/// already there are kept: a merge can be re-run).
fn copy_cells(from: &Path, to: &Path) -> Result<()> {
    let io = |p: &Path, e: std::io::Error| CliError::runtime(format!("{}: {e}", p.display()));
    let mut stack = vec![(from.to_path_buf(), false)];
    while let Some((dir, in_cells)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let path = entry.map_err(|e| io(&dir, e))?.path();
            let cells = in_cells || path.file_name().is_some_and(|n| n == "cells");
            if path.is_dir() {
                stack.push((path, cells));
            } else if in_cells {
                let dest = to.join(path.strip_prefix(from).expect("under from"));
                if !dest.exists() {
                    std::fs::create_dir_all(dest.parent().expect("a parent")).map_err(|e| io(&dest, e))?;
                    std::fs::copy(&path, &dest).map_err(|e| io(&dest, e))?;
                }
            }
        }
    }
    Ok(())
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    (m, (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

/// The best-of-N table: per task and method with several draws, the residual-chosen draw's
/// PSNR and LPIPS-vgg beside the mean +- std over all draws (the std over an image's draws,
/// averaged over images), and the draws' residual spread.
fn best_of_n(tasks: &[Task], labels: &[String], rows: &[Row]) -> String {
    let mut md = String::new();
    for &task in tasks {
        for label in labels {
            let recs: Vec<&Value> = rows
                .iter()
                .filter(|r| r.0 == task && &r.1 == label)
                .map(|r| &r.3)
                .filter(|r| r["samples"].as_array().is_some_and(|s| s.len() > 1))
                .collect();
            if recs.is_empty() {
                continue;
            }
            if md.is_empty() {
                md += "\n## Best of N (chosen by the measurement residual, never by the clean image)\n\n| task | method | draws | PSNR chosen | PSNR mean over draws | std over draws | LPIPS-vgg chosen | LPIPS-vgg mean over draws | std over draws |\n|---|---|---|---|---|---|---|---|---|\n";
            }
            let stat = |k: &str| {
                let (mut all, mut stds) = (Vec::new(), Vec::new());
                for r in &recs {
                    let v: Vec<f64> =
                        r["samples"].as_array().into_iter().flatten().filter_map(|d| d[k].as_f64()).collect();
                    stds.push(mean_std(&v).1);
                    all.extend(v);
                }
                let chosen: Vec<f64> = recs.iter().filter_map(|r| r[k].as_f64()).collect();
                (mean_std(&chosen).0, mean_std(&all).0, mean_std(&stds).0)
            };
            let draws = recs[0]["samples"].as_array().map_or(0, Vec::len);
            let (pc, pm, ps) = stat("psnr");
            let (lc, lm, ls) = stat("lpips_vgg");
            md += &format!(
                "| {} | {label} | {draws} | {pc:.2} | {pm:.2} | {ps:.2} | {lc:.4} | {lm:.4} | {ls:.4} |\n",
                task.name()
            );
        }
    }
    md
}

fn write_outputs(
    a: &EvalArgs,
    g: &Global,
    tasks: &[Task],
    labels: &[String],
    images: &[PathBuf],
    rows: &[Row],
    skipped: &[Value],
) -> Result<Vec<Value>> {
    let keys = ["psnr", "ssim", "lpips_alex", "lpips_vgg", "seconds", "nfe"];
    let mut md = format!(
        "# diffinv eval\n\n{} images from `{}`, noise sigma_y = {} ([-1, 1] units), seed {}. Mean +- std over images; LPIPS v0.1; seconds per image as the median over images (robust to a busy machine); network evaluations (NFE) per image.\n",
        images.len(),
        a.data.as_deref().unwrap_or(Path::new("")).display(),
        a.level,
        g.seed
    );
    let mut summary = Vec::new();
    for &task in tasks {
        md += &format!("\n## {}\n\n| method | PSNR (dB) | SSIM | LPIPS-alex | LPIPS-vgg | seconds (median) | NFE |\n|---|---|---|---|---|---|---|\n", task.name());
        for label in labels {
            let recs: Vec<&Value> = rows.iter().filter(|r| r.0 == task && &r.1 == label).map(|r| &r.3).collect();
            if recs.is_empty() {
                continue;
            }
            let mut cells = Vec::new();
            let mut obj = serde_json::Map::new();
            for k in keys {
                // A missing PSNR is an infinite one (identical images: denoising without noise).
                let v: Vec<f64> = match k {
                    "psnr" => recs.iter().map(|r| r[k].as_f64().unwrap_or(f64::INFINITY)).collect(),
                    _ => recs.iter().filter_map(|r| r[k].as_f64()).collect(),
                };
                let (m, s) = mean_std(&v);
                cells.push(match k {
                    "psnr" if m.is_infinite() => "inf".to_string(),
                    "psnr" => format!("{m:.2} +- {s:.2}"),
                    "seconds" => {
                        let med = median(&v);
                        obj.insert("seconds_median".into(), med.into());
                        format!("{med:.1}")
                    }
                    "nfe" => format!("{m:.0}"),
                    _ => format!("{m:.4} +- {s:.4}"),
                });
                obj.insert(format!("{k}_mean"), m.into());
                obj.insert(format!("{k}_std"), s.into());
            }
            // Partial rows (--report-only on an unfinished run) say how many images they cover.
            let shown = if recs.len() < images.len() {
                format!("{label} ({}/{})", recs.len(), images.len())
            } else {
                label.clone()
            };
            md += &format!("| {shown} | {} |\n", cells.join(" | "));
            obj.insert("task".into(), task.name().into());
            obj.insert("method".into(), label.clone().into());
            obj.insert("images".into(), recs.len().into());
            summary.push(Value::Object(obj));
        }
        grid(a, task, labels, images)?;
        md += &format!("\n![{0}](grid_{0}.png)\n", task.name());
    }
    md += &best_of_n(tasks, labels, rows);
    if !skipped.is_empty() {
        md += "\n## Skipped images\n\n";
        for sk in skipped {
            md += &format!("- `{}`: {}\n", sk["image"].as_str().unwrap_or(""), sk["error"].as_str().unwrap_or(""));
        }
    }
    write_atomic(&a.output.join("report.md"), |w| w.write_all(md.as_bytes()))?;
    let mut csv = String::from("task,method,image,psnr,ssim,lpips_alex,lpips_vgg,seconds,nfe\n");
    for (task, label, name, r) in rows {
        let f = |k: &str| r[k].as_f64().map_or(String::new(), |v| format!("{v}"));
        csv += &format!(
            "{},{label},{name},{},{},{},{},{},{}\n",
            task.name(),
            f("psnr"),
            f("ssim"),
            f("lpips_alex"),
            f("lpips_vgg"),
            f("seconds"),
            f("nfe")
        );
    }
    write_atomic(&a.output.join("results.csv"), |w| w.write_all(csv.as_bytes()))?;
    let cells: Vec<Value> =
        rows.iter().map(|(t, l, n, r)| json!({"task": t.name(), "method": l, "image": n, "result": r})).collect();
    write_json(
        &a.output.join("results.json"),
        &json!({"summary": summary, "cells": cells, "noise": a.level, "seed": g.seed, "images": images.len(),
            "skipped": skipped}),
    )?;
    Ok(summary)
}

/// Ground truth, measurement and every method side by side for the first images.
fn grid(a: &EvalArgs, task: Task, labels: &[String], images: &[PathBuf]) -> Result<()> {
    let tdir = a.output.join("cells").join(task.name());
    let cols: Vec<String> = std::iter::once("truth".to_string()).chain(labels.iter().cloned()).collect();
    let mut tiles = Vec::new();
    let with_truth = images.iter().filter(|img| tdir.join("truth").join(format!("{}.png", stem(img))).exists());
    for img in with_truth.take(a.grid_rows) {
        let name = stem(img);
        let truth = load_image(&tdir.join("truth").join(format!("{name}.png")), Fit::Any)?;
        for c in &cols {
            let path = tdir.join(c).join(format!("{name}.png"));
            // A cell not finished yet (--report-only) is a mid-grey tile.
            let t = if a.report_only && !path.exists() {
                diffinv::Tensor::zeros(truth.shape())
            } else {
                load_image(&path, Fit::Any)?
            };
            tiles.push(to_rgb8(&t, 0));
        }
    }
    if tiles.is_empty() {
        return Ok(());
    }
    let heads: Vec<String> = cols.iter().map(|c| c.replace('_', " ")).collect();
    save_grid(&a.output.join(format!("grid_{}.png", task.name())), &tiles, cols.len(), &heads)?;
    Ok(())
}
