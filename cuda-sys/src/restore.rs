//! Solving an inverse problem end to end on the GPU: the CPU's resolved [`Plan`] run on
//! [`CudaBackend`].

use crate::backend::CudaBackend;
use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::ops::GpuOp;
use crate::tensor::GpuTensor;
use crate::unet::GpuUNet;
use diffinv_core::sampler::SampleError;
use diffinv_cpu::ops::{Op, Task};
use diffinv_cpu::solve::{Method, Output, Plan, Settings};
use diffinv_cpu::unet::LoadedModel;
use diffinv_cpu::Tensor;

/// [`diffinv_cpu::solve::restore`] for the diffusion methods, on the GPU with `gmodel` (the
/// upload of `model`'s network). Same seeds, same noise: the result matches the CPU's to
/// float rounding.
#[allow(clippy::too_many_arguments)]
pub fn restore(
    gpu: &Gpu,
    gmodel: &GpuUNet,
    model: &LoadedModel,
    method: Method,
    task: Task,
    settings: &Settings,
    op: &Op,
    y: &Tensor,
    sigma_y: f64,
    seed: u64,
    first: u64,
    monitor: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Output> {
    let plan = Plan::new(model, method, task, settings, sigma_y, y.n())?;
    let mut b = CudaBackend::new(gpu, gmodel, model.diffusion.variance);
    let gop = GpuOp::new(&b, op)?;
    let gy = GpuTensor::upload(gpu, y)?;
    let (x, stats) = plan.run(&mut b, &gop, &gy, seed, first, monitor).map_err(|e| match e {
        SampleError::Backend(e) => e,
        SampleError::Cancelled => Error::Cpu(diffinv_cpu::Error::Cancelled),
        e => Error::Cpu(diffinv_cpu::Error::Numeric(e.to_string())),
    })?;
    Ok(Output { x: x.download(gpu)?, nfe: stats.nfe, vjps: stats.vjps, params: plan.params })
}
