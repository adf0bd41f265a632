//! The one place that decides whether a failed ARM request is retried, and how long to wait.
//!
//! Decisions use the HTTP status and the ARM error code only, never message text:
//! - 429 (throttled or a transient conflict): wait `Retry-After` when given;
//! - 500, 502, 503, 504;
//! - Network's `RetryableErrorDueToAnotherOperation`, whatever the status;
//! - connection refused / reset and timeouts;
//! - never any other 4xx.
//!
//! Without `Retry-After` the wait is an exponential backoff with jitter, capped.

use std::time::Duration;

use rand::Rng;

use super::TransportKind;

/// The error code Network uses for "another operation on this resource is in progress, retry".
pub const RETRYABLE_ANOTHER_OPERATION: &str = "RetryableErrorDueToAnotherOperation";

/// How ARM requests are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The first backoff; doubled at every attempt.
    pub base_delay: Duration,
    /// The cap of the backoff.
    pub max_delay: Duration,
    /// The smallest wait for a server-given `Retry-After` (so `Retry-After: 0`
    /// never turns into a busy loop, and scaled waits stay meaningful).
    pub retry_after_floor: Duration,
    /// The longest server-given `Retry-After` honoured.
    pub retry_after_cap: Duration,
    /// Server-given waits (`Retry-After`, in virtual seconds for a simulator
    /// running faster than real time) are divided by this; 1.0 for a real stamp.
    pub time_scale: f64,
    /// Seed of the jitter; `None` seeds from the operating system.
    pub jitter_seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            retry_after_floor: Duration::from_millis(50),
            retry_after_cap: Duration::from_secs(300),
            time_scale: 1.0,
            jitter_seed: None,
        }
    }
}

/// What happened to one attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome<'a> {
    /// An HTTP answer with an error status.
    Status {
        status: u16,
        code: Option<&'a str>,
        retry_after: Option<Duration>,
    },
    /// No answer.
    Transport(TransportKind),
}

/// The decision after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Retry { after: Duration },
    GiveUp,
}

/// True for the statuses and codes that may succeed later.
pub fn is_retryable_status(status: u16, code: Option<&str>) -> bool {
    if code.is_some_and(|code| code.eq_ignore_ascii_case(RETRYABLE_ANOTHER_OPERATION)) {
        return true;
    }
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// True for transport failures worth another attempt (not TLS trust problems).
pub fn is_retryable_transport(kind: TransportKind) -> bool {
    matches!(
        kind,
        TransportKind::Connect | TransportKind::Reset | TransportKind::Timeout
    )
}

/// Parses `Retry-After` as delay-seconds. Decimal seconds are accepted too
/// (a simulator at a fast time scale may send them); anything else is ignored.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(seconds.min(86_400.0)))
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Decides after the failed attempt number `attempt` (1 for the first).
    pub fn decide(&self, attempt: u32, outcome: &Outcome<'_>, rng: &mut impl Rng) -> Decision {
        let retryable = match outcome {
            Outcome::Status { status, code, .. } => is_retryable_status(*status, *code),
            Outcome::Transport(kind) => is_retryable_transport(*kind),
        };
        if !retryable || attempt >= self.max_attempts {
            return Decision::GiveUp;
        }
        let after = match outcome {
            Outcome::Status {
                retry_after: Some(wait),
                ..
            } => self.server_wait(*wait),
            _ => self.backoff(attempt, rng),
        };
        Decision::Retry { after }
    }

    /// A server-given wait, scaled, floored and capped.
    pub fn server_wait(&self, wait: Duration) -> Duration {
        let scale = if self.time_scale.is_finite() && self.time_scale > 0.0 {
            self.time_scale.max(0.001)
        } else {
            1.0
        };
        wait.min(self.retry_after_cap)
            .div_f64(scale)
            .max(self.retry_after_floor)
    }

    /// Exponential backoff with "equal jitter": for attempt `n` (1-based) the
    /// wait lies in `[d/2, d]` with `d = min(max_delay, base_delay * 2^(n-1))`.
    pub fn backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let half = full / 2;
        let spread = full.saturating_sub(half);
        let jitter = if spread.is_zero() {
            Duration::ZERO
        } else {
            spread.mul_f64(rng.random::<f64>())
        };
        half + jitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn status(status: u16, code: Option<&str>) -> Outcome<'_> {
        Outcome::Status {
            status,
            code,
            retry_after: None,
        }
    }

    #[test]
    fn retries_only_throttling_server_errors_and_the_network_code() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for code in [429, 500, 502, 503, 504] {
            assert!(
                matches!(
                    policy.decide(1, &status(code, None), &mut rng),
                    Decision::Retry { .. }
                ),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 409, 412, 501, 505] {
            assert_eq!(
                policy.decide(1, &status(code, Some("Whatever")), &mut rng),
                Decision::GiveUp,
                "{code}"
            );
        }
        assert!(matches!(
            policy.decide(
                1,
                &status(409, Some("RetryableErrorDueToAnotherOperation")),
                &mut rng
            ),
            Decision::Retry { .. }
        ));
        for kind in [
            TransportKind::Connect,
            TransportKind::Reset,
            TransportKind::Timeout,
        ] {
            assert!(matches!(
                policy.decide(1, &Outcome::Transport(kind), &mut rng),
                Decision::Retry { .. }
            ));
        }
        for kind in [TransportKind::Tls, TransportKind::Other] {
            assert_eq!(
                policy.decide(1, &Outcome::Transport(kind), &mut rng),
                Decision::GiveUp
            );
        }
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        assert!(matches!(
            policy.decide(2, &status(503, None), &mut rng),
            Decision::Retry { .. }
        ));
        assert_eq!(
            policy.decide(3, &status(503, None), &mut rng),
            Decision::GiveUp
        );
        assert_eq!(
            RetryPolicy::none().decide(1, &status(503, None), &mut rng),
            Decision::GiveUp
        );
    }

    #[test]
    fn retry_after_is_honoured_scaled_floored_and_capped() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(1);
        let outcome = Outcome::Status {
            status: 429,
            code: None,
            retry_after: Some(Duration::from_secs(17)),
        };
        assert_eq!(
            policy.decide(1, &outcome, &mut rng),
            Decision::Retry {
                after: Duration::from_secs(17)
            }
        );
        let scaled = RetryPolicy {
            time_scale: 10.0,
            ..RetryPolicy::default()
        };
        assert_eq!(
            scaled.server_wait(Duration::from_secs(17)),
            Duration::from_millis(1700)
        );
        assert_eq!(policy.server_wait(Duration::ZERO), policy.retry_after_floor);
        assert_eq!(
            policy.server_wait(Duration::from_secs(100_000)),
            policy.retry_after_cap
        );
    }

    #[test]
    fn backoff_stays_within_bounds_and_grows() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            ..RetryPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(42);
        for attempt in 1..=12u32 {
            let full = Duration::from_millis(100)
                .saturating_mul(1 << (attempt - 1))
                .min(Duration::from_secs(2));
            for _ in 0..50 {
                let wait = policy.backoff(attempt, &mut rng);
                assert!(
                    wait >= full / 2 && wait <= full,
                    "attempt {attempt}: {wait:?} not in [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
        // Jitter: not all the same.
        let waits: Vec<_> = (0..10).map(|_| policy.backoff(3, &mut rng)).collect();
        assert!(waits.iter().any(|w| *w != waits[0]));
    }

    #[test]
    fn parses_retry_after() {
        assert_eq!(parse_retry_after("5"), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_retry_after(" 0.25 "),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
