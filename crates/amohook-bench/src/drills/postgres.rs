//! PostgreSQL restarted under load: hooks are answered again after it, none lost or doubled.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::hook_body;

pub(super) async fn postgres(c: Ctx<'_>) -> anyhow::Result<Value> {
    let Ctx {
        sim, http, targets, ..
    } = c;
    Ok({
        let load = Load::start(http, targets, 8, 1, Duration::from_millis(5), hook_body);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let version = std::fs::read_dir("/etc/postgresql")?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .next()
            .ok_or_else(|| anyhow::anyhow!("no local PostgreSQL cluster to restart"))?;
        let restarted = std::process::Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &version, "main", "restart"])
            .status()?;
        eprintln!("PostgreSQL restarted: {restarted}");
        let before = load.ok.lock().unwrap().len();
        tokio::time::sleep(Duration::from_secs(8)).await;
        let after_restart = load.ok.lock().unwrap().len() - before;
        let (ok, statuses, _) = load.finish().await;
        let (lost, duplicated, settled) = verdict(sim, &ok, SETTLE).await;
        json!({ "drill": "postgres", "hooks_ok": ok.len(), "answers": statuses,
                "hooks_ok_after_restart": after_restart, "lost": lost, "duplicated": duplicated,
                "settled_seconds": settled,
                "pass": restarted.success() && lost == 0 && duplicated == 0 && after_restart > 0 })
    })
}
