//! The accounts the bench installs, and the hooks it sends them: targets,
//! the install through the real flow, concurrent senders, waiting for notes.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use amocrm_sim::{SimAccount, Simulator};
use anyhow::{bail, Context as _};

pub(crate) fn hook_targets(installed: &[(i64, String, String)]) -> Vec<(i64, String)> {
    installed
        .iter()
        .map(|(id, _, url)| (*id, url.clone()))
        .collect()
}

pub(crate) async fn install(
    http: &reqwest::Client,
    base: &str,
    sim: &Simulator,
    n: usize,
    first_id: i64,
) -> anyhow::Result<Vec<(i64, String, String)>> {
    let mut done = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let mut tasks = Vec::new();
        for &i in chunk {
            let id = first_id + i as i64;
            let domain = format!("acc{id}.amocrm.ru");
            sim.add_account(&domain, SimAccount::new(id));
            let code = sim.issue_code(&domain);
            let (http, base) = (http.clone(), base.to_owned());
            tasks.push(tokio::spawn(async move {
                let r = http.get(format!("{base}/install")).send().await?;
                let location = url::Url::parse(r.headers()["location"].to_str()?)?;
                let state = location
                    .query_pairs()
                    .find(|(k, _)| k == "state")
                    .map(|(_, v)| v.into_owned())
                    .context("state")?;
                let r = http
                    .get(format!("{base}/oauth/callback"))
                    .query(&[
                        ("code", code.as_str()),
                        ("referer", domain.as_str()),
                        ("state", state.as_str()),
                    ])
                    .send()
                    .await?;
                if r.status() != 200 {
                    bail!("install of {domain} answered {}", r.status());
                }
                Ok::<_, anyhow::Error>((id, domain))
            }));
        }
        for task in tasks {
            done.push(task.await??);
        }
    }
    let hooks = sim.webhooks();
    done.into_iter()
        .map(|(id, domain)| {
            let url = hooks
                .iter()
                .rev()
                .find(|(d, _)| *d == domain)
                .and_then(|(_, body)| body["destination"].as_str().map(str::to_owned))
                .context("subscribed hook URL")?;
            Ok((id, domain, url))
        })
        .collect()
}

/// Sends `bodies` with `concurrency` senders; returns (seconds, latencies
/// in ms, errors, when each was answered).
pub(crate) async fn send_all(
    http: &reqwest::Client,
    concurrency: usize,
    bodies: Vec<(String, String, i64)>,
) -> (f64, Vec<f64>, usize, Vec<(i64, Instant)>) {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, bodies, next) = (http.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((url, body, entity)) = bodies.get(i) else {
                    break;
                };
                let t = Instant::now();
                let ok = http
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone())
                    .send()
                    .await
                    .map(|r| r.status() == 200)
                    .unwrap_or(false);
                out.push((
                    t.elapsed().as_secs_f64() * 1000.0,
                    ok,
                    *entity,
                    Instant::now(),
                ));
            }
            out
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut answered = Vec::new();
    for task in tasks {
        for (ms, ok, entity, at) in task.await.unwrap_or_default() {
            latencies.push(ms);
            if ok {
                answered.push((entity, at));
            } else {
                errors += 1;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    (secs, latencies, errors, answered)
}

/// Waits until the simulator holds notes for every entity in `entities`; returns
/// each one's arrival.
pub(crate) async fn wait_notes(
    sim: &Simulator,
    entities: &[i64],
    timeout: Duration,
) -> Vec<(i64, Instant)> {
    let wanted: std::collections::HashSet<i64> = entities.iter().copied().collect();
    let deadline = Instant::now() + timeout;
    loop {
        let found: Vec<(i64, Instant)> = sim
            .notes()
            .into_iter()
            .filter(|n| wanted.contains(&n.entity_id))
            .map(|n| (n.entity_id, n.at))
            .collect();
        if found.len() >= wanted.len() || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
