//! Blur kernels: scipy's Gaussian (as DPS builds it) and a seeded random motion trajectory with
//! DPS's "intensity" parameter (after LeviBorodenko/motionblur, which DPS uses).

use diffinv_core::NoiseStream;

/// A square blur kernel, row-major, summing to 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// Side length (odd).
    pub size: usize,
    /// The weights.
    pub data: Vec<f32>,
}

/// `scipy.ndimage.gaussian_filter` of a centred delta, `size x size`, with scipy's defaults
/// (truncate 4.0), computed in f64: the outer product of the normalised 1-D Gaussian of radius
/// `int(4 std + 0.5)` placed at the centre.
pub fn gaussian_f64(size: usize, std: f64) -> Vec<f64> {
    let g = gaussian_1d(std);
    let r = (g.len() / 2) as isize;
    let c = (size / 2) as isize;
    // scipy filters the delta with mode 'reflect': taps that fall outside fold back in.
    let fold = |i: isize| -> usize {
        let n = size as isize;
        let mut i = i;
        loop {
            if i < 0 {
                i = -i - 1;
            } else if i >= n {
                i = 2 * n - i - 1;
            } else {
                return i as usize;
            }
        }
    };
    let mut g1 = vec![0.0f64; size];
    for (k, &v) in g.iter().enumerate() {
        g1[fold(c + k as isize - r)] += v;
    }
    let mut out = vec![0.0f64; size * size];
    for i in 0..size {
        for j in 0..size {
            out[i * size + j] = g1[i] * g1[j];
        }
    }
    out
}

/// scipy's normalised 1-D Gaussian of radius `int(4 std + 0.5)`.
pub fn gaussian_1d(std: f64) -> Vec<f64> {
    let r = (4.0 * std + 0.5) as isize;
    let g: Vec<f64> = (-r..=r).map(|x| (-0.5 / (std * std) * (x * x) as f64).exp()).collect();
    let s: f64 = g.iter().sum();
    g.iter().map(|v| v / s).collect()
}

/// The Gaussian kernel rounded to f32 (what DPS copies into its conv weight).
pub fn gaussian(size: usize, std: f64) -> Kernel {
    Kernel { size, data: gaussian_f64(size, std).into_iter().map(|v| v as f32).collect() }
}

fn beta_sample(rng: &mut NoiseStream, a: u32, b: u32) -> f64 {
    // Beta(a, b) = G_a/(G_a + G_b) with integer-shape Gammas as sums of exponentials.
    let gamma = |rng: &mut NoiseStream, k: u32| (0..k).map(|_| -rng.next_uniform().ln()).sum::<f64>();
    let x = gamma(rng, a);
    x / (x + gamma(rng, b))
}

fn triangular(rng: &mut NoiseStream, lo: f64, mode: f64, hi: f64) -> f64 {
    let u = rng.next_uniform();
    let f = (mode - lo) / (hi - lo);
    if u < f {
        lo + ((hi - lo) * (mode - lo) * u).sqrt()
    } else {
        hi - ((hi - lo) * (hi - mode) * (1.0 - u)).sqrt()
    }
}

