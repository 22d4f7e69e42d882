//! The fake task's I/O: the flush and the checkpoint save in flight end
//! as the test says (success, failure, partial write, fenced), performed
//! against the fake storage the way `task.rs` performs them.

use sluice_log::checkpoint::SaveOutcome;

use super::driver::FakeWriter;
use super::*;

impl Driver {
    fn take_flush(&mut self) -> FlushJob {
        self.flush.take().expect("a flush in flight")
    }

    fn take_save(&mut self) -> (Option<SealJob>, Checkpoint) {
        self.save.take().expect("a checkpoint save in flight")
    }

    /// Performs a seal as the task does: closes the writer if it is the
    /// sealed segment, writes the index to the home volume if absent.
    fn apply_seal(&mut self, seal: &SealJob) {
        if self.writer.as_ref().is_some_and(|w| w.name == seal.name) {
            self.writer = None;
        }
        let durable = self.durable.get(&seal.name).copied().unwrap_or(0);
        assert!(
            seal.layout.len() <= durable,
            "{} sealed at {} bytes but only {durable} are durable",
            seal.name,
            seal.layout.len(),
        );
        match self.indexes.get(&seal.name) {
            None => {
                self.indexes.insert(seal.name.clone(), seal.index.clone());
            }
            Some(existing) if *existing == seal.index => {}
            Some(_) => self.index_conflicts.push(seal.name.clone()),
        }
    }

    /// The flush in flight succeeds.
    pub(super) fn flush_ok(&mut self) -> Vec<&'static str> {
        let job = self.take_flush();
        if let Some(seal) = &job.seal {
            self.apply_seal(seal);
        }
        if let SegmentTarget::New { name, avoid } = &job.target {
            assert!(!self.store.contains_key(name), "segment name {name} reused");
            let volume = if avoid.as_deref() == Some(VOLUME) {
                OTHER_VOLUME
            } else {
                VOLUME
            };
            self.store.insert(name.clone(), Vec::new());
            self.writer = Some(FakeWriter {
                name: name.clone(),
                volume: volume.into(),
                lens: Vec::new(),
            });
        }
        let writer = self.writer.as_mut().expect("an open writer to append to");
        let stored = self.store.get_mut(&writer.name).expect("stored segment");
        for data in &job.data {
            stored.extend_from_slice(data);
        }
        writer.lens.push(total_len(&job.data));
        let len: u64 = writer.lens.iter().sum();
        assert_eq!(len, stored.len() as u64, "appends land at the end");
        self.durable.insert(writer.name.clone(), len);
        let layout = if self.chunked {
            SegmentLayout::Chunks {
                lens: writer.lens.clone(),
            }
        } else {
            SegmentLayout::File { len }
        };
        let flushed = Flushed {
            volume: writer.volume.clone(),
            layout,
        };
        let actions = self.machine.flush_done(Ok(flushed), self.now());
        self.absorb(actions)
    }

    /// The flush in flight fails before doing anything.
    pub(super) fn flush_err(&mut self) -> Vec<&'static str> {
        self.take_flush();
        self.writer = None;
        let actions = self
            .machine
            .flush_done(Err("disk on fire".into()), self.now());
        self.absorb(actions)
    }

    /// The flush in flight seals and appends part of its data, then fails.
    pub(super) fn flush_err_after_partial_write(&mut self) -> Vec<&'static str> {
        let job = self.take_flush();
        if let Some(seal) = &job.seal {
            self.apply_seal(seal);
        }
        if let (SegmentTarget::Open, Some(writer)) = (&job.target, &self.writer) {
            let stored = self.store.get_mut(&writer.name).expect("stored segment");
            let first = &job.data[0];
            stored.extend_from_slice(&first[..first.len() / 2]);
        }
        self.writer = None;
        let actions = self
            .machine
            .flush_done(Err("disk on fire".into()), self.now());
        self.absorb(actions)
    }

    /// The save in flight seals (if asked) and creates its checkpoint.
    pub(super) fn save_ok(&mut self) -> Vec<&'static str> {
        let (seal, _) = self.take_save();
        if let Some(seal) = &seal {
            self.apply_seal(seal);
        }
        let actions = self
            .machine
            .checkpoint_done(Ok(SaveOutcome::Saved), self.now());
        self.absorb(actions)
    }

    /// The save in flight fails before doing anything.
    pub(super) fn save_err(&mut self) -> Vec<&'static str> {
        self.take_save();
        let actions = self
            .machine
            .checkpoint_done(Err("store unavailable".into()), self.now());
        self.absorb(actions)
    }

    /// The save in flight seals, then finds its sequence saved by `by_epoch`.
    pub(super) fn save_fenced(&mut self, by_epoch: u64) -> Vec<&'static str> {
        let (seal, _) = self.take_save();
        if let Some(seal) = &seal {
            self.apply_seal(seal);
        }
        let actions = self
            .machine
            .checkpoint_done(Ok(SaveOutcome::Fenced { by_epoch }), self.now());
        self.absorb(actions)
    }

    /// Completes every flush and checkpoint until none is in flight.
    pub(super) fn settle(&mut self) {
        loop {
            if self.flush.is_some() {
                self.flush_ok();
            } else if self.save.is_some() {
                self.save_ok();
            } else {
                break;
            }
        }
    }
}
