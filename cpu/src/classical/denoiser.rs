//! Colour CNN denoisers for plug-and-play HQS: DnCNN (Zhang et al. 2017; output = the noise) and
//! FFDNet (Zhang et al. 2018; a noise-level map as input, output = the clean image), built from
//! their weight files' `layers` metadata and run on the UNet's convolution kernels. Images are
//! in [0, 1] here, as the networks were trained.

use crate::context::CpuContext;
use crate::error::{Error, Result};
use crate::nn::Conv2d;
use crate::tensor::Tensor;
use diffinv_model::checkpoint::Checkpoint;
use rayon::prelude::*;
use std::path::Path;

enum Layer {
    Conv(Box<Conv2d>),
    Relu,
    /// pixel_unshuffle(2): channel `c*4 + dy*2 + dx` (PyTorch's order).
    Unshuffle,
    /// pixel_shuffle(2).
    Shuffle,
    /// Append the noise-level map as the last channel.
    NoiseMap,
}

/// A CNN denoiser.
pub struct Denoiser {
    name: String,
    layers: Vec<Layer>,
    residual: bool,
    takes_sigma: bool,
}

/// The denoisers diffinv ships (see `assets/README.md`).
pub const SHIPPED: &[&str] = &["ffdnet_color", "cdncnn_b_color_blind", "cdncnn_s_color_sigma25"];

impl Denoiser {
    /// Loads a denoiser file: its `layers` metadata says how to run it.
    ///
    /// # Errors
    /// The file cannot be read, or its metadata or tensors do not describe a denoiser.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_checkpoint(&Checkpoint::open(path)?)
    }

    /// A denoiser from a parsed weights file (its `layers` metadata says how to run it).
    ///
    /// # Errors
    /// The metadata or tensors do not describe a denoiser.
    pub fn from_checkpoint(ck: &Checkpoint) -> Result<Self> {
        let file = ck.path().to_string();
        let bad = |m: String| Error::Model(diffinv_model::Error::format(file.clone(), m));
        let plan = ck.metadata().get("layers").ok_or_else(|| bad("no 'layers' metadata".into()))?;
        let mut layers = Vec::new();
        for tok in plan.split_whitespace() {
            layers.push(if tok == "relu" {
                Layer::Relu
            } else if tok == "concat(noise_map)" {
                Layer::NoiseMap
            } else if tok == "pixel_shuffle(scale=0.5)" {
                Layer::Unshuffle
            } else if tok == "pixel_shuffle(scale=2.0)" {
                Layer::Shuffle
            } else if let Some(rest) = tok.strip_prefix("conv") {
                // convN(k=3,pad=1,stride=1,A->B)
                let (name, args) = rest.split_once('(').ok_or_else(|| bad(format!("bad layer '{tok}'")))?;
                let args = args.trim_end_matches(')');
                let mut k = 0;
                let mut pad = 0;
                let mut io = (0, 0);
                for a in args.split(',') {
                    if let Some(v) = a.strip_prefix("k=") {
                        k = v.parse().map_err(|_| bad(format!("bad kernel in '{tok}'")))?;
                    } else if let Some(v) = a.strip_prefix("pad=") {
                        pad = v.parse().map_err(|_| bad(format!("bad pad in '{tok}'")))?;
                    } else if let Some((i, o)) = a.split_once("->") {
                        io = (
                            i.parse().map_err(|_| bad(format!("bad channels in '{tok}'")))?,
                            o.parse().map_err(|_| bad(format!("bad channels in '{tok}'")))?,
                        );
                    }
                }
                let (cin, cout) = io;
                let w = ck.f32_shaped(&format!("conv{name}.weight"), &[cout, cin, k, k])?;
                let b = ck.f32_shaped(&format!("conv{name}.bias"), &[cout])?;
                let conv = Conv2d::new(w, Some(b), cin, cout, k, 1, pad);
                Layer::Conv(Box::new(conv))
            } else {
                return Err(bad(format!("unknown layer '{tok}'")));
            });
        }
        let residual = ck.metadata().get("output").is_some_and(|o| o.contains("residual"));
        let takes_sigma = layers.iter().any(|l| matches!(l, Layer::NoiseMap));
        let name = ck.metadata().get("name").cloned().unwrap_or(file);
        Ok(Denoiser { name, layers, residual, takes_sigma })
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the noise level is an input (FFDNet) rather than fixed or blind (DnCNN).
    pub fn takes_sigma(&self) -> bool {
        self.takes_sigma
    }

    /// Denoises `x` (`n x 3 x h x w` in [0, 1]) at noise std `sigma` (in [0, 1] units; used by
    /// FFDNet only).
    pub fn denoise(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        let n = x.n();
        let (mut c, mut h, mut w) = (x.c(), x.h(), x.w());
        if self.layers.iter().any(|l| matches!(l, Layer::Unshuffle)) && (h % 2 != 0 || w % 2 != 0) {
            return Err(Error::shape(format!("{} input", self.name), &x.shape(), "needs even image sizes"));
        }
        let mut d = x.data().to_vec();
        for l in &self.layers {
            match l {
                Layer::Conv(conv) => {
                    if conv.cin != c {
                        return Err(Error::shape(
                            format!("{} activation", self.name),
                            &[n, c, h, w],
                            format!("a layer expects {} channels", conv.cin),
                        ));
                    }
                    let mut o = vec![0.0; n * conv.cout * h * w];
                    conv.forward(&CpuContext::default(), &d, n, h, w, &mut o, None, false);
                    (d, c) = (o, conv.cout);
                }
                Layer::Relu => d.par_iter_mut().for_each(|v| *v = v.max(0.0)),
                Layer::Unshuffle => {
                    let (oh, ow) = (h / 2, w / 2);
                    let mut o = vec![0.0; d.len()];
                    for i in 0..n {
                        for ch in 0..c {
                            for y in 0..h {
                                for xx in 0..w {
                                    let oc = ch * 4 + (y % 2) * 2 + xx % 2;
                                    o[((i * 4 * c + oc) * oh + y / 2) * ow + xx / 2] =
                                        d[((i * c + ch) * h + y) * w + xx];
                                }
                            }
                        }
                    }
                    (d, c, h, w) = (o, 4 * c, oh, ow);
                }
                Layer::Shuffle => {
                    let (oh, ow, oc) = (2 * h, 2 * w, c / 4);
                    let mut o = vec![0.0; d.len()];
                    for i in 0..n {
                        for ch in 0..oc {
                            for y in 0..oh {
                                for xx in 0..ow {
                                    let ic = ch * 4 + (y % 2) * 2 + xx % 2;
                                    o[((i * oc + ch) * oh + y) * ow + xx] = d[((i * c + ic) * h + y / 2) * w + xx / 2];
                                }
                            }
                        }
                    }
                    (d, c, h, w) = (o, oc, oh, ow);
                }
                Layer::NoiseMap => {
                    let hw = h * w;
                    let mut o = Vec::with_capacity(n * (c + 1) * hw);
                    for i in 0..n {
                        o.extend_from_slice(&d[i * c * hw..(i + 1) * c * hw]);
                        o.extend(std::iter::repeat_n(sigma as f32, hw));
                    }
                    (d, c) = (o, c + 1);
                }
            }
        }
        if c != x.c() || h != x.h() || w != x.w() {
            return Err(Error::shape(format!("{} output", self.name), &[n, c, h, w], "must match the input"));
        }
        if self.residual {
            d.iter_mut().zip(x.data()).for_each(|(r, v)| *r = v - *r);
        }
        Tensor::from_vec(x.shape(), d)
    }
}
