//! What the bench reads off the simulator and the server: notes delivered
//! and their pace, the server's counters, traffic, hook-to-note times.

use std::time::Instant;

use amocrm_sim::Simulator;
use serde_json::json;

use crate::ADMIN_TOKEN;

/// Notes per second one account received while saturated, measured over
/// every run of `rps + 1` consecutive note requests: the notes of the last
/// `rps` of them over the time from the first to the last. That is the
/// budget's own unit (at most `rps` requests in any second), so the burst a
/// sliding window allows at the start of a backlog is not counted as speed,
/// and a short run is not flattered by it.
pub(crate) fn delivered_rate(sim: &Simulator, domain: &str, rps: usize) -> f64 {
    let mut sends: Vec<(Instant, usize)> = note_sends(sim)
        .into_iter()
        .filter(|s| s.domain == domain)
        .map(|s| (s.at, s.notes))
        .collect();
    sends.sort_by_key(|(at, _)| *at);
    let (mut notes, mut seconds) = (0usize, 0f64);
    for run in sends.windows(rps + 1) {
        notes += run[1..].iter().map(|(_, n)| n).sum::<usize>();
        seconds += run[rps].0.duration_since(run[0].0).as_secs_f64();
    }
    if seconds > 0.0 {
        notes as f64 / seconds
    } else {
        0.0
    }
}

/// A note request amoCRM took (POST .../notes answered 200).
pub(crate) struct NoteSend {
    pub(crate) domain: String,
    pub(crate) at: Instant,
    pub(crate) notes: usize,
}

pub(crate) fn note_sends(sim: &Simulator) -> Vec<NoteSend> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == reqwest::Method::POST && r.path.ends_with("/notes"))
        .filter(|r| r.status == 200)
        .map(|r| NoteSend {
            notes: serde_json::from_str::<Vec<serde_json::Value>>(&r.body)
                .map(|v| v.len())
                .unwrap_or(0),
            domain: r.domain,
            at: r.at,
        })
        .collect()
}

/// The notes amoCRM took between two instants, and in how many requests:
/// how much delivery ran beside the ingest, and in what batches.
pub(crate) struct NotesSent {
    pub(crate) notes: usize,
    pub(crate) requests: usize,
}

impl NotesSent {
    pub(crate) fn between(sim: &Simulator, from: Instant, to: Instant) -> NotesSent {
        let sends: Vec<NoteSend> = note_sends(sim)
            .into_iter()
            .filter(|s| s.at >= from && s.at <= to)
            .collect();
        NotesSent {
            notes: sends.iter().map(|s| s.notes).sum(),
            requests: sends.len(),
        }
    }
}

/// The server's own counts of what it did under load, from its /metrics:
/// budget slots moved by calls that left late, and waits of the delivery
/// loops for a busy intake. Missing counters (never incremented) are 0.
pub(crate) async fn server_counters(http: &reqwest::Client, base: &str) -> serde_json::Value {
    const COUNTERS: [&str; 2] = [
        "amohook_budget_slots_moved_total",
        "amohook_delivery_yields_total",
    ];
    let text = match http
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    COUNTERS
        .iter()
        .map(|name| (name.to_string(), json!(value(name))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// What the simulator saw of the request budget, over every account.
pub(crate) struct Traffic {
    /// The most requests to one account within any one second.
    pub(crate) max_in_any_second: usize,
    /// The shortest time any `rps + 1` consecutive requests to one account
    /// took: at least 1,000 ms keeps the limit; what it is above that is the
    /// margin left.
    pub(crate) tightest_span_ms: Option<f64>,
    pub(crate) responses_429: usize,
}

impl Traffic {
    pub(crate) fn of(sim: &Simulator, rps: usize) -> Traffic {
        let mut by_domain: std::collections::HashMap<String, Vec<Instant>> = Default::default();
        let mut responses_429 = 0;
        for r in sim.requests() {
            if r.status == 429 {
                responses_429 += 1;
            }
            by_domain.entry(r.domain).or_default().push(r.at);
        }
        let mut max_in_any_second = 0;
        let mut tightest_span_ms: Option<f64> = None;
        for times in by_domain.values_mut() {
            times.sort();
            max_in_any_second = max_in_any_second.max(amocrm_sim::most_in_one_second(times));
            for pair in times.windows(rps + 1) {
                let span = pair[rps].duration_since(pair[0]).as_secs_f64() * 1000.0;
                tightest_span_ms = Some(tightest_span_ms.map_or(span, |t| t.min(span)));
            }
        }
        Traffic {
            max_in_any_second,
            tightest_span_ms,
            responses_429,
        }
    }
}

pub(crate) fn e2e_ms(answered: &[(i64, Instant)], notes: &[(i64, Instant)]) -> Vec<f64> {
    let arrivals: std::collections::HashMap<i64, Instant> = notes.iter().copied().collect();
    let mut out: Vec<f64> = answered
        .iter()
        .filter_map(|(entity, at)| {
            arrivals
                .get(entity)
                .map(|n| n.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    out.sort_by(f64::total_cmp);
    out
}
