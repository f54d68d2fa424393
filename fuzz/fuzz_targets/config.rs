//! Any text as a UNet config; a config that parses must validate and build its layer plan.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(c) = diffinv_model::UNetConfig::from_json(s) {
            assert!(c.validate().is_ok());
        }
    }
});
