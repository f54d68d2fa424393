//! A `diffinv serve` process on an ephemeral port, stopped when dropped, and the HTTP calls the
//! tests make to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};

pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// Starts `diffinv [global] serve --bind 127.0.0.1:0 [extra]` and reads the URL it prints.
    pub fn start(global: &[&str], extra: &[&str]) -> Server {
        let mut cmd = super::bin();
        cmd.args(global).args(["--quiet", "serve", "--bind", "127.0.0.1:0"]).args(extra);
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).expect("a URL line");
        let url = line.trim();
        assert!(url.starts_with("http://127.0.0.1:"), "printed '{url}'");
        let base = url.split('/').take(3).collect::<Vec<_>>().join("/");
        Server { child, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response's status and body, whatever the status.
pub fn call(r: Result<ureq::Response, ureq::Error>) -> (u16, Vec<u8>) {
    let resp = match r {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = resp.status();
    let mut body = Vec::new();
    resp.into_reader().take(64 << 20).read_to_end(&mut body).unwrap();
    (status, body)
}

pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// A multipart form body with the given `(name, filename, bytes)` parts.
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "diffinv-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                    .as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// `POST /api/restore` with an image and options (and a mask); the status and the JSON answer.
pub fn submit(
    s: &Server,
    image: &[u8],
    options: &serde_json::Value,
    mask: Option<&[u8]>,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let opts = options.to_string();
    let mut parts: Vec<(&str, Option<&str>, &[u8])> =
        vec![("image", Some("image.png"), image), ("options", None, opts.as_bytes())];
    if let Some(m) = mask {
        parts.push(("mask", Some("mask.png"), m));
    }
    let (ctype, body) = multipart(&parts);
    let mut req = ureq::post(&s.url("/api/restore")).set("Content-Type", &ctype);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let (status, body) = call(req.send_bytes(&body));
    (status, json(&body))
}

/// The events of a job's stream, `(name, data)`, until it ends (or `stop` says so).
pub fn events(
    s: &Server,
    id: &str,
    mut stop: impl FnMut(&str, &serde_json::Value) -> bool,
) -> Vec<(String, serde_json::Value)> {
    let resp = ureq::get(&s.url(&format!("/api/jobs/{id}/events"))).call().expect("events");
    let mut reader = BufReader::new(resp.into_reader());
    let (mut out, mut name) = (Vec::new(), String::new());
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return out;
        }
        let l = line.trim_end();
        if let Some(n) = l.strip_prefix("event:") {
            name = n.trim().to_string();
        } else if let Some(d) = l.strip_prefix("data:") {
            let v: serde_json::Value = serde_json::from_str(d.trim()).unwrap();
            let end = stop(&name, &v);
            out.push((name.clone(), v));
            if end {
                return out;
            }
        }
    }
}

/// Waits for a job to end; its final state.
pub fn wait(s: &Server, id: &str) -> String {
    let ev = events(s, id, |_, _| false);
    let last = ev.iter().rev().find(|(n, _)| n == "done" || n == "failed" || n == "cancelled").expect("a final event");
    last.0.clone()
}

pub fn status(s: &Server, id: &str) -> serde_json::Value {
    let (code, body) = call(ureq::get(&s.url(&format!("/api/jobs/{id}"))).call());
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    json(&body)
}
