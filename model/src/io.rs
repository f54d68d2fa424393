//! File output: a regular file is written to a temporary name and renamed into place, so an
//! interrupted run never leaves a partial output; a symlink's target is what gets replaced; an
//! existing device or FIFO (`/dev/null`, a pipe) is written directly, as a shell would.

use crate::error::{Error, Result};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The temporary name `path` is written under before the rename.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Where writing `path` really goes: the file a symlink chain ends at (which may not exist yet),
/// or `path` itself.
pub fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

/// Writes `path` with `f`: atomically for regular files (on any error the temporary file is
/// removed and the old contents stay), directly for devices and FIFOs.
///
/// # Errors
/// [`Error::Io`] naming `path`: a directory, a folder that cannot be made, a failed write (a
/// full disk, `/dev/full`).
pub fn write_atomic(path: &Path, f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let target = resolve(path).map_err(|e| Error::io(path, e))?;
    match std::fs::metadata(&target) {
        Ok(m) if m.is_dir() => {
            let e = std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory");
            return Err(Error::io(path, e));
        }
        Ok(m) if !m.is_file() => return write_direct(path, &target, f),
        _ => {}
    }
    if let Some(dir) = target.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
    }
    let tmp = temp_path(&target);
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut w = BufWriter::new(file);
        f(&mut w)?;
        w.flush()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// A device or FIFO: opened for writing as it is (no temporary file, no rename).
fn write_direct(path: &Path, target: &Path, f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let result = (|| {
        let file = std::fs::OpenOptions::new().write(true).open(target)?;
        let mut w = BufWriter::new(file);
        f(&mut w)?;
        w.flush()
    })();
    result.map_err(|e| Error::io(path, e))
}

/// Whether `a` and `b` name the same file (following symlinks; hard links by device and inode
/// on Unix; a file that does not exist yet is compared by its resolved parent folder and name).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return (x.dev(), x.ino()) == (y.dev(), y.ino());
        }
    }
    fn key(p: &Path) -> Option<PathBuf> {
        let r = resolve(p).ok()?;
        if let Ok(c) = std::fs::canonicalize(&r) {
            return Some(c);
        }
        let parent = r.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Some(std::fs::canonicalize(parent).ok()?.join(r.file_name()?))
    }
    match (key(a), key(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}
