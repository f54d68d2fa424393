//! The device: a CUDA context and stream, cuBLAS, and the NVRTC-compiled kernels of
//! `kernels.cu`; device buffers addressed by raw pointers (one stream, so no event tracking).

use crate::error::{Error, Result};
use cudarc::cublas::{sys as blas_sys, CudaBlas};
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg};
use std::collections::HashMap;
use std::sync::Arc;

/// The kernels' source.
pub(crate) const SOURCE: &str = include_str!("kernels.cu");

/// Every kernel of `kernels.cu`.
const KERNELS: &[&str] = &[
    "im2col",
    "col2im",
    "bias_init",
    "gn_partial",
    "gn_finalize",
    "gn_apply",
    "gn_bwd_partial",
    "gn_bwd_finalize",
    "gn_bwd_apply",
    "add_channel",
    "silu_inplace",
    "bias_rows",
    "softmax_rows",
    "softmax_backward_rows",
    "upsample2",
    "upsample2_adjoint",
    "avgpool2",
    "avgpool2_adjoint",
    "concat2",
    "split2",
    "lin3",
    "posterior_learned",
    "mask_blend",
    "mask_mul",
    "mask_solve",
    "clamp_inplace",
    "clip_gradient",
    "sumsq",
    "max_abs",
    "scale_images",
];

/// A kernel argument.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg {
    /// A device pointer (0 = null).
    P(u64),
    /// `int`.
    I(i32),
    /// `long long`.
    L(i64),
    /// `float`.
    F(f32),
    /// `double`.
    D(f64),
}

/// A device buffer of f32.
pub struct DBuf(pub(crate) CudaSlice<f32>);

impl DBuf {
    /// The raw device pointer.
    pub(crate) fn p(&self) -> u64 {
        let s = self.0.stream();
        self.0.device_ptr(s).0
    }

    /// The pointer to element `off`.
    pub(crate) fn at(&self, off: usize) -> u64 {
        self.p() + 4 * off as u64
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
}

/// Whether the CUDA driver library can be loaded (false on machines without a GPU driver).
pub fn driver_present() -> bool {
    // SAFETY: only tries to open the shared library.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Compiles the kernels with NVRTC (no GPU needed); returns the PTX size in bytes.
pub fn compile_kernels() -> Result<usize> {
    // SAFETY: only tries to open the shared library.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(Error::Unavailable("cannot load libnvrtc (put it on LD_LIBRARY_PATH)".into()));
    }
    let ptx = cudarc::nvrtc::compile_ptx(SOURCE).map_err(|e| Error::Compile(format!("{e:?}")))?;
    Ok(ptx.to_src().len())
}

/// How a GPU computes, chosen when it is opened (the library reads no environment variables).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuOptions {
    /// Let cuBLAS and cuDNN use TF32 tensor cores (PyTorch's default for convolutions; about
    /// 1e-3 relative error per layer). Off: strict f32.
    pub tf32: bool,
    /// Run the convolutions through cuDNN instead of im2col + cuBLAS (needs libcudnn; measured
    /// slower in f32 on an H200, equal in TF32).
    pub cudnn: bool,
    /// Time every kernel on the GPU ([`Gpu::take_profile`]); each call then waits for the GPU.
    pub profile: bool,
}

/// A CUDA device with its stream, cuBLAS handle and kernels.
pub struct Gpu {
    /// cuDNN for the convolutions when chosen (dropped first: it needs the context).
    dnn: Option<crate::cudnn::Dnn>,
    tf32: bool,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    kernels: HashMap<&'static str, CudaFunction>,
    name: String,
    /// GPU milliseconds and calls per kernel name, when profiling.
    profile: Option<std::sync::Mutex<HashMap<&'static str, (f64, usize)>>>,
}

