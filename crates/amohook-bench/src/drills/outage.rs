//! amoCRM down (503), then rate-limiting (429), then slow: notes wait and arrive once, within the budget.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::{hook_body, percentile};

pub(super) async fn outage(c: Ctx<'_>, seconds: &u64) -> anyhow::Result<Value> {
    let Ctx {
        rps,
        sim,
        http,
        accounts,
        targets,
        ..
    } = c;
    Ok({
        let load = Load::start(http, targets, 8, 1, Duration::from_millis(20), hook_body);
        sim.set_outage(Some(503));
        tokio::time::sleep(Duration::from_secs(*seconds)).await;
        for _ in 0..3 {
            sim.set_outage(Some(429));
            tokio::time::sleep(Duration::from_secs(2)).await;
            sim.set_outage(None);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        sim.set_latency(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(15)).await;
        sim.set_latency(Duration::from_millis(20));
        let (ok, statuses, latencies) = load.finish().await;
        let (lost, duplicated, settled) = verdict(sim, &ok, Duration::from_secs(900)).await;
        let max_window = accounts
            .iter()
            .map(|(_, d, _)| sim.max_per_second(d))
            .max()
            .unwrap_or(0);
        let p99 = percentile(&latencies, 99.0);
        json!({ "drill": "outage", "outage_seconds": seconds, "hooks_ok": ok.len(), "answers": statuses,
                "hook_answer_p99_ms": p99, "lost": lost, "duplicated": duplicated,
                "settled_seconds": settled, "max_requests_in_any_second": max_window,
                "pass": lost == 0 && duplicated == 0 && p99 < 500.0 && max_window <= rps })
    })
}
