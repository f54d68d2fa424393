//! Any bytes as an image, with the decoder's size limits.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = diffinv_cpu::image_io::decode_bytes(data, "fuzz");
});
