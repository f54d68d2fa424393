//! Any bytes as a model file: a checkpoint that parses has its metadata (architecture and
//! diffusion settings) validated and its weights read against that architecture.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = diffinv_model::checkpoint::Checkpoint::from_bytes("fuzz", data.to_vec()) {
        if let Ok(m) = diffinv_model::ModelDesc::read(&c, None) {
            assert!(m.config().validate().is_ok());
            assert!((1..=diffinv_model::load::MAX_STEPS).contains(&m.diffusion.steps));
        }
    }
});
