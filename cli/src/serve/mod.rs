//! `diffinv serve`: a local web page (and its JSON API) that restores images: pick or drop an
//! image, paint the hole, watch the estimate form, compare methods side by side.
//!
//! The HTTP side is axum on a small tokio runtime; the restorations run one at a time on a
//! worker thread of the same rayon pool the CLI uses, through the same code as `restore`
//! (`cmd::restore::Job`), so a request gives the bytes the command gives.

mod api;
mod hub;
pub mod options;

use crate::args::{usize_in, DeviceArgs, ModelArgs};
use crate::common::{CliError, Global, Result};
use clap::Args;
use diffinv::cpu::solve::Defaults;
use diffinv::{Method, Task};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Args)]
#[command(after_help = "Examples:
  diffinv serve                          # http://127.0.0.1:7860/
  diffinv serve --bind 0.0.0.0:8080 --token \"$(openssl rand -hex 16)\"
  curl -F image=@face.png -F 'options={\"task\":\"inpaint-box\",\"method\":\"diffpir\",\"steps\":20}' \\
       http://127.0.0.1:7860/api/restore")]
pub struct ServeArgs {
    /// Address and port to listen on; anything but loopback needs --token (port 0: any free one).
    #[arg(long, default_value = "127.0.0.1:7860")]
    bind: String,
    /// A secret every request must carry (`Authorization: Bearer TOKEN`, or `?token=TOKEN` in the
    /// page's address); required when --bind is not a loopback address.
    #[arg(long)]
    token: Option<String>,
    /// The largest upload (image + mask + options) in MiB, 1..=256.
    #[arg(long, default_value_t = 16, value_parser = usize_in(1, 256))]
    max_upload_mib: usize,
    /// Steps between live previews, 1..=100000 (default: about 20 a run).
    #[arg(long, value_parser = usize_in(1, 100_000))]
    preview_every: Option<usize>,
    /// Finished jobs kept for download, 1..=10000 (the oldest are forgotten first).
    #[arg(long, default_value_t = 64, value_parser = usize_in(1, 10_000))]
    keep: usize,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: ServeArgs, g: &Global) -> Result<()> {
    let addr: SocketAddr = a
        .bind
        .parse()
        .map_err(|_| CliError::usage(format!("--bind '{}': expected ADDRESS:PORT, e.g. 127.0.0.1:7860", a.bind)))?;
    if !addr.ip().is_loopback() && a.token.as_deref().is_none_or(str::is_empty) {
        return Err(CliError::usage(format!(
            "--bind {addr} is reachable from other machines: give --token SECRET (every request must carry it)"
        )));
    }
    let device = a.device.open()?;
    let model = a.model.load()?;
    let metrics = diffinv::metrics::Metrics::shipped()?;
    let info = info(&model, &device.0);
    let engine = hub::Engine { model, metrics, device, preview_every: a.preview_every };
    let hub = Arc::new(hub::Hub::new(a.keep));
    let app = Arc::new(api::App {
        hub: hub.clone(),
        token: a.token.clone(),
        max_upload: a.max_upload_mib << 20,
        threads: g.threads,
        model_side: engine.model.image_size(),
        info,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::runtime(format!("cannot start the server's runtime: {e}")))?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| CliError::runtime(format!("--bind {addr}: {e}")))?;
    let local = listener.local_addr().map_err(|e| CliError::runtime(format!("--bind {addr}: {e}")))?;
    let url = match &a.token {
        Some(t) => format!("http://{local}/?token={t}"),
        None => format!("http://{local}/"),
    };
    // The address first, on its own line (scripts and tests read it), then the rest.
    g.emit_json(&json!({"url": url, "address": local.to_string()}));
    if !g.json {
        println!("{url}");
    }
    g.say(format!("diffinv serve: open {url} (Ctrl-C stops)"));
    let stop = Arc::new(AtomicBool::new(false));
    let result = std::thread::scope(|s| {
        // The worker runs on a pool thread, as every CLI command does (see main).
        let worker = s.spawn(|| rayon::scope(|_| hub::work(&hub, &engine, &stop)));
        let served = rt.block_on(async {
            let shutdown = async {
                while !crate::common::interrupted() {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            };
            axum::serve(listener, api::router(app)).with_graceful_shutdown(shutdown).await
        });
        stop.store(true, Ordering::Relaxed);
        let _ = worker.join();
        served
    });
    result.map_err(|e| CliError::runtime(format!("server: {e}")))
}

/// What the page needs to know: the model, the device, the tasks and methods and their
/// defaults, the sample faces.
fn info(model: &diffinv::Model, device: &diffinv::Device) -> serde_json::Value {
    let steps: serde_json::Map<String, serde_json::Value> = Method::ALL
        .iter()
        .map(|m| (m.name().to_string(), Defaults::for_task(*m, Task::InpaintBox, 0.05).steps.into()))
        .collect();
    json!({
        "model": {"file": model.file(), "family": model.config().family_name(), "image_size": model.image_size(),
                  "params": model.num_params()},
        "device": format!("{device:?}").to_lowercase(),
        "tasks": Task::EVERY.iter().map(|t| t.name()).collect::<Vec<_>>(),
        "methods": Method::ALL.iter().map(|m| m.name()).collect::<Vec<_>>(),
        "defaults": {"task": Task::InpaintBox.name(), "method": Method::Dps.name(), "noise": 0.05, "steps": steps},
        "samples": api::SAMPLES.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "options": options::ALLOWED,
    })
}
