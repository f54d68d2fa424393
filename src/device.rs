//! Where a diffusion job runs. [`Device::Cpu`] always; [`Device::Cuda`] in a build with the
//! `cuda` feature and a GPU, and a clear [`Error::Unavailable`] otherwise: callers never need a
//! `cfg`. Jobs ([`Job`]) are written once over [`DeviceBackend`]; [`dispatch`] picks the
//! backend. Classical methods and metrics run on the CPU either way.

use crate::error::{Error, Result};
use crate::models::Model;
use diffinv_core::sampler::SampleError;
use diffinv_core::{Backend, Operator};
use diffinv_cpu::ops::Op;
use diffinv_cpu::{CpuBackend, CpuContext, Tensor};
use std::fmt;

/// A compute device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU backend (SIMD kernels, rayon threads).
    #[default]
    Cpu,
    /// CUDA device `n` (a build with the `cuda` feature; the NVIDIA driver, cuBLAS and NVRTC
    /// found at run time).
    Cuda(usize),
}

impl Device {
    /// Parses `cpu`, `cuda` (device 0) or `cuda:N`.
    ///
    /// ```
    /// use diffinv::Device;
    /// assert_eq!(Device::parse("cuda:1")?, Device::Cuda(1));
    /// assert_eq!(Device::parse("cpu")?.to_string(), "cpu");
    /// assert!(Device::parse("tpu").is_err());
    /// # Ok::<(), diffinv::Error>(())
    /// ```
    ///
    /// # Errors
    /// Any other name.
    pub fn parse(name: &str) -> Result<Device> {
        match name {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => name.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(Device::Cuda).ok_or_else(|| {
                Error::Cpu(diffinv_cpu::Error::parameter("device", format!("'{name}'"), "must be cpu, cuda or cuda:N"))
            }),
        }
    }

    /// Whether this build can drive CUDA devices at all (a GPU must still be found at run time).
    pub fn cuda_built() -> bool {
        cfg!(feature = "cuda")
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// How a GPU computes (ignored on the CPU).
///
/// ```
/// use diffinv::{Device, GpuOptions, Model, Restorer};
/// let model = Model::shipped()?;
/// let fast = GpuOptions { tf32: true, ..Default::default() };
/// let r = Restorer::new(&model).device(Device::Cuda(0)).gpu_options(fast);
/// # drop(r);
/// # Ok::<(), diffinv::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GpuOptions {
    /// Let cuBLAS and cuDNN use TF32 tensor cores (PyTorch's default for convolutions; about
    /// 1e-3 relative error per layer). Off: strict f32.
    pub tf32: bool,
    /// Convolutions through cuDNN instead of im2col + cuBLAS.
    pub cudnn: bool,
    /// Time every kernel; slows the run.
    pub profile: bool,
}

type StepFn<'m> = Box<dyn FnMut(usize, usize) -> bool + Send + 'm>;

/// Where and how a job runs, shared by every builder of the facade: the device, the CPU
/// context, the GPU options, the thread count and the progress callback.
pub(crate) struct Exec<'m> {
    pub device: Device,
    pub cpu: CpuContext,
    pub gpu: GpuOptions,
    threads: Option<usize>,
    pool: Option<rayon::ThreadPool>,
    on_step: Option<StepFn<'m>>,
}

impl Default for Exec<'_> {
    fn default() -> Self {
        Exec {
            device: Device::Cpu,
            cpu: CpuContext::default(),
            gpu: GpuOptions::default(),
            threads: None,
            pool: None,
            on_step: None,
        }
    }
}

impl<'m> Exec<'m> {
    pub fn set_threads(&mut self, n: usize) {
        self.threads = Some(n);
        self.pool = None;
    }

    pub fn set_on_step(&mut self, f: impl FnMut(usize, usize) -> bool + Send + 'm) {
        self.on_step = Some(Box::new(f));
    }

