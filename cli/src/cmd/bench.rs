//! `diffinv bench unet`: time the UNet forward (and input gradient) on seeded random weights.

use crate::common::{peak_rss_mib, CliError, Global, Result};
use clap::{Args, Subcommand};
use diffinv_core::NoiseStream;
use diffinv_cpu::unet::{RandomWeights, UNet, UNetConfig, Workspace};
use diffinv_cpu::Tensor;
use std::time::Instant;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Time the UNet forward (or forward + input gradient); prints ms per call and GFLOP/s.
    #[command(
        after_help = "Examples:\n  diffinv bench unet --config ffhq256 --threads 2\n  diffinv bench unet --config celeba64 --backward --batch 4 --json"
    )]
    Unet(UnetArgs),
    /// Time a whole DPS run (box inpainting of a random image) on seeded random weights.
    #[command(
        after_help = "Examples:\n  diffinv bench dps --config ffhq256 --steps 1000 --device cuda\n  diffinv bench dps --config celeba64 --steps 50"
    )]
    Dps(DpsArgs),
}

#[derive(Args)]
pub struct DpsArgs {
    /// A preset (ffhq256, celeba64) or a JSON config.
    #[arg(long, default_value = "ffhq256")]
    config: String,
    /// DPS steps (respaced below 1000).
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// cpu, or cuda / cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// With --device cuda: allow TF32 tensor cores.
    #[arg(long)]
    tf32: bool,
}

#[derive(Args)]
pub struct UnetArgs {
    /// A preset (ffhq256, celeba64) or a JSON config.
    #[arg(long, default_value = "ffhq256")]
    config: String,
    /// Time forward + input gradient (one DPS step's network work).
    #[arg(long)]
    backward: bool,
    /// Compute type of the convolutions: f32, or bf16 (AVX512-BF16 `vdpbf16ps`, f32 sums).
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16", "tf32"])]
    dtype: String,
    /// Images per call.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Image side (default: the config's image_size).
    #[arg(long)]
    size: Option<usize>,
    /// Timed calls (after one warm-up call); the median is reported.
    #[arg(long)]
    reps: Option<usize>,
    /// cpu, or cuda / cuda:N (f32; `--dtype tf32` lets cuBLAS use TF32 tensor cores).
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(c: BenchCmd, g: &Global) -> Result<()> {
    match c {
        BenchCmd::Unet(a) => unet(a, g),
        BenchCmd::Dps(a) => dps(a, g),
    }
}

/// Medians and minima of `reps` timed calls after one warm-up.
fn time_calls(reps: usize, call: &mut dyn FnMut() -> Result<()>) -> Result<(f64, f64)> {
    call()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        call()?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0]))
}

fn dps(a: DpsArgs, g: &Global) -> Result<()> {
    use crate::device::Device;
    use diffinv_cpu::ops::{build, measure, Task, TaskParams};
    use diffinv_cpu::solve::{Method, Settings};
    use diffinv_cpu::unet::{DiffusionSettings, LoadedModel};
    let cfg = UNetConfig::from_arg(&a.config)?;
    let unet = UNet::new(&cfg, &mut RandomWeights::new(g.seed))?;
    let diffusion = DiffusionSettings {
        steps: 1000,
        schedule: diffinv_core::BetaSchedule::LINEAR,
        variance: if cfg.out_channels == 2 * cfg.in_channels {
            diffinv_core::VarianceKind::LearnedRange
        } else {
            diffinv_core::VarianceKind::FixedLarge
        },
    };
    let model = LoadedModel {
        unet,
        config: cfg.clone(),
        diffusion,
        path: "random".into(),
        format: "random",
        dtypes: Vec::new(),
    };
    let s = cfg.image_size;
    let mut x = Tensor::zeros([1, cfg.in_channels, s, s]);
    NoiseStream::new(g.seed, 0).fill_normal(x.data_mut());
    x.data_mut().iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
    let op = build(Task::InpaintBox, &TaskParams::default(), x.shape(), g.seed, 0)?;
    let y = measure(&op, &x, 0.05, g.seed, 0)?;
    let device = Device::open(&a.device, Some(&model), a.tf32)?;
    let settings = Settings { steps: Some(a.steps), ..Default::default() };
    let pb = g.progress(a.steps as u64, "dps");
    let t0 = Instant::now();
    let out = device.restore(
        Some(&model),
        Method::Dps,
        Task::InpaintBox,
        &settings,
        &op,
        &y,
        0.05,
        g.seed,
        0,
        &mut |d, _| {
            pb.set(d as u64);
            !crate::common::interrupted()
        },
    )?;
    pb.finish();
    let secs = t0.elapsed().as_secs_f64();
    let per = 1e3 * secs / a.steps as f64;
    if g.json {
        g.emit_json(&serde_json::json!({
            "config": a.config, "steps": a.steps, "seconds": secs, "ms_per_step": per, "device": device.name(),
            "nfe": out.nfe, "vjp": out.vjps,
        }));
    } else {
        println!("{} DPS {} steps on {}: {secs:.2} s ({per:.2} ms/step)", a.config, a.steps, device.name());
    }
    Ok(())
}

