//! guided-diffusion's ADM UNet on the CPU: configuration, loading, the forward pass and its
//! input gradient.

mod backward;
pub mod config;
mod forward;
mod load;
mod model;
pub mod weights;

pub use config::UNetConfig;
pub use forward::{timestep_embedding, Tape, Trace, Workspace};
pub use load::{default_model_path, load_model, DiffusionSettings, LoadedModel, ModelSource};
pub use model::{Layer, ResBlock, Resample, UNet};
pub use weights::{CheckpointWeights, RandomWeights, WeightSource};
