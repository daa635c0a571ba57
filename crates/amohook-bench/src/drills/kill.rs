//! kill -9 of the server three times under load: every hook answered 200 is noted once, soon after the last restart.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::{hook_body, wait_ready, Server};

pub(super) async fn kill(c: Ctx<'_>) -> anyhow::Result<Value> {
    let Ctx {
        amohook,
        db_url,
        rps,
        mut server,
        sim,
        http,
        targets,
        ..
    } = c;
    Ok({
        let port: u16 = server.base.rsplit(':').next().unwrap_or_default().parse()?;
        let load = Load::start(http, targets, 8, 1, Duration::ZERO, hook_body);
        let mut last_restart = None;
        for round in 1..=3 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            server.kill9();
            eprintln!("kill -9 #{round}");
            tokio::time::sleep(Duration::from_millis(500)).await;
            server = Server::spawn(amohook, db_url, sim, rps, port)?;
            last_restart = Some(Instant::now());
            wait_ready(http, &server.base).await?;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (ok, statuses, _) = load.finish().await;
        let (lost, duplicated, settled) = verdict(sim, &ok, SETTLE).await;
        // From the last restart to the arrival of the last note: the
        // killed process's claims must run out and the backlog be
        // delivered in that time.
        let all_noted = last_restart
            .zip(all_noted_at(sim, &ok))
            .map(|(restart, noted)| noted.saturating_duration_since(restart).as_secs_f64());
        json!({ "drill": "kill", "kills": 3, "hooks_ok": ok.len(), "answers": statuses,
                "lost": lost, "duplicated": duplicated, "settled_seconds": settled,
                "all_noted_seconds_after_last_restart": all_noted,
                "allowed_seconds": RECOVER_WITHIN.as_secs(),
                "claim_ttl_seconds": amohook::delivery::CLAIM_TTL.as_secs(),
                "pass": lost == 0 && duplicated == 0 && !ok.is_empty()
                    && all_noted.is_some_and(|s| s <= RECOVER_WITHIN.as_secs_f64()) })
    })
}
