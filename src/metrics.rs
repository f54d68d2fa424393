//! Image quality against a reference: PSNR, SSIM (scikit-image's) and LPIPS v0.1 with the
//! AlexNet and VGG backbones (the shipped weights), as the evaluation reports them.

use crate::assets;
use crate::error::Result;
use diffinv_cpu::metrics::{psnr, ssim, Lpips, LpipsNet};
use diffinv_cpu::Tensor;
use ndarray::ArrayView3;

/// The four numbers every report shows. SSIM needs images of at least 11x11 pixels and LPIPS
/// at least 31x31 (AlexNet) and 16x16 (VGG); below that they are NaN.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Quality {
    /// PSNR in dB (images in [-1, 1], peak-to-peak 2).
    pub psnr: f64,
    /// SSIM.
    pub ssim: f64,
    /// LPIPS with the AlexNet backbone.
    pub lpips_alex: f64,
    /// LPIPS with the VGG backbone.
    pub lpips_vgg: f64,
}

impl Quality {
    /// One line: `PSNR 24.71 dB, SSIM 0.8421, LPIPS alex 0.0337 vgg 0.0827`.
    pub fn line(&self) -> String {
        let f = |v: f64, d: usize| if v.is_nan() { "n/a".to_string() } else { format!("{v:.d$}") };
        format!(
            "PSNR {} dB, SSIM {}, LPIPS alex {} vgg {}",
            f(self.psnr, 2),
            f(self.ssim, 4),
            f(self.lpips_alex, 4),
            f(self.lpips_vgg, 4)
        )
    }
}

/// The metrics with both LPIPS networks loaded once.
///
/// ```
/// let m = diffinv::metrics::Metrics::shipped()?;
/// let a = diffinv::image::load("assets/samples/009521.png")?;
/// let q = m.compare(a.view(), a.view())?;
/// assert!(q.psnr.is_infinite() && q.lpips_alex.abs() < 1e-6);
/// # Ok::<(), diffinv::Error>(())
/// ```
pub struct Metrics {
    alex: Lpips,
    vgg: Lpips,
}

impl Metrics {
    /// The largest image side LPIPS is computed for: both networks' feature maps of both images
    /// then peak at about 800 MB (it grows with the pixel count); larger images get NaN.
    pub const MAX_LPIPS_SIDE: usize = 768;

    /// The metrics with the shipped LPIPS weights.
    ///
    /// # Errors
    /// [`crate::Error::Unavailable`] in a build without the `embedded-assets` feature.
    pub fn shipped() -> Result<Self> {
        let net = |n| -> Result<Lpips> { Ok(Lpips::from_checkpoint(n, &assets::lpips(n)?)?) };
        Ok(Metrics { alex: net(LpipsNet::Alex)?, vgg: net(LpipsNet::Vgg)? })
    }

    /// Image `i` of `b` against image `i` of `a` (NCHW tensors in [-1, 1]); SSIM and LPIPS are
    /// NaN for images smaller than their windows, LPIPS also above [`Metrics::MAX_LPIPS_SIDE`].
    ///
    /// # Errors
    /// Shapes that differ.
    pub fn compare_tensors(&self, a: &Tensor, b: &Tensor, i: usize) -> Result<Quality> {
        let (ai, bi) = (a.slice_batch(i, 1), b.slice_batch(i, 1));
        let side = ai.h().min(ai.w());
        let fits = ai.h().max(ai.w()) <= Self::MAX_LPIPS_SIDE;
        let lpips = |net: &Lpips| -> Result<f64> {
            Ok(if side >= net.min_side() && fits { net.distance(&ai, &bi)?[0] } else { f64::NAN })
        };
        Ok(Quality {
            psnr: psnr(&ai, &bi, 0)?,
            ssim: if side >= 11 { ssim(&ai, &bi, 0)? } else { f64::NAN },
            lpips_alex: lpips(&self.alex)?,
            lpips_vgg: lpips(&self.vgg)?,
        })
    }

    /// `b` against the reference `a` (both `H x W x 3` in [0, 1]).
    ///
    /// # Errors
    /// As [`Metrics::compare_tensors`].
    pub fn compare(&self, a: ArrayView3<'_, f32>, b: ArrayView3<'_, f32>) -> Result<Quality> {
        self.compare_tensors(&crate::image::to_tensor(a)?, &crate::image::to_tensor(b)?, 0)
    }
}
