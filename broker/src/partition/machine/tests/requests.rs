//! Requests carrying an id (a proxy's retry token): a retry of an appended
//! request is answered with its offsets and never written twice, also by a
//! new owner after a move; a request the checkpoint does not cover (lost in
//! a crash) is written anew when retried.

use super::*;

fn with_id(batches: &[Bytes], id: &str) -> ProduceBatches {
    let mut produce = request(batches);
    produce.request_id = Some(id.to_owned());
    produce
}

fn produce_with_id(
    d: &mut Driver,
    batches: &[Bytes],
    id: &str,
    ack: AckMode,
    waiter: u32,
) -> Vec<&'static str> {
    if ack == AckMode::Durable {
        d.durable_waiters.insert(waiter);
    }
    let now = d.now();
    let actions = d.machine.produce(with_id(batches, id), ack, waiter, now);
    d.absorb(actions)
}

#[test]
fn a_retry_is_answered_with_the_first_offsets_and_not_written_again() {
    let mut d = Driver::writing(config());
    assert_eq!(
        produce_with_id(&mut d, &[batch(3, 0)], "a", AckMode::Durable, 1),
        ["Flush"]
    );
    // The retry arrives while the first attempt is being flushed.
    assert!(produce_with_id(&mut d, &[batch(3, 0)], "a", AckMode::Durable, 2).is_empty());
    assert_eq!(
        d.machine.log_end_offset(),
        3,
        "nothing appended for the retry"
    );
    d.flush_ok();
    d.save_ok();
    assert_eq!(d.reply(1), Some(&ok(0, 2)));
    assert_eq!(
        d.reply(2),
        Some(&ok(0, 2)),
        "the retry gets the same answer"
    );
    // And after the checkpoint, at once for a buffer ack.
    assert_eq!(
        produce_with_id(&mut d, &[batch(3, 0)], "a", AckMode::Buffer, 3),
        ["Reply"]
    );
    assert_eq!(d.reply(3), Some(&ok(0, 2)));
    // Another id is a new request.
    produce_with_id(&mut d, &[batch(2, 0)], "b", AckMode::Buffer, 4);
    assert_eq!(d.reply(4), Some(&ok(3, 4)));
}

#[test]
fn checkpoints_list_only_the_requests_they_cover() {
    let mut d = Driver::writing(config());
    produce_with_id(&mut d, &[batch(2, 0)], "durable", AckMode::Durable, 1);
    d.flush_ok();
    // Buffered after the flush: not covered by the checkpoint now being saved.
    produce_with_id(&mut d, &[batch(2, 0)], "buffered", AckMode::Buffer, 2);
    let (_, checkpoint) = d.pending_save();
    let ids: Vec<&str> = checkpoint.requests.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["durable"]);
    assert_eq!(
        (
            checkpoint.requests[0].base_offset,
            checkpoint.requests[0].last_offset
        ),
        (0, 1)
    );
}

#[test]
fn a_new_owner_answers_retries_of_requests_its_checkpoint_covers() {
    let mut previous = Driver::writing(config());
    produce_with_id(&mut previous, &[batch(4, 0)], "moved", AckMode::Durable, 1);
    previous.flush_ok();
    produce_with_id(&mut previous, &[batch(1, 0)], "lost", AckMode::Buffer, 2);
    previous.save_ok();
    let found = previous.last_published().clone();
    assert_eq!(
        found.requests.len(),
        1,
        "only the covered request: {:?}",
        found.requests
    );

    let mut d = Driver::new(config());
    let name = found.segments[0].name.clone();
    d.store_previous_segment(&name, &[batch(4, 0)]);
    d.recover(Some(found), None);
    d.save_ok();
    // Retry of a request the old owner wrote: same offsets, nothing written.
    assert_eq!(
        produce_with_id(&mut d, &[batch(4, 0)], "moved", AckMode::Buffer, 3),
        ["Reply"]
    );
    assert_eq!(d.reply(3), Some(&ok(0, 3)));
    assert_eq!(d.machine.log_end_offset(), 4);
    // Retry of one that was lost with the old owner: written now.
    produce_with_id(&mut d, &[batch(1, 0)], "lost", AckMode::Buffer, 4);
    assert_eq!(d.reply(4), Some(&ok(4, 4)));
    assert_eq!(d.machine.log_end_offset(), 5);
}
