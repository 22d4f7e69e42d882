//! Blocking filesystem steps of the local directory volume, each run inside `spawn_blocking`:
//! positional reads, create-if-absent by hard link, durable directory creation, listing.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::{Result, StorageError};
use crate::keys::TEMP_PREFIX;

/// An I/O failure inside a blocking task, with the step that failed.
pub(super) type StepError = (&'static str, io::Error);

/// Labels an `io::Error` with the step that produced it.
pub(super) fn at(op: &'static str) -> impl FnOnce(io::Error) -> StepError {
    move |error| (op, error)
}

/// Runs `work` on the blocking pool and turns its failure into a `StorageError` about `path`.
pub(super) async fn blocking<T: Send + 'static>(
    volume: &str,
    path: &str,
    work: impl FnOnce() -> std::result::Result<T, StepError> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err((op, error))) => Err(StorageError::from_io(volume, path, op, error)),
        Err(error) => Err(StorageError::join(volume, path, "run blocking task", error)),
    }
}

/// Reads `range` of the file at `path` with one `pread`.
pub(super) fn read_piece(path: &Path, range: Range<u64>) -> std::result::Result<Bytes, StepError> {
    let file = File::open(path).map_err(at("open segment"))?;
    let file_len = file.metadata().map_err(at("stat segment"))?.len();
    if file_len < range.end {
        let message = format!(
            "{} holds {file_len} bytes but its layout says at least {}",
            path.display(),
            range.end
        );
        return Err((
            "read segment",
            io::Error::new(io::ErrorKind::UnexpectedEof, message),
        ));
    }
    let wanted = usize::try_from(range.end - range.start).map_err(|_| {
        let message = "range does not fit in memory";
        (
            "read segment",
            io::Error::new(io::ErrorKind::OutOfMemory, message),
        )
    })?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(wanted).map_err(|error| {
        (
            "allocate read buffer",
            io::Error::new(io::ErrorKind::OutOfMemory, error),
        )
    })?;
    buf.resize(wanted, 0);
    file.read_exact_at(&mut buf, range.start)
        .map_err(at("read segment"))?;
    Ok(Bytes::from(buf))
}

/// Creates `file_path` with `data` only if absent, atomically and durably.
///
/// Why a hard link: `O_CREAT|O_EXCL` alone gives create-if-absent, but a crash
/// (or a reader) between the create and the last write would see a torn file,
/// and a torn checkpoint would fence everyone out with garbage. Writing a
/// private temp file first, syncing it, then `link(2)`ing it to the final name
/// gives both properties: `link` fails with `EEXIST` atomically if the name is
/// taken (exactly one of racing writers wins, as with `O_EXCL`), and the name
/// appears with its full, already durable content. The directory is synced
/// after the link so the new name survives a machine crash.
pub(super) fn put_file_if_absent(
    root: &Path,
    file_path: &Path,
    data: &[u8],
) -> std::result::Result<(), StepError> {
    let parent = create_parent_dirs(root, file_path)?;
    let temp_path = parent.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
    let written = (|| {
        let mut temp = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .map_err(at("create temp file"))?;
        temp.write_all(data).map_err(at("write temp file"))?;
        temp.sync_data().map_err(at("fdatasync temp file"))?;
        fs::hard_link(&temp_path, file_path).map_err(at("link into place"))
    })();
    // The temp name is ours alone; remove it whether or not the link won.
    let removed = fs::remove_file(&temp_path);
    written?;
    if let Err(error) = removed {
        tracing::warn!(path = %temp_path.display(), %error, "could not remove temp file");
    }
    sync_dir(&parent)
}

/// Creates the missing directories between `root` and `file_path`, syncing each new
/// directory's parent so the new entry is durable. Returns the file's parent directory.
///
/// A directory that another task is creating at the same moment counts as
/// existing; that task syncs its parent.
pub(super) fn create_parent_dirs(
    root: &Path,
    file_path: &Path,
) -> std::result::Result<PathBuf, StepError> {
    let parent = file_path.parent().unwrap_or(root).to_path_buf();
    if parent.is_dir() {
        return Ok(parent);
    }
    let relative = parent.strip_prefix(root).unwrap_or(Path::new(""));
    let mut current = root.to_path_buf();
    for component in relative.components() {
        let next = current.join(component);
        match fs::create_dir(&next) {
            Ok(()) => sync_dir(&current)?,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(("create directory", error)),
        }
        current = next;
    }
    Ok(parent)
}

/// Syncs a directory so the entries created in it survive a machine crash.
pub(super) fn sync_dir(dir: &Path) -> std::result::Result<(), StepError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(at("fsync directory"))
}

/// Collects the keys of the regular files under `dir` (whose key is `prefix`), skipping temp files.
pub(super) fn walk(
    dir: &Path,
    prefix: &str,
    keys: &mut Vec<String>,
) -> std::result::Result<(), StepError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(());
        }
        Err(error) => return Err(("list directory", error)),
    };
    for entry in entries {
        let entry = entry.map_err(at("list directory"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            tracing::warn!(path = %entry.path().display(), "skipping a file whose name is not UTF-8");
            continue;
        };
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let key = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let file_type = entry.file_type().map_err(at("list directory"))?;
        if file_type.is_dir() {
            walk(&entry.path(), &key, keys)?;
        } else if file_type.is_file() {
            keys.push(key);
        }
    }
    Ok(())
}
