//! The input gradient (vector-Jacobian product) of the UNet: `d(sum(out * cotangent))/dx`,
//! walking the tape backwards. The time-embedding path carries no gradient with respect to `x`.

use super::forward::{concat, resampled, scale_shift, Act, Entry, Tape, Workspace};
use super::model::{Layer, ResBlock, Resample, UNet};
use crate::error::{Error, Result};
use crate::nn::resample::{avgpool2_adjoint, upsample2_adjoint};
use crate::nn::{NormMod, Precision};
use crate::tensor::Tensor;

/// A gradient buffer with its activation's dimensions.
struct Grad {
    d: Vec<f32>,
}

impl UNet {
    /// `grad_x = d(sum(out * cotangent))/dx` at the inputs of the taped forward pass.
    pub fn vjp(&self, tape: Tape, cotangent: &Tensor, ws: &mut Workspace) -> Result<Tensor> {
        super::forward::on_worker(move || self.vjp_here(tape, cotangent, ws))
    }

    fn vjp_here(&self, mut tape: Tape, cotangent: &Tensor, ws: &mut Workspace) -> Result<Tensor> {
        if cotangent.shape() != tape.out_shape {
            return Err(Error::Shape(format!(
                "cotangent has shape {:?}, the model output {:?}",
                cotangent.shape(),
                tape.out_shape
            )));
        }
        let n = tape.n;
        let prec = self.precision;
        let e = &mut tape.entries;
        // out = conv(silu(GN(h)))
        let Some(Entry::Out { x }) = e.pop() else { unreachable!("tape ends with Out") };
        let (c, h, w) = (x.c, x.h, x.w);
        let mut t = ws.take(n * c * h * w);
        self.out_conv.backward_input_p(cotangent.data(), n, h, w, &mut t, false, prec);
        let mut g = Grad { d: ws.take(n * c * h * w) };
        self.out_norm.backward(&x.d, n, h * w, None, true, &t, &mut g.d, false);
        ws.give(t);
        ws.give_act(x);
        let mut skip_grads: Vec<Option<Grad>> = (0..self.input_blocks.len()).map(|_| None).collect();
        for (j, blk) in self.output_blocks.iter().enumerate().rev() {
            for (k, l) in blk.iter().enumerate().rev() {
                if k == 0 {
                    let Some(Entry::Res { dims, h2, emb_out, .. }) = e.pop() else { unreachable!("decoder ResBlock") };
                    let Some(Entry::Cat { h: hh, skip }) = e.pop() else { unreachable!("Cat entry") };
                    let cat = std::sync::Arc::new(concat(&hh, &skip, n, ws));
                    let Layer::Res(rb) = l else { unreachable!("decoder blocks start with a ResBlock") };
                    let gc = res_backward(rb, &cat, dims, &h2, &emb_out, n, &g, ws, prec);
                    ws.give(h2);
                    ws.give_act(cat);
                    ws.give(std::mem::take(&mut g.d));
                    // Split the concatenated gradient into h's and the skip's.
                    let (lh, ls) = (hh.c * hh.h * hh.w, skip.c * skip.h * skip.w);
                    let mut gh = ws.take(n * lh);
                    let mut gs = ws.take(n * ls);
                    for i in 0..n {
                        let src = &gc[i * (lh + ls)..(i + 1) * (lh + ls)];
                        gh[i * lh..(i + 1) * lh].copy_from_slice(&src[..lh]);
                        gs[i * ls..(i + 1) * ls].copy_from_slice(&src[lh..]);
                    }
                    ws.give(gc);
                    let idx = self.input_blocks.len() - 1 - j;
                    skip_grads[idx] = Some(Grad { d: gs });
                    g = Grad { d: gh };
                    ws.give_act(hh);
                    ws.give_act(skip);
                } else {
                    g = self.layer_backward(l, e.pop().expect("tape entry"), g, n, ws);
                }
            }
        }
        for l in self.middle.iter().rev() {
            g = self.layer_backward(l, e.pop().expect("tape entry"), g, n, ws);
        }
        for (i, blk) in self.input_blocks.iter().enumerate().rev() {
            if let Some(sg) = skip_grads[i].take() {
                g.d.iter_mut().zip(&sg.d).for_each(|(a, b)| *a += b);
                ws.give(sg.d);
            }
            for l in blk.iter().rev() {
                g = self.layer_backward(l, e.pop().expect("tape entry"), g, n, ws);
            }
        }
        let s = tape.in_shape;
        let mut out = g.d;
        out.truncate(s.iter().product());
        Tensor::from_vec(s, out)
    }

