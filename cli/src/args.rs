//! Options several commands share: which model, and which device.

use crate::common::{CliError, Result};
use clap::Args;
use diffinv::cpu::context::{Calibration, Precision};
use diffinv::{CpuContext, Device, GpuOptions, Model};
use std::path::PathBuf;

/// `--model` and `--config`.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// The model: a checkpoint (.safetensors, .pt, .pth) or a diffusers UNet2DModel folder
    /// (default: the shipped 64x64 face model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A preset (ffhq256, imagenet256, celeba64) or a JSON config (adm.py or diffusers style); a bare
    /// PyTorch state_dict of a preset is recognised without it.
    #[arg(long)]
    pub config: Option<String>,
}

impl ModelArgs {
    /// The model these options name.
    pub fn load(&self) -> Result<Model> {
        Ok(match (&self.model, &self.config) {
            (Some(p), c) => Model::load(p, c.as_deref())?,
            (None, None) => Model::shipped()?,
            (None, Some(c)) => Model::from_checkpoint(&diffinv::assets::model()?, Some(c))?,
        })
    }
}

/// `--device`, `--tf32`, `--cudnn`.
#[derive(Args, Clone, Debug)]
pub struct DeviceArgs {
    /// Where the diffusion methods run: cpu, or cuda / cuda:N (a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// With --device cuda: let cuBLAS/cuDNN use TF32 tensor cores (faster; about 1e-3 relative
    /// error per layer, PyTorch's default for convolutions).
    #[arg(long)]
    pub tf32: bool,
    /// With --device cuda: run the convolutions through cuDNN (needs libcudnn).
    #[arg(long)]
    pub cudnn: bool,
}

impl DeviceArgs {
    /// The device, with the GPU options checked against it.
    pub fn open(&self) -> Result<(Device, GpuOptions)> {
        let device = Device::parse(&self.device).map_err(|e| CliError::usage(e.to_string()))?;
        if device == Device::Cpu && (self.tf32 || self.cudnn) {
            return Err(CliError::usage("--tf32 and --cudnn apply to --device cuda"));
        }
        Ok((device, GpuOptions { tf32: self.tf32, cudnn: self.cudnn, profile: false }))
    }
}

/// `--precision`: the CPU convolutions' arithmetic.
#[derive(Args, Clone, Debug)]
pub struct PrecisionArg {
    /// CPU convolution arithmetic: f32; bf16 (bf16 products, f32 sums; needs AVX512-BF16); or
    /// auto: bf16 where this CPU's bf16 kernel measures at least 1.3x the f32 kernel's speed
    /// (about 10 ms at start-up), else f32. On 20 faces bf16 moved DPS's and DiffPIR's PSNR by
    /// at most 0.02 dB. `bench unet` prints the measurement.
    #[arg(long, default_value = "auto", value_parser = ["auto", "f32", "bf16"])]
    pub precision: String,
}

impl PrecisionArg {
    /// The CPU context this asks for.
    pub fn context(&self) -> Result<CpuContext> {
        cpu_context(&self.precision)
    }
}

/// The CPU context of a `--precision` name (`auto`, `f32`, `bf16`).
pub fn cpu_context(precision: &str) -> Result<CpuContext> {
    Ok(CpuContext::default().precision(parse_precision("--precision", precision)?))
}

/// The CPU precision `flag`'s value `name` asks for: `auto` is what [`Calibration`] measured
/// (as `CpuContext::fastest`), `bf16` needs AVX512-BF16, anything else is f32.
pub fn parse_precision(flag: &str, name: &str) -> Result<Precision> {
    Ok(match name {
        "auto" => Calibration::get().choice,
        "bf16" if !diffinv::cpu::gemm::Isa::Avx512Bf16.available() => {
            return Err(CliError::runtime(format!("{flag} bf16 needs a CPU with AVX512-BF16")))
        }
        "bf16" => Precision::Bf16,
        _ => Precision::F32,
    })
}

/// A parser for a whole number in `lo..=hi` (the range is in the error message).
pub fn usize_in(lo: usize, hi: usize) -> impl Fn(&str) -> std::result::Result<usize, String> + Clone + Send + Sync {
    move |s| match s.trim().parse::<usize>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(format!("expected a whole number in {lo}..={hi}, got '{s}'")),
    }
}

/// A parser for an odd whole number in `1..=hi` (kernel sides).
pub fn odd_in(hi: usize) -> impl Fn(&str) -> std::result::Result<usize, String> + Clone + Send + Sync {
    move |s| match s.trim().parse::<usize>() {
        Ok(v) if v % 2 == 1 && v <= hi => Ok(v),
        _ => Err(format!("expected an odd whole number in 1..={hi}, got '{s}'")),
    }
}

/// A parser for a number in `[lo, hi]` (NaN and infinities refused).
pub fn f64_in(lo: f64, hi: f64) -> impl Fn(&str) -> std::result::Result<f64, String> + Clone + Send + Sync {
    move |s| match s.trim().parse::<f64>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(format!("expected a number in [{lo}, {hi}], got '{s}'")),
    }
}

/// A parser for a positive number up to `hi` (`(0, hi]`).
pub fn positive_up_to(hi: f64) -> impl Fn(&str) -> std::result::Result<f64, String> + Clone + Send + Sync {
    move |s| match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v <= hi => Ok(v),
        _ => Err(format!("expected a number in (0, {hi}], got '{s}'")),
    }
}

/// The most options take: iterations, steps, images (the library's iteration bound).
pub const MAX_STEPS: usize = diffinv::cpu::solve::MAX_ITERS;
/// The largest step size or weight (`--zeta`, `--lambda`), the library's.
pub const MAX_WEIGHT: f64 = diffinv::cpu::solve::MAX_WEIGHT;
