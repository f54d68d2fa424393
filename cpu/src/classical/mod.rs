//! The classical baselines of the seed paper (s2): total-variation regularised least squares by
//! Adam, HQS and ADMM, and plug-and-play HQS with a CNN denoiser (methods.md s10). Images are in
//! [-1, 1]; the objective is `1/2 ||A x - y||^2 + lambda R(x)`.

pub mod denoiser;
pub mod tv;

pub use denoiser::Denoiser;

use crate::error::{Error, Result};
use crate::ops::Op;
use crate::tensor::Tensor;

/// What a solver did.
#[derive(Clone, Debug)]
pub struct SolverOutput {
    /// The estimate.
    pub x: Tensor,
    /// Iterations run (fewer than asked when the stopping rule fired).
    pub iters: usize,
    /// The objective after every iteration (Adam-TV, HQS-TV), or the ADMM primal residuals.
    pub history: Vec<f64>,
    /// ADMM's dual residuals (empty for the others).
    pub dual: Vec<f64>,
}

/// Settings shared by the TV solvers.
#[derive(Clone, Copy, Debug)]
pub struct TvConfig {
    /// TV weight `lambda`.
    pub lambda: f64,
    /// Iterations (at most).
    pub iters: usize,
    /// Stop when `||x_k - x_{k-1}|| / ||x_{k-1}||` falls below this.
    pub tol: f64,
}

fn nan_guard(x: &Tensor, method: &'static str, k: usize) -> Result<()> {
    let m = x.max_abs();
    if !m.is_finite() {
        return Err(Error::NonFinite { method, step: k });
    }
    if m > 1e3 {
        return Err(Error::Diverged { method, step: k, max_abs: m as f64 });
    }
    Ok(())
}

fn rel_change(a: &Tensor, b: &Tensor) -> f64 {
    let (mut d, mut n) = (0.0f64, 0.0f64);
    for (x, y) in a.data().iter().zip(b.data()) {
        d += (*x as f64 - *y as f64).powi(2);
        n += (*y as f64).powi(2);
    }
    (d / n.max(1e-30)).sqrt()
}

/// `1/2 ||A x - y||^2 + lambda TV_eps(x)` summed over the batch.
pub fn tv_objective(op: &Op, x: &Tensor, y: &Tensor, lambda: f64, eps: f64) -> Result<f64> {
    let r = op.forward(x)?;
    let data: f64 = r.data().iter().zip(y.data()).map(|(a, b)| 0.5 * (*a as f64 - *b as f64).powi(2)).sum();
    Ok(data + lambda * tv::value(x.data(), x.h(), x.w(), eps))
}

fn tv_prox(x: &Tensor, weight: f64) -> Tensor {
    let mut z = Tensor::zeros(x.shape());
    tv::prox(x.data(), x.h(), x.w(), weight, 100, z.data_mut());
    z
}

type Monitor<'a> = &'a mut dyn FnMut(usize, usize) -> bool;

fn tick(m: &mut dyn FnMut(usize, usize) -> bool, k: usize, total: usize) -> Result<()> {
    if m(k, total) {
        Ok(())
    } else {
        Err(Error::Cancelled)
    }
}

/// Adam on the smoothed objective `1/2 ||A x - y||^2 + lambda sum sqrt(dx^2 + dy^2 + eps^2)`.
pub fn adam_tv(op: &Op, y: &Tensor, cfg: &TvConfig, lr: f64, eps: f64, monitor: Monitor<'_>) -> Result<SolverOutput> {
    let (b1, b2) = (0.9f64, 0.999f64);
    let mut x = op.init_estimate(y)?;
    let n = x.data().len();
    let (mut m, mut v) = (vec![0.0f64; n], vec![0.0f64; n]);
    let mut g = Tensor::zeros(x.shape());
    let mut history = Vec::new();
    let mut iters = 0;
    for k in 1..=cfg.iters {
        let r = op.forward(&x)?;
        let mut res = r.clone();
        res.data_mut().iter_mut().zip(y.data()).for_each(|(a, b)| *a -= b);
        let data_grad = op.adjoint(&res)?;
        tv::gradient(x.data(), x.h(), x.w(), eps, g.data_mut());
        let prev = x.clone();
        let (c1, c2) = (1.0 - b1.powi(k as i32), 1.0 - b2.powi(k as i32));
        for i in 0..n {
            let gi = data_grad.data()[i] as f64 + cfg.lambda * g.data()[i] as f64;
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            x.data_mut()[i] -= (lr * (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-8)) as f32;
        }
        nan_guard(&x, "adam-tv", k)?;
        history.push(tv_objective(op, &x, y, cfg.lambda, eps)?);
        iters = k;
        tick(&mut *monitor, k, cfg.iters)?;
        if k > 20 && rel_change(&x, &prev) < cfg.tol {
            break;
        }
    }
    Ok(SolverOutput { x, iters, history, dual: Vec::new() })
}

