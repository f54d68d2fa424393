//! Images in and out: PNG/JPEG decoding with size limits (checked before any pixel is
//! decoded), the `x = u8/127.5 - 1` mapping of the diffusion models, centre-crop resizing,
//! atomic PNG writes and labelled image grids.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use diffinv_model::io::write_atomic;
use image::{DynamicImage, ImageReader, Limits, RgbImage};
use std::path::Path;

/// The largest image side decoded: 4096 px (an RGB tensor of 4096x4096 is 192 MiB; the
/// decoder's own buffer at most 128 MiB more).
pub const MAX_SIDE: u32 = 4096;
/// The most bytes the decoder may allocate.
pub const MAX_BYTES: u64 = 256 << 20;

/// Width and height of an image file, read from its header without decoding pixels.
///
/// # Errors
/// The file cannot be read, or is not a PNG or JPEG with a readable header.
pub fn dimensions(path: &Path) -> Result<(usize, usize)> {
    let reader = ImageReader::open(path).map_err(|e| Error::io(path, e))?;
    header_dimensions(reader, &path.display().to_string())
}

fn header_dimensions<R: std::io::BufRead + std::io::Seek>(
    reader: ImageReader<R>,
    shown: &str,
) -> Result<(usize, usize)> {
    let reader = reader.with_guessed_format().map_err(|e| Error::image(shown, e.to_string()))?;
    if reader.format().is_none() {
        return Err(Error::image(shown, "not an image (expected PNG or JPEG)"));
    }
    let (w, h) = reader.into_dimensions().map_err(|e| Error::image(shown, format!("not a readable image ({e})")))?;
    Ok((w as usize, h as usize))
}

/// Decodes an image file, refusing sizes over the limits before decoding pixels.
///
/// # Errors
/// The file cannot be read, is not a PNG or JPEG, is larger than [`MAX_SIDE`], or is corrupt.
pub fn decode(path: &Path) -> Result<DynamicImage> {
    let reader = ImageReader::open(path).map_err(|e| Error::io(path, e))?;
    decode_reader(reader, &path.display().to_string())
}

/// Decodes an image held in memory (`name` is used in errors), with the same limits.
///
/// # Errors
/// As [`decode`].
pub fn decode_bytes(bytes: &[u8], name: &str) -> Result<DynamicImage> {
    decode_reader(ImageReader::new(std::io::Cursor::new(bytes)), name)
}

fn decode_reader<R: std::io::BufRead + std::io::Seek>(reader: ImageReader<R>, shown: &str) -> Result<DynamicImage> {
    let mut reader = reader.with_guessed_format().map_err(|e| Error::image(shown, e.to_string()))?;
    if reader.format().is_none() {
        return Err(Error::image(shown, "not an image (expected PNG or JPEG)"));
    }
    // The side is checked below, from the header, so the message can say the size.
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_BYTES);
    reader.limits(limits);
    let failed = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => Error::image(
            shown,
            format!("image larger than {MAX_SIDE}x{MAX_SIDE} pixels or {} MiB decoded", MAX_BYTES >> 20),
        ),
        image::ImageError::Unsupported(u) => Error::image(shown, format!("unsupported image: {u}")),
        e => Error::image(shown, format!("not a readable image ({e})")),
    };
    // The header first: the size is refused, with itself in the message, before any pixel.
    let decoder = reader.into_decoder().map_err(failed)?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(Error::image(shown, format!("image is {w}x{h}, larger than the {MAX_SIDE}x{MAX_SIDE} limit")));
    }
    DynamicImage::from_decoder(decoder).map_err(failed)
}

/// The image as a `1 x 3 x H x W` tensor in [-1, 1]: `2 (v/max) - 1` in f64 for every 8- or
/// 16-bit channel value (grayscale replicated, alpha dropped), without a wider copy of the image.
fn to_tensor(img: &DynamicImage) -> Tensor {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut t = Tensor::zeros([1, 3, h, w]);
    let d = t.data_mut();
    let mut put = |p: usize, c: usize, v: f64| d[c * h * w + p] = (v * 2.0 - 1.0) as f32;
    match img {
        DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_)
        | DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba16(_) => {
            for (p, px) in img.to_rgb16().pixels().enumerate() {
                (0..3).for_each(|c| put(p, c, px.0[c] as f64 / 65535.0));
            }
        }
        _ => {
            for (p, px) in img.to_rgb8().pixels().enumerate() {
                (0..3).for_each(|c| put(p, c, px.0[c] as f64 / 255.0));
            }
        }
    }
    t
}