    fn layer_backward(&self, l: &Layer, entry: Entry, g: Grad, n: usize, ws: &mut Workspace) -> Grad {
        let prec = self.precision;
        let out = match (l, entry) {
            (Layer::Conv(conv), Entry::Conv { dims: (c, h, w) }) => {
                let mut gx = ws.take(n * c * h * w);
                conv.backward_input_p(&g.d, n, h, w, &mut gx, false, prec);
                Grad { d: gx }
            }
            (Layer::Res(rb), Entry::Res { x: Some(x), dims, h2, emb_out }) => {
                let gx = res_backward(rb, &x, dims, &h2, &emb_out, n, &g, ws, prec);
                ws.give(h2);
                ws.give_act(x);
                Grad { d: gx }
            }
            (Layer::Attn(ab), Entry::Attn { x, qkv }) => {
                let mut gx = ws.take(g.d.len());
                let mut scratch = std::mem::take(&mut ws.scratch);
                ab.backward(&x.d, &qkv, n, x.h * x.w, &g.d, &mut gx, false, &mut scratch);
                ws.scratch = scratch;
                ws.give(qkv);
                let gr = Grad { d: gx };
                ws.give_act(x);
                gr
            }
            (Layer::Down(conv), Entry::Down { dims: (c, h, w) }) => {
                let mut gx = ws.take(n * c * h * w);
                match conv {
                    Some(k) => k.backward_input_p(&g.d, n, h, w, &mut gx, false, prec),
                    None => avgpool2_adjoint(&g.d, n * c, h, w, &mut gx, false),
                }
                Grad { d: gx }
            }
            (Layer::Up(conv), Entry::Up { dims: (c, h, w) }) => {
                let (oh, ow) = (2 * h, 2 * w);
                let mut gu = ws.take(n * c * oh * ow);
                match conv {
                    Some(k) => k.backward_input_p(&g.d, n, oh, ow, &mut gu, false, prec),
                    None => gu.copy_from_slice(&g.d),
                }
                let mut gx = ws.take(n * c * h * w);
                upsample2_adjoint(&gu, n * c, h, w, &mut gx, false);
                ws.give(gu);
                Grad { d: gx }
            }
            _ => unreachable!("tape entries follow the layers"),
        };
        ws.give(g.d);
        out
    }
}

/// A ResBlock's input gradient (see `res_forward`).
#[allow(clippy::too_many_arguments)]
fn res_backward(
    rb: &ResBlock,
    x: &Act,
    dims: (usize, usize, usize),
    h2: &[f32],
    eo: &[f32],
    n: usize,
    gy: &Grad,
    ws: &mut Workspace,
    prec: Precision,
) -> Vec<f32> {
    let (c, h, w) = dims;
    let (oh, ow) = resampled(rb.resample, h, w);
    let (hw, ohw, co) = (h * w, oh * ow, rb.cout);
    let mut g3 = ws.take(n * co * ohw);
    rb.out_conv.backward_input_p(&gy.d, n, oh, ow, &mut g3, false, prec);
    let mut g2 = ws.take(n * co * ohw);
    if rb.scale_shift {
        let (scale, shift) = scale_shift(eo, n, co);
        rb.out_norm.backward(h2, n, ohw, Some(NormMod { scale: &scale, shift: &shift }), true, &g3, &mut g2, false);
    } else {
        rb.out_norm.backward(h2, n, ohw, None, true, &g3, &mut g2, false);
    }
    ws.give(g3);
    let mut g1 = ws.take(n * c * ohw);
    rb.in_conv.backward_input_p(&g2, n, oh, ow, &mut g1, false, prec);
    ws.give(g2);
    if rb.resample != Resample::None {
        let mut t = ws.take(n * c * hw);
        resample_adjoint(rb.resample, &g1, n * c, h, w, &mut t, false);
        ws.give(std::mem::replace(&mut g1, t));
    }
    let mut gx = ws.take(n * c * hw);
    rb.in_norm.backward(&x.d, n, hw, None, true, &g1, &mut gx, false);
    ws.give(g1);
    // Skip path.
    let gs_owned = rb.skip.as_ref().map(|k| {
        let mut t = ws.take(n * c * ohw);
        k.backward_input_p(&gy.d, n, oh, ow, &mut t, false, prec);
        t
    });
    let gs: &[f32] = gs_owned.as_deref().unwrap_or(&gy.d);
    if rb.resample != Resample::None {
        resample_adjoint(rb.resample, gs, n * c, h, w, &mut gx, true);
    } else {
        gx.iter_mut().zip(gs).for_each(|(a, b)| *a += b);
    }
    if let Some(t) = gs_owned {
        ws.give(t);
    }
    gx
}

fn resample_adjoint(r: Resample, g: &[f32], planes: usize, h: usize, w: usize, gx: &mut [f32], accumulate: bool) {
    match r {
        Resample::Up => upsample2_adjoint(g, planes, h, w, gx, accumulate),
        Resample::Down => avgpool2_adjoint(g, planes, h, w, gx, accumulate),
        Resample::None => unreachable!("no resampling"),
    }
}