impl Gpu {
    /// Opens device `ordinal` with `opts`: checks the driver, cuBLAS and NVRTC libraries are
    /// there (a clear error instead of cudarc's panic when one is missing), compiles the kernels.
    ///
    /// # Errors
    /// [`Error::Unavailable`] without a driver, a library or the device; driver, cuBLAS, cuDNN
    /// or compilation failures.
    pub fn new(ordinal: usize, opts: GpuOptions) -> Result<Gpu> {
        // SAFETY: each call only tries to open a shared library.
        let (drv, blas, rtc) = unsafe {
            (
                cudarc::driver::sys::is_culib_present(),
                cudarc::cublas::sys::is_culib_present(),
                cudarc::nvrtc::sys::is_culib_present(),
            )
        };
        let missing: Vec<&str> = [(drv, "libcuda (the NVIDIA driver)"), (blas, "libcublas"), (rtc, "libnvrtc")]
            .iter()
            .filter(|(ok, _)| !ok)
            .map(|(_, n)| *n)
            .collect();
        if !missing.is_empty() {
            return Err(Error::Unavailable(format!(
                "cannot load {} (put the CUDA 13 libraries on LD_LIBRARY_PATH)",
                missing.join(", ")
            )));
        }
        let count = CudaContext::device_count()?;
        if ordinal >= count as usize {
            return Err(Error::Unavailable(format!("no CUDA device {ordinal} ({count} found)")));
        }
        let ctx = CudaContext::new(ordinal)?;
        // SAFETY: the backend uses one stream, so cross-stream event tracking is not needed.
        unsafe { ctx.disable_event_tracking() };
        keep_pool_memory(&ctx)?;
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone())?;
        let ptx = cudarc::nvrtc::compile_ptx(SOURCE).map_err(|e| Error::Compile(format!("{e:?}")))?;
        let module = ctx.load_module(ptx)?;
        let mut kernels = HashMap::new();
        for &k in KERNELS {
            kernels.insert(k, module.load_function(k)?);
        }
        let name = ctx.name()?;
        let profile = opts.profile.then(Default::default);
        let dnn = if opts.cudnn { Some(crate::cudnn::Dnn::new(&stream)?) } else { None };
        let mut gpu = Gpu { dnn, tf32: false, ctx, stream, blas, kernels, name, profile };
        gpu.set_tf32(opts.tf32)?;
        Ok(gpu)
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream every call runs on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Waits for the queued work.
    pub fn sync(&self) -> Result<()> {
        self.stream.synchronize()?;
        Ok(())
    }

    /// Free and total device memory, bytes.
    pub fn mem_info(&self) -> Result<(usize, usize)> {
        Ok(self.ctx.mem_get_info()?)
    }

    /// Lets cuBLAS use TF32 tensor cores for f32 GEMMs (PyTorch's default for convolutions);
    /// off by default.
    fn set_tf32(&mut self, on: bool) -> Result<()> {
        let mode = if on {
            blas_sys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
        } else {
            blas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH
        };
        // SAFETY: a valid handle.
        unsafe { blas_sys::cublasSetMathMode(*self.blas.handle(), mode).result()? };
        self.tf32 = on;
        Ok(())
    }

    /// Whether TF32 is allowed.
    pub fn tf32(&self) -> bool {
        self.tf32
    }

    /// cuDNN, when the convolutions use it.
    pub(crate) fn dnn(&self) -> Option<&crate::cudnn::Dnn> {
        self.dnn.as_ref()
    }

    /// How the convolutions run: "cuDNN 9.13.0" or "im2col + cuBLAS".
    pub fn conv_engine(&self) -> String {
        match &self.dnn {
            Some(d) => {
                let v = d.version();
                format!("cuDNN {}.{}.{}", v / 10000, v / 100 % 100, v % 100)
            }
            None => "im2col + cuBLAS".into(),
        }
    }

    /// An uninitialised buffer of `len` floats.
    pub fn alloc(&self, len: usize) -> Result<DBuf> {
        // SAFETY: every caller writes the buffer before reading it.
        Ok(DBuf(unsafe { self.stream.alloc::<f32>(len.max(1))? }))
    }

    /// An uninitialised f64 buffer of `len` doubles (reduction partials), as a `DBuf` of twice
    /// the floats.
    pub(crate) fn alloc_f64(&self, len: usize) -> Result<DBuf> {
        self.alloc(2 * len)
    }

