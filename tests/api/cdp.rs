//! A tiny Chrome DevTools Protocol client for the browser test.
//!
//! Hand-written on purpose: a full CDP crate (chromiumoxide) compiles
//! thousands of generated protocol types, and the test needs five commands
//! (navigate, evaluate, screenshot, and the two Fetch replies for HTTP Basic
//! login). Here a command is a JSON object sent over one websocket; a reader
//! task hands each response to the caller waiting on its `id` and broadcasts
//! everything else as an event. The page is attached in flat mode, so its
//! commands and events carry a `sessionId`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Quiet, headless, and on a port Chromium picks and writes to a file.
const FLAGS: &str = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --window-size=1280,900 --remote-debugging-port=0";

/// Debian's Chromium: `$CHROMIUM`, else /usr/bin/chromium, else `chromium`
/// on PATH. None when none of them exists.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/usr/bin/chromium")])
        .chain(std::env::split_paths(&path).map(|dir| dir.join("chromium")))
        .find(|p| p.is_file())
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, Value>>>>>;

/// The websocket: commands go out through a writer task, responses come back
/// through `pending`, events through `events`. Cloned into helper tasks.
#[derive(Clone)]
struct Conn {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    /// Never read: a template to `resubscribe` from. The reader task owns
    /// the only sender, so receivers see `Closed` once the socket is gone.
    events: Arc<broadcast::Receiver<Value>>,
    next_id: Arc<AtomicU64>,
    /// The page's session once attached; empty for browser commands.
    session: String,
}

