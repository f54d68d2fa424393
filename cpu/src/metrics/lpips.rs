//! LPIPS v0.1 (Zhang et al. 2018) with the AlexNet or VGG16 backbone: scale the [-1, 1] input,
//! take five ReLU feature maps, unit-normalise each over channels, weight the squared difference
//! by the learned 1x1 "lin" layer, average over space and sum over layers.

use crate::context::CpuContext;
use crate::error::{Error, Result};
use crate::nn::Conv2d;
use crate::tensor::Tensor;
use diffinv_model::checkpoint::Checkpoint;
use rayon::prelude::*;
use std::path::Path;

/// The backbone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LpipsNet {
    /// AlexNet (the default of the LPIPS package).
    Alex,
    /// VGG16.
    Vgg,
}

impl LpipsNet {
    /// `alex` or `vgg`.
    pub fn name(self) -> &'static str {
        match self {
            LpipsNet::Alex => "alex",
            LpipsNet::Vgg => "vgg",
        }
    }
    /// The shipped weights' file name (`lpips_alex_v0.1.safetensors`).
    pub fn file_name(self) -> String {
        format!("lpips_{}_v0.1.safetensors", self.name())
    }
}

/// A backbone convolution: (torchvision index, cin, cout, kernel, stride, pad).
type ConvSpec = (usize, usize, usize, usize, usize, usize);

enum Layer {
    Conv(Box<Conv2d>),
    Relu { tap: bool },
    MaxPool { k: usize, s: usize },
}

/// An LPIPS model.
pub struct Lpips {
    net: LpipsNet,
    layers: Vec<Layer>,
    lins: Vec<Vec<f32>>,
}

const SHIFT: [f32; 3] = [-0.030, -0.088, -0.188];
const SCALE: [f32; 3] = [0.458, 0.448, 0.450];

impl Lpips {
    /// Loads `net` from a safetensors file with torchvision `features.N.*` and `linK.model.1.weight`.
    ///
    /// # Errors
    /// The file cannot be read or lacks a tensor of the backbone.
    pub fn from_file(net: LpipsNet, path: &Path) -> Result<Self> {
        Self::from_checkpoint(net, &Checkpoint::open(path)?)
    }