    /// A zeroed buffer.
    pub fn zeros(&self, len: usize) -> Result<DBuf> {
        Ok(DBuf(self.stream.alloc_zeros::<f32>(len.max(1))?))
    }

    /// A buffer holding `data`.
    pub fn upload(&self, data: &[f32]) -> Result<DBuf> {
        if data.is_empty() {
            return self.zeros(1);
        }
        Ok(DBuf(self.stream.clone_htod(data)?))
    }

    /// The first `len` floats of `b`.
    pub fn download(&self, b: &DBuf, len: usize) -> Result<Vec<f32>> {
        let mut v = self.stream.clone_dtoh(&b.0)?;
        v.truncate(len);
        Ok(v)
    }

    /// Copies `len` floats from `src[so..]` to `dst[d0..]`.
    pub fn copy(&self, src: &DBuf, so: usize, dst: &mut DBuf, d0: usize, len: usize) -> Result<()> {
        let s = src.0.slice(so..so + len);
        let mut d = dst.0.slice_mut(d0..d0 + len);
        self.stream.memcpy_dtod(&s, &mut d)?;
        Ok(())
    }

    /// Runs `f`, timing it on the GPU under `name` when profiling (each call then waits for
    /// the GPU, so profiles show where GPU time goes, not the pipelined total).
    pub(crate) fn timed(&self, name: &'static str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        let Some(p) = &self.profile else { return f() };
        let timing = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let (a, b) = (self.ctx.new_event(timing)?, self.ctx.new_event(timing)?);
        a.record(&self.stream)?;
        f()?;
        b.record(&self.stream)?;
        b.synchronize()?;
        let ms = a.elapsed_ms(&b)? as f64;
        let mut m = p.lock().expect("profile lock");
        let e = m.entry(name).or_insert((0.0, 0));
        e.0 += ms;
        e.1 += 1;
        Ok(())
    }