/// Centre-crops to a square and resizes to `size x size` (Lanczos3).
pub fn crop_resize(img: &DynamicImage, size: u32) -> DynamicImage {
    let (w, h) = (img.width(), img.height());
    let s = w.min(h);
    let cropped = img.crop_imm((w - s) / 2, (h - s) / 2, s, s);
    if s == size {
        cropped
    } else {
        cropped.resize_exact(size, size, image::imageops::FilterType::Lanczos3)
    }
}

/// How [`load_image`] treats the image size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Any size.
    Any,
    /// Exactly `size x size`, else an error that hints at `--resize`.
    Exact(usize),
    /// Centre-crop and resize to `size x size`.
    Resize(usize),
    /// Centre-crop to `size x size` (an image smaller than that on a side is an error).
    Crop(usize),
    /// Any size up to `side x side`.
    Max(usize),
}

/// An image file as a `1 x 3 x H x W` tensor in [-1, 1] (`x = u8/127.5 - 1`); the size is read
/// from the header and checked before any pixel is decoded.
///
/// # Errors
/// As [`decode`], and an image of another size than [`Fit::Exact`] asks for.
pub fn load_image(path: &Path, fit: Fit) -> Result<Tensor> {
    let (w, h) = dimensions(path)?;
    let shown = path.display().to_string();
    check_fit(w, h, fit, &shown)?;
    Ok(fitted(decode(path)?, w, h, fit))
}

/// An image held in memory (an upload; `name` is used in errors) as [`load_image`] reads a file:
/// the same header check before decoding, the same limits and the same tensor.
///
/// # Errors
/// As [`load_image`].
pub fn load_image_bytes(bytes: &[u8], name: &str, fit: Fit) -> Result<Tensor> {
    let (w, h) = header_dimensions(ImageReader::new(std::io::Cursor::new(bytes)), name)?;
    check_fit(w, h, fit, name)?;
    Ok(fitted(decode_bytes(bytes, name)?, w, h, fit))
}

fn check_fit(w: usize, h: usize, fit: Fit, shown: &str) -> Result<()> {
    match fit {
        Fit::Exact(s) if w != s || h != s => {
            return Err(Error::image(
                shown,
                format!("image is {w}x{h}, the model takes {s}x{s} (centre-crop and resize it, Fit::Resize)"),
            ))
        }
        Fit::Crop(s) if w < s || h < s => {
            return Err(Error::image(
                shown,
                format!("image is {w}x{h}, smaller than the {s}x{s} crop (resize or tile it instead)"),
            ))
        }
        Fit::Max(m) if w > m || h > m => {
            return Err(Error::image(shown, format!("image is {w}x{h}, larger than the {m}x{m} this takes")))
        }
        _ => {}
    }
    Ok(())
}

fn fitted(mut img: DynamicImage, w: usize, h: usize, fit: Fit) -> Tensor {
    match fit {
        Fit::Resize(s) => img = crop_resize(&img, s as u32),
        Fit::Crop(s) => img = img.crop_imm((w - s) as u32 / 2, (h - s) as u32 / 2, s as u32, s as u32),
        _ => {}
    }
    // u8/127.5 - 1 == 2 (u8/255) - 1, computed in f64 as the reference does.
    to_tensor(&img)
}

/// A grayscale image in [0, 1] (masks, kernels): `(h, w, values)`.
pub fn load_gray(path: &Path) -> Result<(usize, usize, Vec<f32>)> {
    Ok(gray(&decode(path)?))
}

/// A grayscale image held in memory, as [`load_gray`] reads a file.
///
/// # Errors
/// As [`decode_bytes`].
pub fn load_gray_bytes(bytes: &[u8], name: &str) -> Result<(usize, usize, Vec<f32>)> {
    Ok(gray(&decode_bytes(bytes, name)?))
}

fn gray(img: &DynamicImage) -> (usize, usize, Vec<f32>) {
    let g = img.to_luma32f();
    (g.height() as usize, g.width() as usize, g.into_raw())
}

/// Image `i` of a [-1, 1] tensor as 8-bit RGB (rounded, clipped).
pub fn to_rgb8(t: &Tensor, i: usize) -> RgbImage {
    let (h, w) = (t.h(), t.w());
    let x = t.image(i);
    let c = t.c();
    let mut out = RgbImage::new(w as u32, h as u32);
    for y in 0..h {
        for xx in 0..w {
            let px = |ch: usize| {
                let v = x[(ch.min(c - 1) * h + y) * w + xx];
                ((v as f64 + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8
            };
            out.put_pixel(xx as u32, y as u32, image::Rgb([px(0), px(1), px(2)]));
        }
    }
    out
}

fn write_rgb(path: &Path, img: &RgbImage) -> Result<()> {
    let fmt = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("jpg") | Some("jpeg") => image::ImageFormat::Jpeg,
        _ => image::ImageFormat::Png,
    };
    write_atomic(path, |w| w.write_all(&encode(img, fmt)?)).map_err(Error::from)
}

fn encode(img: &RgbImage, fmt: image::ImageFormat) -> std::io::Result<Vec<u8>> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, fmt).map_err(std::io::Error::other)?;
    Ok(buf.into_inner())
}

