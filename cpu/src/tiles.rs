//! Overlapping model-sized tiles over an image of any size: where they lie, how an image is cut
//! into them (mirror-extended where a tile reaches past the image, so images smaller than the
//! model are reflect-padded), and how their outputs are blended back with smooth weights.
//!
//! The blend is linear: `out = sum_k P_k (W_k * f(C_k x))`, with `C_k` the (mirrored) crop of
//! tile `k`, `P_k` its paste (positions outside the image dropped) and `W_k` its window divided
//! by the windows' sum at each pixel. The windows are separable Hann windows (with a small floor
//! so every pixel has weight), so the weights change smoothly across overlaps and no seam shows.
//! The vector-Jacobian product of the blend is `sum_k C_k^T (vjp_k(W_k * crop_k(g)))`:
//! [`TileLayout::crop_weighted`] and [`TileLayout::crop_adjoint`].

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The smallest window weight (the Hann window is 0 at its ends).
const WINDOW_FLOOR: f32 = 1e-3;

/// Where the tiles of an `h x w` image lie, and their blending weights.
#[derive(Clone, Debug)]
pub struct TileLayout {
    h: usize,
    w: usize,
    side: usize,
    tops: Vec<isize>,
    lefts: Vec<isize>,
    /// The 1-D window over a tile's side.
    window: Vec<f32>,
    /// The sum of the windows at each image pixel (a weight is its window over this sum,
    /// computed so that a pixel under one tile gets exactly 1: a one-tile layout is exact).
    sum: Vec<f64>,
}

impl TileLayout {
    /// The overlap tiles get by default: a quarter of their side.
    pub const fn default_overlap(side: usize) -> usize {
        side / 4
    }

    /// The tiles of side `side` that cover an `h x w` image, neighbours overlapping by at least
    /// `overlap` pixels (evenly spread); a side shorter than `side` gets one tile, centred, that
    /// mirrors the image past its edges.
    ///
    /// # Errors
    /// A zero size, or an overlap not below the side.
    pub fn new(h: usize, w: usize, side: usize, overlap: usize) -> Result<TileLayout> {
        if h == 0 || w == 0 || side == 0 {
            return Err(Error::shape("image", &[1, 1, h, w], format!("cannot be tiled with side {side}")));
        }
        if overlap >= side {
            return Err(Error::parameter("tile overlap", overlap, format!("must be below the tile side {side}")));
        }
        let window: Vec<f32> = (0..side)
            .map(|i| {
                let s = (std::f64::consts::PI * (i as f64 + 0.5) / side as f64).sin();
                ((s * s) as f32).max(WINDOW_FLOOR)
            })
            .collect();
        let mut t = TileLayout {
            h,
            w,
            side,
            tops: positions(h, side, overlap),
            lefts: positions(w, side, overlap),
            window,
            sum: Vec::new(),
        };
        let mut sum = vec![0.0f64; h * w];
        for k in 0..t.len() {
            t.for_inside(k, |i, j, p| sum[p] += t.raw(i, j));
        }
        t.sum = sum;
        Ok(t)
    }

    /// The window at tile position `(i, j)`.
    fn raw(&self, i: usize, j: usize) -> f64 {
        self.window[i] as f64 * self.window[j] as f64
    }

    /// The blending weight of tile position `(i, j)` at image pixel `p`.
    fn weight(&self, i: usize, j: usize, p: usize) -> f32 {
        (self.raw(i, j) / self.sum[p]) as f32
    }

    /// The number of tiles.
    pub fn len(&self) -> usize {
        self.tops.len() * self.lefts.len()
    }

    /// Whether there are no tiles (never: every image has at least one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tile side.
    pub fn side(&self) -> usize {
        self.side
    }

    /// Tiles down and across.
    pub fn grid(&self) -> (usize, usize) {
        (self.tops.len(), self.lefts.len())
    }

    /// The top-left corner of tile `k` (negative where it reaches past the image).
    pub fn corner(&self, k: usize) -> (isize, isize) {
        (self.tops[k / self.lefts.len()], self.lefts[k % self.lefts.len()])
    }

    /// Calls `f(i, j, pixel)` for each position `(i, j)` of tile `k` inside the image.
    fn for_inside(&self, k: usize, mut f: impl FnMut(usize, usize, usize)) {
        let (top, left) = self.corner(k);
        for i in 0..self.side {
            let y = top + i as isize;
            if y < 0 || y >= self.h as isize {
                continue;
            }
            for j in 0..self.side {
                let x = left + j as isize;
                if x >= 0 && x < self.w as isize {
                    f(i, j, y as usize * self.w + x as usize);
                }
            }
        }
    }