/// A random motion-blur kernel: a trajectory of beta-distributed steps whose turning angles are
/// bounded by `intensity * pi`, drawn on a 2x canvas, smoothed, reduced to `size x size` and
/// normalised. `intensity` in [0, 1]; DPS uses 0.5.
pub fn motion(size: usize, intensity: f64, rng: &mut NoiseStream) -> Kernel {
    let canvas = 2 * size;
    let diag = (2.0 * (canvas * canvas) as f64).sqrt();
    let eps = f64::EPSILON;
    let max_len = 0.75 * diag * (rng.next_uniform() + rng.next_uniform() * intensity * intensity);
    let mut steps = Vec::new();
    let mut total = 0.0;
    while total < max_len && steps.len() < 10_000 {
        let s = beta_sample(rng, 1, 30) * (1.0 - intensity + eps) * diag;
        if s < max_len {
            steps.push(s);
            total += s;
        }
    }
    let max_angle = rng.next_uniform() * intensity * std::f64::consts::PI;
    let jitter = beta_sample(rng, 2, 20);
    let mut angles = vec![(2.0 * rng.next_uniform() - 1.0) * max_angle];
    while angles.len() < steps.len() {
        let mut a = triangular(rng, 0.0, intensity * max_angle, max_angle + eps);
        let prev = *angles.last().expect("one angle");
        let sign = if prev < 0.0 { -1.0 } else { 1.0 };
        a *= if rng.next_uniform() < jitter { -sign } else { sign };
        angles.push(a);
    }
    // Path = cumulative sum of the polar increments, centred on its centre of mass.
    let mut path = Vec::with_capacity(steps.len());
    let (mut x, mut y) = (0.0f64, 0.0f64);
    for (s, a) in steps.iter().zip(&angles) {
        x += s * a.cos();
        y += s * a.sin();
        path.push((x, y));
    }
    let n = path.len().max(1) as f64;
    let (cx, cy) = path.iter().fold((0.0, 0.0), |(a, b), p| (a + p.0 / n, b + p.1 / n));
    let half = canvas as f64 / 2.0;
    let path: Vec<(f64, f64)> = path.iter().map(|p| (p.0 - cx + half, p.1 - cy + half)).collect();
    // Draw the polyline by bilinear splats every quarter pixel.
    let mut img = vec![0.0f64; canvas * canvas];
    let mut splat = |px: f64, py: f64| {
        let (x0, y0) = (px.floor(), py.floor());
        let (fx, fy) = (px - x0, py - y0);
        for (dx, dy, w) in
            [(0, 0, (1.0 - fx) * (1.0 - fy)), (1, 0, fx * (1.0 - fy)), (0, 1, (1.0 - fx) * fy), (1, 1, fx * fy)]
        {
            let (ix, iy) = (x0 as isize + dx, y0 as isize + dy);
            if ix >= 0 && iy >= 0 && (ix as usize) < canvas && (iy as usize) < canvas {
                img[iy as usize * canvas + ix as usize] += w;
            }
        }
    };
    if path.len() == 1 {
        splat(path[0].0, path[0].1);
    }
    for w in path.windows(2) {
        let (a, b) = (w[0], w[1]);
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        let k = (len * 4.0).ceil().max(1.0) as usize;
        for i in 0..=k {
            let t = i as f64 / k as f64;
            splat(a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
        }
    }
    // Smooth like the reference (Gaussian of radius ~1% of the diagonal), then 2x2 box-reduce.
    let img = separable(&img, canvas, &gaussian_1d((diag * 0.01).max(0.5)));
    let mut data = vec![0.0f64; size * size];
    for i in 0..size {
        for j in 0..size {
            data[i * size + j] = img[(2 * i) * canvas + 2 * j]
                + img[(2 * i) * canvas + 2 * j + 1]
                + img[(2 * i + 1) * canvas + 2 * j]
                + img[(2 * i + 1) * canvas + 2 * j + 1];
        }
    }
    let s: f64 = data.iter().sum();
    if s <= 0.0 {
        data.iter_mut().for_each(|v| *v = 0.0);
        data[(size / 2) * size + size / 2] = 1.0;
    } else {
        data.iter_mut().for_each(|v| *v /= s);
    }
    Kernel { size, data: data.into_iter().map(|v| v as f32).collect() }
}

/// Separable zero-padded filtering of an `n x n` image with the 1-D kernel `g` (odd length).
fn separable(img: &[f64], n: usize, g: &[f64]) -> Vec<f64> {
    let r = (g.len() / 2) as isize;
    let pass = |src: &[f64], horizontal: bool| -> Vec<f64> {
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let mut s = 0.0;
                for (k, &w) in g.iter().enumerate() {
                    let o = j as isize + k as isize - r;
                    if o >= 0 && (o as usize) < n {
                        s += w * if horizontal { src[i * n + o as usize] } else { src[o as usize * n + i] };
                    }
                }
                if horizontal {
                    out[i * n + j] = s;
                } else {
                    out[j * n + i] = s;
                }
            }
        }
        out
    };
    pass(&pass(img, true), false)
}

/// Reads a kernel from a grayscale image (normalised to sum 1).
pub fn from_image(gray: &[f32], size: usize) -> Option<Kernel> {
    let s: f64 = gray.iter().map(|&v| v as f64).sum();
    if gray.len() != size * size || size.is_multiple_of(2) || s.is_nan() || s <= 0.0 {
        return None;
    }
    Some(Kernel { size, data: gray.iter().map(|&v| (v as f64 / s) as f32).collect() })
}
