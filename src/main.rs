use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use amohook::{
    config::{DatabaseSettings, RawSettings, Settings},
    db,
    startup::Application,
};

/// amohook: turns amoCRM web-hooks into notes in the cards they are about,
/// for every account that installed the integration.
///
/// Configuration comes from config/default.toml, then the file given with
/// --config, then environment variables AMOHOOK_<SECTION>__<KEY> (and
/// DATABASE_URL). See docs/configuration.md for every key.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// An extra TOML file over config/default.toml (the environment still
    /// wins over it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server and the background worker in one process:
    /// creates the database if it is missing, applies migrations, serves
    /// until SIGTERM or Ctrl-C, then finishes in-flight work and exits 0.
    Serve,
    /// Create the database if it is missing and apply pending migrations,
    /// then exit. Needs only database.url.
    Migrate,
    /// Rewrite every stored secret with the current encryption key (after
    /// a key rotation: security.encryption_key is the new key,
    /// security.old_encryption_keys the old ones), then exit. Safe while
    /// the service runs. Needs the service's configuration.
    Reencrypt,
    /// Write the widget archive for amoMarket (amoCRM) or Kommo's
    /// marketplace: manifest.json, script.js with this deployment's
    /// http.public_url, the listing's languages and the logos. Upload it to
    /// the integration's settings in amoCRM or Kommo. Needs the service's
    /// configuration (the integration's client id and the public URL).
    Widget {
        /// The marketplace: amocrm (Russian and English) or kommo
        /// (English, Spanish, Portuguese).
        #[arg(long, value_name = "PLATFORM", default_value = "amocrm")]
        platform: String,
        /// The support e-mail the listing shows.
        #[arg(long, value_name = "EMAIL")]
        support_email: String,
        /// Where to write the archive.
        #[arg(long, value_name = "FILE", default_value = "amohook-widget.zip")]
        out: std::path::PathBuf,
    },
    /// amoCRM on your laptop: run the service against a built-in amoCRM
    /// simulator, install two demo accounts through the real install flow,
    /// and print the status page's address and login. Needs no other
    /// configuration and writes only to the given database.
    Sandbox {
        /// PostgreSQL URL; its database is created if missing
        /// (amohook_sandbox when the URL names none).
        #[arg(
            value_name = "DATABASE_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/amohook_sandbox"
        )]
        database_url: String,
        /// Address and port to listen on.
        #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line.
            eprintln!("amohook: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let raw = RawSettings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Sandbox { .. } => amohook::telemetry::init_with_default(
            raw.log.format()?,
            "info,sqlx=warn,tower_http=warn",
        ),
        _ => amohook::telemetry::init(raw.log.format()?),
    }
    match cli.command {
        Command::Migrate => {
            let database = DatabaseSettings::from_raw(&raw.database)?;
            db::create_if_missing(&database)
                .await
                .context("cannot reach PostgreSQL (database.url)")?;
            let pools = db::connect(&database).await?;
            db::migrate(&pools.main).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Reencrypt => {
            let settings = Settings::from_raw(raw)?;
            let pools = db::connect(&settings.database)
                .await
                .context("cannot connect to PostgreSQL (database.url)")?;
            db::migrate(&pools.main).await?;
            let cipher = amohook::startup::open_keys(&pools.main, &settings).await?;
            let report = amohook::reencrypt::run(&pools.main, &cipher).await?;
            tracing::info!(
                rewritten = report.rewritten,
                unreadable = report.unreadable,
                "stored secrets rewritten with the current key"
            );
            if report.unreadable > 0 {
                anyhow::bail!(
                    "{} stored values could not be opened with any configured key and were left as they were",
                    report.unreadable
                );
            }
            Ok(())
        }
        Command::Widget {
            platform,
            support_email,
            out,
        } => {
            let platform = amohook::platform::Platform::parse(&platform)
                .ok_or_else(|| anyhow::anyhow!("--platform must be amocrm or kommo"))?;
            if !support_email.contains('@') {
                anyhow::bail!("--support-email must be an e-mail address");
            }
            let settings = Settings::from_raw(raw)?;
            let widget = amohook::widget::Widget::of(&settings, platform, &support_email);
            let bytes = widget.archive()?;
            std::fs::write(&out, &bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "{} ({} bytes): the {} widget for {} (client id {})",
                out.display(),
                bytes.len(),
                platform.title(),
                widget.base_url,
                widget.client_id
            );
            Ok(())
        }
        Command::Serve => {
            let settings = Settings::from_raw(raw)?;
            let app = Application::build(settings).await?;
            tracing::info!(port = app.port(), "amohook listening");
            let shutdown = CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            app.run_until_stopped(shutdown).await
        }
        Command::Sandbox {
            database_url,
            listen,
        } => {
            let shutdown = CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            let options = amohook::sandbox::Options {
                database_url,
                listen,
            };
            let running = amohook::sandbox::start(options, shutdown).await?;
            // Once, on the console: the admin token is the sandbox's own.
            println!("{}", running.banner());
            running.wait().await
        }
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("stop signal received; finishing in-flight work");
    shutdown.cancel();
}
