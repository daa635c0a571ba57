//! Two processes on one database with short-lived tokens: each refresh once, no refresh token reused.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::{free_port, hook_body, install, wait_ready, Server};

pub(super) async fn two_processes(c: Ctx<'_>, token_ttl: &u64) -> anyhow::Result<Value> {
    let Ctx {
        amohook,
        db_url,
        rps,
        server,
        sim,
        http,
        accounts: _,
        targets: _,
    } = c;
    Ok({
        // Tokens issued from now on live `token_ttl` seconds: reinstall
        // so every account holds one.
        sim.set_access_ttl(Duration::from_secs(*token_ttl));
        let accounts = install(http, &server.base, sim, 5, 90_000_000).await?;
        let second_port = free_port()?;
        let second = Server::spawn(amohook, db_url, sim, rps, second_port)?;
        wait_ready(http, &second.base).await?;
        // Half the hooks go to each process.
        let mut targets = Vec::new();
        for (id, _, url) in &accounts {
            targets.push((*id, url.clone()));
            targets.push((*id, url.replace(&server.base, &second.base)));
        }
        let refreshes_before = sim.total_refreshes();
        let started = Instant::now();
        let load = Load::start(http, targets, 8, 1, Duration::from_millis(10), hook_body);
        tokio::time::sleep(Duration::from_secs(30)).await;
        let (ok, statuses, _) = load.finish().await;
        let (lost, duplicated, settled) = verdict(sim, &ok, SETTLE).await;
        let elapsed = started.elapsed().as_secs_f64();
        let refreshes = sim.total_refreshes() - refreshes_before;
        // At most one refresh per account per three quarters of a
        // lifetime, plus one at the start.
        let allowed =
            (accounts.len() as f64 * (elapsed / (*token_ttl as f64 * 0.75) + 1.0)).ceil() as u32;
        drop(second);
        json!({ "drill": "two-processes", "token_ttl_seconds": token_ttl, "hooks_ok": ok.len(),
                "answers": statuses, "refreshes": refreshes, "refreshes_allowed": allowed,
                "refresh_token_reuses": sim.refresh_reuses(), "lost": lost, "duplicated": duplicated,
                "settled_seconds": settled,
                "pass": lost == 0 && duplicated == 0 && sim.refresh_reuses() == 0 && refreshes <= allowed && refreshes > 0 })
    })
}
