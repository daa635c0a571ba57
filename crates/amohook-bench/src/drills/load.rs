//! The load every drill runs beside its fault: senders posting hooks to
//! the accounts, counting answers and latencies.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicI64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

/// Hooks sent in the background, by several senders, until stopped.
pub(super) struct Load {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) ok: Arc<Mutex<Vec<i64>>>,
    pub(super) statuses: Arc<Mutex<HashMap<String, usize>>>,
    pub(super) latencies: Arc<Mutex<Vec<f64>>>,
    pub(super) tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `targets`: (account id, hook URL); entity ids start at `first`;
    /// `body(account id, entity id)` is each hook.
    pub(super) fn start(
        http: &reqwest::Client,
        targets: Vec<(i64, String)>,
        senders: usize,
        first: i64,
        pace: Duration,
        body: fn(i64, i64) -> String,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(HashMap::new()));
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicI64::new(first));
        let targets = Arc::new(targets);
        let tasks = (0..senders)
            .map(|_| {
                let (http, stop, ok, statuses, latencies, next, targets) = (
                    http.clone(),
                    stop.clone(),
                    ok.clone(),
                    statuses.clone(),
                    latencies.clone(),
                    next.clone(),
                    targets.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let entity = next.fetch_add(1, Ordering::Relaxed);
                        let (account, url) = &targets[(entity as usize) % targets.len()];
                        let started = Instant::now();
                        let answer = http
                            .post(url)
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(body(*account, entity))
                            .send()
                            .await;
                        let key = match &answer {
                            Ok(r) => r.status().as_u16().to_string(),
                            Err(_) => "no answer".into(),
                        };
                        if matches!(&answer, Ok(r) if r.status() == 200) {
                            ok.lock().unwrap().push(entity);
                            latencies
                                .lock()
                                .unwrap()
                                .push(started.elapsed().as_secs_f64() * 1000.0);
                        }
                        *statuses.lock().unwrap().entry(key).or_default() += 1;
                        if answer.is_err() {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        tokio::time::sleep(pace).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            statuses,
            latencies,
            tasks,
        }
    }

    pub(super) async fn finish(self) -> (Vec<i64>, HashMap<String, usize>, Vec<f64>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let mut latencies = self.latencies.lock().unwrap().clone();
        latencies.sort_by(f64::total_cmp);
        let ok = self.ok.lock().unwrap().clone();
        let statuses = self.statuses.lock().unwrap().clone();
        (ok, statuses, latencies)
    }
}