fn unet(a: UnetArgs, g: &Global) -> Result<()> {
    let cfg = UNetConfig::from_arg(&a.config)?;
    if a.batch == 0 {
        return Err(CliError::usage("--batch must be at least 1"));
    }
    let size = a.size.unwrap_or(cfg.image_size);
    let mut u = UNet::new(&cfg, &mut RandomWeights::new(g.seed))?;
    if a.device != "cpu" {
        if a.dtype == "bf16" {
            return Err(CliError::usage("--dtype bf16 applies to --device cpu (the GPU has f32 and tf32)"));
        }
        // Parses the name and opens the GPU, or says why not (no CUDA build, no driver).
        let device = crate::device::Device::open(&a.device, None, a.dtype == "tf32")?;
        #[cfg(feature = "cuda")]
        if let Some(gpu) = device.gpu() {
            return unet_gpu(&a, g, &u, size, gpu);
        }
        return Err(CliError::usage(format!("--device {} opened no GPU", device.name())));
    }
    if a.dtype == "tf32" {
        return Err(CliError::usage("--dtype tf32 applies to --device cuda"));
    }
    if a.dtype == "bf16" {
        if !diffinv_cpu::gemm::Isa::Avx512Bf16.available() {
            return Err(CliError::runtime("--dtype bf16 needs a CPU with AVX512-BF16"));
        }
        u.set_precision(diffinv_cpu::nn::Precision::Bf16);
    }
    let mut x = Tensor::zeros([a.batch, cfg.in_channels, size, size]);
    NoiseStream::new(g.seed, 0).fill_normal(x.data_mut());
    let t = vec![500.0f32; a.batch];
    let mut ws = Workspace::new();
    let fwd_gflop = u.gflop(size) * a.batch as f64;
    // The input gradient of every layer costs what its forward does.
    let gflop = if a.backward { 2.0 * fwd_gflop } else { fwd_gflop };
    let reps = a.reps.unwrap_or(if fwd_gflop > 50.0 { 5 } else { 20 }).max(1);
    let mut call = || -> Result<()> {
        if a.backward {
            let (out, tape) = u.forward_with_tape(&x, &t, &mut ws)?;
            let _ = u.vjp(tape, &out, &mut ws)?;
        } else {
            let _ = u.forward(&x, &t, &mut ws)?;
        }
        Ok(())
    };
    let (ms, min_ms) = time_calls(reps, &mut call)?;
    let gflops = gflop / (ms / 1e3);
    let rss = peak_rss_mib();
    let mode = if a.backward { "forward+input-gradient" } else { "forward" };
    let isa = if a.dtype == "bf16" { "avx512bf16" } else { diffinv_cpu::gemm::default_isa().name() };
    if g.json {
        g.emit_json(&serde_json::json!({
            "config": a.config, "mode": mode, "batch": a.batch, "size": size, "ms": ms, "min_ms": min_ms,
            "gflops": gflops, "gflop": gflop, "peak_rss_mib": rss, "threads": g.threads_in_use(), "dtype": a.dtype,
            "isa": isa, "reps": reps,
        }));
    } else {
        println!(
            "{} {mode} batch {} {size}x{size}: {ms:.1} ms median (min {:.1}), {gflops:.1} GFLOP/s ({gflop:.1} GFLOP), peak RSS {rss:.0} MiB, {} threads, {isa}",
            a.config,
            a.batch,
            min_ms,
            g.threads_in_use()
        );
    }
    Ok(())
}

/// `bench unet` on a GPU: the same random weights and input, timed to the end of the queued work.
#[cfg(feature = "cuda")]
fn unet_gpu(a: &UnetArgs, g: &Global, u: &UNet, size: usize, gpu: &diffinv_cuda_sys::Gpu) -> Result<()> {
    use diffinv_cuda_sys::{GpuTensor, GpuUNet};
    let cfg = u.config();
    let e = |e: diffinv_cuda_sys::Error| CliError::runtime(e.to_string());
    let gm = GpuUNet::new(gpu, u).map_err(e)?;
    let mut x = Tensor::zeros([a.batch, cfg.in_channels, size, size]);
    NoiseStream::new(g.seed, 0).fill_normal(x.data_mut());
    let gx = GpuTensor::upload(gpu, &x).map_err(e)?;
    let t = vec![500.0f32; a.batch];
    let fwd_gflop = u.gflop(size) * a.batch as f64;
    let gflop = if a.backward { 2.0 * fwd_gflop } else { fwd_gflop };
    let reps = a.reps.unwrap_or(20).max(1);
    let mut call = || -> Result<()> {
        if a.backward {
            let (out, tape) = gm.forward_with_tape(gpu, &gx, &t).map_err(e)?;
            let _ = gm.vjp(gpu, tape, &out).map_err(e)?;
        } else {
            let _ = gm.forward(gpu, &gx, &t).map_err(e)?;
        }
        gpu.sync().map_err(e)
    };
    let (ms, min_ms) = time_calls(reps, &mut call)?;
    // With DIFFINV_GPU_PROFILE set: GPU time per kernel over one more call.
    gpu.take_profile();
    call()?;
    for (k, t, c) in gpu.take_profile() {
        eprintln!("  profile {k:<24} {t:8.3} ms {c:5} calls");
    }
    let (free, total) = gpu.mem_info().map_err(e)?;
    let used = (total - free) as f64 / (1 << 20) as f64;
    let mode = if a.backward { "forward+input-gradient" } else { "forward" };
    if g.json {
        g.emit_json(&serde_json::json!({
            "config": a.config, "mode": mode, "batch": a.batch, "size": size, "ms": ms, "min_ms": min_ms,
            "gflops": gflop / (ms / 1e3), "gflop": gflop, "device": gpu.name(), "dtype": a.dtype, "reps": reps,
            "gpu_mem_used_mib": used, "convolutions": gpu.conv_engine(),
        }));
    } else {
        println!(
            "{} {mode} batch {} {size}x{size} on {} ({}): {ms:.2} ms median (min {min_ms:.2}), {:.0} GFLOP/s, {} GPU memory in use {used:.0} MiB",
            a.config,
            a.batch,
            gpu.name(),
            gpu.conv_engine(),
            gflop / (ms / 1e3),
            a.dtype
        );
    }
    Ok(())
}
