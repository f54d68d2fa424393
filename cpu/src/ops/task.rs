//! The paper's tasks and their default parameters, scaled from DPS's 256 px settings to the
//! image size (methods.md s6): box 128 px with a 16 px margin, Gaussian and motion kernels
//! 61x61 (std 3.0, intensity 0.5), x4 super-resolution, 70% random pixels missing.

use super::kernels::{gaussian, motion, Kernel};
use super::mask::{box_mask, mask_from_gray, random_box, random_mask, BoxSpec};
use super::{Blur, Hdr, Op, PhaseRetrieval, Resize};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use diffinv_core::rng::streams;
use diffinv_core::NoiseStream;

/// An inverse problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    /// A square hole.
    InpaintBox,
    /// Random missing pixels.
    InpaintRandom,
    /// Gaussian blur.
    DeblurGauss,
    /// Motion blur.
    DeblurMotion,
    /// x4 super-resolution.
    Sr4,
    /// Additive noise only.
    Denoise,
    /// Fourier phase retrieval (nonlinear).
    PhaseRetrieval,
    /// High dynamic range reconstruction (nonlinear).
    Hdr,
}

impl Task {
    /// The paper's (linear) tasks.
    pub const ALL: [Task; 6] =
        [Task::InpaintBox, Task::InpaintRandom, Task::DeblurGauss, Task::DeblurMotion, Task::Sr4, Task::Denoise];
    /// The nonlinear tasks (DPS's and DAPS's).
    pub const NONLINEAR: [Task; 2] = [Task::PhaseRetrieval, Task::Hdr];
    /// Every task.
    pub const EVERY: [Task; 8] = [
        Task::InpaintBox,
        Task::InpaintRandom,
        Task::DeblurGauss,
        Task::DeblurMotion,
        Task::Sr4,
        Task::Denoise,
        Task::PhaseRetrieval,
        Task::Hdr,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Task::InpaintBox => "inpaint-box",
            Task::InpaintRandom => "inpaint-random",
            Task::DeblurGauss => "deblur-gauss",
            Task::DeblurMotion => "deblur-motion",
            Task::Sr4 => "sr4",
            Task::Denoise => "denoise",
            Task::PhaseRetrieval => "phase-retrieval",
            Task::Hdr => "hdr",
        }
    }

    /// Parses a CLI name.
    pub fn parse(s: &str) -> Result<Task> {
        Task::EVERY.iter().copied().find(|t| t.name() == s).ok_or_else(|| {
            Error::parameter(
                "task",
                format!("'{s}'"),
                format!("must be one of {}", Task::EVERY.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")),
            )
        })
    }

    /// Inpainting tasks.
    pub fn is_inpainting(self) -> bool {
        matches!(self, Task::InpaintBox | Task::InpaintRandom)
    }

    /// Tasks whose operator is nonlinear.
    pub fn is_nonlinear(self) -> bool {
        matches!(self, Task::PhaseRetrieval | Task::Hdr)
    }
}

/// Operator options; `None` takes the size-scaled default.
#[derive(Clone, Debug, Default)]
pub struct TaskParams {
    /// A fixed box (else a seeded random one per image).
    pub box_spec: Option<BoxSpec>,
    /// Box side.
    pub box_size: Option<usize>,
    /// Minimum distance of a random box from the border.
    pub box_margin: Option<usize>,
    /// Fraction of missing pixels (random inpainting).
    pub missing: Option<f64>,
    /// A user mask, grayscale in [0, 1], white = observed (`h x w`).
    pub mask_gray: Option<Vec<f32>>,
    /// A user blur kernel.
    pub kernel: Option<Kernel>,
    /// Gaussian blur std.
    pub blur_std: Option<f64>,
    /// Blur kernel side.
    pub kernel_size: Option<usize>,
    /// Motion blur intensity.
    pub intensity: Option<f64>,
    /// Super-resolution factor.
    pub scale: Option<usize>,
    /// Phase retrieval's oversampling (the padded side over the image's; 2 by default).
    pub oversample: Option<f64>,
    /// HDR's exposure factor (2 by default).
    pub hdr_alpha: Option<f64>,
}

/// The largest Gaussian blur std accepted, in pixels (beyond a kernel's side it is flat anyway).
pub const MAX_BLUR_STD: f64 = 256.0;
/// The largest measurement noise accepted (images span [-1, 1]).
pub const MAX_NOISE: f64 = 1.0;

/// Checks a blur kernel side for `h x w` images: odd, and its half-width inside the image (the
/// reflect padding's rule), before a kernel of that size is made.
fn check_kernel_size(k: usize, h: usize, w: usize) -> Result<()> {
    if k.is_multiple_of(2) || k / 2 >= h.min(w) {
        return Err(Error::parameter(
            "kernel_size",
            k,
            format!("must be odd and below {} for {h}x{w} images", 2 * h.min(w)),
        ));
    }
    Ok(())
}

/// `61 * size/256` rounded to an odd integer (15 at 64 px).
pub fn default_kernel_size(size: usize) -> usize {
    let k = 61.0 * size as f64 / 256.0;
    (2.0 * ((k - 1.0) / 2.0).round() + 1.0).max(3.0) as usize
}

