//! The embedded store's file, `<dir>/metadata.json`: every key that is not
//! bound to a lease, written whole on every change (temp file, fsync,
//! rename, fsync of the directory).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{MetadataError, Result, Versioned};

/// The on-disk form. Values are stored as text when they are UTF-8 (all of
/// Sluice's are JSON), else as hex, so the file stays readable.
#[derive(Serialize, Deserialize, Default)]
struct FileImage {
    revision: u64,
    keys: BTreeMap<String, StoredValue>,
}

#[derive(Serialize, Deserialize)]
struct StoredValue {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    hex: Option<String>,
    version: u64,
}

/// Reads the file: its revision and keys. A missing file is an empty store.
pub(super) fn read(path: &Path) -> Result<(u64, BTreeMap<String, Versioned>)> {
    match std::fs::read(path) {
        Ok(bytes) => decode(path, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((0, BTreeMap::new())),
        Err(source) => Err(MetadataError::Io {
            op: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

fn decode(path: &Path, bytes: &[u8]) -> Result<(u64, BTreeMap<String, Versioned>)> {
    let corrupt = |reason: String| MetadataError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let image: FileImage = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut keys = BTreeMap::new();
    for (key, stored) in image.keys {
        let value = match (stored.text, stored.hex) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(hex)) => {
                decode_hex(&hex).ok_or_else(|| corrupt(format!("bad hex under {key}")))?
            }
            _ => return Err(corrupt(format!("key {key} needs exactly one of text/hex"))),
        };
        keys.insert(
            key,
            Versioned {
                value,
                version: stored.version,
            },
        );
    }
    Ok((image.revision, keys))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Writes the whole image: temp file, fsync, rename, fsync directory.
pub(super) fn write<'a>(
    path: &Path,
    revision: u64,
    keys: impl Iterator<Item = (&'a String, &'a Versioned)>,
) -> Result<()> {
    let mut image = FileImage {
        revision,
        keys: BTreeMap::new(),
    };
    for (key, value) in keys {
        let (text, hex) = match std::str::from_utf8(&value.value) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (
                None,
                Some(value.value.iter().map(|b| format!("{b:02x}")).collect()),
            ),
        };
        let stored = StoredValue {
            text,
            hex,
            version: value.version,
        };
        image.keys.insert(key.clone(), stored);
    }
    let io = |op: &'static str| {
        let path = path.to_owned();
        move |source| MetadataError::Io { op, path, source }
    };
    let bytes = serde_json::to_vec_pretty(&image).map_err(|e| MetadataError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io("create"))?;
    file.write_all(&bytes).map_err(io("write"))?;
    file.sync_data().map_err(io("fsync"))?;
    std::fs::rename(&tmp, path).map_err(io("rename"))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync the directory of"))?;
    }
    Ok(())
}