    /// Builds `net` from a parsed weights file (see [`Lpips::from_file`]).
    ///
    /// # Errors
    /// A tensor of the backbone is missing or misshapen.
    pub fn from_checkpoint(net: LpipsNet, ck: &Checkpoint) -> Result<Self> {
        // (conv index, cin, cout, k, stride, pad) and the layer plan after each conv.
        let (convs, plan): (Vec<ConvSpec>, &[&str]) = match net {
            LpipsNet::Alex => (
                vec![
                    (0, 3, 64, 11, 4, 2),
                    (3, 64, 192, 5, 1, 2),
                    (6, 192, 384, 3, 1, 1),
                    (8, 384, 256, 3, 1, 1),
                    (10, 256, 256, 3, 1, 1),
                ],
                &["c", "R", "p3", "c", "R", "p3", "c", "R", "c", "R", "c", "R"],
            ),
            LpipsNet::Vgg => {
                let chans = [
                    (3, 64),
                    (64, 64),
                    (64, 128),
                    (128, 128),
                    (128, 256),
                    (256, 256),
                    (256, 256),
                    (256, 512),
                    (512, 512),
                    (512, 512),
                    (512, 512),
                    (512, 512),
                    (512, 512),
                ];
                let idx = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28];
                (
                    idx.iter().zip(chans).map(|(&i, (a, b))| (i, a, b, 3, 1, 1)).collect(),
                    &[
                        "c", "r", "c", "R", "p2", "c", "r", "c", "R", "p2", "c", "r", "c", "r", "c", "R", "p2", "c",
                        "r", "c", "r", "c", "R", "p2", "c", "r", "c", "r", "c", "R",
                    ],
                )
            }
        };
        let mut it = convs.into_iter();
        let mut layers = Vec::new();
        for step in plan {
            layers.push(match *step {
                "c" => {
                    let (i, cin, cout, k, s, p) = it.next().expect("one conv per 'c'");
                    let w = ck.f32_shaped(&format!("features.{i}.weight"), &[cout, cin, k, k])?;
                    let b = ck.f32_shaped(&format!("features.{i}.bias"), &[cout])?;
                    Layer::Conv(Box::new(Conv2d::new(w, Some(b), cin, cout, k, s, p)))
                }
                "r" => Layer::Relu { tap: false },
                "R" => Layer::Relu { tap: true },
                "p3" => Layer::MaxPool { k: 3, s: 2 },
                _ => Layer::MaxPool { k: 2, s: 2 },
            });
        }
        let widths: Vec<usize> = match net {
            LpipsNet::Alex => vec![64, 192, 384, 256, 256],
            LpipsNet::Vgg => vec![64, 128, 256, 512, 512],
        };
        let lins = widths
            .iter()
            .enumerate()
            .map(|(k, &c)| ck.f32_shaped(&format!("lin{k}.model.1.weight"), &[1, c, 1, 1]))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Lpips { net, layers, lins })
    }

    /// The backbone.
    pub fn net(&self) -> LpipsNet {
        self.net
    }

    /// Whether a side of `n` pixels keeps every feature map non-empty through the backbone.
    fn side_fits(&self, mut n: usize) -> bool {
        for l in &self.layers {
            match l {
                Layer::Conv(c) => {
                    if n + 2 * c.pad < c.k {
                        return false;
                    }
                    n = (n + 2 * c.pad - c.k) / c.stride + 1;
                }
                Layer::MaxPool { k, s } => {
                    if n < *k {
                        return false;
                    }
                    n = (n - k) / s + 1;
                }
                Layer::Relu { .. } => {}
            }
        }
        n > 0
    }

    /// The smallest image side the backbone takes (AlexNet: 31 px, VGG: 16 px).
    pub fn min_side(&self) -> usize {
        (1..4096).find(|&n| self.side_fits(n)).unwrap_or(4096)
    }

    /// Runs the backbone on a batch, handing each of the five tapped feature maps to `tap` as
    /// `(index, data, c, h, w)` while it is current: nothing is kept, so the peak memory is
    /// one layer's input and output.
    fn features(&self, x: &Tensor, mut tap: impl FnMut(usize, &[f32], usize, usize, usize)) {
        let n = x.n();
        let (mut c, mut h, mut w) = (x.c(), x.h(), x.w());
        let mut d = x.data().to_vec();
        for (i, v) in d.iter_mut().enumerate() {
            let ch = (i / (h * w)) % c;
            *v = (*v - SHIFT[ch]) / SCALE[ch];
        }
        let mut taps = 0;
        for l in &self.layers {
            match l {
                Layer::Conv(conv) => {
                    let (oh, ow) = conv.out_hw(h, w);
                    let mut o = vec![0.0; n * conv.cout * oh * ow];
                    conv.forward(&CpuContext::default(), &d, n, h, w, &mut o, None, false);
                    (d, c, h, w) = (o, conv.cout, oh, ow);
                }
                Layer::Relu { tap: is_tap } => {
                    d.par_iter_mut().for_each(|v| *v = v.max(0.0));
                    if *is_tap {
                        tap(taps, &d, c, h, w);
                        taps += 1;
                    }
                }
                Layer::MaxPool { k, s } => {
                    let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
                    let mut o = vec![0.0; n * c * oh * ow];
                    o.par_chunks_mut(oh * ow).zip(d.par_chunks(h * w)).for_each(|(op, ip)| {
                        for i in 0..oh {
                            for j in 0..ow {
                                let mut m = f32::NEG_INFINITY;
                                for a in 0..*k {
                                    for b in 0..*k {
                                        m = m.max(ip[(i * s + a) * w + j * s + b]);
                                    }
                                }
                                op[i * ow + j] = m;
                            }
                        }
                    });
                    (d, h, w) = (o, oh, ow);
                }
            }
        }
    }

    /// The distance of every image of `b` to the same image of `a` (and the five layer terms).
    pub fn distance_layers(&self, a: &Tensor, b: &Tensor) -> Result<Vec<(f64, [f64; 5])>> {
        if a.shape() != b.shape() {
            return Err(Error::mismatch("LPIPS input", &a.shape(), &b.shape()));
        }
        if !self.side_fits(a.h()) || !self.side_fits(a.w()) {
            let m = self.min_side();
            return Err(Error::shape("LPIPS input", &a.shape(), format!("needs images of at least {m}x{m} pixels")));
        }
        let n = a.n();
        let both = Tensor::stack(&[a, b])?;
        let mut out = vec![(0.0, [0.0; 5]); n];
        self.features(&both, |layer, d, c, h, w| {
            let (hw, lin) = (h * w, &self.lins[layer]);
            for (i, o) in out.iter_mut().enumerate() {
                let (fa, fb) = (&d[i * c * hw..(i + 1) * c * hw], &d[(n + i) * c * hw..(n + i + 1) * c * hw]);
                let mut s = 0.0f64;
                for p in 0..hw {
                    let (mut na, mut nb) = (0.0f64, 0.0f64);
                    for ch in 0..c {
                        na += (fa[ch * hw + p] as f64).powi(2);
                        nb += (fb[ch * hw + p] as f64).powi(2);
                    }
                    let (na, nb) = (na.sqrt() + 1e-10, nb.sqrt() + 1e-10);
                    for ch in 0..c {
                        let dv = fa[ch * hw + p] as f64 / na - fb[ch * hw + p] as f64 / nb;
                        s += lin[ch] as f64 * dv * dv;
                    }
                }
                let v = s / hw as f64;
                o.1[layer] = v;
                o.0 += v;
            }
        });
        Ok(out)
    }

    /// The distance of every image of `b` to the same image of `a`.
    pub fn distance(&self, a: &Tensor, b: &Tensor) -> Result<Vec<f64>> {
        Ok(self.distance_layers(a, b)?.into_iter().map(|(d, _)| d).collect())
    }
}
