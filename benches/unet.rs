//! The network and one DPS step: FFHQ-256 conv layers (forward and adjoint), the UNet forward
//! and forward + input gradient (celeba64 and FFHQ-256), one DPS step and one DiffPIR step of the
//! shipped model, each on every CPU context side by side (each kernel this CPU has, the portable
//! one included, and bf16 where it has AVX512-BF16).
//! Throughput is FLOP/s. Run: `RAYON_NUM_THREADS=2 cargo bench --bench unet`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use diffinv::core::sampler::{dps_step, DpsWork};
use diffinv::core::{Backend, NoiseStream};
use diffinv::cpu::gemm::Isa;
use diffinv::cpu::nn::{Conv2d, Precision};
use diffinv::cpu::ops::{build, Task, TaskParams};
use diffinv::cpu::solve::Schedule;
use diffinv::cpu::unet::{UNet, Workspace};
use diffinv::cpu::{CpuBackend, CpuContext, Tensor};
use diffinv::model::{RandomWeights, UNetConfig};
use diffinv::Model;

/// Every CPU context worth comparing: each kernel this CPU runs (f32), and bf16 when it can.
fn contexts() -> Vec<(String, CpuContext)> {
    let mut v: Vec<(String, CpuContext)> =
        Isa::all_available().into_iter().map(|i| (i.name().to_string(), CpuContext::with_isa(i).unwrap())).collect();
    if Isa::Avx512Bf16.available() {
        v.push(("bf16".into(), CpuContext::default().precision(Precision::Bf16)));
    }
    v
}

fn randn(shape: [usize; 4], seed: u64) -> Tensor {
    let mut t = Tensor::zeros(shape);
    NoiseStream::new(seed, 0).fill_normal(t.data_mut());
    t
}

fn conv_layers(c: &mut Criterion) {
    let mut g = c.benchmark_group("conv3x3");
    g.sample_size(10);
    // (channels, side) of the FFHQ-256 levels.
    for (ch, side) in [(128, 256), (128, 128), (256, 64), (256, 32), (512, 16), (512, 8)] {
        let mut w = vec![0.0f32; ch * ch * 9];
        NoiseStream::new(1, 1).fill_normal(&mut w);
        let conv = Conv2d::new(w, None, ch, ch, 3, 1, 1);
        let x = randn([1, ch, side, side], 2);
        let mut y = vec![0.0f32; ch * side * side];
        g.throughput(Throughput::Elements((conv.flops_per_pixel() * (side * side) as f64) as u64));
        let id = format!("{ch}ch_{side}px");
        let ctx = CpuContext::default();
        g.bench_function(BenchmarkId::new("forward", &id), |b| {
            b.iter(|| conv.forward(&ctx, x.data(), 1, side, side, &mut y, None, false))
        });
        let mut gx = vec![0.0f32; ch * side * side];
        g.bench_function(BenchmarkId::new("adjoint", &id), |b| {
            b.iter(|| conv.backward_input(&ctx, x.data(), 1, side, side, &mut gx, false))
        });
    }
    g.finish();
}

fn unet(c: &mut Criterion) {
    let mut g = c.benchmark_group("unet");
    g.sample_size(10);
    for preset in ["celeba64", "ffhq256"] {
        let cfg = UNetConfig::preset(preset).unwrap();
        let u = UNet::new(&cfg, &mut RandomWeights::new(0)).unwrap();
        let x = randn([1, 3, cfg.image_size, cfg.image_size], 3);
        let gf = u.gflop(cfg.image_size) * 1e9;
        for (name, ctx) in contexts() {
            let mut ws = Workspace::new();
            let id = format!("{preset}/{name}");
            g.throughput(Throughput::Elements(gf as u64));
            g.bench_function(BenchmarkId::new("forward", &id), |b| {
                b.iter(|| u.forward(&ctx, &x, &[500.0], &mut ws).unwrap())
            });
            g.throughput(Throughput::Elements(2 * gf as u64));
            g.bench_function(BenchmarkId::new("forward_vjp", &id), |b| {
                b.iter(|| {
                    let (o, t) = u.forward_with_tape(&ctx, &x, &[500.0], &mut ws).unwrap();
                    u.vjp(&ctx, t, &o, &mut ws).unwrap()
                })
            });
        }
    }
    g.finish();
}

/// One DPS step (forward + input gradient + the update) and one DiffPIR step (a forward and the
/// data solve) of the shipped model on box inpainting, per CPU context.
fn steps(c: &mut Criterion) {
    use diffinv::core::sampler::{diffpir, DiffpirConfig};
    let m = Model::shipped().unwrap();
    let sched = Schedule::new(m.diffusion(), None).unwrap();
    let chain = sched.chain();
    let x = randn([1, 3, 64, 64], 4);
    let op = build(Task::InpaintBox, &TaskParams::default(), x.shape(), 0, 0).unwrap();
    let y = op.forward(&x).unwrap();
    let z = randn(x.shape(), 5);
    let coefs = chain.coefs(500);
    let mut g = c.benchmark_group("dps_step");
    g.sample_size(20);
    g.throughput(Throughput::Elements((2.0 * m.gflop() * 1e9) as u64));
    for (name, ctx) in contexts() {
        let mut b = CpuBackend::new(m.cpu(), m.diffusion().variance, ctx);
        let mut w = DpsWork::new(&mut b, &x, &y).unwrap();
        let mut next = b.zeros(x.shape()).unwrap();
        g.bench_function(BenchmarkId::new("celeba64_inpaint_box", &name), |bch| {
            bch.iter(|| {
                dps_step(&mut b, &coefs, &op, &y, 0.5, &x, Some(&z), &mut w, &mut next).unwrap();
            })
        });
    }
    g.finish();
    // DiffPIR's loop over a one-step chain: the network, the data solve and the update.
    let one = Schedule::new(m.diffusion(), Some("1")).unwrap();
    let mut g = c.benchmark_group("diffpir_step");
    g.sample_size(20);
    g.throughput(Throughput::Elements((m.gflop() * 1e9) as u64));
    for (name, ctx) in contexts() {
        let mut b = CpuBackend::new(m.cpu(), m.diffusion().variance, ctx);
        let cfg = DiffpirConfig { lambda: 1.0, zeta: 1.0, sigma_y: 0.05 };
        g.bench_function(BenchmarkId::new("celeba64_inpaint_box", &name), |bch| {
            bch.iter(|| {
                let mut xt = x.clone();
                let mut rngs = [NoiseStream::new(0, 1)];
                diffpir(&mut b, &one.chain(), &op, &y, &cfg, &mut xt, &mut rngs, &mut ()).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, conv_layers, unet, steps);
criterion_main!(benches);
