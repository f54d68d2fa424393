//! The subcommands.

mod bench;
mod model;

use crate::common::{Global, Result};
use clap::Subcommand;

/// Examples shown by `diffinv --help`.
pub const EXAMPLES: &str = "Examples:
  diffinv model info assets/models/celeba64-adm.safetensors
  diffinv model run --model ffhq_10m.pt --config ffhq256 --input in.safetensors -o out.safetensors
  diffinv bench unet --config ffhq256 --backward --threads 2";

#[derive(Subcommand)]
pub enum Command {
    /// Inspect or run a UNet checkpoint.
    #[command(subcommand)]
    Model(model::ModelCmd),
    /// Time the UNet on seeded random weights.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

pub fn run(c: Command, g: &Global) -> Result<()> {
    match c {
        Command::Model(m) => model::run(m, g),
        Command::Bench(b) => bench::run(b, g),
    }
}
