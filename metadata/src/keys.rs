//! The metadata key layout of DESIGN.md, in one place.

/// Root of every Sluice key.
pub const ROOT: &str = "/sluice";

/// Prefix of topic records.
pub fn topics_prefix() -> String {
    format!("{ROOT}/topics/")
}

/// `/sluice/topics/<name>`: `{partitions, config, id}`.
pub fn topic(name: &str) -> String {
    format!("{ROOT}/topics/{name}")
}

/// Prefix of every partition assignment.
pub fn assignments_prefix() -> String {
    format!("{ROOT}/assignments/")
}

/// Prefix of one topic's partition assignments.
pub fn topic_assignments_prefix(topic: &str) -> String {
    format!("{ROOT}/assignments/{topic}/")
}

/// `/sluice/assignments/<topic>/<p>`: `{broker, epoch}`.
pub fn assignment(topic: &str, partition: u32) -> String {
    format!("{ROOT}/assignments/{topic}/{partition}")
}

/// Prefix of broker registrations.
pub fn brokers_prefix() -> String {
    format!("{ROOT}/brokers/")
}

/// `/sluice/brokers/<id>`: `{addr, zone}`, bound to the broker's lease.
pub fn broker(id: u64) -> String {
    format!("{ROOT}/brokers/{id}")
}

/// `/sluice/producer-ids`: `{next}`, the first producer id not handed out
/// (see [`ProducerIds`](crate::ProducerIds)).
pub fn producer_ids() -> String {
    format!("{ROOT}/producer-ids")
}

/// Splits a broker key back into the broker id.
pub fn parse_broker(key: &str) -> Option<u64> {
    key.strip_prefix(ROOT)?
        .strip_prefix("/brokers/")?
        .parse()
        .ok()
}

/// Splits an assignment key back into topic and partition.
pub fn parse_assignment(key: &str) -> Option<(&str, u32)> {
    let rest = key.strip_prefix(ROOT)?.strip_prefix("/assignments/")?;
    let (topic, partition) = rest.rsplit_once('/')?;
    Some((topic, partition.parse().ok()?))
}

/// Splits a topic key back into the topic name.
pub fn parse_topic(key: &str) -> Option<&str> {
    key.strip_prefix(ROOT)?.strip_prefix("/topics/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_keys_round_trip() {
        let key = assignment("orders.eu", 12);
        assert_eq!(parse_assignment(&key), Some(("orders.eu", 12)));
        assert_eq!(parse_assignment("/sluice/assignments/x/y"), None);
        assert_eq!(parse_topic(&topic("a-b")), Some("a-b"));
    }
}
