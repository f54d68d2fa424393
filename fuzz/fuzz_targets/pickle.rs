//! Any bytes through the restricted unpickler.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = diffinv_model::checkpoint::unpickle(data, None);
});