    /// The image pixel each tile position of tile `k` reads (row-major; mirrored past the
    /// edges).
    fn sources(&self, k: usize) -> Vec<usize> {
        let (top, left) = self.corner(k);
        let s = self.side;
        (0..s * s)
            .map(|p| mirror(top + (p / s) as isize, self.h) * self.w + mirror(left + (p % s) as isize, self.w))
            .collect()
    }

    fn check(&self, what: &str, t: &Tensor, h: usize, w: usize) -> Result<()> {
        if t.h() != h || t.w() != w {
            return Err(Error::shape(what, &t.shape(), format!("expected {h}x{w}")));
        }
        Ok(())
    }

    fn check_pair(&self, image: &Tensor, tile: &Tensor) -> Result<()> {
        self.check("image", image, self.h, self.w)?;
        self.check("tile", tile, self.side, self.side)?;
        if image.n() != tile.n() || image.c() != tile.c() {
            return Err(Error::shape("tile", &tile.shape(), format!("does not match the image {:?}", image.shape())));
        }
        Ok(())
    }

    /// `out = C_k x`: tile `k` of `x`, mirrored past the image's edges.
    ///
    /// # Errors
    /// Shapes that do not match the layout (`out` is `N x C x side x side`).
    pub fn crop(&self, k: usize, x: &Tensor, out: &mut Tensor) -> Result<()> {
        self.check_pair(x, out)?;
        let (s, hw) = (self.side, self.h * self.w);
        let src = self.sources(k);
        for (o, xi) in out.data_mut().chunks_exact_mut(s * s).zip(x.data().chunks_exact(hw)) {
            o.iter_mut().zip(&src).for_each(|(o, &p)| *o = xi[p]);
        }
        Ok(())
    }

    /// `out = W_k * crop_k(g)`: the cotangent of tile `k`'s output for a cotangent `g` of the
    /// blend (0 at positions outside the image).
    ///
    /// # Errors
    /// As [`TileLayout::crop`].
    pub fn crop_weighted(&self, k: usize, g: &Tensor, out: &mut Tensor) -> Result<()> {
        self.check_pair(g, out)?;
        let (s, hw) = (self.side, self.h * self.w);
        for (o, gi) in out.data_mut().chunks_exact_mut(s * s).zip(g.data().chunks_exact(hw)) {
            o.fill(0.0);
            self.for_inside(k, |i, j, p| o[i * s + j] = self.weight(i, j, p) * gi[p]);
        }
        Ok(())
    }

    /// `out += P_k (W_k * tile)`: tile `k`'s output blended into the image.
    ///
    /// # Errors
    /// As [`TileLayout::crop`].
    pub fn paste_weighted(&self, k: usize, tile: &Tensor, out: &mut Tensor) -> Result<()> {
        self.check_pair(out, tile)?;
        let (s, hw) = (self.side, self.h * self.w);
        for (o, ti) in out.data_mut().chunks_exact_mut(hw).zip(tile.data().chunks_exact(s * s)) {
            self.for_inside(k, |i, j, p| o[p] += self.weight(i, j, p) * ti[i * s + j]);
        }
        Ok(())
    }

    /// `out += C_k^T tile`: a tile's input gradient added back to the pixels it was cut from
    /// (mirrored positions add to the pixel they mirror).
    ///
    /// # Errors
    /// As [`TileLayout::crop`].
    pub fn crop_adjoint(&self, k: usize, tile: &Tensor, out: &mut Tensor) -> Result<()> {
        self.check_pair(out, tile)?;
        let (s, hw) = (self.side, self.h * self.w);
        let src = self.sources(k);
        for (o, ti) in out.data_mut().chunks_exact_mut(hw).zip(tile.data().chunks_exact(s * s)) {
            src.iter().zip(ti).for_each(|(&p, &v)| o[p] += v);
        }
        Ok(())
    }
}

/// Tile starts along a side of `len` pixels: one tile when it fits (centred, mirroring past
/// both edges when the side is shorter), else the fewest tiles whose neighbours overlap by at
/// least `overlap`, spread evenly from edge to edge.
fn positions(len: usize, side: usize, overlap: usize) -> Vec<isize> {
    if len <= side {
        return vec![-(((side - len) / 2) as isize)];
    }
    let stride = side - overlap;
    let n = (len - overlap).div_ceil(stride);
    let span = (len - side) as f64;
    (0..n).map(|k| (span * k as f64 / (n - 1) as f64).round() as isize).collect()
}