    /// Runs `f` with the progress callback, on the requested pool of threads.
    pub fn install<R: Send>(
        &mut self,
        f: impl FnOnce(&mut (dyn FnMut(usize, usize) -> bool + Send)) -> Result<R> + Send,
    ) -> Result<R> {
        if let (Some(n), None) = (self.threads, &self.pool) {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .build()
                .map_err(|e| Error::Unavailable { what: format!("a pool of {n} threads"), reason: e.to_string() })?;
            self.pool = Some(pool);
        }
        let mut noop = |_: usize, _: usize| true;
        let monitor: &mut (dyn FnMut(usize, usize) -> bool + Send) = match self.on_step.as_mut() {
            Some(f) => f,
            None => &mut noop,
        };
        match &self.pool {
            Some(p) => p.install(|| f(monitor)),
            None => f(monitor),
        }
    }
}

/// The builder methods every facade job shares (its struct has an `exec: Exec` field).
macro_rules! exec_methods {
    () => {
        /// Where it runs (default: the CPU).
        pub fn device(mut self, device: $crate::Device) -> Self {
            self.exec.device = device;
            self
        }

        /// How the CPU computes (kernel ISA, f32 or bf16, Winograd).
        pub fn cpu_context(mut self, ctx: $crate::CpuContext) -> Self {
            self.exec.cpu = ctx;
            self
        }

        /// How a GPU device computes.
        pub fn gpu_options(mut self, opts: $crate::GpuOptions) -> Self {
            self.exec.gpu = opts;
            self
        }

        /// Runs on a pool of `n` threads (default: the caller's rayon pool). Results do not
        /// depend on the thread count.
        pub fn threads(mut self, n: usize) -> Self {
            self.exec.set_threads(n);
            self
        }

        /// Called after every step with `(done, total)`; returning `false` cancels the run,
        /// which then fails with [`crate::Error::Cancelled`].
        pub fn on_step(mut self, f: impl FnMut(usize, usize) -> bool + Send + 'm) -> Self {
            self.exec.set_on_step(f);
            self
        }
    };
}
pub(crate) use exec_methods;

/// A backend a job can run on: the core's [`Backend`] with host transfers and the operators.
pub(crate) trait DeviceBackend: Backend + Sized {
    /// The backend's error as the facade's.
    fn err(e: Self::Error) -> Error;
    /// A host tensor in the backend's memory.
    fn upload(&mut self, t: &Tensor) -> Result<Self::Tensor>;
    /// A backend tensor on the host.
    fn download(&mut self, t: &Self::Tensor) -> Result<Tensor>;
    /// Runs `f` with `op` as this backend's operator.
    fn with_operator<R>(&mut self, op: &Op, f: impl FnOnce(&mut Self, &dyn Operator<Self>) -> R) -> Result<R>;
    /// Waits for the queued work (timing).
    fn sync(&mut self) -> Result<()> {
        Ok(())
    }
    /// Device time per kernel since the last call (a GPU opened with profiling), largest first.
    fn take_profile(&mut self) -> Vec<(&'static str, f64, usize)> {
        Vec::new()
    }
    /// Device memory in use, MiB (GPUs).
    fn memory_used_mib(&mut self) -> Option<f64> {
        None
    }
}

/// A sampler loop's error as the facade's.
pub(crate) fn sample_err<B: DeviceBackend>(e: SampleError<B::Error>) -> Error {
    sample_err_with(e, B::err)
}

/// A sampler loop's error as the facade's, the backend's error mapped by `err`.
pub(crate) fn sample_err_with<E>(e: SampleError<E>, err: impl FnOnce(E) -> Error) -> Error {
    match e {
        SampleError::Backend(e) => err(e),
        SampleError::Cancelled => Error::Cancelled,
        SampleError::NonFinite { method, t } => Error::Cpu(diffinv_cpu::Error::NonFinite { method, step: t }),
        SampleError::Diverged { method, t, max_abs } => {
            Error::Cpu(diffinv_cpu::Error::Diverged { method, step: t, max_abs })
        }
        SampleError::BadParameter { name, value, reason } => {
            Error::Cpu(diffinv_cpu::Error::parameter(name, value, reason))
        }
    }
}

