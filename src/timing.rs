//! Timing the network on a device, as `diffinv bench unet` and the criterion benches do: the
//! input stays in the device's memory, every call is waited for, the median and minimum of the
//! timed calls are reported.

use crate::device::{dispatch, Device, DeviceBackend, GpuOptions, Job};
use crate::error::{Error, Result};
use crate::models::Model;
use diffinv_core::NoiseStream;
use diffinv_cpu::{CpuContext, Tensor};
use std::time::Instant;

/// What [`time_unet`] measured.
#[derive(Clone, Debug)]
pub struct UNetTiming {
    /// Median milliseconds per call.
    pub median_ms: f64,
    /// Fastest call, milliseconds.
    pub min_ms: f64,
    /// Timed calls.
    pub reps: usize,
    /// GFLOP per call (a forward's; twice that with the input gradient).
    pub gflop: f64,
    /// Where it ran.
    pub device: String,
    /// Device time per kernel over one more call (a GPU opened with profiling).
    pub profile: Vec<(&'static str, f64, usize)>,
    /// Device memory in use after the calls, MiB (GPUs).
    pub device_mib: Option<f64>,
}

/// How to time the network.
#[derive(Clone, Copy, Debug)]
pub struct TimingSetup {
    /// Images per call.
    pub batch: usize,
    /// Image side.
    pub size: usize,
    /// Forward and input gradient (one DPS step's network work) instead of a forward.
    pub backward: bool,
    /// Timed calls, after one warm-up call.
    pub reps: usize,
    /// The input's seed.
    pub seed: u64,
}

/// Times `model`'s forward (or forward + input gradient) at timestep 500 on `device`.
///
/// ```
/// use diffinv::timing::{time_unet, TimingSetup};
/// let cfg = diffinv::model::UNetConfig::preset("celeba64").unwrap();
/// let model = diffinv::Model::random(&cfg, 0)?;
/// let setup = TimingSetup { batch: 1, size: 64, backward: true, reps: 1, seed: 0 };
/// let t = time_unet(&model, diffinv::Device::Cpu, Default::default(), Default::default(), setup)?;
/// assert!(t.min_ms > 0.0 && t.min_ms <= t.median_ms);
/// # Ok::<(), diffinv::Error>(())
/// ```
///
/// # Errors
/// A batch, size or repetition count of 0, a size the model cannot take, a device this build
/// or machine lacks.
pub fn time_unet(
    model: &Model,
    device: Device,
    cpu: CpuContext,
    gpu: GpuOptions,
    s: TimingSetup,
) -> Result<UNetTiming> {
    if s.batch == 0 || s.size == 0 || s.reps == 0 {
        let v = format!("{}, {}, {}", s.batch, s.size, s.reps);
        return Err(Error::Cpu(diffinv_cpu::Error::parameter("batch, size and reps", v, "must be at least 1")));
    }
    let mut x = Tensor::zeros([s.batch, model.config().in_channels, s.size, s.size]);
    NoiseStream::new(s.seed, 0).fill_normal(x.data_mut());
    let gflop = model.gflop_at(s.size) * s.batch as f64 * if s.backward { 2.0 } else { 1.0 };
    let job = TimeJob { x: &x, backward: s.backward, reps: s.reps, out_c: model.config().out_channels };
    let ((median_ms, min_ms, profile, device_mib), device) = dispatch(model, device, cpu, gpu, job)?;
    Ok(UNetTiming { median_ms, min_ms, reps: s.reps, gflop, device, profile, device_mib })
}

struct TimeJob<'a> {
    x: &'a Tensor,
    backward: bool,
    reps: usize,
    out_c: usize,
}

type Measured = (f64, f64, Vec<(&'static str, f64, usize)>, Option<f64>);

impl Job for TimeJob<'_> {
    type Out = Measured;

    fn run<B: DeviceBackend>(self, b: &mut B) -> Result<Measured> {
        let x = b.upload(self.x)?;
        let [n, c, h, w] = self.x.shape();
        let mut out = b.zeros([n, self.out_c, h, w]).map_err(B::err)?;
        let mut gx = b.zeros([n, c, h, w]).map_err(B::err)?;
        let mut call = |b: &mut B| -> Result<()> {
            if self.backward {
                let tape = b.model_for_grad(&x, 500, &mut out).map_err(B::err)?;
                b.model_vjp(tape, &out, &mut gx).map_err(B::err)?;
            } else {
                b.model(&x, 500, &mut out).map_err(B::err)?;
            }
            b.sync()
        };
        call(b)?;
        let mut times = Vec::with_capacity(self.reps);
        for _ in 0..self.reps {
            let t0 = Instant::now();
            call(b)?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        b.take_profile();
        call(b)?;
        let profile = b.take_profile();
        Ok((times[times.len() / 2], times[0], profile, b.memory_used_mib()))
    }
}