/// Image `i` of a [-1, 1] tensor as PNG bytes: the bytes [`save_image`] writes to a `.png`.
///
/// # Errors
/// The encoder fails (it does not for an in-memory RGB image).
pub fn png_bytes(t: &Tensor, i: usize) -> Result<Vec<u8>> {
    encode(&to_rgb8(t, i), image::ImageFormat::Png).map_err(|e| Error::image("PNG", e.to_string()))
}

/// Writes image `i` of a [-1, 1] tensor (PNG, or JPEG by extension), atomically.
pub fn save_image(path: &Path, t: &Tensor, i: usize) -> Result<()> {
    write_rgb(path, &to_rgb8(t, i))
}

/// A grid of equally sized images (`cols` per row), with an optional label above each column.
pub fn save_grid(path: &Path, tiles: &[RgbImage], cols: usize, labels: &[String]) -> Result<()> {
    let first = tiles.first().ok_or_else(|| Error::shape("grid", &[0], "needs at least one tile"))?;
    let (tw, th) = (first.width(), first.height());
    let cols = cols.max(1) as u32;
    let rows = (tiles.len() as u32).div_ceil(cols);
    let label_h = if labels.is_empty() { 0 } else { 12 };
    let gap = 2;
    let mut out =
        RgbImage::from_pixel(cols * (tw + gap) + gap, label_h + rows * (th + gap) + gap, image::Rgb([255, 255, 255]));
    for (k, t) in tiles.iter().enumerate() {
        let (c, r) = (k as u32 % cols, k as u32 / cols);
        image::imageops::replace(&mut out, t, (gap + c * (tw + gap)) as i64, (label_h + gap + r * (th + gap)) as i64);
    }
    for (c, l) in labels.iter().enumerate().take(cols as usize) {
        draw_text(&mut out, l, gap + c as u32 * (tw + gap), 2, tw);
    }
    write_rgb(path, &out)
}

/// A 3x5 pixel font for labels (upper case, digits, a few symbols).
fn glyph(c: char) -> [u8; 5] {
    match c.to_ascii_uppercase() {
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [3, 4, 4, 4, 3],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'F' => [7, 4, 6, 4, 4],
        'G' => [3, 4, 5, 5, 3],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'J' => [1, 1, 1, 5, 2],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [2, 5, 5, 5, 2],
        'P' => [6, 5, 6, 4, 4],
        'Q' => [2, 5, 5, 6, 3],
        'R' => [6, 5, 6, 5, 5],
        'S' => [3, 4, 2, 1, 6],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'X' => [5, 5, 2, 5, 5],
        'Y' => [5, 5, 2, 2, 2],
        'Z' => [7, 1, 2, 4, 7],
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [6, 1, 2, 4, 7],
        '3' => [6, 1, 2, 1, 6],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 6, 1, 6],
        '6' => [3, 4, 6, 5, 2],
        '7' => [7, 1, 1, 2, 2],
        '8' => [7, 5, 7, 5, 7],
        '9' => [2, 5, 3, 1, 6],
        '-' => [0, 0, 7, 0, 0],
        '.' => [0, 0, 0, 0, 2],
        '=' => [0, 7, 0, 7, 0],
        '/' => [1, 1, 2, 4, 4],
        '_' => [0, 0, 0, 0, 7],
        '(' => [1, 2, 2, 2, 1],
        ')' => [4, 2, 2, 2, 4],
        _ => [0, 0, 0, 0, 0],
    }
}

/// Draws `text` at (x, y), truncated to `max_w` pixels.
pub fn draw_text(img: &mut RgbImage, text: &str, x: u32, y: u32, max_w: u32) {
    draw_text_in(img, text, x, y, max_w, [0, 0, 0]);
}

/// [`draw_text`] in a colour.
pub fn draw_text_in(img: &mut RgbImage, text: &str, x: u32, y: u32, max_w: u32, rgb: [u8; 3]) {
    for (k, ch) in text.chars().enumerate() {
        let x0 = x + 4 * k as u32;
        if x0 + 3 > x + max_w {
            break;
        }
        for (r, bits) in glyph(ch).iter().enumerate() {
            for b in 0..3 {
                if bits & (4 >> b) != 0 {
                    let (px, py) = (x0 + b, y + r as u32 + 1);
                    if px < img.width() && py < img.height() {
                        img.put_pixel(px, py, image::Rgb(rgb));
                    }
                }
            }
        }
    }
}

