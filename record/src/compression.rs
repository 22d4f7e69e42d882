//! `Compression`: the batch codecs (none, gzip, snappy, lz4, zstd) and their bounded
//! compress / decompress functions in the formats Kafka clients use.

use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

use crate::error::BatchError;

/// Largest size records of one batch may decompress to (256 MiB).
pub const MAX_DECOMPRESSED_SIZE: usize = 256 * 1024 * 1024;

/// Mask of the compression bits (0-2) in the batch attributes.
const COMPRESSION_MASK: i16 = 0x07;

/// Magic prefix of xerial-framed snappy, as written by snappy-java (`\x82SNAPPY\x00`).
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Xerial header: magic, then a version int32 and a compatible-version int32.
const XERIAL_HEADER_LEN: usize = XERIAL_MAGIC.len() + 8;
/// A raw snappy block cannot expand by more than this factor (a 3-byte copy yields 64 bytes).
const SNAPPY_MAX_EXPANSION: usize = 32;

/// The compression codec of a record batch (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Records are stored as they are.
    #[default]
    None,
    /// A gzip stream (RFC 1952).
    Gzip,
    /// Snappy: a raw block, or xerial framing when read.
    Snappy,
    /// The standard LZ4 frame format.
    Lz4,
    /// A standard zstd frame.
    Zstd,
}

impl Compression {
    /// Every codec, in attribute-id order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec named by the low three bits of batch `attributes`.
    pub fn from_attributes(attributes: i16) -> Result<Compression, BatchError> {
        Compression::from_id((attributes & COMPRESSION_MASK) as u8)
    }

    /// The codec with Kafka id `id` (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn from_id(id: u8) -> Result<Compression, BatchError> {
        match id {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            codec => Err(BatchError::UnknownCompression { codec }),
        }
    }

    /// The Kafka id of this codec, as stored in attribute bits 0-2.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The name used in configuration: "none", "gzip", "snappy", "lz4" or "zstd".
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = BatchError;

    /// Parse a codec name, ignoring ASCII case.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|codec| codec.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| BatchError::UnknownCompressionName {
                name: name.to_owned(),
            })
    }
}

/// Compress `data` with `codec` in the format Kafka clients read.
///
/// Snappy is written as one raw block, LZ4 as a frame of independent 64 KiB
/// blocks, zstd at level 3, gzip at the default level.
pub fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, BatchError> {
    let failed = |reason: String| BatchError::Compress { codec, reason };
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).map_err(|e| failed(e.to_string()))?;
            encoder.finish().map_err(|e| failed(e.to_string()))
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(|e| failed(e.to_string())),
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            encoder.write_all(data).map_err(|e| failed(e.to_string()))?;
            encoder.finish().map_err(|e| failed(e.to_string()))
        }
        Compression::Zstd => zstd::stream::encode_all(data, 3).map_err(|e| failed(e.to_string())),
    }
}

/// Decompress `data`, compressed with `codec`, refusing to produce more than `limit` bytes.
///
/// Memory use is bounded by `limit` and the input size, never by a length
/// field inside the compressed data.
pub fn decompress(codec: Compression, data: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    match codec {
        Compression::None if data.len() > limit => {
            Err(BatchError::DecompressedTooLarge { codec, limit })
        }
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => read_bounded(codec, flate2::read::MultiGzDecoder::new(data), limit),
        Compression::Snappy if data.starts_with(&XERIAL_MAGIC) => decompress_xerial(data, limit),
        Compression::Snappy => {
            let mut out = Vec::new();
            decompress_snappy_block(data, limit, &mut out)?;
            Ok(out)
        }
        Compression::Lz4 => read_bounded(codec, lz4_flex::frame::FrameDecoder::new(data), limit),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(data).map_err(|e| {
                BatchError::Decompress {
                    codec,
                    reason: e.to_string(),
                }
            })?;
            read_bounded(codec, decoder, limit)
        }
    }
}

/// Read a decompressing reader to its end, failing once more than `limit` bytes come out.
fn read_bounded(
    codec: Compression,
    reader: impl Read,
    limit: usize,
) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| BatchError::Decompress {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(BatchError::DecompressedTooLarge { codec, limit });
    }
    Ok(out)
}

