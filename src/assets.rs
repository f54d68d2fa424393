//! The files diffinv ships (the 64 px face model, the LPIPS and denoiser weights), compiled into
//! the library with the default `embedded-assets` feature so that an installed binary needs no
//! source tree (about 74 MB of the binary; a program that never asks for an asset links none).
//! Without the feature every asset is [`Error::Unavailable`]; load the files instead. See
//! `assets/README.md` for provenance and licences.

use crate::error::{Error, Result};
use diffinv_model::checkpoint::Checkpoint;

/// A shipped file: its name and, with `embedded-assets`, its bytes.
struct Asset {
    name: &'static str,
    bytes: Option<&'static [u8]>,
}

macro_rules! asset {
    ($name:literal, $path:literal) => {
        Asset {
            name: $name,
            #[cfg(feature = "embedded-assets")]
            bytes: Some(include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $path))),
            #[cfg(not(feature = "embedded-assets"))]
            bytes: None,
        }
    };
}

fn model_asset() -> Asset {
    asset!("celeba64-adm.safetensors", "models/celeba64-adm.safetensors")
}

fn open(a: Asset) -> Result<Checkpoint> {
    let bytes = a.bytes.ok_or_else(|| Error::Unavailable {
        what: format!("the shipped file {}", a.name),
        reason: "this build has no embedded assets (enable the `embedded-assets` feature, or load the file)".into(),
    })?;
    Ok(Checkpoint::from_static(a.name, bytes)?)
}

/// The shipped 64x64 face model (CelebA, non-commercial research use only).
///
/// # Errors
/// [`Error::Unavailable`] in a build without `embedded-assets`.
pub fn model() -> Result<Checkpoint> {
    open(model_asset())
}

/// The shipped LPIPS v0.1 weights of `net` (f16).
///
/// # Errors
/// [`Error::Unavailable`] in a build without `embedded-assets`.
pub fn lpips(net: diffinv_cpu::metrics::LpipsNet) -> Result<Checkpoint> {
    open(match net {
        diffinv_cpu::metrics::LpipsNet::Alex => {
            asset!("lpips_alex_v0.1.safetensors", "weights/lpips_alex_v0.1.safetensors")
        }
        diffinv_cpu::metrics::LpipsNet::Vgg => {
            asset!("lpips_vgg_v0.1.safetensors", "weights/lpips_vgg_v0.1.safetensors")
        }
    })
}

/// A shipped denoiser by name (`ffdnet_color`, `cdncnn_b_color_blind`, `cdncnn_s_color_sigma25`),
/// or `None` for another name.
///
/// # Errors
/// [`Error::Unavailable`] in a build without `embedded-assets`.
pub fn denoiser(name: &str) -> Result<Option<Checkpoint>> {
    let a = match name {
        "ffdnet_color" => asset!("ffdnet_color.safetensors", "weights/denoisers/ffdnet_color.safetensors"),
        "cdncnn_b_color_blind" => {
            asset!("cdncnn_b_color_blind.safetensors", "weights/denoisers/cdncnn_b_color_blind.safetensors")
        }
        "cdncnn_s_color_sigma25" => {
            asset!("cdncnn_s_color_sigma25.safetensors", "weights/denoisers/cdncnn_s_color_sigma25.safetensors")
        }
        _ => return Ok(None),
    };
    open(a).map(Some)
}
