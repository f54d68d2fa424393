//! Convolutions against a naive reference, over sizes that take every path (direct GEMM, batch
//! folded, Winograd F(2x2, 3x3)), cached or per-call weights, f32 and bf16, and the adjoint
//! identity of `backward_input`.

use diffinv_core::NoiseStream;
use diffinv_cpu::gemm::Isa;
use diffinv_cpu::nn::winograd::{conv3x3, WinogradWeights};
use diffinv_cpu::nn::{Conv2d, Precision};
use diffinv_cpu::CpuContext;

fn randn(n: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0.0f32; n];
    NoiseStream::new(seed, 0).fill_normal(&mut v);
    v
}

#[allow(clippy::too_many_arguments)]
fn naive(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    wd: usize,
    k: usize,
    s: usize,
    p: usize,
) -> Vec<f64> {
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (wd + 2 * p - k) / s + 1);
    let mut y = vec![0.0f64; n * cout * oh * ow];
    for i in 0..n {
        for co in 0..cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b[co] as f64;
                    for ci in 0..cin {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) =
                                    ((oy * s + ky) as isize - p as isize, (ox * s + kx) as isize - p as isize);
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    acc += w[((co * cin + ci) * k + ky) * k + kx] as f64
                                        * x[((i * cin + ci) * h + iy as usize) * wd + ix as usize] as f64;
                                }
                            }
                        }
                    }
                    y[((i * cout + co) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    y
}

#[test]
fn every_conv_path_matches_the_naive_convolution() {
    // (n, cin, cout, h, w, k, stride): 3x3 at >= 16 px takes Winograd; small maps with n > 1 fold.
    let cases = [
        (1, 3, 8, 16, 16, 3, 1),
        (2, 5, 7, 17, 21, 3, 1),
        (3, 4, 6, 8, 8, 3, 1),
        (1, 6, 4, 33, 18, 3, 1),
        (2, 4, 5, 12, 12, 1, 1),
        (1, 3, 4, 15, 15, 5, 1),
        (2, 3, 5, 16, 16, 3, 2),
        (1, 2, 3, 40, 40, 3, 1),
    ];
    for (t, &(n, cin, cout, h, w, k, s)) in cases.iter().enumerate() {
        let p = k / 2;
        let x = randn(n * cin * h * w, 10 + t as u64);
        let wt = randn(cout * cin * k * k, 20 + t as u64);
        let b = randn(cout, 30 + t as u64);
        let conv = Conv2d::new(wt.clone(), Some(b.clone()), cin, cout, k, s, p);
        let (oh, ow) = conv.out_hw(h, w);
        let want = naive(&x, &wt, &b, n, cin, cout, h, w, k, s, p);
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let g = randn(n * cout * oh * ow, 40 + t as u64);
        // Every kernel this CPU runs, with and without Winograd, against the naive convolution.
        for isa in Isa::all_available() {
            for wino in [true, false] {
                let ctx = CpuContext::with_isa(isa).unwrap().winograd(wino);
                let mut y = vec![0.0f32; n * cout * oh * ow];
                conv.forward(&ctx, &x, n, h, w, &mut y, None, false);
                let e = y.iter().zip(&want).fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs())) / scale;
                assert!(e < 1e-5, "case {t} {} wino {wino}: {e:.2e}", isa.name());
            }
        }
        let ctx = CpuContext::default();
        let mut y = vec![0.0f32; n * cout * oh * ow];
        conv.forward(&ctx, &x, n, h, w, &mut y, None, false);
        // Adjoint: <conv(x) - bias, g> = <x, conv^T g>.
        let mut gx = vec![0.0f32; n * cin * h * w];
        conv.backward_input(&ctx, &g, n, h, w, &mut gx, false);
        let mut yb = y.clone();
        for i in 0..n {
            for co in 0..cout {
                yb[(i * cout + co) * oh * ow..(i * cout + co + 1) * oh * ow].iter_mut().for_each(|v| *v -= b[co]);
            }
        }
        let l: f64 = yb.iter().zip(&g).map(|(a, b)| *a as f64 * *b as f64).sum();
        let r: f64 = x.iter().zip(&gx).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((l - r).abs() <= 1e-4 * l.abs().max(r.abs()).max(1.0), "case {t} adjoint: {l} vs {r}");
        // Weights made per call (large models) give the same bits as cached ones.
        let mut lean = Conv2d::new(wt.clone(), Some(b.clone()), cin, cout, k, s, p);
        lean.set_cache_transposed(false);
        let (mut y2, mut gx2) = (vec![0.0f32; y.len()], vec![0.0f32; gx.len()]);
        lean.forward(&ctx, &x, n, h, w, &mut y2, None, false);
        lean.backward_input(&ctx, &g, n, h, w, &mut gx2, false);
        assert!(y2 == y && gx2 == gx, "case {t}: per-call weights differ from cached ones");
        // bf16 products with f32 sums stay within bf16's precision of the exact result.
        if Isa::Avx512Bf16.available() {
            let bf = ctx.precision(Precision::Bf16);
            lean.set_cache_bf16(false);
            for conv in [&conv, &lean] {
                conv.forward(&bf, &x, n, h, w, &mut y2, None, false);
                let e = y2.iter().zip(&want).fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs())) / scale;
                assert!(e < 2e-2, "case {t} bf16: {e:.2e}");
            }
            // A lean layer keeping its bf16 weights (the default) gives the same bits as one making
            // them per call, holds them, and drops them when told to stop.
            let bf16_pass = |c: &Conv2d| {
                let (mut yb, mut gb) = (vec![0.0f32; y.len()], vec![0.0f32; gx.len()]);
                c.forward(&bf, &x, n, h, w, &mut yb, None, false);
                c.backward_input(&bf, &g, n, h, w, &mut gb, false);
                (yb, gb)
            };
            let (per_call, bytes) = (bf16_pass(&lean), lean.weight_bytes());
            lean.set_cache_bf16(true);
            assert!(bf16_pass(&lean) == per_call, "case {t}: kept bf16 weights differ from per-call ones");
            // Stride-1 layers make bf16 weights per call (Winograd or transposed); stride 2 keeps
            // only the forward packing, which every layer keeps.
            let kept = lean.weight_bytes();
            assert!(
                if s == 1 { kept > bytes } else { kept == bytes },
                "case {t}: bf16 weights {kept} vs {bytes} bytes"
            );
            lean.set_cache_bf16(false);
            assert_eq!(lean.weight_bytes(), bytes, "case {t}: kept bf16 weights not dropped");
        }
    }
}

