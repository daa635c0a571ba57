//! /metrics: Prometheus text format.

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};

use super::MetricsReader;
use crate::http::AppState;

/// Prometheus text format. Gauges that describe the queue are read from
/// the database at scrape time, so every process reports the same queue.
pub(super) async fn metrics(_: MetricsReader, State(state): State<AppState>) -> Response {
    let queue = sqlx::query!(
        r#"select state, count(*) as "count!" from hook_events
           where state in ('pending', 'sending', 'failed') group by state"#
    )
    .fetch_all(&state.pool)
    .await
    .map(|rows| {
        rows.into_iter()
            .map(|r| (r.state, r.count))
            .collect::<Vec<(String, i64)>>()
    });
    let oldest = sqlx::query_scalar!(
        "select extract(epoch from now() - min(received_at))::float8 from hook_events
         where state in ('pending', 'sending')"
    )
    .fetch_one(&state.pool)
    .await;
    if let (Ok(queue), Ok(oldest)) = (queue, oldest) {
        for s in ["pending", "sending", "failed"] {
            let n = queue
                .iter()
                .find(|(k, _)| k == s)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            metrics::gauge!("amohook_events", "state" => s).set(n as f64);
        }
        let depth: i64 = queue
            .iter()
            .filter(|(k, _)| k != "failed")
            .map(|(_, n)| n)
            .sum();
        metrics::gauge!("amohook_queue_depth").set(depth as f64);
        metrics::gauge!("amohook_oldest_pending_age_seconds").set(oldest.unwrap_or(0.0));
    }
    let hooks = sqlx::query!(
        r#"select coalesce(webhook_state, 'unknown') as "state!", count(*) as "count!"
           from accounts where status = 'active' group by 1"#
    )
    .fetch_all(&state.pool)
    .await;
    if let Ok(hooks) = hooks {
        for s in [
            "subscribed",
            "switched_off",
            "missing",
            "refused",
            "unknown",
        ] {
            let n = hooks
                .iter()
                .find(|r| r.state == s)
                .map(|r| r.count)
                .unwrap_or(0);
            metrics::gauge!("amohook_accounts_by_hook_state", "state" => s).set(n as f64);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
