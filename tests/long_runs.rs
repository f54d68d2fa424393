//! Long runs: memory stays flat over 1000 sampler steps (the workspace is reused, nothing
//! accumulates), and the loops stop cleanly when cancelled.

use diffinv::core::sampler::{self, SampleError};
use diffinv::core::{Backend, NoiseStream};
use diffinv::cpu::solve::Schedule;
use diffinv::cpu::unet::UNet;
use diffinv::cpu::{CpuBackend, CpuContext, Tensor};
use diffinv::model::{DiffusionSettings, RandomWeights, UNetConfig};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn tiny() -> UNet {
    let cfg = UNetConfig::from_json(r#"{"image_size": 16, "in_channels": 3, "model_channels": 32, "num_res_blocks": 1, "attention_resolutions": [8], "channel_mult": [1, 2], "num_head_channels": 32, "out_channels": 3}"#).unwrap();
    UNet::new(&cfg, &mut RandomWeights::new(3)).unwrap()
}

#[test]
fn memory_is_flat_over_1000_steps() {
    if rss_kib() == 0 {
        eprintln!("skipped: no /proc/self/status");
        return;
    }
    let u = tiny();
    let d = DiffusionSettings {
        steps: 1000,
        schedule: diffinv::core::BetaSchedule::LINEAR,
        variance: diffinv::core::VarianceKind::FixedSmall,
    };
    let sched = Schedule::new(&d, None).unwrap();
    let chain = sched.chain();
    let mut b = CpuBackend::new(&u, d.variance, CpuContext::default());
    let mut x = Tensor::zeros([2, 3, 16, 16]);
    b.randn(&mut [NoiseStream::new(1, 1), NoiseStream::new(1, 2)], &mut x).unwrap();
    let mut rngs = [NoiseStream::new(1, 3), NoiseStream::new(1, 4)];
    let mut at = [0u64; 3];
    let mut mon = |done: usize, _total: usize| {
        match done {
            100 => at[0] = rss_kib(),
            500 => at[1] = rss_kib(),
            1000 => at[2] = rss_kib(),
            _ => {}
        }
        true
    };
    let s = sampler::reverse(&mut b, &chain, 999, None, &mut x, &mut rngs, &mut mon).unwrap();
    assert_eq!(s.nfe, 1000);
    eprintln!("RSS at steps 100/500/1000: {at:?} KiB");
    assert!(at[2] <= at[0] + 2048, "RSS grew from {} to {} KiB over 900 steps", at[0], at[2]);
}

#[test]
fn cancelling_stops_at_the_next_step() {
    let u = tiny();
    let d = DiffusionSettings {
        steps: 1000,
        schedule: diffinv::core::BetaSchedule::LINEAR,
        variance: diffinv::core::VarianceKind::FixedSmall,
    };
    let sched = Schedule::new(&d, Some("50")).unwrap();
    let chain = sched.chain();
    let mut b = CpuBackend::new(&u, d.variance, CpuContext::default());
    let mut x = Tensor::zeros([1, 3, 16, 16]);
    let mut seen = 0;
    let r = sampler::reverse(&mut b, &chain, 49, None, &mut x, &mut [NoiseStream::new(0, 0)], &mut |done: usize, _| {
        seen = done;
        done < 7
    });
    assert!(matches!(r, Err(SampleError::Cancelled)));
    assert_eq!(seen, 7);
}
