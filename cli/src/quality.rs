//! Quality of a result against the clean image: PSNR, SSIM, LPIPS (alex and vgg).

use crate::common::Result;
use diffinv_cpu::metrics::{psnr, ssim, Lpips, LpipsNet};
use diffinv_cpu::Tensor;

/// The four numbers every report shows.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Quality {
    pub psnr: f64,
    pub ssim: f64,
    pub lpips_alex: f64,
    pub lpips_vgg: f64,
}

/// The LPIPS networks, loaded once.
pub struct Judge {
    alex: Lpips,
    vgg: Lpips,
}

impl Judge {
    pub fn load() -> Result<Self> {
        Ok(Judge { alex: Lpips::load(LpipsNet::Alex)?, vgg: Lpips::load(LpipsNet::Vgg)? })
    }

    /// Image `i` of `b` against image `i` of `a` (both [-1, 1]).
    pub fn measure(&self, a: &Tensor, b: &Tensor, i: usize) -> Result<Quality> {
        let (ai, bi) = (a.slice_batch(i, 1), b.slice_batch(i, 1));
        Ok(Quality {
            psnr: psnr(&ai, &bi, 0)?,
            ssim: ssim(&ai, &bi, 0)?,
            lpips_alex: self.alex.distance(&ai, &bi)?[0],
            lpips_vgg: self.vgg.distance(&ai, &bi)?[0],
        })
    }
}

impl Quality {
    /// JSON fields with an optional prefix (`measurement_`).
    pub fn json(&self, prefix: &str, map: &mut serde_json::Map<String, serde_json::Value>) {
        let f = |v: f64| {
            if v.is_finite() {
                serde_json::json!(v)
            } else {
                serde_json::json!(null)
            }
        };
        map.insert(format!("{prefix}psnr"), f(self.psnr));
        map.insert(format!("{prefix}ssim"), f(self.ssim));
        map.insert(format!("{prefix}lpips_alex"), f(self.lpips_alex));
        map.insert(format!("{prefix}lpips_vgg"), f(self.lpips_vgg));
    }

    pub fn line(&self) -> String {
        format!(
            "PSNR {:.2} dB, SSIM {:.4}, LPIPS alex {:.4} vgg {:.4}",
            self.psnr, self.ssim, self.lpips_alex, self.lpips_vgg
        )
    }
}