/// Append the decompression of one raw snappy block to `out`, keeping `out` within `limit`.
fn decompress_snappy_block(
    block: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    let codec = Compression::Snappy;
    let failed = |reason: String| BatchError::Decompress { codec, reason };
    let len = snap::raw::decompress_len(block).map_err(|e| failed(e.to_string()))?;
    if len > limit.saturating_sub(out.len()) {
        return Err(BatchError::DecompressedTooLarge { codec, limit });
    }
    if len > block.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
        return Err(failed(format!(
            "block of {} bytes claims to expand to {len} bytes, more than snappy can produce",
            block.len()
        )));
    }
    let start = out.len();
    out.resize(start + len, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| failed(e.to_string()))?;
    out.truncate(start + written);
    Ok(())
}

/// Decompress xerial-framed snappy: a 16-byte header, then `[int32 length][raw block]` chunks.
fn decompress_xerial(data: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    let failed = |reason: String| BatchError::Decompress {
        codec: Compression::Snappy,
        reason,
    };
    let mut rest = data
        .get(XERIAL_HEADER_LEN..)
        .ok_or_else(|| failed("xerial snappy header is cut short".to_owned()))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len_bytes, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| failed("xerial snappy chunk length is cut short".to_owned()))?;
        let len = i32::from_be_bytes(*len_bytes);
        let block = usize::try_from(len)
            .ok()
            .and_then(|len| tail.get(..len))
            .ok_or_else(|| {
                failed(format!(
                    "xerial snappy chunk declares {len} bytes but {} remain",
                    tail.len()
                ))
            })?;
        decompress_snappy_block(block, limit, &mut out)?;
        rest = &tail[block.len()..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..10_000u32)
            .flat_map(|i| (i % 97).to_be_bytes())
            .collect()
    }

    #[test]
    fn names_round_trip() -> Result<(), BatchError> {
        for codec in Compression::ALL {
            assert_eq!(codec.to_string().parse::<Compression>()?, codec);
            assert_eq!(Compression::from_id(codec.id())?, codec);
        }
        assert_eq!("ZSTD".parse::<Compression>()?, Compression::Zstd);
        assert!(matches!(
            "brotli".parse::<Compression>(),
            Err(BatchError::UnknownCompressionName { .. })
        ));
        assert_eq!(
            Compression::from_attributes(0x7ff5),
            Err(BatchError::UnknownCompression { codec: 5 })
        );
        Ok(())
    }

    #[test]
    fn every_codec_round_trips() -> Result<(), BatchError> {
        let data = sample();
        for codec in Compression::ALL {
            let packed = compress(codec, &data)?;
            assert_eq!(
                decompress(codec, &packed, MAX_DECOMPRESSED_SIZE)?,
                data,
                "{codec}"
            );
            assert_eq!(
                decompress(codec, &compress(codec, &[])?, 16)?,
                Vec::<u8>::new()
            );
        }
        Ok(())
    }

    #[test]
    fn limit_is_enforced_for_every_codec() -> Result<(), BatchError> {
        let data = vec![7u8; 100_000];
        for codec in Compression::ALL {
            let packed = compress(codec, &data)?;
            assert_eq!(
                decompress(codec, &packed, 1000),
                Err(BatchError::DecompressedTooLarge { codec, limit: 1000 }),
                "{codec}"
            );
        }
        Ok(())
    }

    #[test]
    fn xerial_snappy_is_read() -> Result<(), BatchError> {
        let data = sample();
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&1i32.to_be_bytes());
        framed.extend_from_slice(&1i32.to_be_bytes());
        for chunk in data.chunks(3000) {
            let block = compress(Compression::Snappy, chunk)?;
            framed.extend_from_slice(&(block.len() as i32).to_be_bytes());
            framed.extend_from_slice(&block);
        }
        assert_eq!(decompress(Compression::Snappy, &framed, usize::MAX)?, data);

        framed.pop();
        assert!(matches!(
            decompress(Compression::Snappy, &framed, usize::MAX),
            Err(BatchError::Decompress { .. })
        ));
        Ok(())
    }

    #[test]
    fn snappy_length_header_cannot_force_a_large_allocation() {
        // Varint length header claiming ~256 MiB followed by nothing.
        let bomb = [0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(decompress(Compression::Snappy, &bomb, usize::MAX).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let garbage: Vec<u8> = (0..200u8).map(|i| i.wrapping_mul(37)).collect();
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert!(decompress(codec, &garbage, 1 << 20).is_err(), "{codec}");
        }
    }
}
