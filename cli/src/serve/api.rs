//! The HTTP API (`docs/serve.md`) and the page, over the job hub.

use super::hub::{Hub, JobState, Phase, Request, Snapshot};
use super::options;
use crate::common::CliError;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use diffinv::cpu::image_io::{load_gray_bytes, load_image_bytes};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;

/// The page, embedded: it loads nothing from elsewhere.
const INDEX: &str = include_str!("../../assets/serve/index.html");

/// The shipped sample faces, embedded.
pub const SAMPLES: &[(&str, &[u8])] = &[
    ("009521", include_bytes!("../../../assets/samples/009521.png")),
    ("009522", include_bytes!("../../../assets/samples/009522.png")),
    ("009523", include_bytes!("../../../assets/samples/009523.png")),
    ("009524", include_bytes!("../../../assets/samples/009524.png")),
];

/// What the handlers share.
pub struct App {
    pub hub: Arc<Hub>,
    pub token: Option<String>,
    pub max_upload: usize,
    pub threads: Option<usize>,
    /// The model's image size (what --fit resize / crop bring an image to).
    pub model_side: usize,
    /// `GET /api/info`'s answer.
    pub info: Value,
}

/// The routes, behind the token check.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.max_upload;
    Router::new()
        .route("/", get(index))
        .route("/api/info", get(info))
        .route("/api/samples/{name}", get(sample))
        .route("/api/restore", axum::routing::post(restore).layer(DefaultBodyLimit::max(limit)))
        .route("/api/jobs/{id}", get(status).delete(cancel))
        .route("/api/jobs/{id}/events", get(events))
        .route("/api/jobs/{id}/{file}", get(file))
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .with_state(app)
}

/// An error answer: `{"error": message}` with a status.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// Every request carries the token when one is set: `Authorization: Bearer T` or `?token=T`.
async fn auth(State(app): State<Arc<App>>, req: HttpRequest, next: Next) -> Response {
    let Some(token) = &app.token else { return next.run(req).await };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let query =
        req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")).map(percent_decode));
    let given = bearer.or(query);
    if given.as_deref().is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
        next.run(req).await
    } else {
        error(StatusCode::UNAUTHORIZED, "this server needs its token (Authorization: Bearer TOKEN, or ?token=TOKEN)")
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], INDEX).into_response()
}

async fn info(State(app): State<Arc<App>>) -> Json<Value> {
    Json(app.info.clone())
}

async fn sample(Path(name): Path<String>) -> Response {
    let stem = name.strip_suffix(".png").unwrap_or(&name);
    match SAMPLES.iter().find(|(n, _)| *n == stem) {
        Some((_, bytes)) => ([(header::CONTENT_TYPE, "image/png")], *bytes).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no sample '{name}'")),
    }
}

/// `POST /api/restore`: multipart `image` (PNG/JPEG), optional `mask` (PNG, white = observed)
/// and `options` (JSON); answers 202 with the job's id and place in the queue.
async fn restore(State(app): State<Arc<App>>, mut form: Multipart) -> Response {
    let (mut image, mut mask, mut opts) = (None, None, None);
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return error(e.status(), format!("upload: {}", e.body_text())),
        };
        let name = field.name().unwrap_or("").to_string();
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) => return error(e.status(), format!("upload field '{name}': {}", e.body_text())),
        };
        match name.as_str() {
            "image" => image = Some(bytes),
            "mask" => mask = Some(bytes),
            "options" => opts = Some(bytes),
            other => {
                return error(StatusCode::BAD_REQUEST, format!("unknown form field '{other}' (image, mask, options)"))
            }
        }
    }
    let Some(image) = image else { return error(StatusCode::BAD_REQUEST, "the form needs an 'image' file") };
    let opts: Value = match opts.as_deref().map(serde_json::from_slice).unwrap_or(Ok(json!({}))) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "'options' must be a JSON object"),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("'options' is not JSON: {e}")),
    };
    let (threads, side) = (app.threads, app.model_side);
    // Decoding is CPU work: off the async threads.
    let checked = tokio::task::spawn_blocking(move || {
        prepare(opts.as_object().expect("object"), &image, mask.as_deref(), threads, side)
    })
    .await
    .unwrap_or_else(|e| Err(CliError::runtime(format!("internal error: {e}"))));
    let request = match checked {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.message),
    };
    match app.hub.submit(request) {
        Some((job, position)) => {
            let body = json!({"id": job.id, "position": position, "state": "queued",
                              "events": format!("/api/jobs/{}/events", job.id),
                              "result": format!("/api/jobs/{}/result.png", job.id)});
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        None => error(StatusCode::TOO_MANY_REQUESTS, "the queue is full; try again when a job has finished"),
    }
}

