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
        LogFormat::Text => builder.fmt_fields(text_fields()).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// The fields of a text line, as tracing-subscriber writes them (the
/// message bare, then `name=value`), with every control character of a
/// value escaped: values carry text from hook bodies and amoCRM's answers,
/// and a CR or LF in them would otherwise start a line of its own, one that
/// looks like the service's (JSON lines are escaped by the encoder).
fn text_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt as _;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        let value = escape_controls(&text);
        if field.name() == "message" {
            write!(writer, "{value}")
        } else {
            write!(writer, "{field}={value}")
        }
    })
    .delimited(" ")
}

/// `\n`, `\r`, `\t` and `\u{..}` for every control character.
fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer into shared memory.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn text_lines_escape_line_breaks_from_values_so_no_line_can_be_forged() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(text_fields())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let forged = "x\r\n2026-01-01T00:00:00Z  INFO amohook: account connected";
            let span = tracing::info_span!("request", uri = forged);
            let _in = span.enter();
            tracing::warn!(error = %forged, name = forged, "hook refused: {forged}");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\r'), "{text:?}");
        assert!(text.contains(r"error=x\r\n2026"), "{text}");
        assert!(text.contains(r#"name="x\r\n2026"#), "{text}");
        assert!(text.contains(r"hook refused: x\r\n2026"), "{text}");
        assert!(
            text.contains(r"uri=x\r\n2026") || text.contains(r#"uri="x\r\n2026"#),
            "{text}"
        );
    }
}
