//! The one error type of this crate, [`StorageError`], and its [`Result`] alias.

use std::io;

/// The result of every fallible call in this crate.
pub type Result<T> = std::result::Result<T, StorageError>;

/// What went wrong in a storage call.
///
/// Every variant names the volume (by the URL it was opened from) and the key
/// inside it, so a message in a log is enough to find the object.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A create-if-absent call found something already at `path`.
    ///
    /// From [`Volume::put_if_absent`](crate::Volume::put_if_absent) this is the
    /// fence: another writer created that checkpoint first.
    #[error("`{path}` already exists on volume `{volume}`")]
    AlreadyExists {
        /// URL of the volume.
        volume: String,
        /// Key that already exists.
        path: String,
    },

    /// The object or file asked for does not exist.
    #[error("`{path}` does not exist on volume `{volume}`")]
    NotFound {
        /// URL of the volume.
        volume: String,
        /// Key that was not found.
        path: String,
    },

    /// A read asked for bytes past the end of a segment, or for an inverted range.
    #[error(
        "read of `{path}` on volume `{volume}` asks for bytes up to {range_end}, \
         but the segment holds {len} bytes (ranges must be ascending and within the segment)"
    )]
    OutOfBounds {
        /// URL of the volume.
        volume: String,
        /// Key of the segment.
        path: String,
        /// End (exclusive) of the range that was asked for.
        range_end: u64,
        /// Length of the segment according to its layout.
        len: u64,
    },

    /// A volume URL could not be opened.
    #[error("cannot open volume `{url}`: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },

    /// A filesystem call failed (native local directory volume).
    ///
    /// A key refused by the key rules (`..`, empty components, absolute keys)
    /// is reported here with kind [`io::ErrorKind::InvalidInput`] and is not
    /// retriable.
    #[error("{op} failed for `{path}` on volume `{volume}`: {source}")]
    Io {
        /// URL of the volume.
        volume: String,
        /// Key being worked on.
        path: String,
        /// What was being done, such as "append" or "fsync directory".
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// An `object_store` call failed (object-store volumes).
    #[error("{op} failed for `{path}` on volume `{volume}`: {source}")]
    ObjectStore {
        /// URL of the volume.
        volume: String,
        /// Key being worked on.
        path: String,
        /// What was being done, such as "put chunk" or "list".
        op: &'static str,
        /// The underlying error (boxed: it is several times larger than the
        /// other variants, and every `Result` of this crate would carry that size).
        #[source]
        source: Box<object_store::Error>,
    },

    /// An HDFS call failed (HDFS volumes), or did not answer in time.
    #[error("{op} failed for `{path}` on volume `{volume}`: {source}")]
    Hdfs {
        /// URL of the volume.
        volume: String,
        /// Key being worked on.
        path: String,
        /// What was being done, such as "append" or "list".
        op: &'static str,
        /// The underlying error (boxed, as for `ObjectStore`).
        #[source]
        source: Box<hdfs_native::HdfsError>,
    },

    /// Stored bytes or a stored layout do not match what was expected, such as a
    /// segment shorter than the layout its checkpoint records.
    #[error("`{path}` on volume `{volume}` is corrupt: {reason}")]
    Corrupt {
        /// URL of the volume.
        volume: String,
        /// Key of the damaged object.
        path: String,
        /// What does not match.
        reason: String,
    },
}

