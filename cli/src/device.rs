//! `--device`: where the diffusion methods run. The CPU always; CUDA when built with the `cuda`
//! feature (classical methods and metrics stay on the CPU either way).

use crate::common::{CliError, Result};
use diffinv_cpu::ops::{Op, Task};
use diffinv_cpu::solve::{restore, Method, Output, Settings};
use diffinv_cpu::unet::LoadedModel;
use diffinv_cpu::Tensor;

/// A compute device with the model uploaded to it.
pub enum Device {
    /// The CPU backend.
    Cpu,
    /// A CUDA GPU and the model's upload.
    #[cfg(feature = "cuda")]
    Cuda(Box<(diffinv_cuda_sys::Gpu, Option<diffinv_cuda_sys::GpuUNet>)>),
}

/// Parses `cpu`, `cuda` or `cuda:N`.
fn ordinal(name: &str) -> Result<Option<usize>> {
    match name {
        "cpu" => Ok(None),
        "cuda" => Ok(Some(0)),
        _ => name
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Some)
            .ok_or_else(|| CliError::usage(format!("--device must be cpu, cuda or cuda:N, got '{name}'"))),
    }
}

impl Device {
    /// Opens `name` and uploads `model` to it; `tf32` lets a GPU use TF32 tensor cores.
    pub fn open(name: &str, model: Option<&LoadedModel>, tf32: bool) -> Result<Device> {
        let Some(i) = ordinal(name)? else {
            return if tf32 { Err(CliError::usage("--tf32 applies to --device cuda")) } else { Ok(Device::Cpu) };
        };
        #[cfg(feature = "cuda")]
        {
            let mut gpu = diffinv_cuda_sys::Gpu::new(i).map_err(|e| CliError::runtime(e.to_string()))?;
            gpu.set_tf32(tf32).map_err(|e| CliError::runtime(e.to_string()))?;
            let gm = model
                .map(|m| diffinv_cuda_sys::GpuUNet::new(&gpu, &m.unet))
                .transpose()
                .map_err(|e| CliError::runtime(e.to_string()))?;
            Ok(Device::Cuda(Box::new((gpu, gm))))
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (i, model, tf32);
            Err(CliError::usage("this diffinv was built without CUDA (rebuild with `--features cuda`)"))
        }
    }

    /// The device's name, for reports.
    pub fn name(&self) -> String {
        match self {
            Device::Cpu => "cpu".into(),
            #[cfg(feature = "cuda")]
            Device::Cuda(c) => {
                format!("{} ({}{})", c.0.name(), c.0.conv_engine(), if c.0.tf32() { ", tf32" } else { "" })
            }
        }
    }

    /// The GPU, on a CUDA device.
    #[cfg(feature = "cuda")]
    pub fn gpu(&self) -> Option<&diffinv_cuda_sys::Gpu> {
        match self {
            Device::Cuda(c) => Some(&c.0),
            Device::Cpu => None,
        }
    }

    /// `diffinv_cpu::solve::restore` on this device (classical methods always on the CPU).
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        &self,
        model: Option<&LoadedModel>,
        method: Method,
        task: Task,
        settings: &Settings,
        op: &Op,
        y: &Tensor,
        sigma_y: f64,
        seed: u64,
        first: u64,
        monitor: &mut dyn FnMut(usize, usize) -> bool,
    ) -> diffinv_cpu::Result<Output> {
        match self {
            #[cfg(feature = "cuda")]
            Device::Cuda(c) if method.is_diffusion() => {
                let (gpu, gm) = (&c.0, c.1.as_ref());
                let (Some(m), Some(gm)) = (model, gm) else {
                    return Err(diffinv_cpu::Error::Config(format!("{} needs a diffusion model", method.name())));
                };
                diffinv_cuda_sys::restore(gpu, gm, m, method, task, settings, op, y, sigma_y, seed, first, monitor)
                    .map_err(|e| match e {
                        diffinv_cuda_sys::Error::Cpu(e) => e,
                        e => diffinv_cpu::Error::Config(e.to_string()),
                    })
            }
            _ => restore(model, method, task, settings, op, y, sigma_y, seed, first, monitor),
        }
    }
}
