//! Shards: three `eval --shard K/3` processes merged give the single-process report (all but the
//! timings); folder restores split the same way; the Slurm script and the Kubernetes manifest of
//! docs/cluster.md are well-formed and ask for the split they run.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

fn eval(extra: &[&str], data: &Path, out: &Path) -> std::process::Output {
    let mut args = vec![
        "--threads",
        "2",
        "--json",
        "eval",
        "--data",
        s(data),
        "-n",
        "3",
        "--tasks",
        "inpaint-box,sr4",
        "--methods",
        "diffpir:4,hqs-tv:5",
        "--grid-rows",
        "3",
        "-o",
        s(out),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// A report file with its timings blanked: the `seconds` of every cell and the median column.
fn without_timings(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => {
            let mut v: Value = serde_json::from_str(&text).unwrap();
            strip(&mut v);
            v.to_string()
        }
        // The seconds column of results.csv (8th) and report.md's tables (7th cell).
        Some("csv") => text
            .lines()
            .map(|l| l.split(',').enumerate().filter(|(i, _)| *i != 7).map(|(_, c)| c).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => text
            .lines()
            .map(|l| {
                let cells: Vec<&str> = l.split('|').collect();
                if cells.len() == 9 {
                    [&cells[..6], &cells[7..]].concat().join("|")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with("seconds"));
            m.values_mut().for_each(strip);
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

#[test]
fn three_shards_merge_into_the_single_process_report() {
    let d = tmp("shards");
    let data = d.join("faces");
    std::fs::create_dir_all(&data).unwrap();
    for f in ["009501.png", "009502.png", "009503.png", "009504.png"] {
        std::fs::copy(data_path(f), data.join(f)).unwrap();
    }
    let single = d.join("single");
    let o = eval(&[], &data, &single);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut shards = Vec::new();
    for k in 1..=3 {
        let out = d.join(format!("shard-{k}"));
        let o = eval(&["--shard", &format!("{k}/3")], &data, &out);
        assert!(o.status.success(), "shard {k}: {}", String::from_utf8_lossy(&o.stderr));
        // Each shard computed only its own image (one of three) per task and method.
        let j: Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
        assert_eq!(j["computed"], 2 * 2, "shard {k}: {j}");
        shards.push(out);
    }
    // A missing shard is refused, naming it.
    let merged = d.join("merged");
    let o = run(&["eval", "--merge", s(&shards[0]), s(&shards[2]), "-o", s(&merged)]);
    fails(&o, 2, &["shard 2/3 is missing"]);
    let o = run(&["--json", "eval", "--merge", s(&shards[0]), s(&shards[1]), s(&shards[2]), "-o", s(&merged)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert_eq!((j["computed"].as_u64(), j["missing"].as_u64()), (Some(0), Some(0)), "{j}");
    for f in ["report.md", "results.csv", "results.json"] {
        assert_eq!(without_timings(&single.join(f)), without_timings(&merged.join(f)), "{f}");
    }
    for f in ["grid_inpaint-box.png", "grid_sr4.png"] {
        assert!(std::fs::read(single.join(f)).unwrap() == std::fs::read(merged.join(f)).unwrap(), "{f} differs");
    }
    // Shards of another run do not merge with these.
    let other = d.join("other");
    let o = run(&[
        "eval",
        "--data",
        s(&data),
        "-n",
        "3",
        "--tasks",
        "sr4",
        "--methods",
        "hqs-tv:5",
        "--shard",
        "2/3",
        "-o",
        s(&other),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["eval", "--merge", s(&shards[0]), s(&other), s(&shards[2]), "-o", s(&d.join("bad"))]);
    fails(&o, 2, &["other settings"]);
}

fn data_path(f: &str) -> std::path::PathBuf {
    data(&format!("celeba64/{f}"))
}

#[test]
fn folder_restores_split_over_shards() {
    let d = tmp("restore-shards");
    let faces = two_faces(&d.join("in"));
    std::fs::copy(data_path("009503.png"), faces.join("009503.png")).unwrap();
    let out = d.join("out");
    for k in ["1/2", "2/2"] {
        let o = run(&[
            "-q",
            "restore",
            "--task",
            "sr4",
            "--method",
            "hqs-tv",
            "--steps",
            "5",
            "--from-clean",
            s(&faces),
            "-o",
            s(&out),
            "--shard",
            k,
        ]);
        assert!(o.status.success(), "{k}: {}", String::from_utf8_lossy(&o.stderr));
        let n = std::fs::read_dir(&out).unwrap().count();
        assert_eq!(n, if k == "1/2" { 2 } else { 3 }, "after shard {k}: images 0 and 2, then 1");
    }
    let o = run(&[
        "restore",
        "--task",
        "sr4",
        "--from-clean",
        s(&data_path("009501.png")),
        "-o",
        s(&d.join("x.png")),
        "--shard",
        "1/2",
    ]);
    fails(&o, 2, &["--shard applies to a folder"]);
    let o = run(&["restore", "--task", "sr4", s(&faces), "-o", s(&out), "--shard", "3/2"]);
    fails(&o, 2, &["shard 3 of 2"]);
}

#[test]
fn the_cluster_examples_are_well_formed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/cluster");
    let script = root.join("eval-array.sbatch");
    let o = std::process::Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(o.status.success(), "bash -n: {}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("#SBATCH --array=0-7") && text.contains("--shard auto"), "the array runs --shard auto");
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("eval-indexed-job.yaml")).unwrap())
            .expect("the manifest is YAML");
    assert_eq!(yaml["kind"].as_str(), Some("Job"));
    assert_eq!(yaml["apiVersion"].as_str(), Some("batch/v1"));
    let spec = &yaml["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let n = spec["completions"].as_u64().unwrap();
    let args = spec["template"]["spec"]["containers"][0]["args"][0].as_str().unwrap();
    assert!(args.contains(&format!("--shard auto/{n}")), "the pods split into the Job's {n} completions: {args}");
    assert!(args.contains("$JOB_COMPLETION_INDEX"), "each pod writes its own folder");
}