impl StorageError {
    /// Whether trying the same call again may succeed.
    ///
    /// I/O and object-store failures are retriable (a full disk, a timeout, a
    /// throttled request), except those that will fail the same way every time:
    /// a refused key, an invalid object path, an unsupported operation.
    /// Precondition outcomes (`AlreadyExists`, `NotFound`, `OutOfBounds`),
    /// bad URLs and corruption are never retriable.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Io { source, .. } => source.kind() != io::ErrorKind::InvalidInput,
            Self::ObjectStore { source, .. } => !matches!(
                **source,
                object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented { .. }
                    | object_store::Error::UnknownConfigurationKey { .. }
            ),
            Self::Hdfs { source, .. } => !matches!(
                **source,
                hdfs_native::HdfsError::InvalidPath(_)
                    | hdfs_native::HdfsError::InvalidArgument(_)
                    | hdfs_native::HdfsError::UrlParseError(_)
                    | hdfs_native::HdfsError::UnsupportedFeature(_)
                    | hdfs_native::HdfsError::UnsupportedErasureCodingPolicy(_)
                    | hdfs_native::HdfsError::IsADirectoryError(_)
            ),
            Self::AlreadyExists { .. }
            | Self::NotFound { .. }
            | Self::OutOfBounds { .. }
            | Self::BadUrl { .. }
            | Self::Corrupt { .. } => false,
        }
    }

    /// An `Io` error, or `NotFound` / `AlreadyExists` when the I/O error says
    /// the file is absent / already there.
    pub(crate) fn from_io(volume: &str, path: &str, op: &'static str, source: io::Error) -> Self {
        let volume = volume.to_owned();
        let path = path.to_owned();
        match source.kind() {
            io::ErrorKind::NotFound => Self::NotFound { volume, path },
            io::ErrorKind::AlreadyExists => Self::AlreadyExists { volume, path },
            _ => Self::Io {
                volume,
                path,
                op,
                source,
            },
        }
    }

    /// An `ObjectStore` error, with absent, already-present and
    /// failed-precondition outcomes turned into their own variants.
    ///
    /// `Precondition` maps to `AlreadyExists` because this crate only issues
    /// create-if-absent conditional writes: a failed precondition there means
    /// another writer got there first (some stores report `If-None-Match`
    /// failures that way). That is the fence, handled explicitly.
    pub(crate) fn from_object_store(
        volume: &str,
        path: &str,
        op: &'static str,
        source: object_store::Error,
    ) -> Self {
        match source {
            object_store::Error::NotFound { .. } => Self::NotFound {
                volume: volume.to_owned(),
                path: path.to_owned(),
            },
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => Self::AlreadyExists {
                volume: volume.to_owned(),
                path: path.to_owned(),
            },
            source => Self::ObjectStore {
                volume: volume.to_owned(),
                path: path.to_owned(),
                op,
                source: Box::new(source),
            },
        }
    }

    /// An `Hdfs` error, with absent and already-present outcomes (reported
    /// as Java exceptions by the NameNode) turned into their own variants.
    pub(crate) fn from_hdfs(
        volume: &str,
        path: &str,
        op: &'static str,
        source: hdfs_native::HdfsError,
    ) -> Self {
        use hdfs_native::HdfsError;
        let exception = match &source {
            HdfsError::RPCError(class, _) | HdfsError::FatalRPCError(class, _) => class.as_str(),
            _ => "",
        };
        match source {
            HdfsError::FileNotFound(_) => Self::NotFound {
                volume: volume.to_owned(),
                path: path.to_owned(),
            },
            HdfsError::AlreadyExists(_) => Self::AlreadyExists {
                volume: volume.to_owned(),
                path: path.to_owned(),
            },
            _ if exception.ends_with("FileNotFoundException") => Self::NotFound {
                volume: volume.to_owned(),
                path: path.to_owned(),
            },
            _ if exception.ends_with("FileAlreadyExistsException")
                || exception.ends_with("AlreadyBeingCreatedException") =>
            {
                Self::AlreadyExists {
                    volume: volume.to_owned(),
                    path: path.to_owned(),
                }
            }
            source => Self::Hdfs {
                volume: volume.to_owned(),
                path: path.to_owned(),
                op,
                source: Box::new(source),
            },
        }
    }

    /// An append to a segment writer whose earlier append failed (or was
    /// cancelled): the segment must be abandoned at its last checkpoint.
    pub(crate) fn abandoned(volume: &str, path: &str) -> Self {
        Self::Io {
            volume: volume.to_owned(),
            path: path.to_owned(),
            op: "append",
            source: io::Error::other("an earlier append failed; the segment must be abandoned"),
        }
    }

    /// A key that breaks the key rules (see `keys.rs`).
    pub(crate) fn bad_key(volume: &str, path: &str, reason: &str) -> Self {
        Self::Io {
            volume: volume.to_owned(),
            path: path.to_owned(),
            op: "check key",
            source: io::Error::new(io::ErrorKind::InvalidInput, reason.to_owned()),
        }
    }

    /// A blocking task that did not finish (it panicked or the runtime shut down).
    pub(crate) fn join(
        volume: &str,
        path: &str,
        op: &'static str,
        error: tokio::task::JoinError,
    ) -> Self {
        Self::Io {
            volume: volume.to_owned(),
            path: path.to_owned(),
            op,
            source: io::Error::other(format!("blocking task did not finish: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_volume_path_and_operation() {
        let error = StorageError::from_io(
            "dir:///data",
            "orders/0/x.log",
            "append",
            io::Error::other("disk full"),
        );
        assert_eq!(
            error.to_string(),
            "append failed for `orders/0/x.log` on volume `dir:///data`: disk full"
        );
        assert!(error.is_retriable());
    }

    #[test]
    fn absent_files_become_not_found() {
        let error =
            StorageError::from_io("v", "k", "read", io::Error::from(io::ErrorKind::NotFound));
        assert!(matches!(error, StorageError::NotFound { .. }));
        assert!(!error.is_retriable());
    }

    #[test]
    fn precondition_failures_are_the_fence() {
        let source = object_store::Error::Precondition {
            path: "k".into(),
            source: "if-none-match failed".into(),
        };
        let error = StorageError::from_object_store("memory://x", "k", "put", source);
        assert!(matches!(error, StorageError::AlreadyExists { .. }));
    }

    #[test]
    fn errors_stay_small() {
        assert!(std::mem::size_of::<StorageError>() <= 96);
    }

    #[test]
    fn refused_keys_are_not_retriable() {
        let error = StorageError::bad_key("v", "../x", "`..` is not allowed");
        assert!(!error.is_retriable());
        assert!(error.to_string().contains("`..` is not allowed"));
    }
}
