//! What every command shares: global options, errors and exit codes, JSON output, progress bars,
//! and Ctrl-C handling.

use clap::Args;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Options every command takes.
#[derive(Args, Clone, Debug)]
pub struct Global {
    /// Worker threads, 1..=1024 (default: all cores; more than the cores are capped to them).
    #[arg(long, global = true, value_name = "N", value_parser = crate::args::usize_in(1, 1024))]
    pub threads: Option<usize>,
    /// Seed of every random draw; the same seed gives the same output.
    #[arg(long, global = true, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Print one JSON object on stdout (human text goes to stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars or human-readable messages.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// An error with its exit code: 1 for runtime failures, 2 for usage errors.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    /// A usage error (exit code 2).
    pub fn usage(m: impl Into<String>) -> Self {
        CliError { code: 2, message: m.into() }
    }
    /// A runtime failure (exit code 1).
    pub fn runtime(m: impl Into<String>) -> Self {
        CliError { code: 1, message: m.into() }
    }
}

/// The command-line flag of a library parameter, where there is one.
fn flag(name: &str) -> String {
    match name {
        "steps" | "zeta" | "lambda" | "t0" | "noise" | "missing" | "intensity" | "scale" | "task" | "method"
        | "denoiser" | "device" | "t" | "box" => format!("--{name}"),
        "kernel_size" => "--kernel-size".into(),
        "box size" => "--box-size".into(),
        "blur std" => "--blur-std".into(),
        "ddim_eta" => "--ddim-eta".into(),
        "n and batch" => "-n and --batch".into(),
        _ => name.into(),
    }
}

impl From<diffinv::Error> for CliError {
    fn from(e: diffinv::Error) -> Self {
        use diffinv::cpu::Error as C;
        use diffinv::model::Error as M;
        match &e {
            diffinv::Error::Cancelled => CliError { code: 130, message: "interrupted; nothing was written".into() },
            // A value out of its range is a usage error, wherever it is found.
            diffinv::Error::Cpu(C::Parameter { name, value, reason }) => {
                CliError::usage(format!("{} {reason}, got {value}", flag(name)))
            }
            diffinv::Error::Model(M::NoConfig { .. }) => CliError::runtime(format!("{e}: give --config")),
            diffinv::Error::Model(M::TensorShape { .. } | M::UnusedTensors { .. }) => {
                CliError::runtime(format!("{e} (wrong --config?)"))
            }
            _ => CliError::runtime(e.to_string()),
        }
    }
}

impl From<diffinv::cpu::Error> for CliError {
    fn from(e: diffinv::cpu::Error) -> Self {
        diffinv::Error::from(e).into()
    }
}

impl From<diffinv::model::Error> for CliError {
    fn from(e: diffinv::model::Error) -> Self {
        diffinv::Error::from(e).into()
    }
}

pub type Result<T> = std::result::Result<T, CliError>;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// True once Ctrl-C was pressed: long loops stop at the next step and write nothing partial.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

impl Global {
    /// Sets up the thread pool and Ctrl-C handling.
    pub fn init(&self) -> Result<()> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = match self.threads {
            Some(n) if n > cores => {
                self.say(format!("diffinv: --threads {n} is more than the {cores} cores; using {cores}"));
                Some(cores)
            }
            t => t,
        };
        // 0 = rayon's default (all cores). Commands run on a worker of this pool (see main), so
        // its threads get the main thread's stack size.
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads.unwrap_or(0))
            .stack_size(8 << 20)
            .build_global()
            .map_err(|e| CliError::runtime(format!("cannot start {} threads: {e}", self.threads.unwrap_or(0))))?;
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::Relaxed) {
                // A second Ctrl-C stops at once (temporary files are cleaned by the atomic writers).
                std::process::exit(130);
            }
            eprintln!("\ndiffinv: interrupted; stopping after the current step");
        });
        Ok(())
    }

    /// The number of worker threads in use.
    pub fn threads_in_use(&self) -> usize {
        rayon::current_num_threads()
    }

    /// Prints a human message on stderr unless quiet.
    pub fn say(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// Prints `v` as JSON on stdout when `--json`.
    pub fn emit_json(&self, v: &serde_json::Value) {
        if self.json {
            println!("{v}");
        }
    }

    /// A progress bar with ETA on stderr (hidden when quiet or not a terminal).
    pub fn progress(&self, total: u64, what: &str) -> Progress {
        use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
        let pb = ProgressBar::new(total);
        if self.quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            pb.set_draw_target(ProgressDrawTarget::hidden());
        }
        pb.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
                .expect("template")
                .progress_chars("=> "),
        );
        pb.set_message(what.to_string());
        Progress { pb: Arc::new(pb) }
    }
}

/// A progress bar handle; `monitor()` gives the sampler loops' callback, which also stops the
/// loop on Ctrl-C.
#[derive(Clone)]
pub struct Progress {
    pb: Arc<indicatif::ProgressBar>,
}

impl Progress {
    /// Moves to `done` of `total`.
    pub fn set(&self, done: u64) {
        self.pb.set_position(done);
    }
    /// Sets the message.
    pub fn set_message(&self, m: &str) {
        self.pb.set_message(m.to_string());
    }
    /// Clears the bar.
    pub fn finish(&self) {
        self.pb.finish_and_clear();
    }
    /// A sampler monitor owning a handle to the bar: sets its length and position, returns false
    /// (cancel) after Ctrl-C.
    pub fn monitor(&self) -> impl FnMut(usize, usize) -> bool + Send + 'static {
        let pb = self.pb.clone();
        move |done, total| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
            !interrupted()
        }
    }
}

/// Refuses, before any work, an output that is one of the inputs or another output (following
/// symlinks). Devices (`/dev/null`) may be named more than once.
pub fn distinct_outputs(inputs: &[&std::path::Path], outputs: &[(&str, &std::path::Path)]) -> Result<()> {
    use diffinv::model::io::same_file;
    let is_device = |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| !m.is_file() && !m.is_dir());
    for (i, (flag, o)) in outputs.iter().enumerate() {
        if let Some(inp) = inputs.iter().find(|inp| same_file(inp, o)) {
            return Err(CliError::usage(format!("{flag} {} would overwrite the input {}", o.display(), inp.display())));
        }
        if let Some((f2, _)) = outputs[..i].iter().find(|(_, o2)| same_file(o, o2) && !is_device(o)) {
            return Err(CliError::usage(format!("{flag} and {f2} name the same file {}", o.display())));
        }
    }
    Ok(())
}

/// The image at `path` when it is `side x side` (checked from its header before decoding), else
/// an error naming the file and the flag that fixes it.
pub fn load_exact(path: &std::path::Path, side: usize) -> Result<diffinv::Tensor> {
    use diffinv::cpu::image_io::{dimensions, load_image, Fit};
    let (w, h) = dimensions(path)?;
    if w != side || h != side {
        return Err(CliError::runtime(format!(
            "{}: image is {w}x{h}, the model takes {side}x{side} (use --resize to centre-crop and resize)",
            path.display()
        )));
    }
    Ok(load_image(path, Fit::Exact(side))?)
}

/// The peak resident set size of this process in MiB (Linux; 0 elsewhere).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
