//! Fully connected layers (the time-embedding path; tiny, so plain loops with f64 sums).

/// `y = W x + b`, `W` of shape (out, in).
#[derive(Clone, Debug)]
pub struct Linear {
    /// Input features.
    pub fin: usize,
    /// Output features.
    pub fout: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Linear {
    /// A layer from its (out, in) weight and bias.
    pub fn new(weight: Vec<f32>, bias: Vec<f32>, fin: usize, fout: usize) -> Self {
        assert_eq!(weight.len(), fin * fout, "linear weight size");
        assert_eq!(bias.len(), fout, "linear bias size");
        Linear { fin, fout, weight, bias }
    }

    /// The (out, in) weight, row-major.
    pub fn weight(&self) -> &[f32] {
        &self.weight
    }

    /// The bias.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// `y[i] = W x[i] + b` for `n` rows of `x`, optionally applying SiLU to the input first.
    pub fn forward(&self, x: &[f32], n: usize, silu_input: bool, y: &mut [f32]) {
        let mut xs = vec![0.0f32; self.fin];
        for i in 0..n {
            let xi = &x[i * self.fin..(i + 1) * self.fin];
            // The activation once per input, not once per (input, output) pair.
            for (s, &xv) in xs.iter_mut().zip(xi) {
                *s = if silu_input { xv / (1.0 + (-xv).exp()) } else { xv };
            }
            for o in 0..self.fout {
                let w = &self.weight[o * self.fin..(o + 1) * self.fin];
                let mut s = self.bias[o] as f64;
                for (&wv, &xv) in w.iter().zip(&xs) {
                    s += wv as f64 * xv as f64;
                }
                y[i * self.fout + o] = s as f32;
            }
        }
    }
}
