//! The checkpoint sequence on real volumes (memory and local directory):
//! save, load the newest, prune, and fencing by create-if-absent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use sluice_log::checkpoint::{self, CHECKPOINTS_KEPT, Checkpoint, SaveOutcome, SegmentMeta};
use sluice_log::{IndexEntry, LogError, PartitionKey, paths};
use sluice_storage::{SegmentLayout, Volume, open_volume};

#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    LocalDir,
}

const BACKENDS: [Backend; 2] = [Backend::Memory, Backend::LocalDir];

static NEXT_VOLUME: AtomicU64 = AtomicU64::new(0);

/// A fresh volume, never shared with another test.
async fn home(backend: Backend) -> (Arc<dyn Volume>, Option<tempfile::TempDir>) {
    let n = NEXT_VOLUME.fetch_add(1, Ordering::Relaxed);
    match backend {
        Backend::Memory => {
            let url = format!("memory://checkpoints-{}-{n}", std::process::id());
            (open_volume(&url).await.expect("memory volume"), None)
        }
        Backend::LocalDir => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("dir://{}", dir.path().display());
            (open_volume(&url).await.expect("dir volume"), Some(dir))
        }
    }
}

fn key() -> PartitionKey {
    PartitionKey::new("payments", 5)
}

fn checkpoint(sequence: u64, epoch: u64, high_watermark: i64) -> Checkpoint {
    Checkpoint {
        sequence,
        epoch,
        topic_id: "payments-id".into(),
        log_start_offset: 0,
        high_watermark,
        segments: vec![SegmentMeta {
            name: paths::segment_name(0, epoch, 0),
            base_offset: 0,
            end_offset: high_watermark,
            epoch,
            volume: "memory://somewhere".into(),
            layout: SegmentLayout::Chunks {
                lens: vec![100, 250],
            },
            max_timestamp: 1_700_000_000_000,
            created_at_ms: 1_700_000_000_000,
            sealed: false,
            index: vec![IndexEntry {
                offset: 0,
                position: 0,
                max_timestamp_before: -1,
            }],
        }],
        takeovers: Vec::new(),
        requests: Vec::new(),
        producers: Default::default(),
        written_at_ms: 1_700_000_000_001,
    }
}

async fn sequences(home: &Arc<dyn Volume>) -> Vec<u64> {
    let mut found: Vec<u64> = home
        .list(&paths::checkpoint_dir(&key()))
        .await
        .expect("list")
        .iter()
        .filter_map(|p| paths::parse_checkpoint(p))
        .collect();
    found.sort_unstable();
    found
}

#[tokio::test]
async fn a_saved_checkpoint_is_the_latest_and_loads_back_equal() {
    for backend in BACKENDS {
        let (home, _dir) = home(backend).await;
        assert_eq!(
            checkpoint::load_latest(home.as_ref(), &key())
                .await
                .expect("load"),
            None,
            "{backend:?}: nothing saved yet"
        );
        for sequence in 1..=12 {
            let saved = checkpoint(sequence, 3, sequence as i64 * 10);
            assert_eq!(
                checkpoint::save(home.as_ref(), &key(), &saved)
                    .await
                    .expect("save"),
                SaveOutcome::Saved
            );
            let latest = checkpoint::load_latest(home.as_ref(), &key())
                .await
                .expect("load");
            assert_eq!(latest, Some(saved), "{backend:?}");
        }
        // Stored where DESIGN.md says, one object per sequence.
        assert_eq!(sequences(&home).await, (1..=12).collect::<Vec<_>>());
        let raw = home.get(&paths::checkpoint(&key(), 12)).await.expect("get");
        assert_eq!(raw, checkpoint(12, 3, 120).encode());
        // Another partition's checkpoints are its own.
        let other = PartitionKey::new("payments", 6);
        assert_eq!(
            checkpoint::load_latest(home.as_ref(), &other)
                .await
                .expect("load"),
            None
        );
    }
}

#[tokio::test]
async fn the_latest_is_the_highest_sequence_whatever_the_order_of_saves() {
    for backend in BACKENDS {
        let (home, _dir) = home(backend).await;
        for sequence in [3, 100, 7, 99, 10_000_000_000] {
            checkpoint::save(home.as_ref(), &key(), &checkpoint(sequence, 1, 1))
                .await
                .expect("save");
        }
        let latest = checkpoint::load_latest(home.as_ref(), &key())
            .await
            .expect("load")
            .expect("a checkpoint");
        assert_eq!(latest.sequence, 10_000_000_000, "{backend:?}");
    }
}

