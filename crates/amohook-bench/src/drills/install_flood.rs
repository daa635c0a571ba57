//! Forged widget installs naming a real account and flooding the queue: the real install still connects.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use super::*;
use crate::{hook_body, percentile};

pub(super) async fn install_flood(
    c: Ctx<'_>,
    seconds: &u64,
    senders: &usize,
) -> anyhow::Result<Value> {
    let Ctx {
        server,
        sim,
        http,
        targets,
        ..
    } = c;
    Ok({
        let rss_before = server.rss_kib("VmRSS:");
        let tokens_before = token_requests(sim).len();
        let hooks = Load::start(
            http,
            vec![targets[0].clone()],
            4,
            1,
            Duration::from_millis(10),
            hook_body,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let forgers = forge_installs(http, &server.base, *senders, stop.clone());
        let flood_started = Instant::now();
        tokio::time::sleep(Duration::from_secs(*seconds / 2)).await;
        // A real widget install in the middle of the flood.
        let real_id = 81_000_000;
        let real_domain = format!("acc{real_id}.amocrm.ru");
        sim.add_account(&real_domain, amocrm_sim::SimAccount::new(real_id));
        let code = sim.issue_code(&real_domain);
        let asked = Instant::now();
        let real_answer = http
            .get(format!("{}/oauth/callback", server.base))
            .query(&[
                ("code", code.as_str()),
                ("referer", real_domain.as_str()),
                ("from_widget", "1"),
            ])
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        let real_answered_ms = asked.elapsed().as_secs_f64() * 1000.0;
        tokio::time::sleep(Duration::from_secs(*seconds - *seconds / 2)).await;
        stop.store(true, Ordering::Relaxed);
        let mut forged: HashMap<String, usize> = HashMap::new();
        for task in forgers {
            for (status, n) in task.await? {
                *forged.entry(status).or_default() += n;
            }
        }
        let flood_seconds = flood_started.elapsed().as_secs_f64();
        let (ok, hook_statuses, latencies) = hooks.finish().await;
        // The real install connects (its web-hooks are subscribed),
        // inline or from the background retrier: when, by the fake's
        // record of the subscription.
        let mut connected_after = None;
        for _ in 0..600 {
            connected_after = sim
                .requests()
                .iter()
                .find(|r| r.domain == real_domain && r.path == "/api/v4/webhooks")
                .map(|r| r.at.saturating_duration_since(asked).as_secs_f64());
            if connected_after.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seen: Vec<_> = token_requests(sim).split_off(tokens_before);
        let max_window = max_in_a_second(&seen);
        let span = seen
            .last()
            .zip(seen.first())
            .map(|(l, f)| l.at.duration_since(f.at).as_secs_f64())
            .unwrap_or(0.0);
        let (lost, duplicated, settled) = verdict(sim, &ok, SETTLE).await;
        let rss_after = server.rss_kib("VmRSS:");
        let hooks_not_200 = not_200(&hook_statuses);
        let p99 = percentile(&latencies, 99.0);
        // One request of jitter in a window: a request leaves a moment
        // after its turn at the gate.
        json!({ "drill": "install-flood", "seconds": seconds, "senders": senders,
                "forged_answers": forged, "flood_seconds": flood_seconds,
                "token_requests": seen.len(), "token_requests_seconds": span,
                "max_token_requests_in_any_second": max_window,
                "allowed_per_second": INSTALL_RATE,
                "real_install_answer": real_answer, "real_install_answered_ms": real_answered_ms,
                "real_install_connected_after_seconds": connected_after,
                "hooks_ok": ok.len(), "hook_answers": hook_statuses, "hook_answer_p99_ms": p99,
                "lost": lost, "duplicated": duplicated, "settled_seconds": settled,
                "rss_kib_before": rss_before, "rss_kib_after": rss_after,
                "pass": max_window <= INSTALL_RATE + 1
                    && (seen.len() as f64) <= INSTALL_RATE as f64 * span + INSTALL_RATE as f64
                    && [200, 202].contains(&real_answer) && real_answered_ms < 3000.0
                    && connected_after.is_some()
                    && hooks_not_200 == 0 && !ok.is_empty() && p99 < 100.0
                    && lost == 0 && duplicated == 0
                    && rss_after < rss_before + 30 * 1024 })
    })
}
