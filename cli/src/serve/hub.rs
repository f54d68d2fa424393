//! The jobs: a queue that one worker thread per device drains in order, each job's state as a
//! `watch` channel the event streams follow, and its output images kept in memory.

use crate::cmd::restore::{Job as Restore, RestoreArgs, CANCELLED};
use crate::common::Global;
use diffinv::cpu::image_io::png_bytes;
use diffinv::cpu::Tensor;
use diffinv::metrics::Metrics;
use diffinv::{Device, GpuOptions, Model, TaskParams};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;
use tokio::sync::watch;

/// The most jobs waiting at once; more are refused (429) until some finish.
pub const MAX_QUEUED: usize = 64;

/// What a restoration needs, checked and decoded when it was submitted.
pub struct Request {
    pub args: RestoreArgs,
    pub global: Global,
    pub method: diffinv::Method,
    pub params: TaskParams,
    pub input: Tensor,
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Running => "running",
            Phase::Done => "done",
            Phase::Failed => "failed",
            Phase::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Phase::Done | Phase::Failed | Phase::Cancelled)
    }
}

/// A job's state as its watchers see it.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub phase: Phase,
    /// Place in the queue (1 = next); 0 once running.
    pub position: usize,
    pub step: usize,
    pub total: usize,
    pub eta_s: Option<f64>,
    /// The latest preview (a PNG data URL) and how many have been made.
    pub preview: Option<Arc<String>>,
    pub previews: usize,
    pub measurement_ready: bool,
    /// The report of a finished run, or the error of a failed one.
    pub result: Option<Value>,
    pub error: Option<String>,
}

impl Snapshot {
    /// The fields of the `status` event and of `GET /api/jobs/{id}`.
    pub fn status(&self) -> Value {
        json!({"state": self.phase.name(), "position": self.position, "step": self.step,
               "total": self.total, "eta_s": self.eta_s})
    }
}

/// One job.
pub struct JobState {
    pub id: String,
    request: Mutex<Option<Request>>,
    cancel: AtomicBool,
    pub tx: watch::Sender<Snapshot>,
    pub measurement_png: Mutex<Option<Arc<Vec<u8>>>>,
    pub result_png: Mutex<Option<Arc<Vec<u8>>>>,
}

impl JobState {
    /// Asks the job to stop: a queued job is dropped, a running one stops within a step.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn phase(&self) -> Phase {
        self.tx.borrow().phase
    }

    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        self.tx.send_modify(f);
    }
}

/// The queue and every job still kept.
pub struct Hub {
    state: Mutex<Queue>,
    wake: Condvar,
    keep: usize,
}

struct Queue {
    waiting: VecDeque<Arc<JobState>>,
    jobs: HashMap<String, Arc<JobState>>,
    /// Finished jobs, oldest first (forgotten beyond `keep`).
    finished: VecDeque<String>,
    next: u64,
    salt: u64,
}

impl Hub {
    pub fn new(keep: usize) -> Self {
        // Ids are not guessable from one another (a counter mixed with the start time).
        let salt =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let q = Queue { waiting: VecDeque::new(), jobs: HashMap::new(), finished: VecDeque::new(), next: 0, salt };
        Hub { state: Mutex::new(q), wake: Condvar::new(), keep }
    }

    /// Queues a request; returns the job and its place in the queue, or `None` when full.
    pub fn submit(&self, r: Request) -> Option<(Arc<JobState>, usize)> {
        let mut q = self.state.lock().expect("hub lock");
        if q.waiting.len() >= MAX_QUEUED {
            return None;
        }
        q.next += 1;
        let id = format!("{:016x}", splitmix(q.salt ^ q.next));
        let position = q.waiting.len() + 1;
        let snap = Snapshot {
            phase: Phase::Queued,
            position,
            step: 0,
            total: 0,
            eta_s: None,
            preview: None,
            previews: 0,
            measurement_ready: false,
            result: None,
            error: None,
        };
        let job = Arc::new(JobState {
            id: id.clone(),
            request: Mutex::new(Some(r)),
            cancel: AtomicBool::new(false),
            tx: watch::channel(snap).0,
            measurement_png: Mutex::new(None),
            result_png: Mutex::new(None),
        });
        q.waiting.push_back(job.clone());
        q.jobs.insert(id, job.clone());
        self.wake.notify_all();
        Some((job, position))
    }

    pub fn get(&self, id: &str) -> Option<Arc<JobState>> {
        self.state.lock().expect("hub lock").jobs.get(id).cloned()
    }

