//! `diffinv bench`: time the UNet (forward, or forward + input gradient) or a whole DPS run on
//! seeded random weights, on the CPU or a GPU.

use crate::args::{usize_in, DeviceArgs};
use crate::common::{peak_rss_mib, CliError, Global, Result};
use clap::{Args, Subcommand};
use diffinv::cpu::context::Calibration;
use diffinv::cpu::gemm::Isa;
use diffinv::cpu::nn::Precision;
use diffinv::model::UNetConfig;
use diffinv::timing::{time_unet, TimingSetup};
use diffinv::{CpuContext, Device, GpuOptions, Method, Model, Restorer, Task, Tensor};
use std::time::Instant;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Time the UNet forward (or forward + input gradient); prints ms per call and GFLOP/s.
    #[command(
        after_help = "Examples:\n  diffinv bench unet --config ffhq256 --threads 2\n  diffinv bench unet --config celeba64 --backward --batch 4 --json\n  diffinv bench unet --config celeba64 --isa avx2 --no-winograd\n  diffinv bench unet --config celeba64 --isa portable"
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
    /// A preset (ffhq256, imagenet256, celeba64) or a JSON config (adm.py or diffusers style).
    #[arg(long, default_value = "ffhq256")]
    config: String,
    /// DPS steps (respaced below 1000).
    #[arg(long, default_value_t = 1000, value_parser = usize_in(1, 1000))]
    steps: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args)]
pub struct UnetArgs {
    /// A preset (ffhq256, imagenet256, celeba64) or a JSON config (adm.py or diffusers style).
    #[arg(long, default_value = "ffhq256")]
    config: String,
    /// Time forward + input gradient (one DPS step's network work).
    #[arg(long)]
    backward: bool,
    /// Compute type of the convolutions: f32, bf16 (CPU: AVX512-BF16 `vdpbf16ps`, f32 sums),
    /// auto (CPU: bf16 where its kernel measures at least 1.3x f32's, as `restore` chooses), or
    /// tf32 (GPU tensor cores).
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16", "auto", "tf32"])]
    dtype: String,
    /// Images per call (1..=64).
    #[arg(long, default_value_t = 1, value_parser = usize_in(1, 64))]
    batch: usize,
    /// Image side, 8..=1024 (default: the config's image_size).
    #[arg(long, value_parser = usize_in(8, 1024))]
    size: Option<usize>,
    /// Timed calls (after one warm-up call), 1..=10000; the median is reported.
    #[arg(long, value_parser = usize_in(1, 10_000))]
    reps: Option<usize>,
    /// cpu, or cuda / cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The CPU's GEMM kernel: scalar, portable (wide SIMD, the same code on every CPU), avx2,
    /// avx512 (default: the best this CPU has).
    #[arg(long)]
    isa: Option<String>,
    /// Run 3x3 convolutions as direct GEMMs instead of Winograd F(2x2, 3x3) (comparisons).
    #[arg(long)]
    no_winograd: bool,
    /// With --device cuda: run the convolutions through cuDNN.
    #[arg(long)]
    cudnn: bool,
    /// With --device cuda: print the GPU time per kernel of one more call.
    #[arg(long)]
    profile: bool,
}

pub fn run(c: BenchCmd, g: &Global) -> Result<()> {
    match c {
        BenchCmd::Unet(a) => unet(a, g),
        BenchCmd::Dps(a) => dps(a, g),
    }
}

fn dps(a: DpsArgs, g: &Global) -> Result<()> {
    let (device, gpu) = a.device.open()?;
    let mut cfg = UNetConfig::from_arg(&a.config)?;
    let model = Model::random(&cfg, g.seed)?;
    cfg = model.config().clone();
    let s = cfg.image_size;
    let mut x = Tensor::zeros([1, cfg.in_channels, s, s]);
    diffinv::core::NoiseStream::new(g.seed, 0).fill_normal(x.data_mut());
    x.data_mut().iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
    let pb = g.progress(a.steps as u64, "dps");
    let mut r = Restorer::new(&model)
        .task(Task::InpaintBox)
        .method(Method::Dps)
        .steps(a.steps)
        .seed(g.seed)
        .device(device)
        .gpu_options(gpu)
        .on_step(pb.monitor());
    let (y, op) = r.measure_tensor(&x)?;
    let t0 = Instant::now();
    let out = r.run_with(&op, &y)?;
    pb.finish();
    let secs = t0.elapsed().as_secs_f64();
    let per = 1e3 * secs / a.steps as f64;
    if g.json {
        g.emit_json(&serde_json::json!({
            "config": a.config, "steps": a.steps, "seconds": secs, "ms_per_step": per, "device": out.device,
            "nfe": out.nfe, "vjp": out.vjps,
        }));
    } else {
        println!("{} DPS {} steps on {}: {secs:.2} s ({per:.2} ms/step)", a.config, a.steps, out.device);
    }
    Ok(())
}

