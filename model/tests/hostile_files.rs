//! Crafted files that once made diffinv allocate without bound, misread a file or accept an
//! impossible model (issue 20): each is refused with a message naming the problem, and the live
//! heap of the reading thread stays within a stated budget (a counting allocator measures it).
//! The `.pt` files are made by `scripts/make_hostile_fixtures.py`; the rest are built here.

use diffinv_model::checkpoint::{unpickle, Checkpoint};
use diffinv_model::ModelDesc;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

/// Tracks the live heap bytes of a watched thread and their peak.
struct Counting;
thread_local! {
    static WATCHED: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    if WATCHED.try_with(Cell::get).unwrap_or(false) {
        let live = LIVE.with(|l| {
            l.set(l.get() + delta);
            l.get()
        });
        PEAK.with(|p| p.set(p.get().max(live)));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        track(l.size() as isize);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        track(-(l.size() as isize));
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        track(n as isize - l.size() as isize);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Runs `f`, returning its result and the peak of live heap bytes it added.
fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    WATCHED.with(|w| w.set(true));
    let r = f();
    WATCHED.with(|w| w.set(false));
    (r, PEAK.with(Cell::get).max(0) as usize)
}

fn hostile(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/hostile").join(name)
}

const MIB: usize = 1 << 20;

/// Every crafted PyTorch file is refused, naming the lie, in a few MiB of heap (they once asked
/// for 1 TiB, 2.7 GB, quadratic copies of a shape tuple and 51 GB).
#[test]
fn crafted_torch_files_are_refused_within_budget() {
    for (file, needle) in [
        ("zip64_lie.pt", "declared size 1099511627776 is more than its data can hold"),
        ("deflated_nones.pt", "declared size 33554435 is more than its data can hold"),
        ("shared_shape.pt", "20000 dimensions (at most 8"),
        ("zero_stride.pt", "repeats elements"),
    ] {
        let path = hostile(file);
        let size = std::fs::metadata(&path).unwrap().len() as usize;
        assert!(size < MIB, "{file} is a small file");
        let (r, used) = peak(|| Checkpoint::open(&path));
        let e = r.err().unwrap_or_else(|| panic!("{file} must be refused")).to_string();
        assert!(e.contains(file) && e.contains(needle), "{file}: {e}");
        assert!(used <= 16 * size + 4 * MIB, "{file}: {used} bytes of heap for a {size}-byte file");
    }
}

/// A pickle `n` bytes long: `head`, then `unit` repeated, then `tail`.
fn repeated(head: &[u8], unit: &[u8], tail: &[u8], n: usize) -> Vec<u8> {
    let mut p = head.to_vec();
    while p.len() + unit.len() + tail.len() <= n {
        p.extend_from_slice(unit);
    }
    p.extend_from_slice(tail);
    p
}

/// A torch tensor-rebuild call memoised as 1 (the function) and 2 (its arguments).
fn rebuild_prefix() -> Vec<u8> {
    let mut p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x01(".to_vec();
    p.extend_from_slice(
        b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ",
    );
    p.extend_from_slice(b"K\x00K\x04\x85K\x01\x85\x89tq\x020");
    p
}

/// The unpickler's memory is a small multiple of the pickle's size whatever it repeats: runs
/// of singletons, empty containers, small ints, marks, memo entries and tensor rebuilds.
#[test]
fn pickle_memory_is_a_small_multiple_of_its_size() {
    let n = 4 * MIB;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("None", repeated(b"\x80\x02", b"N", b".", n)),
        ("True", repeated(b"\x80\x02", b"\x88", b".", n)),
        ("empty list", repeated(b"\x80\x02", b"]", b".", n)),
        ("empty tuple", repeated(b"\x80\x02", b")", b".", n)),
        ("empty dict", repeated(b"\x80\x02", b"}", b".", n)),
        ("small int", repeated(b"\x80\x02", b"K\x01", b".", n)),
        ("mark", repeated(b"\x80\x02", b"(", b"N.", n)),
        ("list of ints", repeated(b"\x80\x02](", b"K\x07", b"e.", n)),
        ("memo puts", {
            let mut p = b"\x80\x02".to_vec();
            let mut k = 0u32;
            while p.len() < n {
                p.extend_from_slice(b"Nr");
                p.extend_from_slice(&k.to_le_bytes());
                k += 1;
            }
            p.push(b'.');
            p
        }),
        ("memo gets", repeated(b"\x80\x02Nq\x00", b"h\x00", b".", n)),
        ("empty strings", repeated(b"\x80\x02", b"X\x00\x00\x00\x00", b".", n)),
        ("tensor rebuilds", repeated(&rebuild_prefix(), b"h\x01h\x02R", b".", n)),
    ];
    for (what, p) in cases {
        let (r, used) = peak(|| unpickle(&p, None).map(|q| q.nodes.len()));
        let ratio = used as f64 / p.len() as f64;
        eprintln!("{what:>16}: {} bytes -> {used} bytes of heap ({ratio:.1}x), {:?}", p.len(), r.as_ref().err());
        assert!(used <= 48 * p.len() + MIB, "{what}: {used} bytes for a {}-byte pickle", p.len());
    }
}

/// A safetensors file is told from a legacy pickle by its structure: header lengths whose
/// first byte is 0x80 (the pickle protocol opcode) read like any other.
#[test]
fn safetensors_header_lengths_of_every_value() {
    let json = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let lengths = (json.len()..=2100).chain((0x80..=(1 << 17)).step_by(256));
    for len in lengths {
        let mut b = (len as u64).to_le_bytes().to_vec();
        b.extend_from_slice(json);
        b.resize(8 + len, b' ');
        b.extend_from_slice(&[0u8; 8]);
        let c = Checkpoint::from_bytes("h.safetensors", b).unwrap_or_else(|e| panic!("header length {len}: {e}"));
        assert_eq!((c.format(), c.f32("a").unwrap().1), ("safetensors", vec![0.0, 0.0]), "header length {len}");
    }
}

fn safetensors(header: &str, data: usize) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.resize(b.len() + data, 0);
    b
}

