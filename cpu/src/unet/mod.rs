//! guided-diffusion's ADM UNet on the CPU: the layers, the primitives the shared walker runs on
//! them, and the [`UNet`] that wraps both for tensors.

mod layers;
mod model;
mod workspace;

pub use layers::{BlockEmb, CpuBuilder, CpuEmb, CpuGraph, CpuLayers, CpuRun, TimeEmbed};
pub use model::{tape_bytes, Tape, UNet};
pub use workspace::Workspace;
