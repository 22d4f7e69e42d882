//! Rules for the keys (relative paths) every volume accepts, and how chunk keys are named.
//!
//! Every backend checks keys with the same rules, so a key that works on a
//! local directory also works on an object store and cannot escape the
//! volume's root: components separated by `/`, none empty, none `.` or `..`,
//! no control characters. Two things are reserved for the backends' own
//! temporary files and refused too: a component starting with `.tmp-` (the
//! local directory volume's staging files) and `#` (object_store's local
//! staging files are named `<name>#<n>`).

use crate::error::{Result, StorageError};

/// Prefix of the staging files the local directory volume writes before linking them in place.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// Checks that `key` names one object or file inside a volume.
pub(crate) fn check_key(volume: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StorageError::bad_key(volume, key, "the key is empty"));
    }
    check_components(volume, key)
}

/// Checks a "directory" prefix for listing or deleting; the empty prefix means the whole volume.
pub(crate) fn check_prefix(volume: &str, prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_components(volume, prefix)
}

fn check_components(volume: &str, key: &str) -> Result<()> {
    if key.starts_with('/') {
        return Err(StorageError::bad_key(
            volume,
            key,
            "keys are relative to the volume and must not start with `/`",
        ));
    }
    for component in key.split('/') {
        let reason = if component.is_empty() {
            "the key has an empty component (`//` or a trailing `/`)"
        } else if component == "." || component == ".." {
            "`.` and `..` are not allowed in keys"
        } else if component.starts_with(TEMP_PREFIX) {
            "components starting with `.tmp-` are reserved for staging files"
        } else if component.contains('#') {
            "`#` is reserved for object_store staging files"
        } else if component.chars().any(|c| c.is_control()) {
            "control characters are not allowed in keys"
        } else {
            continue;
        };
        return Err(StorageError::bad_key(volume, key, reason));
    }
    Ok(())
}

/// Whether `key` lies strictly under the "directory" `prefix` (always true for the empty prefix).
pub(crate) fn is_under(prefix: &str, key: &str) -> bool {
    prefix.is_empty()
        || key
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Key of chunk `index` of the segment `path` on an object store: `<path>.<index:06>`.
pub(crate) fn chunk_key(path: &str, index: usize) -> String {
    format!("{path}.{index:06}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_keys_pass() {
        for key in [
            "orders/0/checkpoint/00000000000000000001",
            "orders/0/00000000000000000000-3.log",
            "a",
            "a.b/c-d_e",
        ] {
            assert!(check_key("v", key).is_ok(), "{key}");
        }
    }

    #[test]
    fn escaping_and_odd_keys_are_refused() {
        for key in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a/.tmp-123",
            "a/b#1",
            "a/\nb",
        ] {
            let error = check_key("v", key).expect_err(key);
            assert!(!error.is_retriable(), "{key}");
        }
    }

    #[test]
    fn prefixes_allow_the_whole_volume() {
        assert!(check_prefix("v", "").is_ok());
        assert!(check_prefix("v", "orders/0").is_ok());
        assert!(check_prefix("v", "orders/0/").is_err());
        assert!(check_prefix("v", "..").is_err());
    }

    #[test]
    fn under_means_strictly_inside_a_directory() {
        assert!(is_under("orders/0", "orders/0/x"));
        assert!(is_under("orders/0", "orders/0/a/b"));
        assert!(!is_under("orders/0", "orders/0"));
        assert!(!is_under("orders/0", "orders/01/x"));
        assert!(is_under("", "anything"));
    }

    #[test]
    fn chunk_keys_are_zero_padded() {
        assert_eq!(chunk_key("t/0/seg.log", 0), "t/0/seg.log.000000");
        assert_eq!(chunk_key("t/0/seg.log", 42), "t/0/seg.log.000042");
    }
}