impl TaskParams {
    /// The box side for `size` px images (DPS: 128 at 256).
    pub fn box_size_for(&self, size: usize) -> usize {
        self.box_size.unwrap_or(size / 2)
    }
    /// The box margin (DPS: 16 at 256).
    pub fn box_margin_for(&self, size: usize) -> usize {
        self.box_margin.unwrap_or(size / 16)
    }
    /// The blur kernel side.
    pub fn kernel_size_for(&self, size: usize) -> usize {
        self.kernel_size.unwrap_or_else(|| default_kernel_size(size))
    }
    /// The Gaussian std (3.0 at 256).
    pub fn blur_std_for(&self, size: usize) -> f64 {
        self.blur_std.unwrap_or(3.0 * size as f64 / 256.0)
    }
}

/// The operator of `task` for a batch of `shape` whose first image is number `first` of the run
/// (random masks, boxes and motion kernels are seeded per image).
pub fn build(task: Task, p: &TaskParams, shape: [usize; 4], seed: u64, first: u64) -> Result<Op> {
    let [n, c, h, w] = shape;
    let size = h.min(w);
    let rng = |i: usize| NoiseStream::new(seed, streams::for_image(streams::OPERATOR, first + i as u64));
    let per_image = |f: &dyn Fn(usize) -> Result<Tensor>| -> Result<Op> {
        let masks = (0..n).map(f).collect::<Result<Vec<_>>>()?;
        Ok(Op::Mask(Tensor::stack(&masks.iter().collect::<Vec<_>>())?))
    };
    match task {
        Task::Denoise => Ok(Op::Identity),
        Task::InpaintBox | Task::InpaintRandom if p.mask_gray.is_some() => {
            let g = p.mask_gray.as_ref().expect("checked");
            if g.len() != h * w {
                return Err(Error::shape("mask", &[g.len()], format!("must have the image's {h}x{w} pixels")));
            }
            Ok(Op::Mask(mask_from_gray(g, c, h, w)))
        }
        Task::InpaintBox => match p.box_spec {
            Some(b) => Ok(Op::Mask(box_mask(c, h, w, b)?)),
            None => per_image(&|i| {
                let b = random_box(h, w, p.box_size_for(size), p.box_margin_for(size), &mut rng(i))?;
                box_mask(c, h, w, b)
            }),
        },
        Task::InpaintRandom => per_image(&|i| random_mask(c, h, w, p.missing.unwrap_or(0.7), &mut rng(i))),
        Task::DeblurGauss => {
            let k = match &p.kernel {
                Some(k) => k.clone(),
                None => {
                    let std = p.blur_std_for(size);
                    if !(std > 0.0 && std <= MAX_BLUR_STD) {
                        return Err(Error::parameter("blur std", std, format!("must be in (0, {MAX_BLUR_STD}]")));
                    }
                    check_kernel_size(p.kernel_size_for(size), h, w)?;
                    gaussian(p.kernel_size_for(size), std)
                }
            };
            Ok(Op::Blur(Blur::new(vec![k])?))
        }
        Task::DeblurMotion => {
            let ks = match &p.kernel {
                Some(k) => vec![k.clone()],
                None => {
                    let intensity = p.intensity.unwrap_or(0.5);
                    if !(0.0..=1.0).contains(&intensity) {
                        return Err(Error::parameter("intensity", intensity, "must be in [0, 1]"));
                    }
                    check_kernel_size(p.kernel_size_for(size), h, w)?;
                    (0..n).map(|i| motion(p.kernel_size_for(size), intensity, &mut rng(i))).collect()
                }
            };
            Ok(Op::Blur(Blur::new(ks)?))
        }
        Task::Sr4 => Ok(Op::Resize(Resize::new(h, w, p.scale.unwrap_or(4))?)),
        Task::PhaseRetrieval => {
            Ok(Op::PhaseRetrieval(PhaseRetrieval::new(h, w, p.oversample.unwrap_or(super::phase::OVERSAMPLE))?))
        }
        Task::Hdr => Ok(Op::Hdr(Hdr::new(p.hdr_alpha.unwrap_or(super::hdr::ALPHA))?)),
    }
}

/// `y = A x + sigma n`, the noise from each image's measurement stream.
pub fn measure(op: &Op, x: &Tensor, sigma: f64, seed: u64, first: u64) -> Result<Tensor> {
    if !(0.0..=MAX_NOISE).contains(&sigma) {
        return Err(Error::parameter("noise", sigma, format!("must be in [0, {MAX_NOISE}]")));
    }
    let mut y = op.forward(x)?;
    for i in 0..y.n() {
        let mut rng = NoiseStream::new(seed, streams::for_image(streams::MEASUREMENT, first + i as u64));
        let mut z = vec![0.0f32; y.image_len()];
        rng.fill_normal(&mut z);
        y.image_mut(i).iter_mut().zip(&z).for_each(|(v, z)| *v += sigma as f32 * z);
    }
    Ok(y)
}
