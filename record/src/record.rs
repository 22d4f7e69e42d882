//! `Record`: one decoded record, and the encoder / decoder of a single record's bytes
//! (length varint, attributes, deltas, key, value, headers).

use bytes::Bytes;

use crate::error::BatchError;
use crate::varint::{Reader, put_varint, put_varlong, varint_len, varlong_len};

/// Smallest encoding of a record: length, attributes, timestamp delta, offset
/// delta, key length, value length and header count, one byte each.
pub(crate) const MIN_RECORD_LEN: usize = 7;

/// A record as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Absolute offset: the batch base offset plus the record's offset delta.
    /// Ignored when the record is added to a [`BatchBuilder`](crate::BatchBuilder).
    pub offset: i64,
    /// Timestamp in milliseconds since the epoch (the batch max timestamp when
    /// the batch uses LogAppendTime).
    pub timestamp: i64,
    /// The key, or `None` for a null key.
    pub key: Option<Bytes>,
    /// The value, or `None` for a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order: a UTF-8 key and a nullable value.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Append one encoded record to `out`.
pub(crate) fn encode_record<'h>(
    out: &mut Vec<u8>,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl Iterator<Item = (&'h str, Option<&'h [u8]>)> + Clone,
) -> Result<(), BatchError> {
    let key_len = nullable_len("record key", key)?;
    let value_len = nullable_len("record value", value)?;
    let header_count = checked_i32("record header count", headers.clone().count())?;

    let mut body_len = 1 // attributes
        + varlong_len(timestamp_delta)
        + varint_len(offset_delta)
        + varint_len(key_len)
        + key.map_or(0, <[u8]>::len)
        + varint_len(value_len)
        + value.map_or(0, <[u8]>::len)
        + varint_len(header_count);
    for (header_key, header_value) in headers.clone() {
        let header_key_len = checked_i32("record header key", header_key.len())?;
        let header_value_len = nullable_len("record header value", header_value)?;
        body_len += varint_len(header_key_len)
            + header_key.len()
            + varint_len(header_value_len)
            + header_value.map_or(0, <[u8]>::len);
    }
    let body_len = checked_i32("record", body_len)?;

    out.reserve(varint_len(body_len) + body_len as usize);
    put_varint(out, body_len);
    out.push(0); // record attributes: unused
    put_varlong(out, timestamp_delta);
    put_varint(out, offset_delta);
    put_nullable(out, key_len, key);
    put_nullable(out, value_len, value);
    put_varint(out, header_count);
    for (header_key, header_value) in headers {
        put_varint(out, header_key.len() as i32);
        out.extend_from_slice(header_key.as_bytes());
        put_nullable(
            out,
            header_value.map_or(-1, |v| v.len() as i32),
            header_value,
        );
    }
    Ok(())
}

fn put_nullable(out: &mut Vec<u8>, len: i32, data: Option<&[u8]>) {
    put_varint(out, len);
    if let Some(data) = data {
        out.extend_from_slice(data);
    }
}

fn nullable_len(what: &'static str, data: Option<&[u8]>) -> Result<i32, BatchError> {
    data.map_or(Ok(-1), |data| checked_i32(what, data.len()))
}

fn checked_i32(what: &'static str, size: usize) -> Result<i32, BatchError> {
    i32::try_from(size).map_err(|_| BatchError::TooLarge {
        what,
        size,
        max: i32::MAX as usize,
    })
}

/// Where a record's relative fields are anchored: values from the batch header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordBase {
    /// The batch base offset.
    pub offset: i64,
    /// The batch base timestamp.
    pub timestamp: i64,
    /// The batch max timestamp when the batch uses LogAppendTime.
    pub log_append_time: Option<i64>,
}

/// Decode the record at the reader's position; `payload` is the buffer the
/// reader reads, so key and value become zero-copy slices of it.
pub(crate) fn decode_record(
    reader: &mut Reader<'_>,
    payload: &Bytes,
    base: RecordBase,
    index: usize,
) -> Result<Record, BatchError> {
    let corrupt = |reason: &str| BatchError::corrupt(index, reason);
    let body_len = reader
        .read_varint()
        .map_err(|reason| corrupt(&format!("cannot read record length: {reason}")))?;
    let body_len = usize::try_from(body_len)
        .map_err(|_| corrupt(&format!("record length {body_len} is negative")))?;
    let body = reader.read_slice(body_len).map_err(|_| {
        corrupt(&format!(
            "record length {body_len} is larger than the {} bytes left in the batch",
            reader.remaining()
        ))
    })?;
    let mut body = Reader::new(body);
    let record = decode_body(&mut body, payload, base).map_err(corrupt)?;
    match body.remaining() {
        0 => Ok(record),
        extra => Err(corrupt(&format!(
            "record length says {body_len} bytes but its fields end {extra} bytes earlier"
        ))),
    }
}

fn decode_body(
    body: &mut Reader<'_>,
    payload: &Bytes,
    base: RecordBase,
) -> Result<Record, &'static str> {
    let _attributes = body.read_u8()?;
    let timestamp_delta = body.read_varlong()?;
    let offset_delta = body.read_varint()?;
    let key = read_nullable(body, payload)?;
    let value = read_nullable(body, payload)?;
    let header_count = body.read_varint()?;
    let header_count = usize::try_from(header_count).map_err(|_| "header count is negative")?;
    // Every header takes at least two bytes, which bounds the allocation.
    let mut headers = Vec::with_capacity(header_count.min(body.remaining() / 2));
    for _ in 0..header_count {
        let key_len = body
            .read_nullable_len()?
            .ok_or("header key is null, which Kafka does not allow")?;
        let header_key = std::str::from_utf8(body.read_slice(key_len)?)
            .map_err(|_| "header key is not valid UTF-8")?;
        let header_value = read_nullable(body, payload)?;
        headers.push((header_key.to_owned(), header_value));
    }
    Ok(Record {
        offset: base.offset.wrapping_add(i64::from(offset_delta)),
        timestamp: base
            .log_append_time
            .unwrap_or_else(|| base.timestamp.wrapping_add(timestamp_delta)),
        key,
        value,
        headers,
    })
}

fn read_nullable(body: &mut Reader<'_>, payload: &Bytes) -> Result<Option<Bytes>, &'static str> {
    match body.read_nullable_len()? {
        None => Ok(None),
        Some(len) => Ok(Some(payload.slice_ref(body.read_slice(len)?))),
    }
}
