//! The one back-off policy of the service: a delay that doubles from
//! `first` up to `max`, spread by ±`jitter` so that many retries do not
//! come back in step. Where a retry must survive a restart (an event's next
//! attempt, a widget install's), the attempt count is stored in PostgreSQL
//! and the delay is computed here from it.

use std::time::Duration;

use rand::RngExt as _;

/// How many times [`Backoff::STORE`] retries.
pub const STORE_RETRIES: u32 = 28;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    /// 0.2: each delay is drawn from 80% to 120% of its nominal value.
    jitter: f64,
}

impl Backoff {
    /// A note request that failed for a passing reason (5xx, timeouts,
    /// refused connections): 5 s, 10 s, 20 s ... 15 minutes.
    pub const DELIVERY: Backoff =
        Backoff::new(Duration::from_secs(5), Duration::from_secs(900), 0.2);
    /// amoCRM's 429, which comes without Retry-After: 1 to 3 s, every time.
    pub const RATE_LIMITED: Backoff =
        Backoff::new(Duration::from_secs(2), Duration::from_secs(2), 0.5);
    /// A widget install whose code exchange failed for now: 5 s, 10 s,
    /// 20 s ... a minute, within the code's 20-minute life.
    pub const INSTALL: Backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(60), 0.0);
    /// A token refresh that failed for now, tried again within the same
    /// call: 300 ms, 600 ms ... 3 s.
    pub const REFRESH: Backoff =
        Backoff::new(Duration::from_millis(300), Duration::from_secs(3), 0.2);
    /// An uninstall call amoCRM could not confirm yet: 30 s, 1 min ... an
    /// hour, until amoCRM answers.
    pub const UNINSTALL_CHECK: Backoff =
        Backoff::new(Duration::from_secs(30), Duration::from_secs(3600), 0.2);
    /// Storing what amoCRM already answered (a new token pair, whose old
    /// refresh token amoCRM has revoked) after the database failed: 250 ms,
    /// 500 ms ... 5 s, [`STORE_RETRIES`] times, about two minutes in all.
    pub const STORE: Backoff =
        Backoff::new(Duration::from_millis(250), Duration::from_secs(5), 0.2);
    /// The LISTEN connection, lost: 1 s, 2 s ... 30 s.
    pub const RECONNECT: Backoff =
        Backoff::new(Duration::from_secs(1), Duration::from_secs(30), 0.2);

    const fn new(first: Duration, max: Duration, jitter: f64) -> Backoff {
        Backoff { first, max, jitter }
    }

    /// The wait before retry number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let nominal = self
            .first
            .saturating_mul(2u32.saturating_pow(attempt.min(30)))
            .min(self.max);
        if self.jitter == 0.0 {
            return nominal;
        }
        let spread = rand::rng().random_range(1.0 - self.jitter..=1.0 + self.jitter);
        nominal.mul_f64(spread)
    }

    /// The waits of `retries` retries in a row, for `backon`.
    pub fn retries(self, retries: u32) -> std::vec::IntoIter<Duration> {
        (0..retries)
            .map(|attempt| self.delay(attempt))
            .collect::<Vec<_>>()
            .into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_first_up_to_the_cap_within_the_jitter() {
        for attempt in 0..40 {
            let nominal = (5.0 * 2f64.powi(attempt.min(30) as i32)).min(900.0);
            let d = Backoff::DELIVERY.delay(attempt).as_secs_f64();
            assert!(
                d >= nominal * 0.8 - 1e-9 && d <= nominal * 1.2 + 1e-9,
                "attempt {attempt}: {d}"
            );
        }
        let installs: Vec<u64> = (0..6)
            .map(|a| Backoff::INSTALL.delay(a).as_secs())
            .collect();
        assert_eq!(installs, [5, 10, 20, 40, 60, 60]);
        for _ in 0..100 {
            let d = Backoff::RATE_LIMITED.delay(7);
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(3),
                "{d:?}"
            );
        }
        assert_eq!(Backoff::REFRESH.retries(2).count(), 2);
    }
}
