//! The `amohook serve` process under measurement: started, killed, waited
//! for; its CPU time and memory from /proc; the HTTP client that talks to it.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use amocrm_sim::Simulator;
use anyhow::{bail, Context as _};

use crate::{ADMIN_TOKEN, CLIENT_ID, CLIENT_SECRET};

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The CPU time the server process has used so far (user, system), in
    /// seconds, from /proc.
    pub(crate) fn cpu_seconds(&self) -> (f64, f64) {
        let ticks_per_second = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(100.0);
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|s| {
                // Fields after the command name (which may hold spaces).
                let rest = s.rsplit_once(')')?.1;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                // utime and stime are fields 14 and 15 of the whole line.
                let user = fields.get(11)?.parse::<f64>().ok()?;
                let system = fields.get(12)?.parse::<f64>().ok()?;
                Some((user / ticks_per_second, system / ticks_per_second))
            })
            .unwrap_or((0.0, 0.0))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn rss_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn client(concurrency: usize) -> reqwest::Client {
    amohook::amocrm::http_client()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(concurrency * 2)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a plain HTTP client")
}

impl Server {
    /// Starts `amohook serve` on `port` against `db_url` and the simulator.
    pub(crate) fn spawn(
        amohook: &std::path::Path,
        db_url: &str,
        sim: &Simulator,
        rps: usize,
        port: u16,
    ) -> anyhow::Result<Server> {
        Self::spawn_with(amohook, db_url, sim, rps, port, &[])
    }

    /// [`Server::spawn`] with more settings in the environment.
    pub(crate) fn spawn_with(
        amohook: &std::path::Path,
        db_url: &str,
        sim: &Simulator,
        rps: usize,
        port: u16,
        env: &[(&str, String)],
    ) -> anyhow::Result<Server> {
        let base = format!("http://127.0.0.1:{port}");
        let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
        let child = Command::new(amohook)
            .arg("serve")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("AMOHOOK_DATABASE__URL", db_url)
            .env("AMOHOOK_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("AMOHOOK_HTTP__PUBLIC_URL", &base)
            .env("AMOHOOK_AMOCRM__CLIENT_ID", CLIENT_ID)
            .env("AMOHOOK_AMOCRM__CLIENT_SECRET", CLIENT_SECRET)
            .env("AMOHOOK_AMOCRM__API_BASE_URL", sim.api_base_url())
            .env("AMOHOOK_AMOCRM__REQUESTS_PER_SECOND", rps.to_string())
            .env("AMOHOOK_ADMIN__TOKEN", ADMIN_TOKEN)
            .env("AMOHOOK_SECURITY__ENCRYPTION_KEY", key)
            // No line per request unless asked for: `RUST_LOG=info` runs the
            // server with its default line per request (on this stderr).
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting amohook")?;
        Ok(Server { child, base })
    }

    /// SIGKILL: no shutdown, no cleanup.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("amohook did not become ready")
}