/// The options checked as `restore` checks its flags, and the image (and mask) decoded with
/// the CLI's bounds, the header read before any pixel.
fn prepare(
    o: &serde_json::Map<String, Value>,
    image: &[u8],
    mask: Option<&[u8]>,
    threads: Option<usize>,
    model_side: usize,
) -> crate::common::Result<Request> {
    let (args, global) = options::parse(o, threads).map_err(CliError::usage)?;
    let (method, mut params) = crate::cmd::restore::check_options(&args)?;
    if let Some(m) = mask {
        let task = args.op.task()?;
        if !task.is_inpainting() {
            return Err(CliError::usage(format!("a mask does not apply to --task {}", task.name())));
        }
        if args.op.box_spec.is_some() {
            return Err(CliError::usage("a mask and a box cannot be combined"));
        }
        params.mask_gray = Some(load_gray_bytes(m, "mask")?.2);
    }
    // The same fit as the CLI: a probe job with the options alone says what the image must be.
    let fit = crate::cmd::restore::input_fit(&args, &params, method.is_diffusion().then_some(model_side))?;
    let input = load_image_bytes(image, "image", fit)?;
    Ok(Request { args, global, method, params, input })
}

fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("no job '{id}' (finished jobs are kept for a while)"))
}

async fn status(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let Some(job) = app.hub.get(&id) else { return not_found(&id) };
    let s = job.tx.borrow().clone();
    let mut v = s.status();
    v["id"] = id.into();
    v["result"] = s.result.unwrap_or(Value::Null);
    v["error"] = s.error.map_or(Value::Null, Value::from);
    Json(v).into_response()
}

async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let Some(job) = app.hub.get(&id) else { return not_found(&id) };
    app.hub.cancel(&job);
    StatusCode::NO_CONTENT.into_response()
}

async fn file(State(app): State<Arc<App>>, Path((id, file)): Path<(String, String)>) -> Response {
    let Some(job) = app.hub.get(&id) else { return not_found(&id) };
    let slot = match file.as_str() {
        "result.png" => &job.result_png,
        "measurement.png" => &job.measurement_png,
        _ => return error(StatusCode::NOT_FOUND, format!("no '{file}' (result.png, measurement.png, events)")),
    };
    let png = slot.lock().expect("png lock").clone();
    match png {
        Some(bytes) => {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, "image/png".parse().expect("header"));
            (h, Body::from(bytes.as_ref().clone())).into_response()
        }
        None => error(StatusCode::CONFLICT, format!("job '{id}' is {}: no {file} yet", job.phase().name())),
    }
}

/// Cancels the job when its event stream is dropped before the job ended: a client that goes
/// away does not leave its work running.
struct CancelOnDrop(Arc<JobState>, Arc<Hub>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.0.phase().is_final() {
            self.1.cancel(&self.0);
        }
    }
}

/// `GET /api/jobs/{id}/events`: server-sent events `status`, `measurement`, `preview`, then one
/// of `done`, `failed`, `cancelled`, after which the stream ends.
async fn events(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let Some(job) = app.hub.get(&id) else { return not_found(&id) };
    let rx = job.tx.subscribe();
    let guard = CancelOnDrop(job, app.hub.clone());
    struct St {
        rx: tokio::sync::watch::Receiver<Snapshot>,
        _guard: CancelOnDrop,
        sent_measurement: bool,
        sent_previews: usize,
        first: bool,
        ended: bool,
        pending: std::collections::VecDeque<Event>,
    }
    let st = St {
        rx,
        _guard: guard,
        sent_measurement: false,
        sent_previews: 0,
        first: true,
        ended: false,
        pending: Default::default(),
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.pending.pop_front() {
                return Some((Ok::<Event, Infallible>(e), st));
            }
            if st.ended {
                return None;
            }
            if !st.first && st.rx.changed().await.is_err() {
                return None;
            }
            st.first = false;
            let s = st.rx.borrow_and_update().clone();
            let ev = |name: &str, v: Value| Event::default().event(name).data(v.to_string());
            st.pending.push_back(ev("status", s.status()));
            if s.measurement_ready && !st.sent_measurement {
                st.sent_measurement = true;
                st.pending.push_back(ev("measurement", json!({})));
            }
            if s.previews > st.sent_previews {
                st.sent_previews = s.previews;
                if let Some(p) = &s.preview {
                    st.pending.push_back(ev("preview", json!({"step": s.step, "png": p.as_str()})));
                }
            }
            match s.phase {
                Phase::Done => st.pending.push_back(ev("done", done_event(s.result.as_ref()))),
                Phase::Failed => st.pending.push_back(ev("failed", json!({"error": s.error}))),
                Phase::Cancelled => st.pending.push_back(ev("cancelled", json!({}))),
                _ => {}
            }
            st.ended = s.phase.is_final();
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// The `done` event: the report, with the headline numbers where the page looks for them.
fn done_event(report: Option<&Value>) -> Value {
    let r = report.cloned().unwrap_or(Value::Null);
    let metrics = match (r.get("psnr"), r.get("ssim"), r.get("lpips_alex")) {
        (Some(p), Some(s), Some(l)) => json!({"psnr": p, "ssim": s, "lpips": l}),
        _ => Value::Null,
    };
    json!({"seconds": r.get("seconds").cloned().unwrap_or(0.0.into()), "nfe": r.get("nfe").cloned().unwrap_or(0.into()),
           "metrics": metrics, "report": r})
}