    /// The profile so far (kernel, GPU ms, calls), largest first, and clears it; empty unless
    /// the GPU was opened with [`GpuOptions::profile`].
    pub fn take_profile(&self) -> Vec<(&'static str, f64, usize)> {
        let Some(p) = &self.profile else { return Vec::new() };
        let mut v: Vec<_> = p.lock().expect("profile lock").drain().map(|(k, (ms, n))| (k, ms, n)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    /// Launches `name` on a grid of `grid` blocks of `block` threads.
    pub(crate) fn launch(&self, name: &str, grid: (u32, u32, u32), block: u32, args: &[Arg]) -> Result<()> {
        let (key, f) = self.kernels.get_key_value(name).ok_or_else(|| Error::Compile(format!("no kernel '{name}'")))?;
        self.timed(key, || self.launch_fn(f, grid, block, args))
    }

    fn launch_fn(&self, f: &CudaFunction, grid: (u32, u32, u32), block: u32, args: &[Arg]) -> Result<()> {
        let mut b = self.stream.launch_builder(f);
        for a in args {
            match a {
                Arg::P(v) => b.arg(v),
                Arg::I(v) => b.arg(v),
                Arg::L(v) => b.arg(v),
                Arg::F(v) => b.arg(v),
                Arg::D(v) => b.arg(v),
            };
        }
        let cfg = LaunchConfig { grid_dim: grid, block_dim: (block, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: the argument lists match the kernels' signatures in kernels.cu, and every
        // pointer addresses a live buffer of the sizes the kernel reads and writes.
        unsafe { b.launch(cfg)? };
        Ok(())
    }

    /// Launches an element-wise (grid-stride) kernel over `total` elements.
    pub(crate) fn launch_n(&self, name: &str, total: usize, args: &[Arg]) -> Result<()> {
        let blocks = total.div_ceil(256).clamp(1, 1 << 16) as u32;
        self.launch(name, (blocks, 1, 1), 256, args)
    }

    /// A per-plane kernel: `x` elements per plane (grid-stride, 32-bit indices), `y` and `z`
    /// in the grid's second and third dimensions (channels, images).
    pub(crate) fn launch_planes(&self, name: &str, x: usize, y: usize, z: usize, args: &[Arg]) -> Result<()> {
        if x * y * z >= 1 << 31 || y >= 1 << 16 || z >= 1 << 16 {
            return Err(Error::shape(
                format!("{name} launch"),
                &[z, y, x],
                "is beyond the kernels' 32-bit indexing; use a smaller batch",
            ));
        }
        // Four elements per thread: a block per 256 would launch ~300K tiny blocks for one
        // 256 px im2col.
        let blocks = x.div_ceil(1024).clamp(1, 1 << 15) as u32;
        self.launch(name, (blocks, y.max(1) as u32, z.max(1) as u32), 256, args)
    }

    /// Column-major batched GEMM (cuBLAS's convention): `C_b = op(A_b) op(B_b) + beta C_b` for
    /// `batch` matrices at the given element strides.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm(
        &self,
        ta: bool,
        tb: bool,
        mnk: (usize, usize, usize),
        a: (u64, usize, usize),
        b: (u64, usize, usize),
        beta: f32,
        c: (u64, usize, usize),
        batch: usize,
    ) -> Result<()> {
        let call = GemmCall { ta, tb, mnk, a, b, beta, c, batch };
        self.timed(if batch == 1 { "sgemm" } else { "sgemm_strided_batched" }, || self.gemm_now(&call))
    }

    fn gemm_now(&self, g: &GemmCall) -> Result<()> {
        let GemmCall { ta, tb, mnk: (m, n, k), a: (a, lda, sa), b: (b, ldb, sb), beta, c: (c, ldc, sc), batch } = *g;
        use blas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
        let op = |t: bool| if t { CUBLAS_OP_T } else { CUBLAS_OP_N };
        let alpha = 1.0f32;
        let i = |v: usize| v as i32;
        // SAFETY: the callers pass pointers into live buffers large enough for the given
        // shapes, leading dimensions and strides.
        unsafe {
            if batch == 1 {
                cudarc::cublas::result::sgemm(
                    *self.blas.handle(),
                    op(ta),
                    op(tb),
                    i(m),
                    i(n),
                    i(k),
                    &alpha,
                    a as *const f32,
                    i(lda),
                    b as *const f32,
                    i(ldb),
                    &beta,
                    c as *mut f32,
                    i(ldc),
                )?;
            } else {
                cudarc::cublas::result::sgemm_strided_batched(
                    *self.blas.handle(),
                    op(ta),
                    op(tb),
                    i(m),
                    i(n),
                    i(k),
                    &alpha,
                    a as *const f32,
                    i(lda),
                    sa as i64,
                    b as *const f32,
                    i(ldb),
                    sb as i64,
                    &beta,
                    c as *mut f32,
                    i(ldc),
                    sc as i64,
                    i(batch),
                )?;
            }
        }
        Ok(())
    }
}

/// One GEMM's arguments (see [`Gpu::gemm`]): matrices as (pointer, leading dimension, batch
/// stride).
#[derive(Clone, Copy)]
struct GemmCall {
    ta: bool,
    tb: bool,
    mnk: (usize, usize, usize),
    a: (u64, usize, usize),
    b: (u64, usize, usize),
    beta: f32,
    c: (u64, usize, usize),
    batch: usize,
}

/// Keeps freed device memory in the stream-ordered pool: with the default release threshold
/// of 0 every synchronisation hands it back to the driver and the next step allocates anew.
fn keep_pool_memory(ctx: &CudaContext) -> Result<()> {
    use cudarc::driver::sys;
    if !ctx.has_async_alloc() {
        return Ok(());
    }
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut threshold: u64 = u64::MAX;
    // SAFETY: a valid device handle and out-pointers to locals.
    unsafe {
        sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()).result()?;
        sys::cuMemPoolSetAttribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            &mut threshold as *mut u64 as *mut std::ffi::c_void,
        )
        .result()?;
    }
    Ok(())
}
