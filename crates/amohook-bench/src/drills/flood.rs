//! One account posting the largest bodies it may from several connections; another's ordinary hooks stay 200.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::{hook_body, percentile};

pub(super) async fn flood(c: Ctx<'_>, seconds: &u64, senders: &usize) -> anyhow::Result<Value> {
    let Ctx {
        sim, http, targets, ..
    } = c;
    Ok({
        let (flooder, plain) = (targets[0].clone(), targets[1].clone());
        let flooder_id = flooder.0;
        let flood = Load::start(
            http,
            vec![flooder],
            *senders,
            FLOOD_FIRST,
            Duration::ZERO,
            flood_body,
        );
        let ordinary = Load::start(
            http,
            vec![plain],
            2,
            1,
            Duration::from_millis(100),
            hook_body,
        );
        tokio::time::sleep(Duration::from_secs(*seconds)).await;
        let (flood_ok, flood_statuses, _) = flood.finish().await;
        let (plain_ok, plain_statuses, plain_latencies) = ordinary.finish().await;
        let plain_not_200 = not_200(&plain_statuses);
        let (lost, duplicated, settled) = verdict(sim, &plain_ok, SETTLE).await;
        json!({ "drill": "flood", "seconds": seconds, "senders": senders,
                "flood_body_bytes": flood_body(flooder_id, 0).len(),
                "flood_cards_per_hook": FLOOD_CARDS,
                "flood_answers": flood_statuses, "flood_hooks_ok": flood_ok.len(),
                "plain_answers": plain_statuses, "plain_not_200": plain_not_200,
                "plain_answer_p50_ms": percentile(&plain_latencies, 50.0),
                "plain_answer_p99_ms": percentile(&plain_latencies, 99.0),
                "plain_answer_max_ms": plain_latencies.last().copied().unwrap_or_default(),
                "plain_lost": lost, "duplicated": duplicated, "settled_seconds": settled,
                "pass": plain_not_200 == 0 && lost == 0 && duplicated == 0 && !plain_ok.is_empty() })
    })
}
