//! Image quality against a reference: PSNR, SSIM (scikit-image's) and LPIPS v0.1 with the
//! AlexNet and VGG backbones (the shipped weights), as the evaluation reports them.

use crate::assets;
use crate::error::Result;
use diffinv_cpu::metrics::{psnr, ssim, Lpips, LpipsNet};
use diffinv_cpu::Tensor;
use ndarray::ArrayView3;

/// The four numbers every report shows.
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
        format!(
            "PSNR {:.2} dB, SSIM {:.4}, LPIPS alex {:.4} vgg {:.4}",
            self.psnr, self.ssim, self.lpips_alex, self.lpips_vgg
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
    /// The metrics with the shipped LPIPS weights.
    ///
    /// # Errors
    /// [`crate::Error::Unavailable`] in a build without the `embedded-assets` feature.
    pub fn shipped() -> Result<Self> {
        let net = |n| -> Result<Lpips> { Ok(Lpips::from_checkpoint(n, &assets::lpips(n)?)?) };
        Ok(Metrics { alex: net(LpipsNet::Alex)?, vgg: net(LpipsNet::Vgg)? })
    }

    /// Image `i` of `b` against image `i` of `a` (NCHW tensors in [-1, 1]).
    ///
    /// # Errors
    /// Shapes that differ, or images smaller than SSIM's 11x11 window.
    pub fn compare_tensors(&self, a: &Tensor, b: &Tensor, i: usize) -> Result<Quality> {
        let (ai, bi) = (a.slice_batch(i, 1), b.slice_batch(i, 1));
        Ok(Quality {
            psnr: psnr(&ai, &bi, 0)?,
            ssim: ssim(&ai, &bi, 0)?,
            lpips_alex: self.alex.distance(&ai, &bi)?[0],
            lpips_vgg: self.vgg.distance(&ai, &bi)?[0],
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
