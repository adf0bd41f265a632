//! Atomic save of the apimodel.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Error, Result};

/// Writes `bytes` to `path` atomically: a temp file in the same directory,
/// fsync, the previous file copied to `<path>.bak`, rename over `path`, fsync
/// of the directory. The file (and its backup) get mode 0600. If any step
/// fails the original file is unchanged and the temp file is removed.
pub fn save_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let fail = |step: &'static str| {
        let path = path.to_path_buf();
        move |source: std::io::Error| Error::Save { path, step, source }
    };

    let mut temp = tempfile::Builder::new()
        .prefix(".aksup-apimodel-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(fail("creating a temporary file beside it"))?;
    set_private(temp.as_file()).map_err(fail("setting mode 0600"))?;
    temp.write_all(bytes)
        .map_err(fail("writing the temporary file"))?;
    temp.as_file()
        .sync_all()
        .map_err(fail("flushing the temporary file to disk"))?;

    if path.exists() {
        backup(path).map_err(fail("keeping the previous file as a backup"))?;
    }
    temp.persist(path)
        .map_err(|err| err.error)
        .map_err(fail("renaming the temporary file over it"))?;
    if let Ok(handle) = File::open(&dir) {
        // Durability of the rename; not every filesystem supports a directory fsync.
        let _ = handle.sync_all();
    }
    Ok(())
}

/// The backup path of an apimodel: `<path>.bak`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".bak");
    path.with_file_name(name)
}

fn backup(path: &Path) -> std::io::Result<()> {
    let target = backup_path(path);
    let contents = fs::read(path)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&target)?;
    set_private(&file)?;
    file.write_all(&contents)?;
    file.sync_all()
}

#[cfg(unix)]
fn set_private(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private(_file: &File) -> std::io::Result<()> {
    Ok(())
}
