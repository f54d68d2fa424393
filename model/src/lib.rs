//! # diffinv-model
//!
//! What a diffusion model is, independent of where it runs:
//!
//! - [`config`]: guided-diffusion's `UNetModel` arguments (presets, JSON, checkpoint metadata),
//!   and the model families ([`Family`]: ADM, diffusers);
//! - [`diffusers`]: diffusers' `UNet2DModel` folders (config, names, scheduler);
//! - [`checkpoint`]: safetensors and PyTorch (`.pt` zip and legacy pickle, read by a restricted
//!   unpickler that never runs code) files;
//! - [`desc`]: the network's description, [`UNetDesc`]: its layer tree with named f32 weights,
//!   from which each backend builds its own layers ([`graph::Builder`]);
//! - [`walk`]: the forward pass, its [`walk::Tape`] and the input gradient, written once over a
//!   backend's [`walk::Primitives`];
//! - [`load`]: a checkpoint's model with its diffusion settings;
//! - [`noise`]: the step noise every backend draws on the host.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod config;
pub mod desc;
pub mod diffusers;
mod error;
pub mod graph;
pub mod io;
pub mod load;
pub mod noise;
pub mod walk;
pub mod weights;

pub use config::{AttentionOrder, DiffusersArch, Family, Sinusoid, UNetConfig};
pub use desc::{timestep_embedding, Desc, UNetDesc};
pub use error::{Error, Result};
pub use graph::{Builder, Conv, ConvGeom, Graph, Layer, LayerSet, Resample};
pub use load::{DiffusionSettings, ModelDesc};
pub use walk::{Modulation, Primitives, Shape, Tape};
pub use weights::{CheckpointWeights, RandomWeights, ShapeRecorder, WeightSource};