#[tokio::test]
async fn two_writers_racing_for_one_sequence_leave_exactly_one_saved() {
    for backend in BACKENDS {
        let (home, _dir) = home(backend).await;
        for sequence in 1..=25u64 {
            let old_owner = checkpoint(sequence, 4, 10);
            let new_owner = checkpoint(sequence, 5, 7);
            let (a, b) = {
                let (home_a, home_b) = (Arc::clone(&home), Arc::clone(&home));
                let a = tokio::spawn(async move {
                    checkpoint::save(home_a.as_ref(), &key(), &old_owner).await
                });
                let b = tokio::spawn(async move {
                    checkpoint::save(home_b.as_ref(), &key(), &new_owner).await
                });
                (
                    a.await.expect("join").expect("save"),
                    b.await.expect("join").expect("save"),
                )
            };
            let latest = checkpoint::load_latest(home.as_ref(), &key())
                .await
                .expect("load")
                .expect("a checkpoint");
            match (&a, &b) {
                (SaveOutcome::Saved, SaveOutcome::Fenced { by_epoch: 4 }) => {
                    assert_eq!(latest, checkpoint(sequence, 4, 10));
                }
                (SaveOutcome::Fenced { by_epoch: 5 }, SaveOutcome::Saved) => {
                    assert_eq!(latest, checkpoint(sequence, 5, 7));
                }
                _ => panic!("{backend:?}: sequence {sequence}: {a:?} and {b:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_writers_racing_on_threads_leave_exactly_one_saved() {
    for backend in BACKENDS {
        let (home, _dir) = home(backend).await;
        for sequence in 1..=10u64 {
            let mut tasks = Vec::new();
            for epoch in 1..=6u64 {
                let home = Arc::clone(&home);
                tasks.push(tokio::spawn(async move {
                    let outcome =
                        checkpoint::save(home.as_ref(), &key(), &checkpoint(sequence, epoch, 1))
                            .await
                            .expect("save");
                    (epoch, outcome)
                }));
            }
            let mut outcomes = Vec::new();
            for task in tasks {
                outcomes.push(task.await.expect("join"));
            }
            let winners: Vec<u64> = outcomes
                .iter()
                .filter(|(_, o)| *o == SaveOutcome::Saved)
                .map(|(e, _)| *e)
                .collect();
            assert_eq!(winners.len(), 1, "{backend:?}: {outcomes:?}");
            let winner = winners[0];
            for (_, outcome) in &outcomes {
                assert!(
                    *outcome == SaveOutcome::Saved
                        || *outcome == SaveOutcome::Fenced { by_epoch: winner },
                    "{backend:?}: {outcomes:?}"
                );
            }
            let latest = checkpoint::load_latest(home.as_ref(), &key())
                .await
                .expect("load")
                .expect("a checkpoint");
            assert_eq!(latest.epoch, winner);
        }
    }
}

#[tokio::test]
async fn saving_the_identical_checkpoint_again_is_a_success() {
    for backend in BACKENDS {
        let (home, _dir) = home(backend).await;
        let saved = checkpoint(1, 2, 5);
        for _ in 0..3 {
            assert_eq!(
                checkpoint::save(home.as_ref(), &key(), &saved)
                    .await
                    .expect("save"),
                SaveOutcome::Saved,
                "{backend:?}: a retry whose first answer was lost"
            );
        }
        // The same writer with different content is fenced: the sequence is taken.
        let mut different = saved.clone();
        different.high_watermark = 6;
        assert_eq!(
            checkpoint::save(home.as_ref(), &key(), &different)
                .await
                .expect("save"),
            SaveOutcome::Fenced { by_epoch: 2 }
        );
        assert_eq!(
            checkpoint::load_latest(home.as_ref(), &key())
                .await
                .expect("load"),
            Some(saved)
        );
    }
}

#[tokio::test]
async fn a_damaged_object_in_the_way_still_fences() {
    for backend in BACKENDS {
        let (home, _dir) = home(backend).await;
        home.put_if_absent(&paths::checkpoint(&key(), 1), Bytes::from_static(b"junk"))
            .await
            .expect("put");
        assert_eq!(
            checkpoint::save(home.as_ref(), &key(), &checkpoint(1, 3, 1))
                .await
                .expect("save"),
            SaveOutcome::Fenced { by_epoch: 0 },
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn prune_keeps_the_newest_few() {
    for backend in BACKENDS {
        let (home, _dir) = home(backend).await;
        for sequence in 1..=10 {
            checkpoint::save(home.as_ref(), &key(), &checkpoint(sequence, 1, 1))
                .await
                .expect("save");
        }
        // Too few to prune anything.
        checkpoint::prune(home.as_ref(), &key(), CHECKPOINTS_KEPT, &[])
            .await
            .expect("prune");
        assert_eq!(sequences(&home).await, (1..=10).collect::<Vec<_>>());
        checkpoint::prune(home.as_ref(), &key(), 10, &[])
            .await
            .expect("prune");
        let kept: Vec<u64> = (10 - CHECKPOINTS_KEPT..=10).collect();
        assert_eq!(sequences(&home).await, kept, "{backend:?}");
        // Pruning again, or below what is left, changes nothing.
        checkpoint::prune(home.as_ref(), &key(), 10, &[])
            .await
            .expect("prune");
        checkpoint::prune(home.as_ref(), &key(), 2, &[])
            .await
            .expect("prune");
        assert_eq!(sequences(&home).await, kept);
        let latest = checkpoint::load_latest(home.as_ref(), &key())
            .await
            .expect("load")
            .expect("a checkpoint");
        assert_eq!(latest.sequence, 10);
    }
}

/// A paused old owner's next attempt is the sequence the owner after it
/// saved on takeover. Pruning keeps takeover checkpoints (the checkpoint
/// lists them), so that attempt fails however far the log has moved on.
#[tokio::test]
async fn a_stale_writer_whose_next_sequence_would_have_been_pruned_is_fenced() {
    for backend in BACKENDS {
        let (home, _dir) = home(backend).await;
        // Epoch 1 saved 1 and paused; epoch 2 took over at 2 and went on to 20.
        checkpoint::save(home.as_ref(), &key(), &checkpoint(1, 1, 1))
            .await
            .expect("save");
        for sequence in 2..=20 {
            checkpoint::save(home.as_ref(), &key(), &checkpoint(sequence, 2, 1))
                .await
                .expect("save");
        }
        checkpoint::prune(home.as_ref(), &key(), 20, &[1, 2])
            .await
            .expect("prune");
        let kept = sequences(&home).await;
        assert!(
            kept.contains(&2) && !kept.contains(&3),
            "{backend:?}: {kept:?}"
        );
        // Epoch 1 wakes up and saves its next checkpoint.
        assert_eq!(
            checkpoint::save(home.as_ref(), &key(), &checkpoint(2, 1, 2))
                .await
                .expect("save"),
            SaveOutcome::Fenced { by_epoch: 2 },
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn a_damaged_latest_checkpoint_is_reported() {
    for backend in BACKENDS {
        let (home, _dir) = home(backend).await;
        checkpoint::save(home.as_ref(), &key(), &checkpoint(1, 1, 1))
            .await
            .expect("save");
        let mut damaged = checkpoint(2, 1, 2).encode().to_vec();
        let last = damaged.len() - 2;
        damaged[last] ^= 0x20;
        home.put_if_absent(&paths::checkpoint(&key(), 2), Bytes::from(damaged))
            .await
            .expect("put");
        let error = checkpoint::load_latest(home.as_ref(), &key())
            .await
            .expect_err("damaged");
        assert!(
            matches!(error, LogError::CorruptCheckpoint { ref path, .. } if path.ends_with("00000000000000000002")),
            "{backend:?}: {error:?}"
        );
        // A checkpoint stored under the wrong sequence is damage too.
        let (home, _dir) = self::home(backend).await;
        home.put_if_absent(&paths::checkpoint(&key(), 4), checkpoint(3, 1, 1).encode())
            .await
            .expect("put");
        let error = checkpoint::load_latest(home.as_ref(), &key())
            .await
            .expect_err("wrong sequence");
        assert!(
            matches!(error, LogError::CorruptCheckpoint { .. }),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn other_objects_in_the_checkpoint_directory_are_ignored() {
    for backend in BACKENDS {
        let (home, _dir) = home(backend).await;
        checkpoint::save(home.as_ref(), &key(), &checkpoint(7, 1, 1))
            .await
            .expect("save");
        let dir = paths::checkpoint_dir(&key());
        for name in ["README", "99999999999999999999x", "000000000000000000080"] {
            home.put_if_absent(&format!("{dir}/{name}"), Bytes::from_static(b"x"))
                .await
                .expect("put");
        }
        let latest = checkpoint::load_latest(home.as_ref(), &key())
            .await
            .expect("load")
            .expect("a checkpoint");
        assert_eq!(latest.sequence, 7, "{backend:?}");
        checkpoint::prune(home.as_ref(), &key(), 100, &[])
            .await
            .expect("prune");
        assert_eq!(sequences(&home).await, Vec::<u64>::new());
    }
}
