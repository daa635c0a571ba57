//! Logging through `tracing`.

use tracing_subscriber::{fmt, EnvFilter};

/// Human-readable logs on stderr; `RUST_LOG` adjusts the levels.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let _ = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
