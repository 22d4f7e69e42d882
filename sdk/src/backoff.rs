//! Exponential backoff with jitter between retries.

use std::time::Duration;

use rand::Rng;

/// First delay between retries.
pub(crate) const INITIAL: Duration = Duration::from_millis(100);
/// Longest delay between retries.
pub(crate) const MAX: Duration = Duration::from_secs(1);

/// Delays that double from `initial` up to `max`, each with ±20 % jitter so
/// that many clients retrying together spread out.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(INITIAL, MAX)
    }
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            attempts: 0,
        }
    }

    /// The delay before the next retry.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = delay_for(self.initial, self.max, self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        jitter(delay)
    }

    /// Start again from the initial delay (after a success).
    pub(crate) fn reset(&mut self) {
        self.attempts = 0;
    }
}

/// The delay before retry number `attempt` (0-based), without jitter.
pub(crate) fn delay_for(initial: Duration, max: Duration, attempt: u32) -> Duration {
    initial
        .checked_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max)
}

/// `delay` scaled by a random factor in [0.8, 1.2].
pub(crate) fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(rand::rng().random_range(0.8..=1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum() {
        let delays: Vec<u128> = (0..6)
            .map(|attempt| delay_for(INITIAL, MAX, attempt).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(delay_for(INITIAL, MAX, 40), MAX);
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        let mut backoff = Backoff::default();
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(delay >= Duration::from_millis(80) && delay <= Duration::from_millis(1200));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(120));
    }
}
