//! guided-diffusion's `space_timesteps`: which steps of the base chain a shorter chain keeps.

use crate::schedule::ScheduleError;

/// A parsed respacing specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spacing<'a> {
    /// Comma-separated section counts, e.g. `"100"` or `"25,25,25,25"`.
    Sections(&'a str),
    /// `"ddimN"`: `range(0, T, stride)` for the first stride giving exactly N steps.
    Ddim(usize),
}

impl<'a> Spacing<'a> {
    /// Parses `"100"`, `"25,25,25,25"` or `"ddim50"`.
    pub fn parse(spec: &'a str) -> Result<Self, ScheduleError> {
        let spec = spec.trim();
        if let Some(n) = spec.strip_prefix("ddim") {
            return n.parse().map(Spacing::Ddim).map_err(|_| ScheduleError::BadSpec);
        }
        if spec.is_empty() {
            return Err(ScheduleError::BadSpec);
        }
        for part in spec.split(',') {
            part.trim().parse::<usize>().map_err(|_| ScheduleError::BadSpec)?;
        }
        Ok(Spacing::Sections(spec))
    }

    fn counts(&self) -> impl Iterator<Item = usize> + 'a {
        let s = match self {
            Spacing::Sections(s) => *s,
            Spacing::Ddim(_) => "",
        };
        s.split(',').filter(|p| !p.trim().is_empty()).map(|p| p.trim().parse::<usize>().unwrap_or(0))
    }

    /// How many steps the respaced chain of a `num_timesteps` base chain has.
    pub fn len(&self, num_timesteps: usize) -> Result<usize, ScheduleError> {
        match *self {
            Spacing::Ddim(n) => ddim_stride(num_timesteps, n).map(|_| n),
            Spacing::Sections(_) => {
                let mut total = 0usize;
                let mut err = None;
                self.for_each_section(num_timesteps, |size, count| {
                    if count > size || count == 0 {
                        err = Some(ScheduleError::SectionTooSmall { size, count });
                    }
                    total += count;
                });
                match err {
                    Some(e) => Err(e),
                    None => Ok(total),
                }
            }
        }
    }

    fn for_each_section(&self, num_timesteps: usize, mut f: impl FnMut(usize, usize)) {
        let n = self.counts().count();
        if n == 0 {
            return;
        }
        let size_per = num_timesteps / n;
        let extra = num_timesteps % n;
        for (i, count) in self.counts().enumerate() {
            f(size_per + usize::from(i < extra), count);
        }
    }

    /// Writes the kept original timesteps, ascending, and returns how many.
    pub fn fill(&self, num_timesteps: usize, out: &mut [usize]) -> Result<usize, ScheduleError> {
        let needed = self.len(num_timesteps)?;
        if out.len() < needed {
            return Err(ScheduleError::BufferTooSmall { needed });
        }
        match *self {
            Spacing::Ddim(n) => {
                let stride = ddim_stride(num_timesteps, n)?;
                for (i, o) in out[..n].iter_mut().enumerate() {
                    *o = i * stride;
                }
            }
            Spacing::Sections(_) => {
                let (mut start, mut w) = (0usize, 0usize);
                self.for_each_section(num_timesteps, |size, count| {
                    for k in 0..count {
                        let off = if count <= 1 {
                            k
                        } else {
                            round_half_even(k as f64 * (size - 1) as f64 / (count - 1) as f64)
                        };
                        out[w] = start + off;
                        w += 1;
                    }
                    start += size;
                });
            }
        }
        Ok(needed)
    }
}

fn ddim_stride(num_timesteps: usize, n: usize) -> Result<usize, ScheduleError> {
    (1..num_timesteps.max(1)).find(|&i| num_timesteps.div_ceil(i) == n).ok_or(ScheduleError::NoDdimStride { steps: n })
}

/// Python's `round`: ties go to the even integer.
fn round_half_even(v: f64) -> usize {
    let f = libm::floor(v);
    let d = v - f;
    let f = f as usize;
    if d > 0.5 || (d == 0.5 && f % 2 == 1) {
        f + 1
    } else {
        f
    }
}

/// Betas and `abar` of a respaced chain, as guided-diffusion's `SpacedDiffusion` recomputes them:
/// `beta'_k = 1 - abar[s_k]/abar[s_{k-1}]`, then `abar' = cumprod(1 - beta')`.
pub fn respaced(
    base_abar: &[f64],
    steps: &[usize],
    betas_out: &mut [f64],
    abar_out: &mut [f64],
) -> Result<(), ScheduleError> {
    if steps.len() != betas_out.len() || steps.len() != abar_out.len() || steps.is_empty() {
        return Err(ScheduleError::Length);
    }
    if steps.windows(2).any(|w| w[0] >= w[1]) || steps[steps.len() - 1] >= base_abar.len() {
        return Err(ScheduleError::BadTimesteps);
    }
    let mut last = 1.0;
    for (&s, b) in steps.iter().zip(betas_out.iter_mut()) {
        *b = 1.0 - base_abar[s] / last;
        last = base_abar[s];
    }
    crate::schedule::alphas_cumprod(betas_out, abar_out);
    Ok(())
}