impl Conn {
    async fn connect(url: &str) -> anyhow::Result<Conn> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut outgoing) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(msg) = outgoing.recv().await {
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let (pending, (events, template)) = (Pending::default(), broadcast::channel(1024));
        let conn = Conn {
            out,
            pending: pending.clone(),
            events: Arc::new(template),
            next_id: Arc::default(),
            session: String::new(),
        };
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let text = msg.into_text().unwrap_or_default();
                let Ok(mut value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let Some(id) = value["id"].as_u64() else {
                    let _ = events.send(value);
                    continue;
                };
                if let Some(tx) = pending.lock().unwrap().remove(&id) {
                    let _ = tx.send(match value.get("error") {
                        Some(e) => Err(e.clone()),
                        None => Ok(value["result"].take()),
                    });
                }
            }
            // Dropping the senders wakes every caller still waiting.
            pending.lock().unwrap().clear();
        });
        Ok(conn)
    }

    async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = self.session.clone().into();
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let sent = self.out.send(Message::Text(msg.to_string().into()));
        sent.map_err(|_| anyhow!("{method}: CDP connection closed"))?;
        match tokio::time::timeout(TIMEOUT, rx).await {
            Err(_) => bail!("{method}: no answer in {TIMEOUT:?}"),
            Ok(Err(_)) => bail!("{method}: CDP connection closed"),
            Ok(Ok(Err(error))) => bail!("{method} failed: {error}"),
            Ok(Ok(Ok(result))) => Ok(result),
        }
    }

    /// The next event of this page; None once the connection is gone.
    async fn next_event(&self, rx: &mut broadcast::Receiver<Value>) -> Option<Value> {
        loop {
            match rx.recv().await {
                Ok(e) if e["sessionId"] == self.session.as_str() => return Some(e),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// A headless Chromium with one page.
pub struct Browser {
    conn: Conn,
    _process: Process,
}

/// The Chromium process, killed on drop, and its profile, removed after.
struct Process(Child, tempfile::TempDir);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Browser {
    pub async fn launch(binary: &Path) -> anyhow::Result<Browser> {
        let profile = tempfile::tempdir()?;
        let child = Command::new(binary)
            .args(FLAGS.split_whitespace())
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        // From here on an error drops `process`, which kills Chromium.
        let process = Process(child, profile);
        // Chromium writes the port it chose and the browser's websocket path.
        let file = process.1.path().join("DevToolsActivePort");
        let mut url = None;
        for _ in 0..150 {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if let [port, path, ..] = text.lines().collect::<Vec<_>>()[..] {
                url = Some(format!("ws://127.0.0.1:{port}{path}"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let url = url.with_context(|| format!("{} wrote no DevToolsActivePort", binary.display()));
        let mut conn = Conn::connect(&url?).await?;
        // A page of its own, attached in flat mode.
        let blank = json!({ "url": "about:blank" });
        let target = conn.call("Target.createTarget", blank).await?;
        let params = json!({ "targetId": target["targetId"], "flatten": true });
        let attached = conn.call("Target.attachToTarget", params).await?;
        let session = attached["sessionId"].as_str().context("no sessionId")?;
        conn.session = session.to_owned();
        conn.call("Page.enable", json!({})).await?;
        let _process = process;
        Ok(Browser { conn, _process })
    }

    /// A command to the page.
    pub async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.conn.call(method, params).await
    }

    /// Answers HTTP Basic challenges with these credentials, as a person
    /// typing them into the browser's login dialog would. Every request
    /// pauses once Fetch is on, so the others are let through.
    pub async fn basic_auth(&self, username: &str, password: &str) -> anyhow::Result<()> {
        let (conn, mut events) = (self.conn.clone(), self.conn.events.resubscribe());
        let answer =
            json!({ "response": "ProvideCredentials", "username": username, "password": password });
        tokio::spawn(async move {
            while let Some(event) = conn.next_event(&mut events).await {
                let id = &event["params"]["requestId"];
                let _ = match event["method"].as_str() {
                    Some("Fetch.requestPaused") => {
                        conn.call("Fetch.continueRequest", json!({ "requestId": id }))
                            .await
                    }
                    Some("Fetch.authRequired") => {
                        let params = json!({ "requestId": id, "authChallengeResponse": answer });
                        conn.call("Fetch.continueWithAuth", params).await
                    }
                    _ => continue,
                };
            }
        });
        let params = json!({ "handleAuthRequests": true, "patterns": [{ "urlPattern": "*" }] });
        self.call("Fetch.enable", params).await.map(drop)
    }

    /// Opens `url` and waits for its load event.
    pub async fn navigate(&self, url: &str) -> anyhow::Result<()> {
        let loaded = self.conn.events.resubscribe();
        let result = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(error) = result["errorText"].as_str() {
            bail!("navigating to {url}: {error}");
        }
        self.load_event(loaded)
            .await
            .with_context(|| format!("loading {url}"))
    }

    /// Clicks the element `selector` (a link) and waits for the next page.
    pub async fn click(&self, selector: &str) -> anyhow::Result<()> {
        let loaded = self.conn.events.resubscribe();
        let sel = serde_json::to_string(selector)?;
        self.eval(&format!(
            "(() => {{ const el = document.querySelector({sel}); \
             if (!el) throw new Error('nothing matches ' + {sel}); el.click(); }})()"
        ))
        .await?;
        self.load_event(loaded)
            .await
            .with_context(|| format!("after clicking {selector}"))
    }

    async fn load_event(&self, mut events: broadcast::Receiver<Value>) -> anyhow::Result<()> {
        let fired = async {
            while let Some(event) = self.conn.next_event(&mut events).await {
                if event["method"] == "Page.loadEventFired" {
                    return Ok(());
                }
            }
            bail!("CDP connection closed")
        };
        let waited = tokio::time::timeout(TIMEOUT, fired).await;
        waited.map_err(|_| anyhow!("no load event in {TIMEOUT:?}"))?
    }

    /// Evaluates `js` in the page (awaiting a promise) and returns its value.
    pub async fn eval(&self, js: &str) -> anyhow::Result<Value> {
        let params = json!({ "expression": js, "returnByValue": true, "awaitPromise": true });
        let mut result = self.call("Runtime.evaluate", params).await?;
        if let Some(details) = result.get("exceptionDetails") {
            let text = details["exception"]["description"]
                .as_str()
                .or(details["text"].as_str());
            bail!("`{js}` threw: {}", text.unwrap_or("?"));
        }
        Ok(result["result"]["value"].take())
    }

    /// Saves a PNG of the visible page.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let data = shot["data"].as_str().context("no screenshot data")?;
        let png = base64::engine::general_purpose::STANDARD.decode(data)?;
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }
}
