//! Kafka zig-zag varints (int32, at most 5 bytes) and varlongs (int64, at most 10 bytes).
//!
//! Writers append to a `Vec<u8>`; [`Reader`] is a bounds-checked cursor over a
//! byte slice whose reads return `Err(&'static str)` with a reason instead of
//! panicking, so record decoding can turn them into
//! [`BatchError::CorruptRecord`](crate::BatchError::CorruptRecord).

/// Most bytes a zig-zag varint for an `i32` can take.
pub const MAX_VARINT_LEN: usize = 5;
/// Most bytes a zig-zag varlong for an `i64` can take.
pub const MAX_VARLONG_LEN: usize = 10;

/// Append `value` as a zig-zag varint (Kafka `ByteUtils.writeVarint`).
pub fn put_varint(out: &mut Vec<u8>, value: i32) {
    let zigzag = ((value << 1) ^ (value >> 31)) as u32;
    put_unsigned(out, u64::from(zigzag));
}

/// Append `value` as a zig-zag varlong (Kafka `ByteUtils.writeVarlong`).
pub fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let zigzag = ((value << 1) ^ (value >> 63)) as u64;
    put_unsigned(out, zigzag);
}

/// Number of bytes [`put_varint`] writes for `value`.
pub fn varint_len(value: i32) -> usize {
    let zigzag = ((value << 1) ^ (value >> 31)) as u32;
    unsigned_len(u64::from(zigzag))
}

/// Number of bytes [`put_varlong`] writes for `value`.
pub fn varlong_len(value: i64) -> usize {
    let zigzag = ((value << 1) ^ (value >> 63)) as u64;
    unsigned_len(zigzag)
}

fn put_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn unsigned_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// A bounds-checked cursor over bytes being decoded.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Read one byte.
    pub fn read_u8(&mut self) -> Result<u8, &'static str> {
        let byte = *self.buf.get(self.pos).ok_or("input ends inside a field")?;
        self.pos += 1;
        Ok(byte)
    }

    /// Read `len` bytes and return them as a slice of the input.
    pub fn read_slice(&mut self, len: usize) -> Result<&'a [u8], &'static str> {
        if len > self.remaining() {
            return Err("a length field points past the end of the record");
        }
        let start = self.pos;
        self.pos += len;
        Ok(&self.buf[start..self.pos])
    }

    /// Read a zig-zag varint (Kafka `ByteUtils.readVarint`).
    pub fn read_varint(&mut self) -> Result<i32, &'static str> {
        let raw = self.read_unsigned(MAX_VARINT_LEN, "varint is longer than 5 bytes")?;
        let raw = raw as u32;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// Read a zig-zag varlong (Kafka `ByteUtils.readVarlong`).
    pub fn read_varlong(&mut self) -> Result<i64, &'static str> {
        let raw = self.read_unsigned(MAX_VARLONG_LEN, "varlong is longer than 10 bytes")?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// Read a varint length where -1 means null and other negatives are invalid.
    pub fn read_nullable_len(&mut self) -> Result<Option<usize>, &'static str> {
        match self.read_varint()? {
            -1 => Ok(None),
            len if len < 0 => Err("length is negative and not -1 (null)"),
            len => Ok(Some(len as usize)),
        }
    }

    fn read_unsigned(
        &mut self,
        max_len: usize,
        too_long: &'static str,
    ) -> Result<u64, &'static str> {
        let mut value: u64 = 0;
        for index in 0..max_len {
            let byte = self.read_u8()?;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(too_long)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_round_trip(value: i32) -> Result<(), &'static str> {
        let mut out = Vec::new();
        put_varint(&mut out, value);
        assert_eq!(out.len(), varint_len(value), "length of {value}");
        let mut reader = Reader::new(&out);
        assert_eq!(reader.read_varint()?, value);
        assert_eq!(reader.remaining(), 0);
        Ok(())
    }

    fn varlong_round_trip(value: i64) -> Result<(), &'static str> {
        let mut out = Vec::new();
        put_varlong(&mut out, value);
        assert_eq!(out.len(), varlong_len(value), "length of {value}");
        let mut reader = Reader::new(&out);
        assert_eq!(reader.read_varlong()?, value);
        assert_eq!(reader.remaining(), 0);
        Ok(())
    }

    #[test]
    fn known_encodings_match_kafka() {
        // Values from Kafka's ByteUtilsTest.
        let cases: [(i32, &[u8]); 6] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "encoding of {value}");
        }
        let mut out = Vec::new();
        put_varint(&mut out, i32::MIN);
        assert_eq!(out, [0xff, 0xff, 0xff, 0xff, 0x0f]);
    }

    #[test]
    fn extremes_round_trip() -> Result<(), &'static str> {
        for value in [0, 1, -1, 300, -300, i32::MAX, i32::MIN] {
            varint_round_trip(value)?;
        }
        for value in [0, 1, -1, 1 << 40, -(1 << 40), i64::MAX, i64::MIN] {
            varlong_round_trip(value)?;
        }
        Ok(())
    }

    #[test]
    fn overlong_and_truncated_inputs_are_errors() {
        assert!(Reader::new(&[0x80; 6]).read_varint().is_err());
        assert!(Reader::new(&[0x80; 11]).read_varlong().is_err());
        assert!(Reader::new(&[0x80]).read_varint().is_err());
        assert!(Reader::new(&[]).read_varlong().is_err());
        assert!(Reader::new(&[0x03]).read_nullable_len().is_err());
        assert_eq!(Reader::new(&[0x01]).read_nullable_len(), Ok(None));
        assert!(Reader::new(&[1, 2]).read_slice(3).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_varint_round_trips(value: i32) {
            proptest::prop_assert!(varint_round_trip(value).is_ok());
        }

        #[test]
        fn any_varlong_round_trips(value: i64) {
            proptest::prop_assert!(varlong_round_trip(value).is_ok());
        }
    }
}
