//! A `no_std` consumer of diffinv-core (see Cargo.toml for why it exists).
#![no_std]

use diffinv_core::respace::{respaced, Spacing};
use diffinv_core::schedule::{alphas_cumprod, BetaSchedule, Chain};
use diffinv_core::NoiseStream;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// Builds a respaced chain on the stack and draws noise: exercises the crate without std.
#[no_mangle]
pub extern "C" fn diffinv_nostd_probe(seed: u64) -> f64 {
    let mut betas = [0.0f64; 1000];
    BetaSchedule::LINEAR.fill_betas(&mut betas);
    let mut abar = [0.0f64; 1000];
    alphas_cumprod(&betas, &mut abar);
    let mut steps = [0usize; 50];
    if Spacing::parse("ddim50").and_then(|s| s.fill(1000, &mut steps)).is_err() {
        return f64::NAN;
    }
    let (mut b, mut a) = ([0.0; 50], [0.0; 50]);
    if respaced(&abar, &steps, &mut b, &mut a).is_err() {
        return f64::NAN;
    }
    let chain = match Chain::new(&steps, &b, &a) {
        Ok(c) => c,
        Err(_) => return f64::NAN,
    };
    let mut z = [0.0f32; 8];
    NoiseStream::new(seed, 0).fill_normal(&mut z);
    chain.coefs(25).coef1 + z[0] as f64
}
