//! Logging through `tracing`: human-readable by default, JSON lines with
//! `log.format = "json"`. `RUST_LOG` adjusts the levels.
//!
//! Secrets are kept out of logs by construction: request spans name the
//! route pattern (never the URI with its codes, signatures and hook keys),
//! tokens and keys are `SecretString`s whose Debug is redacted, and errors
//! from amoCRM carry its problem text, never the request.

use std::io::IsTerminal as _;

use tracing_subscriber::{fmt, fmt::MakeWriter, EnvFilter};

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(text: Option<&str>) -> Result<LogFormat, String> {
        match text.map(str::trim) {
            None | Some("") | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(format!("`{other}` is not text or json")),
        }
    }
}

/// The levels without `RUST_LOG`: every request once, at info.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_http=info";

/// Logs to stderr; text lines are coloured only when stderr is a terminal
/// (not in a file, a pipe or `docker logs`).
pub fn init(format: LogFormat) {
    init_with_default(format, DEFAULT_FILTER);
}

/// [`init`] with other levels when `RUST_LOG` is unset (`amohook sandbox`
/// leaves out the line per request, which would bury its banner).
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let colour = std::io::stderr().is_terminal();
    init_filtered(format, std::io::stderr, colour, default_filter);
}

/// Logs to `writer`; tests capture the lines this way.
pub fn init_with_writer<W>(format: LogFormat, writer: W, colour: bool)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    init_filtered(format, writer, colour, DEFAULT_FILTER);
}

fn init_filtered<W>(format: LogFormat, writer: W, colour: bool, default_filter: &str)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(colour);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}
