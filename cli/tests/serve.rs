//! `diffinv serve` over HTTP on an ephemeral port: the same bytes as the CLI, progress and
//! previews, cancellation (by request and by a client going away), the queue's order, bad uploads
//! refused with 4xx, and the token.

mod common;
use common::server::{call, events, json, status, submit, wait, Server};
use common::*;
use serde_json::json;

fn face() -> Vec<u8> {
    std::fs::read(data("celeba64/009507.png")).unwrap()
}

#[test]
fn a_restore_through_the_api_gives_the_cli_bytes() {
    let s = Server::start(&["--threads", "2"], &["--preview-every", "5"]);
    let opts = json!({"task": "inpaint-box", "method": "diffpir", "steps": 20, "seed": 3});
    let (code, j) = submit(&s, &face(), &opts, None, None);
    assert_eq!(code, 202, "{j}");
    let id = j["id"].as_str().unwrap().to_string();
    let ev = events(&s, &id, |_, _| false);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.last(), Some(&"done"), "{names:?}");
    assert!(names.contains(&"measurement"), "{names:?}");
    // Previews every 5 steps and after the last: 4 of 20.
    assert_eq!(names.iter().filter(|n| **n == "preview").count(), 4, "{names:?}");
    let steps: Vec<u64> = ev.iter().filter(|(n, _)| n == "status").filter_map(|(_, v)| v["step"].as_u64()).collect();
    assert!(steps.windows(2).all(|w| w[0] <= w[1]) && steps.last() == Some(&20), "{steps:?}");
    let done = &ev.last().unwrap().1;
    assert!(done["metrics"]["psnr"].as_f64().unwrap() > 10.0, "{done}");
    assert_eq!(done["nfe"], 20);
    let (code, api_png) = call(ureq::get(&s.url(&format!("/api/jobs/{id}/result.png"))).call());
    assert_eq!(code, 200);
    let d = tmp("serve-bytes");
    let (input, out) = (d.join("face.png"), d.join("cli.png"));
    std::fs::write(&input, face()).unwrap();
    let o = run(&[
        "--seed",
        "3",
        "-q",
        "restore",
        "--task",
        "inpaint-box",
        "--method",
        "diffpir",
        "--steps",
        "20",
        "--from-clean",
        s_(&input),
        "-o",
        s_(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&out).unwrap() == api_png, "the API's PNG differs from the CLI's");
    let (code, meas) = call(ureq::get(&s.url(&format!("/api/jobs/{id}/measurement.png"))).call());
    assert!(code == 200 && meas.starts_with(b"\x89PNG"), "{code}");
}

