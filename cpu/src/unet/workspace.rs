//! Reusable buffers of the forward and backward passes: no allocation in steady state.

/// A pool of f32 buffers (and the attention's scratch) reused across calls.
#[derive(Default)]
pub struct Workspace {
    free: Vec<Vec<f32>>,
    pub(crate) scratch: Vec<f32>,
}

impl Workspace {
    /// An empty workspace; it grows on first use and is reused afterwards.
    pub fn new() -> Self {
        Self::default()
    }

    /// A buffer of `len` floats, reusing the smallest free buffer that is large enough but not
    /// more than twice as large: handing a large buffer to a small request (when the exact one
    /// left with a returned tensor) would make the next large request allocate, and the pool
    /// creep upwards over calls. The contents are stale: every caller overwrites the whole
    /// buffer (GEMMs without accumulation, norms, resampling, concatenation), so no time goes
    /// into zero-filling.
    pub(crate) fn take(&mut self, len: usize) -> Vec<f32> {
        let most = 2 * len.max(1 << 14);
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len && v.capacity() <= most)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        let mut v = match best {
            Some(i) => self.free.swap_remove(i),
            None => Vec::with_capacity(len),
        };
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, 0.0);
        }
        v
    }

    /// Returns a buffer for reuse.
    pub(crate) fn give(&mut self, v: Vec<f32>) {
        if v.capacity() > 0 {
            self.free.push(v);
        }
    }

    /// A new, empty workspace (for a concurrent caller).
    pub fn clone_empty(&self) -> Self {
        Self::default()
    }

    /// Bytes held by the workspace's free buffers.
    pub fn bytes(&self) -> usize {
        4 * (self.free.iter().map(Vec::capacity).sum::<usize>() + self.scratch.capacity())
    }
}
