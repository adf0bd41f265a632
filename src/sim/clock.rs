//! Virtual time for the simulator.
//!
//! The simulator speaks in realistic durations (a VM takes about four minutes to
//! create) and runs them `scale` times faster. A [`Clock`] turns virtual
//! durations into real ones and reports a virtual wall-clock time. It is built
//! on `tokio::time`, so tests with a paused tokio clock stay deterministic.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// Shared virtual clock. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    scale: f64,
    real_origin: Instant,
    virtual_origin: SystemTime,
}

impl Clock {
    /// A clock running `scale` times faster than real time (`scale` ≥ 1 is
    /// usual; values below are clamped to 0.001).
    pub fn new(scale: f64) -> Self {
        let scale = if scale.is_finite() {
            scale.max(0.001)
        } else {
            1.0
        };
        Self {
            inner: Arc::new(Inner {
                scale,
                real_origin: Instant::now(),
                virtual_origin: SystemTime::now(),
            }),
        }
    }

    pub fn scale(&self) -> f64 {
        self.inner.scale
    }

    /// Virtual time elapsed since the clock started.
    pub fn elapsed(&self) -> Duration {
        self.inner.real_origin.elapsed().mul_f64(self.inner.scale)
    }

    /// The current virtual wall-clock time.
    pub fn now(&self) -> SystemTime {
        self.inner.virtual_origin + self.elapsed()
    }

    /// The real duration that a virtual `duration` takes.
    pub fn real(&self, duration: Duration) -> Duration {
        duration.div_f64(self.inner.scale)
    }

    /// Sleeps for a virtual `duration`.
    pub async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(self.real(duration)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_virtual_minute_at_scale_600_is_a_tenth_of_a_real_second() {
        let clock = Clock::new(600.0);
        assert_eq!(
            clock.real(Duration::from_secs(60)),
            Duration::from_millis(100)
        );
        let before = Instant::now();
        clock.sleep(Duration::from_secs(60)).await;
        assert_eq!(before.elapsed(), Duration::from_millis(100));
        assert!(clock.elapsed() >= Duration::from_secs(60));
    }

    #[test]
    fn scale_is_clamped() {
        assert_eq!(Clock::new(0.0).scale(), 0.001);
        assert_eq!(Clock::new(f64::NAN).scale(), 1.0);
    }
}
