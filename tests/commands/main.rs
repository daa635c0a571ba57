//! The commands a newcomer types, run as processes: the README's Quick-start
//! command (read from the README itself), the hint when PostgreSQL refuses
//! the password, the README's `amohook sandbox` command, and `amohook
//! widget`. `.ci/run` also runs the Quick-start command exactly as printed,
//! with `cargo run --release`.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
mod widget;

use std::{process::Stdio, time::Duration};

use helpers::TestDb;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader},
    net::TcpListener,
    process::{Child, Command},
};

/// The README's Quick-start command: its environment, and the arguments
/// after `cargo run --release --`.
fn quick_start() -> (Vec<(String, String)>, Vec<String>) {
    let readme = include_str!("../../README.md");
    let marker = readme
        .find("<!-- quick-start")
        .expect("the README marks its Quick-start command");
    let block = &readme[marker..];
    let start = block.find("```sh\n").expect("a sh block after the marker") + 6;
    let end = start + block[start..].find("```").expect("the block ends");
    let words: Vec<&str> = block[start..end]
        .lines()
        .map(|l| l.trim_end().trim_end_matches('\\'))
        .flat_map(str::split_whitespace)
        .collect();
    let split = words
        .iter()
        .position(|w| !w.contains('='))
        .expect("a command after the variables");
    assert_eq!(
        words[split..split + 4],
        ["cargo", "run", "--release", "--"],
        "the Quick start runs the service with cargo run --release"
    );
    let env = words[..split]
        .iter()
        .map(|w| {
            let (k, v) = w.split_once('=').unwrap();
            assert!(!v.contains(['$', '"', '\'']), "a plain value: {w}");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let args = words[split + 4..].iter().map(|w| (*w).to_owned()).collect();
    (env, args)
}

/// The service binary with the README's environment and arguments, on
/// `database_url` and `port`; nothing else of this process's amohook
/// configuration, and a home of its own for the key file.
fn readme_command(database_url: &str, port: u16, home: &std::path::Path) -> Command {
    let (env, args) = quick_start();
    let mut command = Command::new(env!("CARGO_BIN_EXE_amohook"));
    for (key, _) in std::env::vars() {
        if key.starts_with("AMOHOOK_") || key == "DATABASE_URL" {
            command.env_remove(key);
        }
    }
    for (key, value) in env {
        let value = if key == "DATABASE_URL" {
            database_url.to_owned()
        } else {
            value
        };
        command.env(key, value);
    }
    command
        .args(args)
        .env("AMOHOOK_HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn client() -> reqwest::Client {
    amohook::amocrm::http_client()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Waits (up to a minute) for `GET /readyz` to answer 200.
async fn ready(http: &reqwest::Client, base: &str, child: &mut Child) {
    for _ in 0..600 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err).await;
            panic!("amohook exited ({status}) before it was ready: {err}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("amohook was not ready within a minute");
}

/// SIGTERM, then the exit status (within 30 s: the service's grace is 20 s).
async fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("amohook stops within 30 s of SIGTERM")
        .expect("its status")
}

#[tokio::test]
async fn the_readme_quick_start_runs_becomes_ready_opens_the_status_page_and_stops_on_sigterm() {
    let (env, _) = quick_start();
    let token = env
        .iter()
        .find(|(k, _)| k == "AMOHOOK_ADMIN__TOKEN")
        .map(|(_, v)| v.clone())
        .expect("the Quick start sets an admin token");
    let db = TestDb::new();
    let home = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = readme_command(&db.url, port, home.path()).spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    ready(&http, &base, &mut child).await;
    // The status page opens with the Quick start's token.
    let page = http
        .get(format!("{base}/status"))
        .basic_auth("admin", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let status = terminate(&mut child).await;
    assert!(status.success(), "exit status {status}");
    // The key the first start made is where the README says, not in the
    // folder it was started from, and its full path was printed.
    let key_file = home.path().join("data/amohook/amohook.key");
    assert!(key_file.is_file(), "no key at {}", key_file.display());
    assert!(!home.path().join("amohook.key").exists());
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .await
        .unwrap();
    assert!(
        log.contains(&key_file.display().to_string()),
        "the key file's path is in the log: {log}"
    );
}

/// A server that speaks just enough of PostgreSQL's protocol to refuse
/// every password, as a fresh Debian cluster does on TCP (SQLSTATE 28P01).
async fn refusing_postgres() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt as _;
                loop {
                    // Startup packets: length, then a code.
                    let Ok(length) = socket.read_i32().await else {
                        return;
                    };
                    let mut rest = vec![0; (length - 4).max(0) as usize];
                    if socket.read_exact(&mut rest).await.is_err() {
                        return;
                    }
                    if rest.starts_with(&[0x04, 0xd2, 0x16, 0x2f]) {
                        // SSLRequest: no TLS here.
                        let _ = socket.write_all(b"N").await;
                        continue;
                    }
                    let mut fields = Vec::new();
                    for (code, value) in [
                        (b'S', "FATAL"),
                        (b'V', "FATAL"),
                        (b'C', "28P01"),
                        (b'M', "password authentication failed for user \"postgres\""),
                    ] {
                        fields.push(code);
                        fields.extend_from_slice(value.as_bytes());
                        fields.push(0);
                    }
                    fields.push(0);
                    let mut message = vec![b'E'];
                    message.extend_from_slice(&(fields.len() as i32 + 4).to_be_bytes());
                    message.extend_from_slice(&fields);
                    let _ = socket.write_all(&message).await;
                    return;
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_refused_password_stops_the_quick_start_with_the_readmes_fix() {
    let port = refusing_postgres().await;
    let home = tempfile::tempdir().unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{port}/amohook");
    let child = readme_command(&url, free_port(), home.path())
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("it stops")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let readme = include_str!("../../README.md");
    for fix in [
        r#"sudo -u postgres psql -c "alter user postgres password 'postgres'""#,
        "postgres://postgres:postgres@127.0.0.1:5432/amohook",
    ] {
        assert!(stderr.contains(fix), "the error gives `{fix}`: {stderr}");
        assert!(readme.contains(fix), "the README gives `{fix}`");
    }
    assert!(stderr.contains("28P01") || stderr.contains("password authentication failed"));
    assert_eq!(
        stderr.matches("password authentication failed").count(),
        1,
        "said once: {stderr}"
    );
}

#[tokio::test]
async fn amohook_sandbox_prints_its_status_page_and_login_which_work_and_stops_on_sigterm() {
    let db = TestDb::new();
    let port = free_port();
    let home = tempfile::tempdir().unwrap();
    // The README's command, on this test's database and a free port.
    let readme = include_str!("../../README.md");
    let printed = readme
        .lines()
        .find(|l| l.starts_with("cargo run --release -- sandbox "))
        .expect("the README's sandbox command");
    let args: Vec<String> = printed["cargo run --release -- ".len()..]
        .split_whitespace()
        .map(|word| {
            if word.starts_with("postgres://") {
                db.url.clone()
            } else {
                word.to_owned()
            }
        })
        .collect();
    assert_eq!(args.len(), 2, "{printed}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_amohook"))
        .args(&args)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path())
        .current_dir(home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The banner, printed once everything is ready.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            banner.push_str(&line);
            banner.push('\n');
            if line.contains("Ctrl-C") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the sandbox prints its banner within a minute");
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        banner.contains(&format!("Status page:  {base}/status")),
        "{banner}"
    );
    let token = banner
        .split("password ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the login's password")
        .to_owned();
    assert!(token.len() >= 32, "{token}");
    assert!(banner.contains("roga.amocrm.ru") && banner.contains("acme.kommo.com"));

    let http = client();
    let accounts: serde_json::Value = http
        .get(format!("{base}/api/accounts"))
        .basic_auth("admin", Some(&token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(accounts["total"], 2, "{accounts}");
    let status = terminate(&mut child).await;
    assert!(status.success(), "exit status {status}");
}
