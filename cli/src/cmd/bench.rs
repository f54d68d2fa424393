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
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
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
}

pub fn run(c: BenchCmd, g: &Global) -> Result<()> {
    match c {
        BenchCmd::Unet(a) => unet(a, g),
    }
}

fn unet(a: UnetArgs, g: &Global) -> Result<()> {
    let cfg = UNetConfig::from_arg(&a.config)?;
    if a.batch == 0 {
        return Err(CliError::usage("--batch must be at least 1"));
    }
    let size = a.size.unwrap_or(cfg.image_size);
    let mut u = UNet::new(&cfg, &mut RandomWeights::new(g.seed))?;
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
    call()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        call()?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let ms = times[times.len() / 2];
    let gflops = gflop / (ms / 1e3);
    let rss = peak_rss_mib();
    let mode = if a.backward { "forward+input-gradient" } else { "forward" };
    let isa = if a.dtype == "bf16" { "avx512bf16" } else { diffinv_cpu::gemm::default_isa().name() };
    if g.json {
        g.emit_json(&serde_json::json!({
            "config": a.config, "mode": mode, "batch": a.batch, "size": size, "ms": ms, "min_ms": times[0],
            "gflops": gflops, "gflop": gflop, "peak_rss_mib": rss, "threads": g.threads_in_use(), "dtype": a.dtype,
            "isa": isa, "reps": reps,
        }));
    } else {
        println!(
            "{} {mode} batch {} {size}x{size}: {ms:.1} ms median (min {:.1}), {gflops:.1} GFLOP/s ({gflop:.1} GFLOP), peak RSS {rss:.0} MiB, {} threads, {isa}",
            a.config,
            a.batch,
            times[0],
            g.threads_in_use()
        );
    }
    Ok(())
}
