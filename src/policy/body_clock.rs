//! The one deadline of a request body being waited for: the earlier of "the client paused
//! longer than `body_read_timeout`" and "the average rate over the time spent waiting would drop
//! below `min_body_rate`". Only time spent waiting on the client counts: the clock runs from a
//! read that found nothing (`Pending`) to the next chunk, so while the proxy does not read (a
//! backend applying back-pressure) the client is not charged, as Kestrel pauses its rate timing
//! while the app is not reading.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::body_limits::BodyPace;
use crate::error::ProxyError;

/// Why a body took too long; both are answered 408.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlowBody {
    /// No part arrived for this long.
    #[error("the request body stalled for {0:?}")]
    Stalled(Duration),
    /// It arrived slower than this many bytes per second, on average over the waiting time.
    #[error("the request body arrived slower than {0} bytes per second")]
    BelowMinRate(u64),
}

impl From<SlowBody> for ProxyError {
    fn from(slow: SlowBody) -> Self {
        match slow {
            SlowBody::Stalled(pause) => ProxyError::RequestBodyTimeout(pause),
            SlowBody::BelowMinRate(rate) => ProxyError::RequestBodyTooSlow(rate),
        }
    }
}

/// Times one request body against its [`BodyPace`]. The reader calls [`BodyClock::poll_expired`]
/// whenever the body returns `Pending`, and [`BodyClock::arrived`] for each frame it returns.
#[derive(Debug)]
pub struct BodyClock {
    pace: BodyPace,
    /// Data bytes received so far.
    received: u64,
    /// Time spent waiting on the client in waits that are over.
    waited: Duration,
    /// When the current wait began; `None` when not waiting.
    wait_started: Option<Instant>,
    /// Armed for the current wait (kept between waits, so a body allocates it once).
    timer: Option<Pin<Box<Sleep>>>,
    /// What the armed deadline means.
    cause: SlowBody,
}

impl BodyClock {
    /// A clock for a body nothing has been read of.
    pub fn new(pace: BodyPace) -> Self {
        BodyClock {
            pace,
            received: 0,
            waited: Duration::ZERO,
            wait_started: None,
            timer: None,
            cause: SlowBody::Stalled(pace.read_timeout),
        }
    }

    /// Data bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// For a read that found nothing: starts the wait (its deadline is fixed for the whole
    /// wait, since nothing arrives during it) or continues it; `Ready` once the deadline passed.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<SlowBody> {
        if self.wait_started.is_none() {
            let now = Instant::now();
            self.wait_started = Some(now);
            let (wait, cause) = self.allowed_wait();
            self.cause = cause;
            let deadline = now + wait;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let timer = self.timer.as_mut().expect("armed when the wait started");
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(self.cause),
            Poll::Pending => Poll::Pending,
        }
    }

    /// For a frame the body returned: ends the current wait, if any, and counts `bytes`.
    pub fn arrived(&mut self, bytes: u64) {
        if let Some(started) = self.wait_started.take() {
            self.waited += started.elapsed();
        }
        self.received += bytes;
    }

    /// How long the wait starting now may last, and why it would end: the pause limit, or the
    /// moment the waited time reaches `max(grace, received / rate)`, after which the average
    /// would be below the rate.
    fn allowed_wait(&self) -> (Duration, SlowBody) {
        let stall = (
            self.pace.read_timeout,
            SlowBody::Stalled(self.pace.read_timeout),
        );
        let Some(rate) = self.pace.min_rate else {
            return stall;
        };
        let nanos = u128::from(self.received) * 1_000_000_000 / u128::from(rate.bytes_per_second);
        let earned = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        let rate_wait = earned.max(rate.grace).saturating_sub(self.waited);
        if rate_wait < stall.0 {
            (rate_wait, SlowBody::BelowMinRate(rate.bytes_per_second))
        } else {
            stall
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::body_limits::MinRate;
    use super::*;

    fn pace(bytes_per_second: u64) -> BodyPace {
        BodyPace {
            read_timeout: Duration::from_secs(30),
            min_rate: Some(MinRate {
                bytes_per_second,
                grace: Duration::from_secs(5),
            }),
        }
    }

    #[test]
    fn the_first_wait_may_last_the_grace_period() {
        let clock = BodyClock::new(pace(100));
        assert_eq!(
            clock.allowed_wait(),
            (Duration::from_secs(5), SlowBody::BelowMinRate(100))
        );
    }

    #[test]
    fn bytes_received_earn_waiting_time_at_the_minimum_rate() {
        let mut clock = BodyClock::new(pace(100));
        clock.received = 1_000;
        clock.waited = Duration::from_secs(4);
        // 1000 bytes at 100 B/s cover 10 s of waiting; 4 s are used.
        assert_eq!(clock.allowed_wait().0, Duration::from_secs(6));
        clock.waited = Duration::from_secs(12);
        assert_eq!(clock.allowed_wait().0, Duration::ZERO);
    }

    #[test]
    fn the_stall_limit_wins_when_it_comes_first_or_the_rate_is_off() {
        let mut clock = BodyClock::new(pace(100));
        clock.received = 1_000_000;
        assert_eq!(
            clock.allowed_wait(),
            (
                Duration::from_secs(30),
                SlowBody::Stalled(Duration::from_secs(30))
            )
        );
        let off = BodyClock::new(BodyPace {
            min_rate: None,
            ..pace(100)
        });
        assert_eq!(
            off.allowed_wait().1,
            SlowBody::Stalled(Duration::from_secs(30))
        );
    }

    /// A client sending 10 B/s against a 100 B/s minimum is cut off once the 5 s grace is
    /// spent waiting on it.
    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_cut_off_after_the_grace_period_of_waiting() {
        let mut clock = BodyClock::new(pace(100));
        let started = Instant::now();
        let slow = loop {
            let waited = tokio::time::timeout(
                Duration::from_secs(1),
                std::future::poll_fn(|cx| clock.poll_expired(cx)),
            )
            .await;
            match waited {
                Ok(slow) => break slow,
                Err(_) => clock.arrived(10),
            }
        };
        assert_eq!(slow, SlowBody::BelowMinRate(100));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    /// Time the reader spends not reading (back-pressure from the backend) is not waiting on
    /// the client: a client whose bytes are always there when asked is never cut off.
    #[tokio::test(start_paused = true)]
    async fn time_spent_not_reading_does_not_count_against_the_client() {
        let mut clock = BodyClock::new(pace(100));
        for _ in 0..100 {
            // The backend takes 10 s per chunk; the client's 1 byte was ready each time after
            // 10 ms of waiting.
            let waited = tokio::time::timeout(
                Duration::from_millis(10),
                std::future::poll_fn(|cx| clock.poll_expired(cx)),
            )
            .await;
            assert!(waited.is_err(), "cut off after {} bytes", clock.received());
            clock.arrived(1);
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        assert_eq!(clock.waited, Duration::from_secs(1));
    }
}