/// The CPU context and GPU options `bench unet`'s flags ask for, checked against the device.
fn contexts(a: &UnetArgs, device: Device) -> Result<(CpuContext, GpuOptions)> {
    let on_gpu = device != Device::Cpu;
    if on_gpu && (a.dtype == "bf16" || a.dtype == "auto" || a.isa.is_some() || a.no_winograd) {
        return Err(CliError::usage("--dtype bf16/auto, --isa and --no-winograd apply to --device cpu"));
    }
    if !on_gpu && (a.dtype == "tf32" || a.cudnn || a.profile) {
        return Err(CliError::usage("--dtype tf32, --cudnn and --profile apply to --device cuda"));
    }
    let mut cpu = match &a.isa {
        Some(name) => {
            let isa = Isa::parse(name).ok_or_else(|| {
                CliError::usage(format!("--isa must be scalar, portable, avx2 or avx512, got '{name}'"))
            })?;
            CpuContext::with_isa(isa)?
        }
        None => CpuContext::default(),
    };
    if !on_gpu {
        cpu = cpu.precision(crate::args::parse_precision("--dtype", &a.dtype)?);
    }
    let gpu = GpuOptions { tf32: a.dtype == "tf32", cudnn: a.cudnn, profile: a.profile };
    Ok((cpu.winograd(!a.no_winograd), gpu))
}

fn unet(a: UnetArgs, g: &Global) -> Result<()> {
    let device = Device::parse(&a.device).map_err(|e| CliError::usage(e.to_string()))?;
    let (cpu, gpu) = contexts(&a, device)?;
    if a.batch == 0 {
        return Err(CliError::usage("--batch must be at least 1"));
    }
    let cfg = UNetConfig::from_arg(&a.config)?;
    let size = a.size.unwrap_or(cfg.image_size);
    let model = Model::random(&cfg, g.seed)?;
    let fwd_gflop = model.gflop_at(size) * a.batch as f64;
    let reps = a.reps.unwrap_or(if fwd_gflop > 50.0 && device == Device::Cpu { 5 } else { 20 }).max(1);
    let setup = TimingSetup { batch: a.batch, size, backward: a.backward, reps, seed: g.seed };
    let t = time_unet(&model, device, cpu, gpu, setup)?;
    for (k, ms, c) in &t.profile {
        eprintln!("  profile {k:<24} {ms:8.3} ms {c:5} calls");
    }
    let (ms, min_ms, gflop) = (t.median_ms, t.min_ms, t.gflop);
    let gflops = gflop / (ms / 1e3);
    let mode = if a.backward { "forward+input-gradient" } else { "forward" };
    // What `--precision auto` measures and picks (CPU runs only; null on a GPU).
    let cal = (device == Device::Cpu).then(Calibration::get);
    let auto = |c: &Calibration| if c.choice == Precision::Bf16 { "bf16" } else { "f32" };
    let calibration = cal
        .as_ref()
        .map(|c| serde_json::json!({"f32_gflops": c.f32_gflops, "bf16_gflops": c.bf16_gflops, "auto": auto(c)}));
    let kernel = match device {
        Device::Cpu => cpu.conv_isa().name().to_string(),
        Device::Cuda(_) => a.dtype.clone(),
    };
    if g.json {
        g.emit_json(&serde_json::json!({
            "config": a.config, "mode": mode, "batch": a.batch, "size": size, "ms": ms, "min_ms": min_ms,
            "gflops": gflops, "gflop": gflop, "peak_rss_mib": peak_rss_mib(), "threads": g.threads_in_use(),
            "dtype": a.dtype, "isa": kernel, "reps": reps, "device": t.device, "winograd": cpu.winograd,
            "gpu_mem_used_mib": t.device_mib, "kernel_calibration": calibration,
        }));
    } else {
        let mem = match t.device_mib {
            Some(m) => format!("device memory in use {m:.0} MiB"),
            None => format!("peak RSS {:.0} MiB, {} threads", peak_rss_mib(), g.threads_in_use()),
        };
        println!(
            "{} {mode} batch {} {size}x{size} on {}: {ms:.1} ms median (min {min_ms:.1}), {gflops:.1} GFLOP/s ({gflop:.1} GFLOP), {mem}, {kernel}",
            a.config, a.batch, t.device
        );
        if let Some(c) = &cal {
            let bf16 = c.bf16_gflops.map_or("no AVX512-BF16".into(), |b| format!("bf16 {b:.0} GFLOP/s"));
            println!(
                "kernel calibration (one core, in L1): f32 {:.0} GFLOP/s, {bf16}; --precision auto picks {}",
                c.f32_gflops,
                auto(c)
            );
        }
    }
    Ok(())
}
