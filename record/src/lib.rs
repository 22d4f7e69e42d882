//! Kafka record batches (format v2, magic 2): the unit of data Sluice stores and serves.
//!
//! - [`BatchHeader`] parses the fixed 61-byte header; [`validate_batch`] checks one
//!   whole batch (length, magic, counts, CRC-32C) without touching the records.
//! - [`split_batches`] cuts a produce request's records into validated zero-copy
//!   slices; [`BatchIter`] walks stored bytes leniently, stopping at a cut tail.
//! - [`set_base_offset`] and [`set_partition_leader_epoch`] rewrite header fields
//!   that lie outside the CRC, so a batch can be assigned offsets in place.
//! - [`BatchBuilder`] makes batches; [`decode_records`] turns one back into
//!   [`Record`]s, decompressing with any [`Compression`] Kafka clients use.
//! - [`murmur2`] and [`partition_for_key`] reproduce Kafka's default partitioner.
//!
//! Nothing here panics on bytes from the network: every failure is a [`BatchError`].

mod batch;
mod builder;
mod compression;
mod decode;
mod error;
mod header;
mod murmur;
mod record;
mod varint;

pub use batch::{
    BatchIter, BatchSlice, set_base_offset, set_partition_leader_epoch, split_batches,
    validate_batch,
};
pub use builder::BatchBuilder;
pub use compression::{Compression, MAX_DECOMPRESSED_SIZE, compress, decompress};
pub use decode::{decode_records, decode_records_shared};
pub use error::BatchError;
pub use header::{
    BatchHeader, HEADER_LEN, LENGTH_PREFIX_LEN, MAGIC, TimestampType, batch_total_len,
};
pub use murmur::{murmur2, partition_for_key};
pub use record::Record;
