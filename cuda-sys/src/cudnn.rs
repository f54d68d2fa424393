//! Convolutions through cuDNN (its heuristics' first deterministic algorithm; FMA-only ones for
//! strict f32), chosen with [`crate::GpuOptions::cudnn`] where libcudnn loads. Off by default: measured on an
//! H200 (FFHQ-256, batch 1), im2col + cuBLAS is faster in f32 (forward 15.0 vs 17.6 ms, forward
//! and input gradient 33.2 vs 39.8 ms) and equal in TF32 (8.6 vs 8.4 ms forward). One plan
//! (descriptors and algorithms) per convolution shape, made on first use.

use crate::device::Gpu;
use crate::error::{Error, Result};
use cudarc::cudnn::{result as dr, sys as ds};
use diffinv_model::ConvGeom;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

/// A convolution's shape and arithmetic.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) struct ConvKey {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub geom: ConvGeom,
    pub tf32: bool,
}

/// Descriptors and the chosen algorithms of one shape (forward and input gradient each have
/// their own convolution descriptor, as each algorithm fixes its math type).
struct Plan {
    x: ds::cudnnTensorDescriptor_t,
    y: ds::cudnnTensorDescriptor_t,
    w: ds::cudnnFilterDescriptor_t,
    conv_fwd: ds::cudnnConvolutionDescriptor_t,
    conv_bwd: ds::cudnnConvolutionDescriptor_t,
    fwd: (ds::cudnnConvolutionFwdAlgo_t, usize),
    bwd: (ds::cudnnConvolutionBwdDataAlgo_t, usize),
}

// SAFETY: descriptors are plain handles, used under the stream's ordering from one thread at a
// time (the Mutex in `Dnn`).
unsafe impl Send for Plan {}
unsafe impl Sync for Plan {}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: created in `Dnn::plan` and destroyed once.
        unsafe {
            let _ = dr::destroy_tensor_descriptor(self.x);
            let _ = dr::destroy_tensor_descriptor(self.y);
            let _ = dr::destroy_filter_descriptor(self.w);
            let _ = dr::destroy_convolution_descriptor(self.conv_fwd);
            let _ = dr::destroy_convolution_descriptor(self.conv_bwd);
        }
    }
}

/// A cuDNN handle on the backend's stream with its plans.
pub(crate) struct Dnn {
    handle: ds::cudnnHandle_t,
    plans: Mutex<HashMap<ConvKey, Arc<Plan>>>,
    version: usize,
}

// SAFETY: the handle is used from one thread at a time (the backend is single-threaded).
unsafe impl Send for Dnn {}
unsafe impl Sync for Dnn {}

impl Drop for Dnn {
    fn drop(&mut self) {
        // SAFETY: created in `Dnn::new`.
        unsafe {
            let _ = dr::destroy_handle(self.handle);
        }
    }
}

fn err(what: &str) -> impl Fn(dr::CudnnError) -> Error + '_ {
    move |e| Error::Dnn(format!("{what}: {e:?}"))
}

fn i(v: usize) -> i32 {
    v as i32
}

impl Dnn {
    /// cuDNN on `stream`.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when libcudnn does not load, [`Error::Dnn`] when it fails.
    pub fn new(stream: &cudarc::driver::CudaStream) -> Result<Dnn> {
        // SAFETY: only tries to open the shared library.
        if !unsafe { ds::is_culib_present() } {
            return Err(Error::Unavailable("cannot load libcudnn (put cuDNN 9 on LD_LIBRARY_PATH)".into()));
        }
        let handle = dr::create_handle().map_err(err("handle"))?;
        // SAFETY: a fresh handle and the backend's live stream.
        unsafe { dr::set_stream(handle, stream.cu_stream() as _).map_err(err("stream"))? };
        Ok(Dnn { handle, plans: Mutex::new(HashMap::new()), version: dr::get_version() })
    }

    /// cuDNN's version, e.g. 91300.
    pub fn version(&self) -> usize {
        self.version
    }

