//! When to retry an export and how long to wait first.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::Code;

/// The codes the OTLP specification says to retry.
pub(super) fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// Exponential backoff with jitter (each delay drawn from the upper half of
/// the current step), so that a fleet does not retry in lockstep.
#[derive(Debug)]
pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
    rng: u64,
}

impl Backoff {
    pub(super) fn new(min: Duration, max: Duration, seed: u64) -> Self {
        let min = min.max(Duration::from_millis(1));
        Self {
            min,
            max: max.max(min),
            step: min,
            // Mixed, so that close seeds (two agents started in the same
            // second) draw unrelated delays from the first one on.
            rng: splitmix64(seed) | 1,
        }
    }

    pub(super) fn reset(&mut self) {
        self.step = self.min;
    }

    pub(super) fn next_delay(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        let delay = self.step.mul_f64(0.5 + 0.5 * unit);
        self.step = (self.step * 2).min(self.max);
        delay
    }
}

/// One step of SplitMix64: spreads a seed's bits over the whole word.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(super) fn seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap_and_resets() {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(800);
        let mut b = Backoff::new(min, max, 42);
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        // Step n is min·2ⁿ (capped); the delay is drawn from its upper half.
        for (n, d) in delays.iter().enumerate() {
            let step = (min * 2u32.pow(n as u32)).min(max);
            assert!(
                *d >= step / 2 && *d <= step,
                "delay {n}: {d:?} for step {step:?}"
            );
        }
        assert!(delays[5] >= max / 2, "capped at max");
        b.reset();
        assert!(b.next_delay() <= min);
        // Agents seeded one apart (started in the same instant) do not
        // retry in lockstep.
        let mut other = Backoff::new(min, max, 43);
        let mut again = Backoff::new(min, max, 42);
        assert_ne!(other.next_delay(), again.next_delay());
    }

    #[test]
    fn retries_only_what_the_specification_calls_retryable() {
        assert!(retryable(Code::Unavailable));
        assert!(retryable(Code::DeadlineExceeded));
        assert!(retryable(Code::ResourceExhausted));
        assert!(!retryable(Code::InvalidArgument));
        assert!(!retryable(Code::Unauthenticated));
        assert!(!retryable(Code::PermissionDenied));
    }
}
