//! A card amoCRM refuses notes for, among others: it fails alone, the others are noted.

use std::{collections::HashMap, time::Duration};

use serde_json::{json, Value};

use super::*;
use crate::{hook_body, percentile};

pub(super) async fn poison(c: Ctx<'_>, seconds: &u64) -> anyhow::Result<Value> {
    let Ctx {
        sim, http, targets, ..
    } = c;
    Ok({
        // Account 0 sends the odd hooks, account 1 plain ones; the
        // other eight stay idle.
        let (poison, clean) = (targets[0].clone(), targets[1].clone());
        let odd = Load::start(
            http,
            vec![poison],
            3,
            POISON_FIRST,
            Duration::ZERO,
            poison_body,
        );
        let plain = Load::start(http, vec![clean], 6, 1, Duration::ZERO, hook_body);
        tokio::time::sleep(Duration::from_secs(*seconds)).await;
        let (odd_ok, odd_statuses, _) = odd.finish().await;
        let (plain_ok, plain_statuses, plain_latencies) = plain.finish().await;
        let plain_not_200 = not_200(&plain_statuses);
        let ok: Vec<i64> = plain_ok.iter().chain(&odd_ok).copied().collect();
        let (lost, duplicated, settled) = verdict(sim, &ok, SETTLE).await;
        let notes = sim.notes();
        let with_nul = notes.iter().filter(|n| n.text.contains('\0')).count();
        // `a\0b #id` must read `ab #id` in its note.
        let texts: HashMap<i64, &str> = notes
            .iter()
            .map(|n| (n.entity_id, n.text.as_str()))
            .collect();
        let nul_names_wrong = odd_ok
            .iter()
            .filter(|e| *e % 6 == 0)
            .filter(|e| {
                texts
                    .get(e)
                    .is_none_or(|t| !t.contains(&format!("ab #{e}")))
            })
            .count();
        let p99 = percentile(&plain_latencies, 99.0);
        json!({ "drill": "poison", "seconds": seconds,
                "clean_hooks_ok": plain_ok.len(), "clean_answers": plain_statuses,
                "clean_not_200": plain_not_200, "clean_answer_p99_ms": p99,
                "poison_hooks_ok": odd_ok.len(), "poison_answers": odd_statuses,
                "lost": lost, "duplicated": duplicated, "settled_seconds": settled,
                "notes_with_nul": with_nul, "nul_names_not_shown_without_nul": nul_names_wrong,
                "pass": plain_not_200 == 0 && lost == 0 && duplicated == 0 && !plain_ok.is_empty()
                    && !odd_ok.is_empty() && with_nul == 0 && nul_names_wrong == 0 })
    })
}
