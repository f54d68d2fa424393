//! # diffinv-core
//!
//! The mathematics of diffusion-model sampling and of diffusion-based inverse-problem solvers,
//! without the standard library and without allocation:
//!
//! - [`schedule`]: linear and cosine beta schedules, `abar`, the posterior constants of a step;
//! - [`respace`]: guided-diffusion's timestep respacing (`"100"`, `"25,25,25,25"`, `"ddim50"`);
//! - [`diffusion`]: `q_sample`, `x0`/`eps`/score conversions, posterior means and variances;
//! - [`update`]: the DDPM/DDIM/Langevin/Score-ALD/DPS/SDEdit/DiffPIR update rules;
//! - [`anneal`]: DAPS's poly-7 noise levels on a discrete chain and its Langevin step size;
//! - [`rng`]: counter-based normal noise, identical on any thread count and backend;
//! - [`backend`] and [`sampler`]: the loops of every method, written once against a small
//!   backend trait that the CPU and CUDA crates implement.
//!
//! All slice functions take caller-provided outputs and are generic over [`Float`] (f32, f64).
#![no_std]
#![deny(missing_docs)]

pub mod anneal;
pub mod backend;
pub mod diffusion;
mod float;
pub mod respace;
pub mod rng;
pub mod sampler;
pub mod schedule;
pub mod update;

pub use backend::{Backend, Operator, Shape};
pub use float::Float;
pub use rng::NoiseStream;
pub use schedule::{BetaSchedule, Chain, ScheduleError, StepCoefs, VarianceKind};