    /// Cancels a job: a queued one leaves the queue at once.
    pub fn cancel(&self, job: &Arc<JobState>) {
        job.cancel();
        let mut q = self.state.lock().expect("hub lock");
        if let Some(i) = q.waiting.iter().position(|j| Arc::ptr_eq(j, job)) {
            q.waiting.remove(i);
            job.update(|s| s.phase = Phase::Cancelled);
            Self::retire(&mut q, &job.id, self.keep);
            Self::renumber(&q);
        }
    }

    /// Blocks until a job is waiting (or `stop` is set); takes it off the queue.
    fn next(&self, stop: &AtomicBool) -> Option<Arc<JobState>> {
        let mut q = self.state.lock().expect("hub lock");
        loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(j) = q.waiting.pop_front() {
                Self::renumber(&q);
                return Some(j);
            }
            q = self.wake.wait_timeout(q, std::time::Duration::from_millis(200)).expect("hub lock").0;
        }
    }

    fn renumber(q: &Queue) {
        for (i, j) in q.waiting.iter().enumerate() {
            if j.tx.borrow().position != i + 1 {
                j.update(|s| s.position = i + 1);
            }
        }
    }

    fn retire(q: &mut Queue, id: &str, keep: usize) {
        q.finished.push_back(id.to_string());
        while q.finished.len() > keep {
            if let Some(old) = q.finished.pop_front() {
                q.jobs.remove(&old);
            }
        }
    }

    fn finished(&self, job: &JobState) {
        let mut q = self.state.lock().expect("hub lock");
        Self::retire(&mut q, &job.id, self.keep);
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the worker runs jobs with.
pub struct Engine {
    pub model: Model,
    pub metrics: Metrics,
    pub device: (Device, GpuOptions),
    /// Steps between previews (`None`: about 20 a run).
    pub preview_every: Option<usize>,
}

/// The worker: runs queued jobs one at a time until `stop` is set.
pub fn work(hub: &Hub, engine: &Engine, stop: &AtomicBool) {
    while let Some(job) = hub.next(stop) {
        let request = job.request.lock().expect("request lock").take();
        if let Some(r) = request {
            if job.cancel.load(Ordering::Relaxed) {
                job.update(|s| s.phase = Phase::Cancelled);
            } else {
                run(&job, r, engine, stop);
            }
        }
        hub.finished(&job);
    }
}

fn run(job: &JobState, r: Request, e: &Engine, stop: &AtomicBool) {
    let t0 = Instant::now();
    job.update(|s| {
        s.phase = Phase::Running;
        s.position = 0;
    });
    // The request's --precision, as `restore` reads it.
    let cpu = match r.args.precision.context() {
        Ok(c) => c,
        Err(err) => return fail(job, err.message),
    };
    let restore = Restore {
        a: &r.args,
        g: &r.global,
        model: r.method.is_diffusion().then_some(&e.model),
        method: r.method,
        metrics: r.args.from_clean.then_some(&e.metrics),
        params: r.params.clone(),
        device: e.device,
        cpu,
    };
    let on_step = |done: usize, total: usize| {
        let elapsed = t0.elapsed().as_secs_f64();
        job.update(|s| {
            s.step = done;
            s.total = total;
            s.eta_s = (done > 0).then(|| elapsed / done as f64 * (total - done) as f64);
        });
        !job.cancel.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) && !crate::common::interrupted()
    };
    let result = restore.prepare(r.input, 0, on_step).and_then(|p| {
        *job.measurement_png.lock().expect("png lock") = Some(Arc::new(png_bytes(&p.measurement, 0)?));
        job.update(|s| s.measurement_ready = true);
        let on_estimate = Box::new(move |_: usize, _: usize, x0: &Tensor| {
            if let Ok(png) = png_bytes(x0, 0) {
                let url = Arc::new(format!("data:image/png;base64,{}", base64_encode(&png)));
                job.update(|s| {
                    s.preview = Some(url);
                    s.previews += 1;
                });
            }
        });
        restore.finish(p, false, Some((e.preview_every.unwrap_or(0), on_estimate)))
    });
    match result {
        Ok(o) => match png_bytes(&o.x, 0) {
            Ok(png) => {
                *job.result_png.lock().expect("png lock") = Some(Arc::new(png));
                let mut report = o.json;
                report.insert("seconds_total".into(), t0.elapsed().as_secs_f64().into());
                job.update(|s| {
                    s.phase = Phase::Done;
                    s.step = s.total;
                    s.eta_s = Some(0.0);
                    s.result = Some(Value::Object(report));
                });
            }
            Err(err) => fail(job, err.to_string()),
        },
        Err(err) if err.code == CANCELLED => job.update(|s| s.phase = Phase::Cancelled),
        Err(err) => fail(job, err.message),
    }
}

fn fail(job: &JobState, message: String) {
    job.update(|s| {
        s.phase = Phase::Failed;
        s.error = Some(message);
    });
}

/// Standard base64 (for the preview data URLs).
pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
