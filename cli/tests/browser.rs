//! The page in a real browser: headless Chromium driven through ChromeDriver (WebDriver over
//! HTTP) loads a sample face, paints a hole with the brush, runs DiffPIR, sees the progress
//! advance and the result appear, and saves a screenshot (`target/serve-screenshot.png`).
//! Without Chromium and ChromeDriver it says SKIPPED and passes, unless
//! DIFFINV_REQUIRE_BROWSER is set (`.ci/run` installs them and sets it).

mod common;
use common::server::Server;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    base: String,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(names: &[&str]) -> Option<String> {
    names.iter().find(|p| std::path::Path::new(p).exists()).map(|p| p.to_string())
}

impl Driver {
    fn start() -> Option<Driver> {
        let driver = which(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])?;
        let browser = which(&["/usr/bin/chromium", "/usr/bin/chromium-browser"])?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "chromedriver did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = std::env::temp_dir().join(format!("diffinv-chromium-{}", std::process::id()));
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": browser,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1400,1100", format!("--user-data-dir={}", profile.display())]}}}});
        let mut d = Driver { child, base, session: String::new() };
        let v = d.post("/session", caps);
        d.session = v["sessionId"].as_str().expect("a session").to_string();
        Some(d)
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let r = match ureq::post(&url).send_json(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(c, r)) => panic!("{path}: {c} {}", r.into_string().unwrap_or_default()),
            Err(e) => panic!("{path}: {e}"),
        };
        r.into_json::<Value>().unwrap()["value"].clone()
    }

    fn get(&self, path: &str) -> Value {
        let r = ureq::get(&format!("{}/session/{}{path}", self.base, self.session)).call().expect(path);
        r.into_json::<Value>().unwrap()["value"].clone()
    }

    fn js(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
    }

    fn element(&self, css: &str) -> String {
        let v = self.post("/element", json!({"using": "css selector", "value": css}));
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.post(&format!("/element/{id}/click"), json!({}));
    }

    /// Waits until `script` returns true.
    fn until(&self, what: &str, secs: u64, script: &str) {
        let t0 = Instant::now();
        while self.js(script) != Value::Bool(true) {
            assert!(t0.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn the_page_restores_a_painted_hole() {
    let Some(d) = Driver::start() else {
        assert!(
            std::env::var_os("DIFFINV_REQUIRE_BROWSER").is_none(),
            "DIFFINV_REQUIRE_BROWSER is set but chromium / chromedriver are not installed"
        );
        eprintln!("SKIPPED (no chromium + chromedriver; apt-get install chromium chromium-driver)");
        return;
    };
    let s = Server::start(&["--threads", "2"], &["--preview-every", "2"]);
    d.post("/url", json!({"url": s.url("/")}));
    d.until("the sample faces", 30, "return document.querySelectorAll('#samples img').length === 4");
    d.click("#samples img");
    d.until("the image", 30, "return !document.getElementById('run').disabled");
    // One brush stroke across the middle of the face, with the mouse.
    let canvas = d.element("#maskCanvas");
    let origin = json!({ELEMENT: canvas});
    d.post(
        "/actions",
        json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [
            {"type": "pointerMove", "origin": origin, "x": -50, "y": -10, "duration": 0},
            {"type": "pointerDown", "button": 0},
            {"type": "pointerMove", "origin": origin, "x": 0, "y": 10, "duration": 100},
            {"type": "pointerMove", "origin": origin, "x": 50, "y": -10, "duration": 100},
            {"type": "pointerUp", "button": 0}]}]}),
    );
    let painted = d.js(
        "const c = document.getElementById('maskCanvas'); const p = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
         let n = 0; for (let i = 3; i < p.length; i += 4) if (p[i] > 0) n++; return n;",
    );
    assert!(painted.as_u64().unwrap() > 50, "the stroke painted {painted} pixels");
    d.js("const m = document.getElementById('method'); m.value = 'diffpir'; m.dispatchEvent(new Event('change'));
          document.getElementById('steps').value = '60'; return true;");
    d.click("#run");
    // The progress advances (seen part-way at least once), then the result appears.
    let t0 = Instant::now();
    let mut partway = Vec::new();
    loop {
        let v = d.js("const w = parseFloat(document.getElementById('bar').style.width) || 0;
                      const done = document.querySelector('.result .result-image');
                      return [w, !!(done && done.complete && done.naturalWidth > 0), document.getElementById('error').textContent];");
        let (w, done) = (v[0].as_f64().unwrap(), v[1].as_bool().unwrap());
        assert!(v[2].as_str().unwrap().is_empty(), "the page shows an error: {}", v[2]);
        if w > 0.0 && w < 100.0 {
            partway.push(w);
        }
        if done {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no result after 2 minutes");
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(!partway.is_empty(), "the progress bar never showed a step part-way");
    let meta = d.js("return document.querySelector('.result .meta').textContent;");
    assert!(meta.as_str().unwrap().contains("PSNR") && meta.as_str().unwrap().contains("60 NFE"), "{meta}");
    d.js("window.scrollTo(0, 0); return true;");
    let shot = d.get("/screenshot");
    let png = base64_decode(shot.as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"));
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/serve-screenshot.png");
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {} (progress seen at {partway:?}%)", path.display());
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let b: Vec<u8> = s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(b.len() * 3 / 4);
    for chunk in b.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| val(c) as u32).collect();
        let n = v.iter().enumerate().fold(0u32, |acc, (i, x)| acc | (x << (18 - 6 * i)));
        out.push((n >> 16) as u8);
        if v.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if v.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}
