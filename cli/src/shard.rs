//! `--shard K/N`: a deterministic split of a folder's images over N processes (a Slurm job
//! array, a Kubernetes Indexed Job, GNU parallel), image `i` (in sorted order) going to shard
//! `i mod N`. `--shard auto` reads the scheduler's index from its environment; that is the one
//! place the CLI reads a scheduler's variables, and the library reads none.

/// One part of the split (0-based `index` of `count`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// The most shards a run may be split into.
pub const MAX_SHARDS: usize = 100_000;

impl Shard {
    /// Whether image `i` (0-based, sorted order) belongs to this shard.
    pub fn owns(&self, i: usize) -> bool {
        i % self.count == self.index
    }

    /// `K/N`, 1-based as given on the command line.
    pub fn label(&self) -> String {
        format!("{}/{}", self.index + 1, self.count)
    }

    fn new(index: usize, count: usize, what: &str) -> Result<Shard, String> {
        if count == 0 || count > MAX_SHARDS {
            return Err(format!("{what}: the shard count must be in 1..={MAX_SHARDS}, got {count}"));
        }
        if index >= count {
            return Err(format!("{what}: shard {} of {count} does not exist", index + 1));
        }
        Ok(Shard { index, count })
    }
}

/// Parses `K/N` (1-based K), `auto` (Slurm: `SLURM_ARRAY_TASK_ID` - `SLURM_ARRAY_TASK_MIN` of
/// `SLURM_ARRAY_TASK_COUNT`) or `auto/N` (Kubernetes: `JOB_COMPLETION_INDEX` of N, or Slurm's).
pub fn parse(s: &str) -> Result<Shard, String> {
    parse_with(s, &|k| std::env::var(k).ok())
}

fn parse_with(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, String> {
    let num = |v: &str, what: &str| {
        v.trim().parse::<usize>().map_err(|_| format!("{what}: expected a whole number, got '{v}'"))
    };
    let (head, count) = match s.split_once('/') {
        Some((h, n)) => (h.trim(), Some(num(n, "--shard")?)),
        None => (s.trim(), None),
    };
    if head != "auto" {
        let k = num(head, "--shard K/N")?;
        let n = count.ok_or_else(|| format!("--shard '{s}': expected K/N (e.g. 2/8) or auto"))?;
        if k == 0 {
            return Err(format!("--shard '{s}': K counts from 1"));
        }
        return Shard::new(k - 1, n, "--shard");
    }
    if let Some(id) = env("SLURM_ARRAY_TASK_ID") {
        let id = num(&id, "SLURM_ARRAY_TASK_ID")?;
        let min = env("SLURM_ARRAY_TASK_MIN").map(|v| num(&v, "SLURM_ARRAY_TASK_MIN")).transpose()?.unwrap_or(0);
        let n = match env("SLURM_ARRAY_TASK_COUNT") {
            Some(v) => num(&v, "SLURM_ARRAY_TASK_COUNT")?,
            None => count.ok_or("--shard auto: SLURM_ARRAY_TASK_COUNT is not set; give --shard auto/N")?,
        };
        if count.is_some_and(|c| c != n) {
            return Err(format!("--shard '{s}': the Slurm array has {n} tasks"));
        }
        return Shard::new(id.checked_sub(min).ok_or("SLURM_ARRAY_TASK_ID is below SLURM_ARRAY_TASK_MIN")?, n, "Slurm");
    }
    if let Some(i) = env("JOB_COMPLETION_INDEX") {
        let n = count.ok_or(
            "--shard auto: a Kubernetes Indexed Job does not say its size; give --shard auto/N (its completions)",
        )?;
        return Shard::new(num(&i, "JOB_COMPLETION_INDEX")?, n, "JOB_COMPLETION_INDEX");
    }
    Err("--shard auto: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set (give --shard K/N)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn shards_split_every_image_exactly_once() {
        let shards: Vec<Shard> = (1..=3).map(|k| parse_with(&format!("{k}/3"), &env(&[])).unwrap()).collect();
        for i in 0..100 {
            assert_eq!(shards.iter().filter(|s| s.owns(i)).count(), 1, "image {i}");
        }
        assert_eq!(shards[1].label(), "2/3");
        for bad in ["0/3", "4/3", "1/0", "x/3", "3", "1/100001"] {
            assert!(parse_with(bad, &env(&[])).is_err(), "{bad}");
        }
    }

    #[test]
    fn auto_reads_slurm_and_kubernetes() {
        let slurm =
            env(&[("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_COUNT", "8")]);
        assert_eq!(parse_with("auto", &slurm).unwrap(), Shard { index: 4, count: 8 });
        assert!(parse_with("auto/4", &slurm).is_err(), "the array says 8");
        let k8s = env(&[("JOB_COMPLETION_INDEX", "3")]);
        assert_eq!(parse_with("auto/4", &k8s).unwrap(), Shard { index: 3, count: 4 });
        assert!(parse_with("auto", &k8s).unwrap_err().contains("auto/N"));
        assert!(parse_with("auto/3", &k8s).is_err(), "index 3 of 3");
        assert!(parse_with("auto", &env(&[])).unwrap_err().contains("SLURM_ARRAY_TASK_ID"));
    }
}
