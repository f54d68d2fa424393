#!/usr/bin/env python3
"""Sweeps that choose the noise-dependent defaults (cpu/src/solve/defaults.rs).

For every noise level, task and method, runs `diffinv eval` over candidate values of the tuned
parameter on dev faces that are not evaluation faces, and writes the mean PSNR of every
candidate, the best one marked, to docs/tuning.md (and the raw numbers to a JSON file).
Resumable: eval reads finished cells back.

usage: scripts/tune_noise.py FACES_DIR WORK_DIR GROUP [GROUP...]
       scripts/tune_noise.py report WORK_DIR docs/tuning.md
groups: classical, classical-ends, hqs-tv (again after its fixed schedule), diffpir, sdedit, dps
"""
import json, subprocess, sys, pathlib

LEVELS = [0.0, 0.01, 0.025, 0.05, 0.1, 0.2]
TASKS = ["inpaint-box", "inpaint-random", "deblur-gauss", "deblur-motion", "sr4", "denoise"]
TV = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16]
GROUPS = {
    # group: (faces, [(method, parameter, [values], extra settings)])
    "classical": (3, [("hqs-tv", "lambda", TV, ""), ("admm-tv", "lambda", TV, ""),
                      ("adam-tv", "lambda", TV, ""), ("hqs-dncnn", "lambda", [0.06, 0.12, 0.23, 0.46, 0.92], "")]),
    # Diffusion methods on shorter chains than their defaults (the time it takes); see report().
    "diffpir": (2, [("diffpir", "lambda", [0.3, 1.0, 3.0, 10.0], "steps=30")]),
    "sdedit": (1, [("sdedit", "t0", [300, 500, 700], "steps=100")]),
    # A given zeta is used as it is (not scaled by 1000/steps): 5..40 at 50 steps are 0.25..2 at
    # the default 1000 (the report shows them at 1000 steps).
    "dps": (1, [("dps", "zeta", [5.0, 10.0, 20.0, 40.0], "steps=50")]),
    "hqs-tv": (3, [("hqs-tv", "lambda", [0.0001, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16], "")]),
    # Values beyond the first grids' ends, where their best lay at an end.
    "classical-ends": (3, [("hqs-tv", "lambda", [0.0001, 0.0003, 0.32], ""),
                           ("admm-tv", "lambda", [0.0001, 0.0003, 0.32], ""),
                           ("adam-tv", "lambda", [0.0001, 0.0003, 0.32], ""),
                           ("hqs-dncnn", "lambda", [0.015, 0.03, 1.84, 3.68], "")]),
}

BIN = pathlib.Path(__import__("os").environ.get("DIFFINV_BIN", pathlib.Path(__file__).resolve().parent.parent / "target/release/diffinv"))


def label(method, settings):
    return f"{method}_{settings.replace(';', '_').replace('=', '_')}"


def run_eval(faces, work, sigma, n, tasks, methods):
    out = work / f"noise_{sigma}"
    cmd = [str(BIN), "--quiet", "eval", "--data", str(faces), "--tasks", ",".join(tasks), "--methods",
           ",".join(methods), "-n", str(n), "--noise", str(sigma), "-o", str(out), "--json"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    res = json.loads((out / "results.json").read_text())
    return {(s["task"], s["method"]): s["psnr_mean"] for s in res["summary"]}


def report(work, md_path):
    """docs/tuning.md from the stored sweeps, and the chosen tables as Rust constants."""
    results = json.loads((work / "tuning.json").read_text())
    md = ["# Noise-dependent defaults: the sweeps", "",
          "Made by `scripts/tune_noise.py` (`diffinv eval` over candidate values) on CelebA dev",
          "faces 009541-009543 (not evaluation faces; the first 2 for DiffPIR, the first for SDEdit and DPS), seed 0. Mean PSNR (dB)",
          "of each candidate per task and noise level sigma_y; **bold**: chosen (the best), which",
          "`cpu/src/solve/defaults.rs` holds and interpolates between levels. Diffusion methods were",
          "swept on shorter chains than their defaults (DPS 50 steps, zeta shown at 1000 steps;",
          "DiffPIR 30; SDEdit 100): where the best value at 0.05 moves with the chain length, DPS and",
          "DiffPIR (deblurring) keep their full-length value at 0.05 and follow these sweeps' ratio",
          "to it at the other levels (README, 'Defaults and how they were tuned'). A PSNR of 100 or",
          "more is a noiseless identity (denoising at sigma_y = 0, now returned as it is).", ""]
    rust = []
    per_1000 = {"dps|zeta": 50 / 1000}  # swept values as the defaults hold them
    keys = sorted({k.rsplit("|", 1)[0] for k in results}, key=lambda k: list(results).index(next(x for x in results if x.startswith(k + "|"))))
    for mk in keys:
        method, param = mk.split("|")
        md += [f"## {method}: {param}", ""]
        table = {}
        for task in TASKS:
            cells = [results.get(f"{mk}|{sigma}", {}).get(task) for sigma in LEVELS]
            if not any(cells):
                continue
            f = per_1000.get(mk, 1.0)
            vals = sorted({float(k) for c in cells if c for k in c["psnr"] if k != "measurement"})
            md += [f"### {task}", "", "| sigma_y | measurement | " + " | ".join(f"{v * f:g}" for v in vals) + " |",
                   "|---|---|" + "---|" * len(vals)]
            for sigma, c in zip(LEVELS, cells):
                if not c:
                    continue
                by = {float(k): v for k, v in c["psnr"].items() if k != "measurement"}
                num = lambda v: "inf" if v is None else f"{v:.2f}"
                row = [f"**{num(by[v])}**" if v == c["best"] else (num(by[v]) if v in by else "-") for v in vals]
                md.append(f"| {sigma} | {num(c['psnr']['measurement'])} | " + " | ".join(row) + " |")
            md.append("")
            table[task] = [c["best"] * f if c else float("nan") for c in cells]
        rust.append(f"// {method} {param}: " + ", ".join(f"{t}: {table[t]}" for t in table))
    pathlib.Path(md_path).write_text("\n".join(md) + "\n")
    print("\n".join(rust))


def main():
    if sys.argv[1] == "report":
        return report(pathlib.Path(sys.argv[2]), sys.argv[3])
    faces, work = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    store = work / "tuning.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    for group in sys.argv[3:]:
        n, sweeps = GROUPS[group]
        for sigma in LEVELS:
            for method, param, values, extra in sweeps:
                for task in TASKS:
                    if task == "denoise" and sigma == 0.0:
                        continue  # a noiseless denoising measurement is returned as it is
                    variants = []
                    for v in values:
                        e = extra
                        variants.append(f"{method}:{e + ';' if e else ''}{param}={v}")
                    psnr = run_eval(faces, work, sigma, n, [task], variants)
                    cell = results.setdefault(f"{method}|{param}|{sigma}", {}).setdefault(task, {"psnr": {}})
                    row = cell["psnr"]  # merged with earlier sweeps of the same parameter
                    row.update({str(v): psnr[(task, label(method, var.split(":", 1)[1]))] for v, var in zip(values, variants)})
                    row["measurement"] = psnr[(task, "measurement")]
                    inf = float("inf")  # a missing PSNR is an infinite one (identical images)
                    best = float(max((k for k in row if k != "measurement"), key=lambda k: inf if row[k] is None else row[k]))
                    cell["best"] = best
                    store.write_text(json.dumps(results, indent=1))
                    print(f"{method} {param} sigma={sigma} {task}: best {best}", flush=True)


if __name__ == "__main__":
    main()