/// One line of a [`save_line_plot`]: a label and a value per x position (`NaN`: none).
pub struct Series {
    /// The legend's text.
    pub label: String,
    /// The values, one per x tick.
    pub values: Vec<f64>,
}

const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [188, 189, 34],
    [23, 190, 207],
    [127, 127, 127],
];

/// A line plot as a PNG: `series` over evenly spaced x ticks labelled `ticks`, y gridlines at
/// round steps, a title, and a legend in the series' colours (the first series, drawn dashed in
/// black, is the reference, e.g. the measurement).
///
/// # Errors
/// No series or ticks, or writing the file.
pub fn save_line_plot(path: &Path, title: &str, ticks: &[String], series: &[Series]) -> Result<()> {
    if ticks.is_empty() || series.is_empty() {
        return Err(Error::shape("plot", &[series.len(), ticks.len()], "needs a series and an x tick"));
    }
    let (w, h, left, right, top, bottom) = (520u32, 300u32, 34u32, 150u32, 20u32, 26u32);
    let mut img = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let finite = series.iter().flat_map(|s| s.values.iter().copied()).filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo.is_finite() { (lo, hi.max(lo + 1.0)) } else { (0.0, 1.0) };
    let step = [1.0, 2.0, 5.0, 10.0, 20.0].into_iter().find(|s| (hi - lo) / s <= 8.0).unwrap_or(50.0);
    let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    let (pw, ph) = ((w - left - right) as f64, (h - top - bottom) as f64);
    let px = |k: usize| left as f64 + if ticks.len() > 1 { pw * k as f64 / (ticks.len() - 1) as f64 } else { pw / 2.0 };
    let py = |v: f64| top as f64 + ph * (hi - v) / (hi - lo);
    let grey = [225, 225, 225];
    let mut v = lo;
    while v <= hi + 1e-9 {
        line(&mut img, (left as f64, py(v)), ((w - right) as f64, py(v)), grey, false);
        draw_text(&mut img, &format!("{v}"), 2, (py(v) as u32).saturating_sub(3), left - 4);
        v += step;
    }
    for (k, t) in ticks.iter().enumerate() {
        line(&mut img, (px(k), top as f64), (px(k), (h - bottom) as f64), grey, false);
        let x = (px(k) as u32).saturating_sub(2 * t.len() as u32);
        draw_text(&mut img, t, x, h - bottom + 4, 4 * t.len() as u32 + 4);
    }
    draw_text(&mut img, title, left, 4, w - left);
    for (i, s) in series.iter().enumerate() {
        let rgb = if i == 0 { [0, 0, 0] } else { PALETTE[(i - 1) % PALETTE.len()] };
        let pts: Vec<(f64, f64)> =
            s.values.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(k, &v)| (px(k), py(v))).collect();
        for p in pts.windows(2) {
            line(&mut img, p[0], p[1], rgb, i == 0);
        }
        for &(x, y) in &pts {
            for dy in -1..=1 {
                for dx in -1..=1 {
                    put(&mut img, x as i64 + dx, y as i64 + dy, rgb);
                }
            }
        }
        let ly = top + 4 + 10 * i as u32;
        line(
            &mut img,
            ((w - right + 8) as f64, ly as f64 + 3.0),
            ((w - right + 20) as f64, ly as f64 + 3.0),
            rgb,
            i == 0,
        );
        draw_text_in(&mut img, &s.label, w - right + 24, ly, right - 26, rgb);
    }
    write_rgb(path, &img)
}

fn put(img: &mut RgbImage, x: i64, y: i64, rgb: [u8; 3]) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, image::Rgb(rgb));
    }
}

/// A line from `a` to `b`, two pixels thick unless it is a grid line (grey), dashed if asked.
fn line(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), rgb: [u8; 3], dashed: bool) {
    let n = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().max(1.0) as usize;
    let thick = rgb != [225, 225, 225];
    for k in 0..=n {
        if dashed && (k / 4) % 2 == 1 {
            continue;
        }
        let t = k as f64 / n as f64;
        let (x, y) = ((a.0 + t * (b.0 - a.0)).round() as i64, (a.1 + t * (b.1 - a.1)).round() as i64);
        put(img, x, y, rgb);
        if thick {
            put(img, x, y + 1, rgb);
        }
    }
}
