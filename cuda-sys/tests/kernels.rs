//! The CUDA C kernels compile with NVRTC (runs wherever libnvrtc loads, GPU or not).
#![cfg(feature = "cuda")]

use diffinv_cuda_sys::{compile_kernels, Error};

#[test]
fn kernels_compile() {
    match compile_kernels() {
        Ok(bytes) => assert!(bytes > 1000, "PTX of {bytes} bytes"),
        Err(Error::Unavailable(m)) if std::env::var_os("DIFFINV_REQUIRE_GPU").is_none() => {
            eprintln!("SKIPPED: {m}")
        }
        Err(e) => panic!("{e}"),
    }
}