/// Tensors may not share bytes: overlapping `data_offsets` are refused, naming both tensors.
#[test]
fn overlapping_safetensors_are_refused() {
    for (a, b) in [([0, 8], [4, 12]), ([0, 8], [0, 8]), ([4, 12], [0, 8]), ([0, 12], [4, 8])] {
        let h = format!(
            r#"{{"a":{{"dtype":"F32","shape":[{}],"data_offsets":{a:?}}},"b":{{"dtype":"F32","shape":[{}],"data_offsets":{b:?}}}}}"#,
            (a[1] - a[0]) / 4,
            (b[1] - b[0]) / 4
        );
        let e = Checkpoint::from_bytes("o.safetensors", safetensors(&h, 12)).err().expect("refused").to_string();
        assert!(e.contains("'a' and 'b' overlap") || e.contains("'b' and 'a' overlap"), "{h}: {e}");
    }
    // Adjacent tensors and empty ones at a shared offset are fine.
    let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"c":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}}"#;
    assert!(Checkpoint::from_bytes("ok.safetensors", safetensors(h, 12)).is_ok());
}

const CONFIG: &str = r#"{"image_size":16,"in_channels":3,"model_channels":32,"out_channels":6,"num_res_blocks":1,"attention_resolutions":[8],"channel_mult":[1,1],"num_head_channels":16}"#;

/// A model whose metadata declares impossible values is refused when it is opened, with the
/// key and the valid range, before any weight is read.
#[test]
fn metadata_values_are_validated_when_opened() {
    let big = CONFIG.replace(r#""image_size":16"#, r#""image_size":1048576"#);
    let cases = [
        (big.as_str(), None, "image_size"),
        (&*CONFIG.replace(r#""model_channels":32"#, r#""model_channels":1000000000"#), None, "model_channels"),
        (&*CONFIG.replace(r#""num_res_blocks":1"#, r#""num_res_blocks":100000"#), None, "num_res_blocks"),
        (CONFIG, Some(r#"{"steps": 1000000000000}"#), "diffusion.steps"),
        (CONFIG, Some(r#"{"steps": 0}"#), "diffusion.steps"),
        (CONFIG, Some(r#"{"beta_start": 0.5, "beta_end": 2}"#), "beta_start"),
    ];
    for (config, diffusion, key) in cases {
        let mut meta = serde_json::json!({ "config": config });
        if let Some(d) = diffusion {
            meta["diffusion"] = d.into();
        }
        let header = serde_json::json!({ "__metadata__": meta }).to_string();
        let (r, used) = peak(|| {
            let c = Checkpoint::from_bytes("m.safetensors", safetensors(&header, 0))?;
            ModelDesc::read(&c, None).map(|_| ())
        });
        let e = r.expect_err("refused").to_string();
        assert!(e.contains(key) && e.contains("metadata"), "{key}: {e}");
        assert!(used < MIB, "{key}: {used} bytes before the refusal");
    }
}

/// A directory is not a checkpoint, and says so.
#[test]
fn a_directory_is_not_a_checkpoint() {
    let e = Checkpoint::open(std::env::temp_dir()).err().expect("refused").to_string();
    assert!(e.contains("is a directory"), "{e}");
}