    fn plan(&self, key: ConvKey) -> Result<Arc<Plan>> {
        if let Some(p) = self.plans.lock().expect("plans").get(&key) {
            return Ok(p.clone());
        }
        let (oh, ow) = key.geom.out_hw(key.h, key.w);
        let ConvGeom { cin, cout, k, stride, pad } = key.geom;
        let f32t = ds::cudnnDataType_t::CUDNN_DATA_FLOAT;
        let nchw = ds::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
        // SAFETY: descriptors are created here and owned by the plan.
        let plan = unsafe {
            let x = dr::create_tensor_descriptor().map_err(err("descriptor"))?;
            let y = dr::create_tensor_descriptor().map_err(err("descriptor"))?;
            let w = dr::create_filter_descriptor().map_err(err("descriptor"))?;
            let conv_fwd = dr::create_convolution_descriptor().map_err(err("descriptor"))?;
            let conv_bwd = dr::create_convolution_descriptor().map_err(err("descriptor"))?;
            let mut plan = Plan {
                x,
                y,
                w,
                conv_fwd,
                conv_bwd,
                fwd: (ds::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, 0),
                bwd: (ds::cudnnConvolutionBwdDataAlgo_t::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, 0),
            };
            dr::set_tensor4d_descriptor(x, nchw, f32t, [i(key.n), i(cin), i(key.h), i(key.w)]).map_err(err("x"))?;
            dr::set_tensor4d_descriptor(y, nchw, f32t, [i(key.n), i(cout), i(oh), i(ow)]).map_err(err("y"))?;
            dr::set_filter4d_descriptor(w, f32t, nchw, [i(cout), i(cin), i(k), i(k)]).map_err(err("w"))?;
            // Strict f32 takes FMA algorithms only; tf32 lets cuDNN use tensor cores.
            let math =
                if key.tf32 { ds::cudnnMathType_t::CUDNN_TENSOR_OP_MATH } else { ds::cudnnMathType_t::CUDNN_FMA_MATH };
            for c in [conv_fwd, conv_bwd] {
                let (p, s) = (i(pad), i(stride));
                let cc = ds::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION;
                dr::set_convolution2d_descriptor(c, p, p, s, s, 1, 1, cc, f32t).map_err(err("conv"))?;
                dr::set_convolution_math_type(c, math).map_err(err("math type"))?;
            }
            // Deterministic algorithms only (same seed, same result), FMA-only ones for strict f32.
            let det = ds::cudnnDeterminism_t::CUDNN_DETERMINISTIC;
            let ok = |m: ds::cudnnMathType_t| key.tf32 || m == ds::cudnnMathType_t::CUDNN_FMA_MATH;
            let mut count = 0;
            let mut fwd = [std::mem::zeroed::<ds::cudnnConvolutionFwdAlgoPerf_t>(); 8];
            dr::get_convolution_forward_algorithm(self.handle, x, w, conv_fwd, y, 8, &mut count, fwd.as_mut_ptr())
                .map_err(err("forward algorithm"))?;
            let f = fwd[..count.max(0) as usize]
                .iter()
                .find(|p| p.status == ds::cudnnStatus_t::CUDNN_STATUS_SUCCESS && ok(p.mathType) && p.determinism == det)
                .ok_or_else(|| Error::Dnn(format!("no deterministic forward algorithm for {key:?}")))?;
            dr::set_convolution_math_type(conv_fwd, f.mathType).map_err(err("math type"))?;
            plan.fwd = (f.algo, f.memory);
            let mut bwd = [std::mem::zeroed::<ds::cudnnConvolutionBwdDataAlgoPerf_t>(); 8];
            dr::get_convolution_backward_data_algorithm(
                self.handle,
                w,
                y,
                conv_bwd,
                x,
                8,
                &mut count,
                bwd.as_mut_ptr(),
            )
            .map_err(err("backward-data algorithm"))?;
            let b = bwd[..count.max(0) as usize]
                .iter()
                .find(|p| p.status == ds::cudnnStatus_t::CUDNN_STATUS_SUCCESS && ok(p.mathType) && p.determinism == det)
                .ok_or_else(|| Error::Dnn(format!("no deterministic backward-data algorithm for {key:?}")))?;
            dr::set_convolution_math_type(conv_bwd, b.mathType).map_err(err("math type"))?;
            plan.bwd = (b.algo, b.memory);
            plan
        };
        let plan = Arc::new(plan);
        self.plans.lock().expect("plans").insert(key, plan.clone());
        Ok(plan)
    }

    /// `y = conv(x, w) + beta y` (the bias is in `y` already when beta = 1).
    pub fn forward(&self, g: &Gpu, key: ConvKey, x: u64, w: u64, y: u64, beta: f32) -> Result<()> {
        let p = self.plan(key)?;
        let ws = g.alloc(p.fwd.1.div_ceil(4))?;
        let alpha = 1.0f32;
        // SAFETY: the pointers address live buffers of the plan's shapes; the workspace is as
        // large as the algorithm asked.
        unsafe {
            dr::convolution_forward(
                self.handle,
                &alpha as *const f32 as *const c_void,
                p.x,
                x as *const c_void,
                p.w,
                w as *const c_void,
                p.conv_fwd,
                p.fwd.0,
                ws.p() as *mut c_void,
                p.fwd.1,
                &beta as *const f32 as *const c_void,
                p.y,
                y as *mut c_void,
            )
            .map_err(err("forward"))
        }
    }

    /// `dx = conv^T(dy, w) + beta dx`.
    pub fn backward_data(&self, g: &Gpu, key: ConvKey, dy: u64, w: u64, dx: u64, beta: f32) -> Result<()> {
        let p = self.plan(key)?;
        let ws = g.alloc(p.bwd.1.div_ceil(4))?;
        let alpha = 1.0f32;
        // SAFETY: as in `forward`.
        unsafe {
            dr::convolution_backward_data(
                self.handle,
                &alpha as *const f32 as *const c_void,
                p.w,
                w as *const c_void,
                p.y,
                dy as *const c_void,
                p.conv_bwd,
                p.bwd.0,
                ws.p() as *mut c_void,
                p.bwd.1,
                &beta as *const f32 as *const c_void,
                p.x,
                dx as *mut c_void,
            )
            .map_err(err("backward data"))
        }
    }
}
