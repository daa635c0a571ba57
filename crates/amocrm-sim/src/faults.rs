//! What can go wrong with the simulated amoCRM, switched on by the tests,
//! the benchmark and the sandbox: faults on single requests, held answers,
//! outages, rate limits, latency, hanging accounts; and what the front door
//! counted of them.

use std::time::{Duration, Instant};

use crate::{most_in_one_second, Simulator};

/// A fault to answer with, instead of the real answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// An HTTP status with amoCRM's body for it (problem+json for 4xx,
    /// HTML for 403 blocks and 5xx).
    Status(u16),
    /// A 400 problem+json with this hint (e.g. "Authorization code has expired").
    Problem { status: u16, hint: String },
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Do the work (notes are created), then answer with this status as if
    /// the answer was lost: the case a retry must not duplicate.
    AfterWork(u16),
    /// Do the work, then wait this long before answering: a sender killed
    /// meanwhile never learns that its notes exist.
    WorkThenDelay(Duration),
}

impl Simulator {
    /// Answers 429 to requests over `per_second` for one account within a
    /// second, as amoCRM does.
    pub fn set_rate_limit(&self, per_second: usize) {
        self.with(|s| s.rate_limit = Some(per_second));
    }

    /// Answers every request with `status` (503 for an outage, 429 for a
    /// burst of rate limiting) until called again with None.
    pub fn set_outage(&self, status: Option<u16>) {
        self.with(|s| s.outage = status);
    }

    /// All refreshes across accounts.
    pub fn total_refreshes(&self) -> u32 {
        self.with(|s| s.refreshes.values().sum())
    }

    /// Every answer waits this long first.
    pub fn set_latency(&self, latency: Duration) {
        self.with(|s| s.latency = latency);
    }

    /// The account's amoCRM answers in `latency` instead of the global
    /// latency: a slow server.
    pub fn set_domain_latency(&self, domain: &str, latency: Duration) {
        self.with(|s| s.slow.insert(domain.into(), Some(latency)));
    }

    /// The account's amoCRM never answers: each request is read, counted
    /// and left hanging until the client gives up.
    pub fn hang(&self, domain: &str) {
        self.with(|s| s.slow.insert(domain.into(), None));
    }

    /// Requests being answered (or left hanging) right now.
    pub fn in_flight(&self) -> usize {
        self.with(|s| s.in_flight)
    }

    /// The most requests in flight at once since the last call, which
    /// starts counting again from those in flight now.
    pub fn take_most_in_flight(&self) -> usize {
        self.with(|s| std::mem::replace(&mut s.most_in_flight, s.in_flight))
    }

    /// Notes for this card id are refused with a 400 validation error that
    /// names the note.
    pub fn refuse_notes_for(&self, entity_id: i64) {
        self.with(|s| s.refused_entities.insert(entity_id));
    }

    /// The most requests to `domain` that arrived within any one second.
    pub fn max_per_second(&self, domain: &str) -> usize {
        let mut times: Vec<Instant> = self.with(|s| {
            s.seen
                .iter()
                .filter(|r| r.domain == domain)
                .map(|r| r.at)
                .collect()
        });
        times.sort();
        most_in_one_second(&times)
    }

    /// Answers with status `status` seen for `domain`.
    pub fn count_status(&self, domain: &str, status: u16) -> usize {
        self.with(|s| {
            s.seen
                .iter()
                .filter(|r| r.domain == domain && r.status == status)
                .count()
        })
    }

    /// Answers the next `n` requests to `domain` whose path starts with
    /// `path_prefix` (e.g. "/api/v4/webhooks") with `fault`.
    pub fn fail_next(&self, domain: &str, path_prefix: &str, fault: Fault, n: usize) {
        self.with(|s| {
            s.faults
                .entry((domain.into(), path_prefix.into()))
                .or_default()
                .extend(std::iter::repeat_n(fault, n))
        });
    }

    /// Every request to `domain` answers `status` (429, 503, ...) for the
    /// next `duration`, as amoCRM does when it rate-limits or is down.
    pub fn hold(&self, domain: &str, status: u16, duration: Duration) {
        let until = Instant::now() + duration;
        self.with(|s| s.holds.insert(domain.into(), (status, until)));
    }

    /// The status `domain` is held at and for how much longer, if it is.
    pub fn held(&self, domain: &str) -> Option<(u16, Duration)> {
        let now = Instant::now();
        self.with(|s| {
            s.holds
                .get(domain)
                .filter(|(_, until)| *until > now)
                .map(|(status, until)| (*status, *until - now))
        })
    }

    /// Single faults still waiting for requests to `domain` ([`Self::fail_next`]).
    pub fn faults_waiting(&self, domain: &str) -> usize {
        self.with(|s| {
            s.faults
                .iter()
                .filter(|((d, _), _)| d == domain)
                .map(|(_, list)| list.len())
                .sum()
        })
    }

    /// Ends the hold and the waiting faults of `domain`.
    pub fn clear_faults(&self, domain: &str) {
        self.with(|s| {
            s.holds.remove(domain);
            s.faults.retain(|(d, _), _| d != domain);
        });
    }
}
