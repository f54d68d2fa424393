//! `diffinv`: diffusion-model image restoration on the command line (see `docs/cli.md`).

mod args;
mod cmd;
mod common;
mod folder;
mod noise_report;
mod quality;
mod serve;
mod shard;
mod taskargs;

use clap::Parser;
use common::{CliError, Global};

/// Restore and generate images with diffusion models on CPUs.
#[derive(Parser)]
#[command(name = "diffinv", version, about, long_about = None, after_help = cmd::EXAMPLES)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("diffinv: error: {}", e.message);
            e.code
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<(), CliError> {
    cli.global.init()?;
    // The whole command runs on a pool worker: every parallel loop inside then starts from a
    // worker (work stealing) instead of the main thread injecting each loop into the pool and
    // sleeping until it ends, which cost a futex wake-up pair per loop (about 10% of a 64 px
    // DPS step).
    let global = &cli.global;
    let command = cli.command;
    rayon::scope(move |_| cmd::run(command, global))
}
