//! Counter-based random numbers (Philox4x32-10, Salmon et al. 2011).
//!
//! Element `i` of a stream is a pure function of `(seed, stream, i)`, so a tensor can be filled
//! in any order or in parallel chunks and still get the same numbers, on any thread count and on
//! any backend that implements the same function.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// The Philox4x32 bijection with 10 rounds.
#[inline]
pub fn philox4x32_10(mut ctr: [u32; 4], mut key: [u32; 2]) -> [u32; 4] {
    for _ in 0..10 {
        let (hi0, lo0) = mulhilo(M0, ctr[0]);
        let (hi1, lo1) = mulhilo(M1, ctr[2]);
        ctr = [hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0];
        key[0] = key[0].wrapping_add(W0);
        key[1] = key[1].wrapping_add(W1);
    }
    ctr
}

/// Maps 32 random bits to the open interval (0, 1).
#[inline]
pub fn u32_to_open01(u: u32) -> f64 {
    (u as f64 + 0.5) * (1.0 / 4_294_967_296.0)
}

/// A seeded stream of standard normal (and uniform) numbers with a read position.
///
/// Each `fill` consumes whole blocks of four, so a later draw never depends on how earlier
/// draws were split between calls of different sizes... as long as the sizes are the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoiseStream {
    seed: u64,
    stream: u64,
    offset: u64,
}

impl NoiseStream {
    /// Stream `stream` of seed `seed`, positioned at its start.
    pub const fn new(seed: u64, stream: u64) -> Self {
        NoiseStream { seed, stream, offset: 0 }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The stream id.
    pub fn stream(&self) -> u64 {
        self.stream
    }

    /// The index of the next element to be drawn.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn block(&self, j: u64) -> [u32; 4] {
        philox4x32_10(
            [j as u32, (j >> 32) as u32, self.stream as u32, (self.stream >> 32) as u32],
            [self.seed as u32, (self.seed >> 32) as u32],
        )
    }

    /// Standard normal number `i` of the stream (absolute index), by Box-Muller on a pair of
    /// uniforms, computed in f64.
    #[inline]
    pub fn normal_at(&self, i: u64) -> f64 {
        let r = self.block(i / 4);
        let pair = (i % 4) as usize / 2;
        let u1 = u32_to_open01(r[2 * pair]);
        let u2 = u32_to_open01(r[2 * pair + 1]);
        let rad = libm::sqrt(-2.0 * libm::log(u1));
        let ang = 2.0 * core::f64::consts::PI * u2;
        if i.is_multiple_of(2) {
            rad * libm::cos(ang)
        } else {
            rad * libm::sin(ang)
        }
    }

    /// Uniform number `i` of the stream (absolute index) in (0, 1).
    #[inline]
    pub fn uniform_at(&self, i: u64) -> f64 {
        u32_to_open01(self.block(i / 4)[(i % 4) as usize])
    }

    /// Reserves the next `n` elements and returns the absolute index of the first; fill them
    /// with [`NoiseStream::normal_at`] in any order.
    pub fn reserve(&mut self, n: usize) -> u64 {
        let start = self.offset;
        self.offset += (n as u64).div_ceil(4) * 4;
        start
    }

    /// `out[j]` = standard normal number `start + j` of the stream (absolute indices, the
    /// stream's position unchanged): any split of a reserved range gives the same numbers.
    pub fn fill_normal_from<F: crate::Float>(&self, start: u64, out: &mut [F]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = F::from_f64(self.normal_at(start + i as u64));
        }
    }

    /// Fills `out` with the next standard normal numbers.
    pub fn fill_normal<F: crate::Float>(&mut self, out: &mut [F]) {
        let start = self.reserve(out.len());
        self.fill_normal_from(start, out);
    }

    /// Fills `out` with the next uniform numbers in (0, 1).
    pub fn fill_uniform(&mut self, out: &mut [f64]) {
        let start = self.reserve(out.len());
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.uniform_at(start + i as u64);
        }
    }

    /// The next uniform number in (0, 1).
    pub fn next_uniform(&mut self) -> f64 {
        let start = self.reserve(1);
        self.uniform_at(start)
    }

    /// The next standard normal number.
    pub fn next_normal(&mut self) -> f64 {
        let start = self.reserve(1);
        self.normal_at(start)
    }
}

/// Stream ids of the different random draws of a run, so that e.g. the measurement noise does not
/// change when the sampler's step count does.
pub mod streams {
    /// Measurement noise `sigma_y n`.
    pub const MEASUREMENT: u64 = 1;
    /// The starting noise `x_T` (or the noise of `q_sample` at `t0`).
    pub const INIT: u64 = 2;
    /// The per-step noise `z` of a sampler.
    pub const STEPS: u64 = 3;
    /// Random masks, box positions and kernels of the operators.
    pub const OPERATOR: u64 = 4;
    /// Noise of the forward process in the denoising experiment.
    pub const FORWARD: u64 = 5;
    /// Seeded random weights (benchmarks, tests).
    pub const WEIGHTS: u64 = 6;

    /// The stream of draw `kind` for image number `image` of a run (folder runs and batches
    /// give every image its own streams).
    pub const fn for_image(kind: u64, image: u64) -> u64 {
        (image << 8) | kind
    }
}
