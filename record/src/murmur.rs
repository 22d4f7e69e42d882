//! Kafka's default partitioner: `murmur2` exactly as `org.apache.kafka.common.utils.Utils.murmur2`.

use std::num::NonZeroU32;

/// The seed Kafka uses for murmur2.
const SEED: u32 = 0x9747_b28c;
const M: u32 = 0x5bd1_e995;
const R: u32 = 24;

/// 32-bit murmur2 hash of `data`, bit-for-bit what Kafka's Java client computes.
pub fn murmur2(data: &[u8]) -> i32 {
    // Java uses the array length as an int; keys are far below 2 GiB.
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (index, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * index);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a record with `key`:
/// `(murmur2(key) & 0x7fffffff) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: NonZeroU32) -> u32 {
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    positive % partitions.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_kafka_test_vectors() {
        // From Kafka's UtilsTest.testMurmur2.
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input.as_bytes()), expected, "murmur2({input:?})");
        }
    }

    #[test]
    fn partition_is_positive_hash_modulo_count() {
        let partitions = NonZeroU32::MIN.saturating_add(9); // 10 partitions
        // murmur2("21") = -973932308; & 0x7fffffff = 1173551340; % 10 = 0.
        assert_eq!(partition_for_key(b"21", partitions), 1_173_551_340 % 10);
        assert_eq!(partition_for_key(b"abc", partitions), 479_470_107 % 10);
        assert_eq!(partition_for_key(b"anything", NonZeroU32::MIN), 0);
    }
}