/// Half-quadratic splitting with the TV prox: `x = argmin 1/2||Ax - y||^2 + mu/2 ||x - z||^2`,
/// `z = prox_{lambda/mu TV}(x)`, `mu` growing by `growth` per iteration from `mu0`, for all
/// `cfg.iters` iterations (`cfg.tol` is not used: the schedule ends the method).
pub fn hqs_tv(
    op: &Op,
    y: &Tensor,
    cfg: &TvConfig,
    mu0: f64,
    growth: f64,
    monitor: Monitor<'_>,
) -> Result<SolverOutput> {
    let mut z = op.init_estimate(y)?;
    let mut history = Vec::new();
    let mut mu = mu0;
    let mut iters = 0;
    for k in 1..=cfg.iters {
        let x = op.data_solve(y, &z, mu)?;
        z = tv_prox(&x, cfg.lambda / mu);
        nan_guard(&z, "hqs-tv", k)?;
        history.push(tv_objective(op, &z, y, cfg.lambda, 0.0)?);
        iters = k;
        tick(&mut *monitor, k, cfg.iters)?;
        // The penalty schedule, not a small step, ends HQS: while mu is small the iterates
        // barely move (a weak TV weight) yet z is still smoothed by lambda/mu.
        mu *= growth;
    }
    Ok(SolverOutput { x: z, iters, history, dual: Vec::new() })
}

/// Scaled-form ADMM: `x = argmin 1/2||Ax - y||^2 + rho/2 ||x - z + u||^2`,
/// `z = prox_{lambda/rho TV}(x + u)`, `u += x - z`; records primal and dual residuals.
pub fn admm_tv(op: &Op, y: &Tensor, cfg: &TvConfig, rho: f64, monitor: Monitor<'_>) -> Result<SolverOutput> {
    let mut z = op.init_estimate(y)?;
    let mut u = Tensor::zeros(z.shape());
    let (mut primal, mut dual) = (Vec::new(), Vec::new());
    let mut iters = 0;
    let norm = |t: &Tensor| t.data().iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    for k in 1..=cfg.iters {
        let mut zu = z.clone();
        zu.data_mut().iter_mut().zip(u.data()).for_each(|(a, b)| *a -= b);
        let x = op.data_solve(y, &zu, rho)?;
        let mut xu = x.clone();
        xu.data_mut().iter_mut().zip(u.data()).for_each(|(a, b)| *a += b);
        let z_new = tv_prox(&xu, cfg.lambda / rho);
        let mut r = x.clone();
        r.data_mut().iter_mut().zip(z_new.data()).for_each(|(a, b)| *a -= b);
        u.data_mut().iter_mut().zip(r.data()).for_each(|(a, b)| *a += b);
        let mut dz = z_new.clone();
        dz.data_mut().iter_mut().zip(z.data()).for_each(|(a, b)| *a -= b);
        let scale = norm(&x).max(1e-12);
        primal.push(norm(&r) / scale);
        dual.push(rho * norm(&dz) / scale);
        z = z_new;
        nan_guard(&z, "admm-tv", k)?;
        iters = k;
        tick(&mut *monitor, k, cfg.iters)?;
        if k > 3 && primal[k - 1] < cfg.tol && dual[k - 1] < cfg.tol {
            break;
        }
    }
    Ok(SolverOutput { x: z, iters, history: primal, dual })
}

/// Settings of plug-and-play HQS.
#[derive(Clone, Copy, Debug)]
pub struct PnpConfig {
    /// `lambda` of `alpha_k = lambda sigma_y^2 / sigma_k^2` (DPIR: 0.23).
    pub lambda: f64,
    /// Iterations.
    pub iters: usize,
    /// First denoiser noise level, in [0, 1] units (DPIR: 49/255).
    pub sigma_start: f64,
}

/// Plug-and-play HQS with DPIR's schedule: the denoiser's noise level falls geometrically from
/// `sigma_start` to the measurement's, `x = argmin ||Ax - y||^2 + alpha_k ||x - z||^2`,
/// `z = D(x, sigma_k)`. `sigma_y` is in [-1, 1] units.
pub fn hqs_denoiser(
    op: &Op,
    y: &Tensor,
    d: &Denoiser,
    cfg: &PnpConfig,
    sigma_y: f64,
    monitor: Monitor<'_>,
) -> Result<SolverOutput> {
    let sn = (sigma_y / 2.0).max(1.0 / 255.0);
    let k = cfg.iters.max(1);
    let mut z = op.init_estimate(y)?;
    let mut iters = 0;
    for i in 0..k {
        let t = if k == 1 { 1.0 } else { i as f64 / (k - 1) as f64 };
        let sk = (cfg.sigma_start.ln() * (1.0 - t) + sn.ln() * t).exp();
        let alpha = cfg.lambda * sn * sn / (sk * sk);
        let mut x01 = op.data_solve(y, &z, alpha)?;
        x01.data_mut().iter_mut().for_each(|v| *v = (*v + 1.0) * 0.5);
        z = d.denoise(&x01, sk)?;
        z.data_mut().iter_mut().for_each(|v| *v = *v * 2.0 - 1.0);
        nan_guard(&z, "hqs-dncnn", i + 1)?;
        iters = i + 1;
        tick(&mut *monitor, i + 1, k)?;
    }
    Ok(SolverOutput { x: z, iters, history: Vec::new(), dual: Vec::new() })
}