fn s_(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn cancel_stops_a_running_job_and_a_departing_client_cancels_its_own() {
    let s = Server::start(&["--threads", "2"], &[]);
    let long = json!({"task": "inpaint-box", "method": "dps", "steps": 1000});
    let (_, j) = submit(&s, &face(), &long, None, None);
    let id = j["id"].as_str().unwrap().to_string();
    // Wait until it runs, then cancel it.
    let ev = events(&s, &id, |n, v| n == "status" && v["step"].as_u64().unwrap_or(0) >= 2);
    assert!(!ev.is_empty());
    let t0 = std::time::Instant::now();
    let (code, _) = call(ureq::delete(&s.url(&format!("/api/jobs/{id}"))).call());
    assert_eq!(code, 204);
    assert_eq!(wait(&s, &id), "cancelled");
    assert!(t0.elapsed().as_secs() < 20, "stopped within a step: {:?}", t0.elapsed());
    let (code, body) = call(ureq::get(&s.url(&format!("/api/jobs/{id}/result.png"))).call());
    assert_eq!(code, 409, "{}", String::from_utf8_lossy(&body));
    // A client that reads its events and goes away mid-run cancels its job.
    let (_, j) = submit(&s, &face(), &long, None, None);
    let id = j["id"].as_str().unwrap().to_string();
    events(&s, &id, |n, v| n == "status" && v["step"].as_u64().unwrap_or(0) >= 2);
    let mut state = String::new();
    for _ in 0..200 {
        state = status(&s, &id)["state"].as_str().unwrap().to_string();
        if state == "cancelled" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(state, "cancelled");
}

#[test]
fn jobs_run_one_at_a_time_in_order() {
    let s = Server::start(&["--threads", "2"], &[]);
    let opts = json!({"task": "sr4", "method": "diffpir", "steps": 30});
    let ids: Vec<String> = (0..3)
        .map(|_| {
            let (code, j) = submit(&s, &face(), &opts, None, None);
            assert_eq!(code, 202, "{j}");
            j["id"].as_str().unwrap().to_string()
        })
        .collect();
    let st: Vec<serde_json::Value> = ids.iter().map(|id| status(&s, id)).collect();
    // The third waits behind the second, which waits behind (or just after) the first.
    assert_eq!(st[2]["state"], "queued", "{st:?}");
    let (p1, p2) = (st[1]["position"].as_u64().unwrap(), st[2]["position"].as_u64().unwrap());
    assert!(p2 == p1 + 1 && p1 >= 1, "{st:?}");
    assert_eq!(wait(&s, &ids[2]), "done");
    for id in &ids[..2] {
        assert_eq!(status(&s, id)["state"], "done", "an earlier job finished first");
    }
}

#[test]
fn bad_uploads_are_refused_with_the_cli_messages() {
    let s = Server::start(&[], &["--max-upload-mib", "1"]);
    let ok = json!({"task": "inpaint-box", "method": "diffpir", "steps": 5});
    let cases: Vec<(Vec<u8>, serde_json::Value, u16, &str)> = vec![
        (b"hello, not an image".to_vec(), ok.clone(), 400, "not an image"),
        (png_header(200_000, 200_000), ok.clone(), 400, "200000x200000"),
        (face(), json!({"task": "inpaint-box", "steps": 0}), 400, "--steps"),
        (face(), json!({"task": "inpaint-box", "mask": "/etc/passwd"}), 400, "unknown option 'mask'"),
        (face(), json!({"task": "sr4", "method": "magic"}), 400, "method"),
        (face(), json!({"method": "dps"}), 400, "--task"),
        (face(), json!({"task": "inpaint-box", "measurement": "maybe"}), 400, "measurement"),
    ];
    for (image, opts, want, says) in cases {
        let (code, j) = submit(&s, &image, &opts, None, None);
        assert_eq!(code, want, "{opts}: {j}");
        assert!(j["error"].as_str().unwrap_or("").contains(says), "{opts}: '{j}' should say '{says}'");
    }
    assert_eq!(oversize_status(&s, 2 << 20), 413, "an upload over --max-upload-mib 1");
    // A mask on a task without one.
    let mask = std::fs::read(data("celeba64/009508.png")).unwrap();
    let (code, j) = submit(&s, &face(), &json!({"task": "sr4"}), Some(&mask), None);
    assert!(code == 400 && j["error"].as_str().unwrap().contains("mask"), "{j}");
    // Unknown jobs and files.
    let (code, _) = call(ureq::get(&s.url("/api/jobs/0000/result.png")).call());
    assert_eq!(code, 404);
}

/// The status of an upload of `n` bytes, sent the way curl sends it (the answer may come before
/// the body is all sent, and the server then closes).
fn oversize_status(s: &Server, n: usize) -> u16 {
    use std::io::{Read, Write};
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let (ctype, body) = common::server::multipart(&[("image", Some("big.bin"), &vec![0u8; n])]);
    let head = format!(
        "POST /api/restore HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut w = conn.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(head.as_bytes());
        let _ = w.write_all(&body); // stops when the server closes
    });
    let mut answer = [0u8; 12];
    conn.read_exact(&mut answer).expect("a status line");
    let _ = writer.join();
    String::from_utf8_lossy(&answer[9..12]).parse().unwrap()
}

/// A small PNG whose header claims `w x h` pixels (a decompression bomb's shape; its data is a
/// stub): decoding must be refused from the header alone.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (&b"IHDR"[..], ihdr),
        (&b"IDAT"[..], vec![0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]),
        (&b"IEND"[..], vec![]),
    ] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(&data);
        png.extend_from_slice(&chunk);
        png.extend_from_slice(&crc32(&chunk).to_be_bytes());
    }
    png
}

fn crc32(b: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

#[test]
fn the_token_is_required_beyond_loopback_and_checked_on_every_request() {
    let out = run(&["serve", "--bind", "0.0.0.0:0"]);
    fails(&out, 2, &["--token"]);
    let s = Server::start(&[], &["--token", "s3cret"]);
    for path in ["/", "/api/info", "/api/samples/009521.png"] {
        let (code, _) = call(ureq::get(&s.url(path)).call());
        assert_eq!(code, 401, "{path} without the token");
        let (code, _) = call(ureq::get(&s.url(path)).set("Authorization", "Bearer wrong").call());
        assert_eq!(code, 401, "{path} with a wrong token");
        let (code, _) = call(ureq::get(&s.url(path)).set("Authorization", "Bearer s3cret").call());
        assert_eq!(code, 200, "{path} with the token");
        let (code, _) = call(ureq::get(&s.url(&format!("{path}?token=s3cret"))).call());
        assert_eq!(code, 200, "{path} with ?token=");
    }
    // (No body: the server answers before reading one, and closes.)
    let (code, _) = call(ureq::post(&s.url("/api/restore")).call());
    assert_eq!(code, 401);
    let info = json(&call(ureq::get(&s.url("/api/info")).set("Authorization", "Bearer s3cret").call()).1);
    assert_eq!(info["model"]["image_size"], 64);
    assert!(info["methods"].as_array().unwrap().iter().any(|m| m == "diffpir"));
}