/// Work written once over any [`DeviceBackend`].
pub(crate) trait Job {
    /// What the job gives back.
    type Out;
    /// Runs on `b`.
    fn run<B: DeviceBackend>(self, b: &mut B) -> Result<Self::Out>;
}

impl DeviceBackend for CpuBackend<'_> {
    fn err(e: diffinv_cpu::Error) -> Error {
        e.into()
    }
    fn upload(&mut self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }
    fn download(&mut self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }
    fn with_operator<R>(&mut self, op: &Op, f: impl FnOnce(&mut Self, &dyn Operator<Self>) -> R) -> Result<R> {
        Ok(f(self, op))
    }
}

/// Runs `job` with `model` on `device`; returns its output and the device's name.
pub(crate) fn dispatch<J: Job>(
    model: &Model,
    device: Device,
    cpu: CpuContext,
    gpu: GpuOptions,
    job: J,
) -> Result<(J::Out, String)> {
    match device {
        Device::Cpu => Ok((job.run(&mut CpuBackend::new(model.cpu(), model.diffusion().variance, cpu))?, "cpu".into())),
        Device::Cuda(i) => cuda::run(model, i, gpu, job),
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::{DeviceBackend, GpuOptions, Job};
    use crate::error::{Error, Result};
    use crate::models::Model;
    use diffinv_core::{Operator, Shape};
    use diffinv_cpu::ops::Op;
    use diffinv_cpu::Tensor;
    use diffinv_cuda_sys::{CudaBackend, Gpu, GpuOp, GpuTensor, GpuUNet, HostError, HostOperator};
    use std::sync::{Arc, Mutex};

    /// An opened GPU with the model's layers uploaded.
    pub struct Slot {
        key: (usize, GpuOptions),
        gpu: Gpu,
        net: GpuUNet,
    }

    /// The GPUs a model has been uploaded to, kept for the next job.
    #[derive(Default)]
    pub struct GpuCache(Mutex<Vec<Arc<Slot>>>);

    fn slot(model: &Model, ordinal: usize, o: GpuOptions) -> Result<Arc<Slot>> {
        let mut slots = model.gpus.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slots.iter().find(|s| s.key == (ordinal, o)) {
            return Ok(s.clone());
        }
        let opts = diffinv_cuda_sys::GpuOptions { tf32: o.tf32, cudnn: o.cudnn, profile: o.profile };
        let gpu = Gpu::new(ordinal, opts)?;
        let net = model.with_description(|d| GpuUNet::new(&gpu, d))?;
        let s = Arc::new(Slot { key: (ordinal, o), gpu, net });
        slots.push(s.clone());
        Ok(s)
    }

    /// A CPU operator as the GPU backend's host operator (blur, resize and the initial
    /// estimate run on host copies).
    pub struct CpuOnHost<'a>(pub &'a Op);

    /// The GPU operator of `host`'s operator: masks and the identity on the GPU, the rest on
    /// the host.
    ///
    /// # Errors
    /// The mask's upload fails.
    pub fn gpu_operator<'a>(b: &CudaBackend<'_>, host: &'a CpuOnHost<'a>) -> Result<GpuOp<'a>> {
        Ok(match host.0 {
            Op::Mask(m) => GpuOp::mask(b, host, m.shape(), m.data())?,
            Op::Identity => GpuOp::identity(host),
            _ => GpuOp::on_host(host),
        })
    }

    fn tensor(s: Shape, d: &[f32]) -> std::result::Result<Tensor, HostError> {
        Ok(Tensor::from_vec(s, d.to_vec())?)
    }

    fn put(t: Tensor, out: (Shape, &mut [f32])) -> std::result::Result<(), HostError> {
        if t.shape() != out.0 {
            return Err(Box::new(diffinv_cpu::Error::mismatch("operator output", &t.shape(), &out.0)));
        }
        out.1.copy_from_slice(t.data());
        Ok(())
    }

    impl HostOperator for CpuOnHost<'_> {
        fn measurement_shape(&self, x: Shape) -> Shape {
            self.0.measurement_shape(x)
        }
        fn forward(&self, x: (Shape, &[f32]), out: (Shape, &mut [f32])) -> std::result::Result<(), HostError> {
            put(self.0.forward(&tensor(x.0, x.1)?)?, out)
        }
        fn adjoint(&self, y: (Shape, &[f32]), out: (Shape, &mut [f32])) -> std::result::Result<(), HostError> {
            put(self.0.adjoint(&tensor(y.0, y.1)?)?, out)
        }
        fn data_solve(
            &self,
            y: (Shape, &[f32]),
            z: (Shape, &[f32]),
            rho: f64,
            out: (Shape, &mut [f32]),
        ) -> std::result::Result<(), HostError> {
            put(self.0.data_solve(&tensor(y.0, y.1)?, &tensor(z.0, z.1)?, rho)?, out)
        }
        fn vjp(
            &self,
            x: (Shape, &[f32]),
            v: (Shape, &[f32]),
            out: (Shape, &mut [f32]),
        ) -> std::result::Result<(), HostError> {
            put(self.0.vjp(&tensor(x.0, x.1)?, &tensor(v.0, v.1)?)?, out)
        }
        fn is_linear(&self) -> bool {
            self.0.is_linear()
        }
        fn init_estimate(&self, y: (Shape, &[f32]), out: (Shape, &mut [f32])) -> std::result::Result<(), HostError> {
            put(self.0.init_estimate(&tensor(y.0, y.1)?)?, out)
        }
    }

    impl<'g> DeviceBackend for CudaBackend<'g> {
        fn err(e: diffinv_cuda_sys::Error) -> Error {
            e.into()
        }
        fn upload(&mut self, t: &Tensor) -> Result<GpuTensor> {
            Ok(GpuTensor::from_host(self.gpu(), t.shape(), t.data())?)
        }
        fn download(&mut self, t: &GpuTensor) -> Result<Tensor> {
            Ok(Tensor::from_vec(t.shape(), t.to_host(self.gpu())?)?)
        }
        fn with_operator<R>(&mut self, op: &Op, f: impl FnOnce(&mut Self, &dyn Operator<Self>) -> R) -> Result<R> {
            let host = CpuOnHost(op);
            let gop = gpu_operator(self, &host)?;
            Ok(f(self, &gop))
        }
        fn sync(&mut self) -> Result<()> {
            Ok(self.gpu().sync()?)
        }
        fn take_profile(&mut self) -> Vec<(&'static str, f64, usize)> {
            self.gpu().take_profile()
        }
        fn memory_used_mib(&mut self) -> Option<f64> {
            self.gpu().mem_info().ok().map(|(free, total)| (total - free) as f64 / (1 << 20) as f64)
        }
    }

    /// Runs `job` on CUDA device `ordinal` (opened, and the model uploaded, on first use).
    pub fn run<J: Job>(model: &Model, ordinal: usize, o: GpuOptions, job: J) -> Result<(J::Out, String)> {
        let s = slot(model, ordinal, o)?;
        let name = format!("{} ({}{})", s.gpu.name(), s.gpu.conv_engine(), if s.gpu.tf32() { ", tf32" } else { "" });
        let out = job.run(&mut CudaBackend::new(&s.gpu, &s.net, model.diffusion().variance))?;
        Ok((out, name))
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    use super::{GpuOptions, Job};
    use crate::error::{Error, Result};
    use crate::models::Model;

    /// No GPUs in this build.
    #[derive(Default)]
    pub struct GpuCache(());

    /// Always [`Error::Unavailable`]: the one path of a build without CUDA.
    pub fn run<J: Job>(_: &Model, ordinal: usize, _: GpuOptions, _: J) -> Result<(J::Out, String)> {
        Err(Error::Unavailable {
            what: format!("CUDA device {ordinal}"),
            reason: "this diffinv was built without CUDA (rebuild with the `cuda` feature)".into(),
        })
    }
}

pub(crate) use cuda::GpuCache;
#[cfg(feature = "cuda")]
pub use cuda::{gpu_operator, CpuOnHost};
