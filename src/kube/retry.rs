//! The one retry helper of the module. Whether a failed call is retried is
//! decided from its HTTP status only (never from message text):
//! 409 Conflict, 429 Too Many Requests, 500, 502, 503 and 504.

use std::future::Future;
use std::time::Duration;

use super::events::{NodeEvent, NodeEvents};

/// HTTP status of a Kubernetes API error answer, if the call got one.
pub fn status_of(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// True when a call that failed with this HTTP status may succeed if repeated.
pub fn is_retryable_status(code: u16) -> bool {
    matches!(code, 409 | 429 | 500 | 502 | 503 | 504)
}

/// True when the error is an API answer with a retryable status.
pub fn is_retryable(err: &kube::Error) -> bool {
    status_of(err).is_some_and(is_retryable_status)
}

/// True when the API answered 404 Not Found.
pub fn is_not_found(err: &kube::Error) -> bool {
    status_of(err) == Some(404)
}

/// True when the API answered 409 Conflict.
pub fn is_conflict(err: &kube::Error) -> bool {
    status_of(err) == Some(409)
}

/// How often and how fast to retry a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled after each failure.
    pub initial_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (attempts count from 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }
}

/// An exponential backoff that can be reset when progress is made.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The next delay; the one after is twice as long, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next.min(self.max);
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Runs `call` until it succeeds, fails with a status that is not retryable,
/// or `policy.max_attempts` is reached; returns the last error then. Each retry
/// is reported as [`NodeEvent::Retrying`] with `what` naming the call.
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    events: &dyn NodeEvents,
    what: &str,
    mut call: F,
) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(err) => {
                let Some(status) = status_of(&err).filter(|code| is_retryable_status(*code)) else {
                    return Err(err);
                };
                if attempt >= policy.max_attempts.max(1) {
                    return Err(err);
                }
                let delay = policy.delay(attempt);
                events.on_event(NodeEvent::Retrying {
                    what: what.to_owned(),
                    status,
                    attempt,
                    delay,
                });
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

/// A `kube::Error::Api` with this status, for tests and fixtures.
pub fn api_error(code: u16, reason: &str, message: &str) -> kube::Error {
    kube::Error::Api(Box::new(
        kube::core::Status::failure(message, reason).with_code(code),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::events::RecordedEvents;

    #[test]
    fn retryable_statuses_only() {
        for code in [409, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(code), "{code}");
        }
        for code in [400, 401, 403, 404, 410, 422, 501] {
            assert!(!is_retryable_status(code), "{code}");
        }
    }

    #[test]
    fn delays_double_up_to_the_maximum() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
        };
        let delays: Vec<_> = (1..=5)
            .map(|attempt| policy.delay(attempt).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(3));
        let delays: Vec<_> = (0..4).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 3, 3]);
        backoff.reset();
        assert_eq!(backoff.next_delay().as_secs(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_by_status_and_stops_at_the_limit() {
        let events = RecordedEvents::default();
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let mut calls = 0;
        let result: Result<(), _> = retry(&policy, &events, "patch", || {
            calls += 1;
            async { Err(api_error(503, "ServiceUnavailable", "busy")) }
        })
        .await;
        assert_eq!(status_of(&result.unwrap_err()), Some(503));
        assert_eq!(calls, 3);
        assert_eq!(events.take().len(), 2);

        let mut calls = 0;
        let result: Result<(), _> = retry(&policy, &events, "get", || {
            calls += 1;
            async { Err(api_error(403, "Forbidden", "no")) }
        })
        .await;
        assert_eq!(status_of(&result.unwrap_err()), Some(403));
        assert_eq!(calls, 1);
    }
}
