//! `diffinv model info` and `diffinv model run`.

use crate::common::{CliError, Global, Result};
use clap::{Args, Subcommand};
use diffinv_cpu::checkpoint::{write_safetensors, Checkpoint, WriteTensor};
use diffinv_cpu::unet::{load_model, ModelSource, Workspace};
use diffinv_cpu::Tensor;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ModelCmd {
    /// Print a checkpoint's config, parameter count, stored dtypes and GFLOP per forward.
    #[command(
        after_help = "Examples:\n  diffinv model info assets/models/celeba64-adm.safetensors\n  diffinv model info ffhq_10m.pt --config ffhq256 --json"
    )]
    Info(InfoArgs),
    /// Run the UNet on tensors `x` (N,C,H,W) and `t` (N) from a safetensors file; writes `eps` (the
    /// full output) and, when the input has `cotangent`, `grad_x` = d(sum(out * cotangent))/dx.
    #[command(
        after_help = "Example:\n  diffinv model run --model ffhq_10m.pt --config ffhq256 --input in.safetensors -o out.safetensors"
    )]
    Run(RunArgs),
}

#[derive(Args)]
pub struct InfoArgs {
    /// The checkpoint (.safetensors, .pt, .pth).
    path: PathBuf,
    /// A preset (ffhq256, celeba64) or a JSON config; needed for PyTorch files.
    #[arg(long)]
    config: Option<String>,
}

#[derive(Args)]
pub struct RunArgs {
    /// The checkpoint (default: the shipped 64x64 face model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A preset (ffhq256, celeba64) or a JSON config; needed for PyTorch files.
    #[arg(long)]
    config: Option<String>,
    /// Input tensors: `x` (N,C,H,W f32), `t` (N, i64 or f32), optional `cotangent`.
    #[arg(long)]
    input: PathBuf,
    /// Output safetensors file.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn source(model: &Option<PathBuf>) -> ModelSource {
    model.clone().map_or(ModelSource::Default, ModelSource::Path)
}

pub fn run(c: ModelCmd, g: &Global) -> Result<()> {
    match c {
        ModelCmd::Info(a) => info(a, g),
        ModelCmd::Run(a) => run_model(a, g),
    }
}

fn info(a: InfoArgs, g: &Global) -> Result<()> {
    let m = load_model(&ModelSource::Path(a.path.clone()), a.config.as_deref())?;
    let size = m.config.image_size;
    let gflop = m.unet.gflop(size);
    let dtypes: serde_json::Map<String, serde_json::Value> =
        m.dtypes.iter().map(|(k, v)| (k.clone(), (*v).into())).collect();
    let v = serde_json::json!({
        "path": m.path.display().to_string(),
        "format": m.format,
        "config": m.config.to_json(),
        "params": m.unet.num_params(),
        "dtypes": dtypes,
        "gflop": gflop,
        "image_size": size,
        "variance": format!("{:?}", m.diffusion.variance),
        "diffusion_steps": m.diffusion.steps,
    });
    if g.json {
        g.emit_json(&v);
    } else {
        println!("{}  ({})", m.path.display(), m.format);
        println!("  parameters: {}", m.unet.num_params());
        println!(
            "  stored dtypes: {}",
            m.dtypes.iter().map(|(k, v)| format!("{k} x{v}")).collect::<Vec<_>>().join(", ")
        );
        println!("  GFLOP per forward ({size}x{size}, batch 1): {gflop:.1}");
        println!("  diffusion: {} steps, variance {:?}", m.diffusion.steps, m.diffusion.variance);
        println!("  config: {}", m.config.to_json());
    }
    Ok(())
}

fn run_model(a: RunArgs, g: &Global) -> Result<()> {
    let inp = Checkpoint::open(&a.input)?;
    let (xs, xd) = inp.f32("x")?;
    if xs.len() != 4 {
        return Err(CliError::runtime(format!("{}: tensor 'x' must be N,C,H,W, got shape {xs:?}", a.input.display())));
    }
    let x = Tensor::from_vec([xs[0], xs[1], xs[2], xs[3]], xd)?;
    let t: Vec<f32> = match inp.info("t")?.dtype {
        diffinv_cpu::checkpoint::DType::F32 | diffinv_cpu::checkpoint::DType::F64 => inp.f32("t")?.1,
        _ => inp.i64("t")?.1.into_iter().map(|v| v as f32).collect(),
    };
    let m = load_model(&source(&a.model), a.config.as_deref())?;
    let mut ws = Workspace::new();
    let cot = match inp.tensors().get("cotangent") {
        Some(_) => {
            let (cs, cd) = inp.f32("cotangent")?;
            Some((cs, cd))
        }
        None => None,
    };
    let (out, grad) = match cot {
        None => (m.unet.forward(&x, &t, &mut ws)?, None),
        Some((cs, cd)) => {
            let (out, tape) = m.unet.forward_with_tape(&x, &t, &mut ws)?;
            if cs != out.shape() {
                return Err(CliError::runtime(format!(
                    "{}: tensor 'cotangent' has shape {cs:?}, the model output is {:?}",
                    a.input.display(),
                    out.shape()
                )));
            }
            let c = Tensor::from_vec(out.shape(), cd)?;
            let gx = m.unet.vjp(tape, &c, &mut ws)?;
            (out, Some(gx))
        }
    };
    let mut tensors = vec![WriteTensor::f32("eps", &out.shape(), out.data())];
    if let Some(gx) = &grad {
        tensors.push(WriteTensor::f32("grad_x", &gx.shape(), gx.data()));
    }
    let meta = [("model".to_string(), m.path.display().to_string())].into_iter().collect();
    write_safetensors(&a.output, &tensors, &meta)?;
    g.say(format!("wrote {} ({})", a.output.display(), if grad.is_some() { "eps, grad_x" } else { "eps" }));
    g.emit_json(&serde_json::json!({"output": a.output.display().to_string(), "eps_shape": out.shape(), "grad_x": grad.is_some()}));
    Ok(())
}
