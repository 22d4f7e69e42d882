//! Retention: which whole sealed segments a partition drops, by age and by
//! size, as a pure function. The open segment is never dropped.

use std::time::Duration;

use sluice_log::SegmentMeta;

/// How many of the oldest `sealed` segments retention deletes.
///
/// By age: a segment goes when its newest record is older than `retention`
/// (segments without timestamps use their creation time). By size: the
/// oldest segments go while the partition, open segment included, would
/// still hold at least `retention_bytes` without them (as Kafka does).
/// Segments go strictly from the oldest: a young segment keeps every older
/// one that only size would spare.
pub fn expired_segments(
    sealed: &[SegmentMeta],
    open: Option<&SegmentMeta>,
    now_ms: i64,
    retention: Option<Duration>,
    retention_bytes: Option<u64>,
) -> usize {
    let by_age = match retention {
        Some(retention) => {
            let cutoff =
                now_ms.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
            sealed.iter().take_while(|s| newest(s) < cutoff).count()
        }
        None => 0,
    };
    let by_size = match retention_bytes {
        Some(limit) => {
            let mut total: u64 =
                sealed.iter().map(SegmentMeta::len).sum::<u64>() + open.map_or(0, SegmentMeta::len);
            let mut count = 0;
            for segment in sealed {
                if total - segment.len() < limit {
                    break;
                }
                total -= segment.len();
                count += 1;
            }
            count
        }
        None => 0,
    };
    by_age.max(by_size)
}

fn newest(segment: &SegmentMeta) -> i64 {
    if segment.max_timestamp >= 0 {
        segment.max_timestamp
    } else {
        segment.created_at_ms
    }
}

#[cfg(test)]
mod tests {
    use sluice_storage::SegmentLayout;

    use super::*;

    fn segment(base: i64, len: u64, max_timestamp: i64) -> SegmentMeta {
        SegmentMeta {
            name: format!("{base:020}-1"),
            base_offset: base,
            end_offset: base + 10,
            epoch: 1,
            volume: "memory://r".into(),
            layout: SegmentLayout::File { len },
            max_timestamp,
            created_at_ms: 0,
            sealed: true,
            index: vec![],
        }
    }

    #[test]
    fn age_drops_only_the_oldest_run() {
        let sealed = [
            segment(0, 100, 1_000),
            segment(10, 100, 5_000),
            segment(20, 100, 2_000),
        ];
        // Cutoff 10_000 - 6_000 = 4_000: only the first is older; the third,
        // though old, stays behind the younger second.
        assert_eq!(
            expired_segments(
                &sealed,
                None,
                10_000,
                Some(Duration::from_millis(6_000)),
                None
            ),
            1
        );
        assert_eq!(
            expired_segments(
                &sealed,
                None,
                100_000,
                Some(Duration::from_millis(6_000)),
                None
            ),
            3
        );
        assert_eq!(expired_segments(&sealed, None, 100_000, None, None), 0);
    }

    #[test]
    fn size_keeps_at_least_the_limit() {
        let sealed = [segment(0, 100, 1), segment(10, 100, 1), segment(20, 100, 1)];
        let open = segment(30, 50, 1);
        // 350 bytes in all; limit 200: dropping 100 leaves 250, dropping 200 leaves 150 < 200.
        assert_eq!(
            expired_segments(&sealed, Some(&open), 0, None, Some(200)),
            1
        );
        assert_eq!(expired_segments(&sealed, Some(&open), 0, None, Some(50)), 3);
        assert_eq!(
            expired_segments(&sealed, Some(&open), 0, None, Some(10_000)),
            0
        );
    }

    #[test]
    fn segments_without_timestamps_age_from_creation() {
        let mut old = segment(0, 10, -1);
        old.created_at_ms = 1;
        assert_eq!(
            expired_segments(&[old], None, 10_000, Some(Duration::from_millis(100)), None),
            1
        );
    }
}
