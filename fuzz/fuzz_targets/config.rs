//! Any text as a UNet config (adm.py / guided-diffusion flags, or a diffusers `config.json`); a
//! config that parses must validate and describe its network (shapes only, no weights); the same
//! text as a diffusers `scheduler_config.json` for it must parse or be refused, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(c) = diffinv_model::UNetConfig::from_json(s) {
            assert!(c.validate().is_ok());
            let d = diffinv_model::UNetDesc::read(&c, &mut diffinv_model::weights::ShapeOnly);
            if let Ok(d) = d {
                assert!(d.gflop(c.image_size).is_finite());
            }
            if let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(s) {
                let _ = diffinv_model::diffusers::scheduler(&o, &c);
            }
        }
    }
});
