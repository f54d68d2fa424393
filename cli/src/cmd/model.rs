//! `diffinv model info` and `diffinv model run`.

use crate::args::ModelArgs;
use crate::common::{CliError, Global, Result};
use clap::{Args, Subcommand};
use diffinv::cpu::unet::Workspace;
use diffinv::model::checkpoint::{write_safetensors, Checkpoint, DType, WriteTensor};
use diffinv::{CpuContext, Model, Tensor};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ModelCmd {
    /// Print a model's family, preset, config, parameter count, stored dtypes, GFLOP per forward,
    /// resolution and diffusion schedule.
    #[command(
        after_help = "Examples:\n  diffinv model info assets/models/celeba64-adm.safetensors\n  diffinv model info 256x256_diffusion_uncond.pt --json\n  diffinv model info ddpm-celebahq-256/"
    )]
    Info(InfoArgs),
    /// Run the UNet on tensors `x` (N,C,H,W) and `t` (N) from a safetensors file; writes `eps` (the
    /// full output) and, when the input has `cotangent`, `grad_x` = d(sum(out * cotangent))/dx.
    #[command(
        after_help = "Example:\n  diffinv model run --model ffhq_10m.pt --input in.safetensors -o out.safetensors"
    )]
    Run(RunArgs),
}

#[derive(Args)]
pub struct InfoArgs {
    /// The checkpoint (.safetensors, .pt, .pth) or diffusers model folder.
    path: PathBuf,
    /// A preset (ffhq256, imagenet256, celeba64) or a JSON config (adm.py or diffusers style); a bare
    /// PyTorch state_dict of a preset is recognised without it.
    #[arg(long)]
    config: Option<String>,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Input tensors: `x` (N,C,H,W f32), `t` (N, i64 or f32), optional `cotangent`.
    #[arg(long)]
    input: PathBuf,
    /// Output safetensors file.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(c: ModelCmd, g: &Global) -> Result<()> {
    match c {
        ModelCmd::Info(a) => info(a, g),
        ModelCmd::Run(a) => run_model(a, g),
    }
}

fn info(a: InfoArgs, g: &Global) -> Result<()> {
    let m = Model::load(&a.path, a.config.as_deref())?;
    let size = m.image_size();
    let gflop = m.gflop();
    let dtypes: serde_json::Map<String, serde_json::Value> =
        m.dtypes().iter().map(|(k, v)| (k.clone(), (*v).into())).collect();
    let d = m.diffusion();
    let schedule = schedule_name(&d.schedule, d.steps);
    let preset = m.config().preset_name();
    let v = serde_json::json!({
        "path": m.file(),
        "format": m.format(),
        "family": m.config().family_name(),
        "preset": preset,
        "config_source": m.config_source(),
        "config": m.config().to_json(),
        "params": m.num_params(),
        "dtypes": dtypes,
        "gflop": gflop,
        "image_size": size,
        "schedule": schedule,
        "variance": format!("{:?}", d.variance),
        "diffusion_steps": d.steps,
    });
    if g.json {
        g.emit_json(&v);
    } else {
        println!("{}  ({})", m.file(), m.format());
        let how = match m.config_source() {
            "detected" => "recognised by its tensor shapes",
            "metadata" => "config from the file's metadata",
            "config.json" => "config from config.json",
            _ => "config given",
        };
        println!("  family: {}, preset {} ({how})", m.config().family_name(), preset.unwrap_or("none"));
        println!("  parameters: {}", m.num_params());
        println!(
            "  stored dtypes: {}",
            m.dtypes().iter().map(|(k, v)| format!("{k} x{v}")).collect::<Vec<_>>().join(", ")
        );
        println!("  resolution: {size}x{size}");
        println!("  GFLOP per forward ({size}x{size}, batch 1): {gflop:.1}");
        println!("  diffusion: {} steps, {schedule}, variance {:?}", d.steps, d.variance);
        println!("  config: {}", m.config().to_json());
    }
    Ok(())
}

/// The beta schedule in words, with its first and last beta over `steps`.
fn schedule_name(s: &diffinv::core::BetaSchedule, steps: usize) -> String {
    use diffinv::core::BetaSchedule as B;
    let mut betas = vec![0.0; steps];
    s.fill_betas(&mut betas);
    let kind = match s {
        B::Linear { .. } => "linear",
        B::ScaledLinear { .. } => "scaled-linear",
        B::Cosine { .. } => "cosine",
    };
    format!("{kind}, beta {:.4e}..{:.4e}", betas[0], betas[steps - 1])
}

fn run_model(a: RunArgs, g: &Global) -> Result<()> {
    let inp = Checkpoint::open(&a.input)?;
    let (xs, xd) = inp.f32("x")?;
    if xs.len() != 4 {
        return Err(CliError::runtime(format!("{}: tensor 'x' must be N,C,H,W, got shape {xs:?}", a.input.display())));
    }
    let x = Tensor::from_vec([xs[0], xs[1], xs[2], xs[3]], xd)?;
    let t: Vec<f32> = match inp.info("t")?.dtype {
        DType::F32 | DType::F64 => inp.f32("t")?.1,
        _ => inp.i64("t")?.1.into_iter().map(|v| v as f32).collect(),
    };
    let m = a.model.load()?;
    let (u, ctx) = (m.cpu(), CpuContext::default());
    let mut ws = Workspace::new();
    let cot = match inp.tensors().get("cotangent") {
        Some(_) => {
            let (cs, cd) = inp.f32("cotangent")?;
            Some((cs, cd))
        }
        None => None,
    };
    let (out, grad) = match cot {
        None => (u.forward(&ctx, &x, &t, &mut ws)?, None),
        Some((cs, cd)) => {
            let (out, tape) = u.forward_with_tape(&ctx, &x, &t, &mut ws)?;
            if cs != out.shape() {
                return Err(CliError::runtime(format!(
                    "{}: tensor 'cotangent' has shape {cs:?}, the model output is {:?}",
                    a.input.display(),
                    out.shape()
                )));
            }
            let c = Tensor::from_vec(out.shape(), cd)?;
            let gx = u.vjp(&ctx, tape, &c, &mut ws)?;
            (out, Some(gx))
        }
    };
    let mut tensors = vec![WriteTensor::f32("eps", &out.shape(), out.data())];
    if let Some(gx) = &grad {
        tensors.push(WriteTensor::f32("grad_x", &gx.shape(), gx.data()));
    }
    let meta = [("model".to_string(), m.file().to_string())].into_iter().collect();
    write_safetensors(&a.output, &tensors, &meta)?;
    g.say(format!("wrote {} ({})", a.output.display(), if grad.is_some() { "eps, grad_x" } else { "eps" }));
    g.emit_json(&serde_json::json!({"output": a.output.display().to_string(), "eps_shape": out.shape(), "grad_x": grad.is_some()}));
    Ok(())
}