#[test]
fn every_winograd_kernel_matches_the_naive_convolution() {
    // Each GEMM kernel (its own panel width), f32 and bf16, with bias, residual and accumulation;
    // odd sizes, odd channel counts (bf16 pads a k-pair), tile rows wider than a panel (tx 70).
    // F(4x4, 3x3) too: sides that are not multiples of 4, and tile rows wider than a panel.
    let cases = [(1, 3, 5, 16, 140), (2, 5, 4, 17, 21), (1, 8, 7, 33, 9), (3, 1, 2, 16, 16), (2, 6, 9, 35, 290)];
    for (t, &(n, cin, cout, h, w)) in cases.iter().enumerate() {
        let seed = 100 + 10 * t as u64;
        let (x, wt, b) = (randn(n * cin * h * w, seed), randn(cout * cin * 9, seed + 1), randn(cout, seed + 2));
        let (res, prev) = (randn(n * cout * h * w, seed + 3), randn(n * cout * h * w, seed + 4));
        let direct = naive(&x, &wt, &b, n, cin, cout, h, w, 3, 1, 1);
        let want: Vec<f64> =
            direct.iter().zip(res.iter().zip(&prev)).map(|(d, (r, p))| d + *r as f64 + *p as f64).collect();
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let bf16 = Some(Isa::Avx512Bf16).filter(|i| i.available());
        for isa in Isa::all_available().into_iter().chain(bf16) {
            for tile in [2, 4].into_iter().filter(|&t| t == 2 || !isa.is_bf16()) {
                let wts =
                    WinogradWeights::with_tile(tile, cout, cin, isa.is_bf16(), |co, ci, k| wt[(co * cin + ci) * 9 + k]);
                let mut y = prev.clone();
                conv3x3(isa, &wts, cin, cout, &x, n, h, w, Some(&b), &mut y, Some(&res), true);
                let e = y.iter().zip(&want).fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs())) / scale;
                let tol = if isa.is_bf16() { 2e-2 } else { 1e-5 };
                assert!(e < tol, "{} F({tile}) case {t} {n}x{cin}->{cout} {h}x{w}: {e:.2e}", isa.name());
            }
        }
    }
}
