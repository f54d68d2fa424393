//! Any bytes through the restricted unpickler.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = diffinv_cpu::checkpoint::unpickle(data, None);
});
