//! Any bytes as a checkpoint (safetensors, PyTorch zip or legacy): an error or a readable file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = diffinv_model::checkpoint::Checkpoint::from_bytes("fuzz", data.to_vec()) {
        let names: Vec<String> = c.tensors().keys().cloned().collect();
        for n in names {
            let _ = c.f32(&n);
            let _ = c.i64(&n);
        }
    }
});