/// Index `i` of a side of `len` pixels extended by mirroring (`.. 1 0 | 0 1 .. len-1 | len-1 ..`),
/// any number of times.
fn mirror(i: isize, len: usize) -> usize {
    let period = 2 * len as isize;
    let m = i.rem_euclid(period) as usize;
    if m < len {
        m
    } else {
        2 * len - 1 - m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(shape: [usize; 4]) -> Tensor {
        let mut t = Tensor::zeros(shape);
        t.data_mut().iter_mut().enumerate().for_each(|(i, v)| *v = ((i * 37) % 101) as f32 / 50.0 - 1.0);
        t
    }

    #[test]
    fn tiles_cover_with_the_overlap() {
        assert_eq!(positions(64, 64, 16), vec![0]);
        assert_eq!(positions(200, 64, 16), vec![0, 45, 91, 136]);
        assert_eq!(positions(40, 64, 16), vec![-12]);
        for len in 65..300 {
            let p = positions(len, 64, 16);
            assert_eq!(p[0], 0);
            assert_eq!(*p.last().unwrap(), len as isize - 64);
            assert!(p.windows(2).all(|w| w[1] - w[0] <= 48 && w[1] > w[0]), "{len}: {p:?}");
        }
    }

    #[test]
    fn mirror_extends_any_distance() {
        let got: Vec<usize> = (-5..9).map(|i| mirror(i, 3)).collect();
        assert_eq!(got, vec![1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1, 2]);
    }

    #[test]
    fn blending_copies_of_an_image_gives_it_back() {
        for (h, w) in [(64, 64), (136, 200), (20, 90), (7, 7)] {
            let t = TileLayout::new(h, w, 64, 16).unwrap();
            let x = ramp([2, 3, h, w]);
            let mut tile = Tensor::zeros([2, 3, 64, 64]);
            let mut out = Tensor::zeros([2, 3, h, w]);
            for k in 0..t.len() {
                t.crop(k, &x, &mut tile).unwrap();
                t.paste_weighted(k, &tile, &mut out).unwrap();
            }
            let err = out.data().iter().zip(x.data()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(err < 1e-5, "{h}x{w}: {err}");
        }
    }

    #[test]
    fn the_weighted_crop_and_crop_adjoint_are_adjoints() {
        // <P_k W_k a, g> = <a, W_k crop_k g> and <C_k x, b> = <x, C_k^T b>.
        let (h, w) = (30, 90);
        let t = TileLayout::new(h, w, 64, 16).unwrap();
        let (x, g) = (ramp([1, 2, h, w]), ramp([1, 2, h, w]));
        let mut b = ramp([1, 2, 64, 64]);
        b.data_mut().reverse();
        let dot = |a: &Tensor, b: &Tensor| a.data().iter().zip(b.data()).map(|(a, b)| (a * b) as f64).sum::<f64>();
        for k in 0..t.len() {
            let (mut pasted, mut wg) = (Tensor::zeros([1, 2, h, w]), Tensor::zeros([1, 2, 64, 64]));
            t.paste_weighted(k, &b, &mut pasted).unwrap();
            t.crop_weighted(k, &g, &mut wg).unwrap();
            assert!((dot(&pasted, &g) - dot(&b, &wg)).abs() < 1e-3, "tile {k}");
            let (mut cx, mut ctb) = (Tensor::zeros([1, 2, 64, 64]), Tensor::zeros([1, 2, h, w]));
            t.crop(k, &x, &mut cx).unwrap();
            t.crop_adjoint(k, &b, &mut ctb).unwrap();
            assert!((dot(&cx, &b) - dot(&x, &ctb)).abs() < 1e-3, "tile {k}");
        }
    }

    #[test]
    fn bad_layouts_and_shapes_are_refused() {
        assert!(TileLayout::new(0, 5, 64, 16).is_err());
        assert!(TileLayout::new(5, 5, 64, 64).is_err());
        let t = TileLayout::new(100, 100, 64, 16).unwrap();
        let mut tile = Tensor::zeros([1, 3, 64, 64]);
        assert!(t.crop(0, &Tensor::zeros([1, 3, 99, 100]), &mut tile).is_err());
        assert!(t.crop(0, &Tensor::zeros([1, 4, 100, 100]), &mut tile).is_err());
    }
}
