//! No acknowledged offset is lost or duplicated, whatever the order and the
//! outcome of flushes and checkpoints: produces interleaved with failed,
//! partial and successful flushes, failed and successful saves, merges and
//! time passing, on a fixed schedule and on random ones (seeds printed).

use super::*;

/// What happens next, one letter each: `O` the flush in flight succeeds,
/// `F` fails, `P` fails after a partial write; `s` the save in flight
/// succeeds, `e` fails; `m` a sealed chunked segment is merged; `T` time
/// passes to the next deadline; anything else (or an event with nothing in
/// flight) lets 7 ms pass and ticks.
fn step(d: &mut Driver, event: char) {
    match event {
        'O' if d.flush.is_some() => drop(d.flush_ok()),
        'F' if d.flush.is_some() => drop(d.flush_err()),
        'P' if d.flush.is_some() => drop(d.flush_err_after_partial_write()),
        's' if d.save.is_some() => drop(d.save_ok()),
        'e' if d.save.is_some() => drop(d.save_err()),
        'm' => merge_one(d),
        'T' if d.machine.next_deadline().is_some() => drop(d.tick_at_deadline()),
        _ => {
            d.advance_to(d.now_ms + 7);
            d.tick();
        }
    }
}

/// Merges the oldest sealed, still chunked segment whose seal is done.
fn merge_one(d: &mut Driver) {
    let name = d
        .machine
        .sealed_segments()
        .iter()
        .find(|s| {
            matches!(s.layout, SegmentLayout::Chunks { .. }) && d.indexes.contains_key(&s.name)
        })
        .map(|s| s.name.clone());
    if let Some(name) = name {
        d.merge(&name);
    }
}

/// Produces `count` requests (every third with buffer acks), taking
/// `events` events from `next_event` after each; then lets storage
/// recover and time pass until everything is checkpointed. Checks that
/// every producer was answered with the offsets it was given, each
/// durable one as soon as a saved checkpoint covered it.
fn run(d: &mut Driver, count: u32, events: usize, mut next_event: impl FnMut() -> char) {
    let mut expected = Vec::new();
    let mut next_offset = d.machine.log_end_offset();
    for waiter in 0..count {
        let records = (waiter % 4 + 1) as usize;
        let ack = if waiter % 3 == 0 {
            AckMode::Buffer
        } else {
            AckMode::Durable
        };
        d.produce(&[batch(records, i64::from(waiter))], ack, waiter);
        expected.push((waiter, ok(next_offset, next_offset + records as i64 - 1)));
        next_offset += records as i64;
        for _ in 0..events {
            step(d, next_event());
            check_covered_are_answered(d, &expected);
        }
    }
    // Drain: storage recovers and time passes.
    for _ in 0..20 {
        d.settle();
        d.advance_to(d.now_ms + 5_000);
        d.tick();
    }
    d.settle();
    assert_eq!(d.machine.high_watermark(), next_offset);
    assert_eq!(d.machine.buffered_bytes(), 0);
    let mut replies = d.replies.clone();
    replies.sort_by_key(|(w, _)| *w);
    assert_eq!(replies, expected);
}

/// A durable producer is answered once a saved checkpoint covers it (the
/// driver checks it is not answered before).
fn check_covered_are_answered(d: &Driver, expected: &[(u32, Result<Appended, WriteRejected>)]) {
    let covered = d.machine.high_watermark();
    for (waiter, result) in expected {
        if let Ok(appended) = result
            && appended.last_offset < covered
        {
            assert!(
                d.reply(*waiter).is_some(),
                "waiter {waiter} is covered by {covered} but not answered"
            );
        }
    }
}

#[test]
fn failover_neither_loses_nor_duplicates_acknowledged_offsets() {
    let mut cfg = config();
    cfg.segment_bytes = 3 * batch(3, 0).len() as u64;
    let mut d = Driver::writing(cfg);
    // A fixed, varied schedule that interleaves flushes and checkpoints.
    let schedule = "OsOFsOPOsOesFFtOsOPOeOOsOFOsTsOOFPsOO";
    let mut events = schedule.chars().cycle();
    run(&mut d, 60, 3, || events.next().unwrap_or('t'));
    assert!(
        d.last_published().segments.len() > 3,
        "rolls and failovers made several segments"
    );
    assert!(
        d.flushes.iter().any(|f| f.seal.is_some()),
        "some flushes sealed"
    );
}

#[test]
fn random_schedules_neither_lose_nor_duplicate_acknowledged_offsets() {
    let seeds: Vec<u64> = match std::env::var("SLUICE_MACHINE_SEED") {
        Ok(seed) => vec![seed.parse().expect("SLUICE_MACHINE_SEED is a number")],
        Err(_) => (0..300).collect(),
    };
    let events = ['O', 'O', 'O', 'F', 'P', 's', 's', 's', 'e', 'm', 't', 'T'];
    for seed in seeds {
        eprintln!("random schedule, seed {seed} (replay with SLUICE_MACHINE_SEED={seed})");
        let mut rng = Rng::new(seed);
        let one = batch(3, 0).len() as u64;
        let mut cfg = config();
        cfg.segment_bytes = one * (1 + rng.below(5));
        cfg.index_interval_bytes = one * rng.below(3);
        if rng.below(3) == 0 {
            cfg.retention_bytes = Some(one * (4 + rng.below(8)));
        }
        let mut d = Driver::writing(cfg);
        d.chunked = rng.below(2) == 0;
        let per_produce = 1 + rng.below(4) as usize;
        run(&mut d, 40, per_produce, || {
            events[rng.below(events.len() as u64) as usize]
        });
    }
}
