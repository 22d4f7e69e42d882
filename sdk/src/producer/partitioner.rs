//! Choosing a record's partition: explicit, by key (Kafka's murmur2
//! default partitioner), else sticky (Kafka's sticky partitioner) or
//! round-robin for keyless records.

use std::num::NonZeroU32;
use std::sync::Arc;

use rand::Rng;

/// A function from (topic, key, partition count) to a partition, for
/// [`Partitioner::Custom`]. A result at or above the count is taken modulo it.
pub type PartitionFn = Arc<dyn Fn(&str, Option<&[u8]>, NonZeroU32) -> u32 + Send + Sync>;

/// How the producer picks the partition of a record that names none.
///
/// Records with a key always go to Kafka's default partition for it,
/// `murmur2(key) % partitions`, so Kafka clients and Sluice producers put
/// the same key in the same partition — except with [`Partitioner::Custom`],
/// which decides for keyed records too.
#[derive(Clone, Default)]
pub enum Partitioner {
    /// Keyless records stay on one randomly chosen partition until its
    /// batch is sent, then move to another (Kafka's sticky partitioner):
    /// fewer, larger batches.
    #[default]
    Sticky,
    /// Keyless records go to each partition in turn.
    RoundRobin,
    /// Every record without an explicit partition goes where the function says.
    Custom(PartitionFn),
}

impl std::fmt::Debug for Partitioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Partitioner::Sticky => f.write_str("Sticky"),
            Partitioner::RoundRobin => f.write_str("RoundRobin"),
            Partitioner::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// Kafka's default partition for a key.
pub(crate) fn partition_for_key(key: &[u8], partitions: NonZeroU32) -> u32 {
    sluice_record::partition_for_key(key, partitions)
}

/// The sticky choice for one topic: the partition keyless records go to,
/// and the batch they joined there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sticky {
    pub partition: u32,
    /// The batch the last keyless record joined, once one did.
    pub batch: Option<u64>,
}

/// The partition of the next keyless record under the sticky partitioner.
///
/// `open_batch(p)` is the id of the batch of partition `p` still open for
/// records. The choice moves to another random partition when the batch
/// the topic's keyless records joined is no longer open (it was sent or is
/// full), or when the partition count no longer covers it.
pub(crate) fn sticky_partition(
    current: Option<Sticky>,
    partitions: NonZeroU32,
    open_batch: impl FnOnce(u32) -> Option<u64>,
    random: impl FnOnce(u32) -> u32,
) -> Sticky {
    let count = partitions.get();
    match current {
        Some(sticky) if sticky.partition < count => match sticky.batch {
            Some(batch) if open_batch(sticky.partition) != Some(batch) => Sticky {
                partition: other_partition(sticky.partition, count, random),
                batch: None,
            },
            _ => sticky,
        },
        _ => Sticky {
            partition: random(count),
            batch: None,
        },
    }
}

/// A random partition other than `current` (the same one if it is the only one).
fn other_partition(current: u32, count: u32, random: impl FnOnce(u32) -> u32) -> u32 {
    if count <= 1 {
        return 0;
    }
    let pick = random(count - 1);
    if pick >= current { pick + 1 } else { pick }
}

/// The next partition in turn for a keyless record; `counter` moves on.
pub(crate) fn round_robin(counter: &mut u32, partitions: NonZeroU32) -> u32 {
    let partition = *counter % partitions.get();
    *counter = counter.wrapping_add(1);
    partition
}

/// A uniformly random number in `0..bound`.
pub(crate) fn random_below(bound: u32) -> u32 {
    rand::rng().random_range(0..bound.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
    }

    #[test]
    fn keys_go_where_kafka_puts_them() {
        // murmur2 values from Kafka's UtilsTest.testMurmur2, taken
        // `& 0x7fffffff` and modulo the count as DefaultPartitioner does.
        let cases: [(&str, i32); 4] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("abc", 479_470_107),
        ];
        for (key, hash) in cases {
            for partitions in [1, 3, 7, 12, 100] {
                let expected = (hash & 0x7fff_ffff) as u32 % partitions;
                assert_eq!(
                    partition_for_key(key.as_bytes(), count(partitions)),
                    expected,
                    "{key} over {partitions}"
                );
            }
        }
        // Worked out by hand: murmur2("21") & 0x7fffffff = 1173551340.
        assert_eq!(partition_for_key(b"21", count(3)), 0);
        assert_eq!(partition_for_key(b"21", count(7)), 1_173_551_340 % 7);
    }

    #[test]
    fn sticky_starts_on_a_random_partition() {
        let chosen = sticky_partition(None, count(8), |_| None, |bound| bound - 1);
        assert_eq!(
            chosen,
            Sticky {
                partition: 7,
                batch: None
            }
        );
    }

    #[test]
    fn sticky_stays_while_its_batch_is_open() {
        let current = Some(Sticky {
            partition: 2,
            batch: Some(10),
        });
        let chosen = sticky_partition(current, count(8), |_| Some(10), |_| 0);
        assert_eq!(chosen.partition, 2);
        assert_eq!(chosen.batch, Some(10));
    }

    #[test]
    fn sticky_moves_to_another_partition_once_its_batch_is_sent() {
        let current = Some(Sticky {
            partition: 2,
            batch: Some(10),
        });
        // The batch 10 was sent; batch 11 (or none) is open now.
        for open in [None, Some(11)] {
            for random in 0..7 {
                let chosen = sticky_partition(current, count(8), |_| open, |_| random);
                assert_ne!(chosen.partition, 2);
                assert!(chosen.partition < 8);
                assert_eq!(chosen.batch, None);
            }
        }
        // With one partition there is nowhere else to go.
        let single = Some(Sticky {
            partition: 0,
            batch: Some(10),
        });
        assert_eq!(
            sticky_partition(single, count(1), |_| None, |_| 0).partition,
            0
        );
    }

    #[test]
    fn sticky_leaves_a_partition_beyond_the_count() {
        let current = Some(Sticky {
            partition: 9,
            batch: Some(1),
        });
        let chosen = sticky_partition(current, count(4), |_| Some(1), |bound| bound - 1);
        assert_eq!(chosen.partition, 3);
    }

    #[test]
    fn round_robin_visits_each_partition_in_turn() {
        let mut counter = 2;
        let picks: Vec<u32> = (0..7)
            .map(|_| round_robin(&mut counter, count(3)))
            .collect();
        assert_eq!(picks, [2, 0, 1, 2, 0, 1, 2]);
        let mut counter = u32::MAX;
        assert_eq!(round_robin(&mut counter, count(4)), u32::MAX % 4);
        assert_eq!(counter, 0, "wraps");
    }

    #[test]
    fn other_partition_covers_every_other_partition_evenly() {
        let picks: Vec<u32> = (0..4).map(|r| other_partition(2, 5, |_| r)).collect();
        assert_eq!(picks, [0, 1, 3, 4]);
    }
}
