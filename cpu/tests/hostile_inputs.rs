//! Parsers against arbitrary and mutated bytes: safetensors, PyTorch zip and legacy pickles,
//! config JSON and images must return an error, never panic, and never allocate much more than
//! the input can justify (checked by a counting allocator).

use diffinv_cpu::image_io::{decode_bytes, load_image, Fit};
use diffinv_model::checkpoint::{unpickle, Checkpoint};
use diffinv_model::UNetConfig;
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Records the largest single allocation made by a thread while it is being watched (the
/// parsers are single-threaded; other tests' threads do not count).
struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static WATCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn note(size: usize) {
    if WATCHED.try_with(|w| w.get()).unwrap_or(false) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note(n);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Runs `f` on `input` and checks it allocated no single block over 128x the input + 1 MiB:
/// the unpickler's arena holds at most one node (under 80 bytes) per input byte, doubled by
/// vector growth. Tests in this binary take `SERIAL` so the counts are their own.
fn bounded<T>(input: &[u8], f: impl FnOnce() -> T) -> T {
    within(128 * input.len() + (1 << 20), f)
}

/// Runs `f` and checks it allocated no single block over `limit` bytes.
fn within<T>(limit: usize, f: impl FnOnce() -> T) -> T {
    LARGEST.store(0, Ordering::Relaxed);
    WATCHED.with(|w| w.set(true));
    let r = f();
    WATCHED.with(|w| w.set(false));
    let big = LARGEST.load(Ordering::Relaxed);
    assert!(big <= limit, "allocated {big} bytes (limit {limit})");
    r
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn data(p: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data").join(p)).unwrap()
}

fn mutate(mut b: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(pos, kind, val) in edits {
        if b.is_empty() {
            break;
        }
        let i = pos % b.len();
        match kind % 4 {
            0 => b[i] ^= 1 << (val % 8),
            1 => b[i] = val,
            2 => b.truncate(i),
            _ => b.insert(i, val),
        }
    }
    b
}

fn checkpoint(bytes: Vec<u8>) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let copy = bytes.clone();
    bounded(&copy, || {
        if let Ok(c) = Checkpoint::from_bytes("fuzz", bytes) {
            // Reading every tensor of a file that parsed must not fail unboundedly either.
            let names: Vec<String> = c.tensors().keys().cloned().collect();
            for n in names {
                let _ = c.f32(&n);
                let _ = c.i64(&n);
            }
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_as_checkpoint(b in prop::collection::vec(any::<u8>(), 0..4096)) {
        checkpoint(b);
    }

    #[test]
    fn arbitrary_bytes_with_checkpoint_magic(kind in 0usize..3, b in prop::collection::vec(any::<u8>(), 0..4096)) {
        let mut v = match kind { 0 => b"PK\x03\x04".to_vec(), 1 => vec![0x80, 2], _ => 64u64.to_le_bytes().to_vec() };
        if kind == 2 { v.push(b'{'); }
        v.extend(b);
        checkpoint(v);
    }

    #[test]
    fn mutated_safetensors(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)) {
        checkpoint(mutate(data("pt/tiny_io.safetensors"), &edits));
    }

    #[test]
    fn mutated_header_of_safetensors(edits in prop::collection::vec((0usize..400, any::<u8>(), any::<u8>()), 1..6)) {
        checkpoint(mutate(data("pt/tiny_io.safetensors"), &edits));
    }

    #[test]
    fn mutated_zip_pt(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)) {
        checkpoint(mutate(data("pt/tiny_f16.pt"), &edits));
    }

    #[test]
    fn mutated_legacy_pt(edits in prop::collection::vec((0usize..60_000, any::<u8>(), any::<u8>()), 1..6)) {
        let b = data("pt/tiny_legacy.pt");
        // Keep the mutations in the pickles at the front (the storages are just numbers).
        checkpoint(mutate(b, &edits));
    }

    #[test]
    fn arbitrary_pickles(b in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let copy = b.clone();
        bounded(&copy, || { let _ = unpickle(&b, None); });
    }

    #[test]
    fn config_json(s in ".{0,300}") {
        let _ = UNetConfig::from_json(&s);
    }

    #[test]
    fn config_json_values(k in prop::sample::select(vec!["image_size", "model_channels", "channel_mult", "attention_resolutions", "num_head_channels", "num_res_blocks", "out_channels", "num_heads"]), v in prop::sample::select(vec!["0", "-1", "1e300", "\"x\"", "[]", "[0]", "[1,0]", "null", "{}", "18446744073709551615", "[99999999999]"])) {
        let r = UNetConfig::from_json(&format!("{{\"{k}\": {v}}}"));
        if let Ok(c) = r {
            prop_assert!(c.validate().is_ok());
        }
    }

    /// Compressed images legitimately decode to far more than their file size, so the bound is
    /// the decoder's explicit limit (checked before pixels are decoded), not the input size.
    #[test]
    fn images(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)) {
        let b = mutate(data("celeba64/009501.png"), &edits);
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        within(diffinv_cpu::image_io::MAX_BYTES as usize + (1 << 20), || { let _ = decode_bytes(&b, "fuzz.png"); });
    }
}

/// A PNG header claiming 100000 x 100000 pixels is refused before any pixel is decoded.
#[test]
fn huge_image_dimensions_are_refused_early() {
    let mut b = data("celeba64/009501.png");
    // IHDR width/height at bytes 16..24; the CRC no longer matches, which is also an error.
    b[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    b[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let copy = b.clone();
    let r = bounded(&copy, || decode_bytes(&b, "huge.png"));
    assert!(r.is_err());
}

/// Deeply nested pickles (a million MARK/TUPLE pairs) neither overflow the stack nor crash.
#[test]
fn deep_nesting_is_harmless() {
    let mut p = vec![0x80, 2];
    p.extend(std::iter::repeat_n(b'(', 100_000));
    p.push(b')');
    p.extend(std::iter::repeat_n(b't', 100_000));
    p.push(b'.');
    let _ = unpickle(&p, None);
    let mut q = vec![0x80, 2, b')'];
    // TUPLE1 wraps the top in another tuple; DUP and POP pad each level to the three bytes
    // a node may cost without hitting the node budget (half the pickle's length).
    q.extend(std::iter::repeat_n([0x85, b'2', b'0'], 200_000).flatten());
    q.push(b'.');
    assert!(unpickle(&q, None).is_ok(), "nesting is data, not recursion");
    checkpoint(q);
}

/// Unknown globals (the classic pickle exploit) are refused by name.
#[test]
fn code_execution_globals_are_refused() {
    let p = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
    let e = unpickle(p, None).unwrap_err();
    assert!(e.contains("os.system"), "{e}");
}

/// CRC-32 (ISO-HDLC, as PNG uses), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

/// A well-formed PNG header declaring `w x h` RGB pixels, with a short valid IDAT start.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = b.len();
        b.extend_from_slice(kind);
        b.extend_from_slice(data);
        let crc = crc32(&b[start..]);
        b.extend_from_slice(&crc.to_be_bytes());
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00]);
    chunk(b"IEND", &[]);
    b
}

/// A valid PNG header declaring 16384 x 16384 (once decoded to 10 GB before the error) is
/// refused from its header, with its size and the limit in the message; sizes read from headers
/// are what [`dimensions`](diffinv_cpu::image_io::dimensions) reports.
#[test]
fn large_declared_images_are_refused_from_the_header() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (w, h) in [(16384, 16384), (4097, 16), (16, 100_000)] {
        let b = png_header(w, h);
        let e = bounded(&b, || decode_bytes(&b, "big.png")).expect_err("refused").to_string();
        assert!(e.contains(&format!("{w}x{h}")) && e.contains("4096x4096"), "{e}");
        let path = std::env::temp_dir().join(format!("diffinv-big-{}-{w}x{h}.png", std::process::id()));
        std::fs::write(&path, &b).unwrap();
        assert_eq!(diffinv_cpu::image_io::dimensions(&path).unwrap(), (w as usize, h as usize));
        for fit in [Fit::Exact(64), Fit::Max(1024), Fit::Any] {
            let e = bounded(&b, || load_image(&path, fit)).expect_err("refused").to_string();
            assert!(e.contains(&format!("{w}x{h}")), "{fit:?}: {e}");
        }
        std::fs::remove_file(&path).unwrap();
    }
    // Within the limit the header is accepted and the broken pixel data is the error.
    let b = png_header(64, 64);
    let e = decode_bytes(&b, "small.png").expect_err("no pixels").to_string();
    assert!(e.contains("not a readable image"), "{e}");
}
