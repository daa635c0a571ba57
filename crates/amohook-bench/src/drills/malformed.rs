//! Broken, foreign and oversized bodies among real hooks: each refused alone, nothing lost, memory flat.

use std::{collections::HashMap, time::Duration};

use serde_json::{json, Value};

use super::*;
use crate::hook_body;

pub(super) async fn malformed(c: Ctx<'_>) -> anyhow::Result<Value> {
    let Ctx {
        server,
        sim,
        http,
        targets,
        ..
    } = c;
    Ok({
        let rss_before = server.rss_kib("VmRSS:");
        let load = Load::start(http, targets.clone(), 4, 1, Duration::ZERO, hook_body);
        let (account, url) = targets[0].clone();
        let base = server.base.clone();
        let mut statuses: HashMap<String, usize> = HashMap::new();
        let oversize = "x".repeat(1024 * 1024 + 10);
        for i in 0..3000u32 {
            let (target, body) = match i % 6 {
                0 => (url.clone(), "leads[add]=oops".to_owned()),
                1 => (
                    url.clone(),
                    format!(
                        "account[id]={}&leads[add][0][id]=1&leads[add][0][created_at]=1",
                        account + 1
                    ),
                ),
                2 => (format!("{base}/hooks/not-a-key-{i}"), hook_body(account, 1)),
                3 => (
                    url.clone(),
                    String::from_utf8_lossy(&[0xff, 0xfe, 0x00, (i % 255) as u8]).into_owned(),
                ),
                4 => (
                    url.clone(),
                    format!("leads[add][0][id]={i}&leads[add][0][created_at]=x%ZZ"),
                ),
                _ => (url.clone(), oversize.clone()),
            };
            let status = match http.post(&target).body(body).send().await {
                Ok(r) => r.status().as_u16().to_string(),
                Err(_) => "no answer".into(),
            };
            *statuses.entry(status).or_default() += 1;
        }
        let (ok, load_statuses, _) = load.finish().await;
        let (lost, duplicated, settled) = verdict(sim, &ok, SETTLE).await;
        let rss_after = server.rss_kib("VmRSS:");
        let bad = statuses.keys().any(|s| !s.starts_with('4'));
        json!({ "drill": "malformed", "malformed_answers": statuses, "load_answers": load_statuses,
                "hooks_ok": ok.len(), "lost": lost, "duplicated": duplicated, "settled_seconds": settled,
                "rss_kib_before": rss_before, "rss_kib_after": rss_after,
                "pass": !bad && lost == 0 && duplicated == 0 && rss_after < rss_before + 30 * 1024 })
    })
}
