//! The HTTP server: hyper's connections with the limits a public endpoint
//! needs. axum's `serve` runs hyper without a timer, so a client that sends
//! half a request, or opens a connection and sends nothing, holds it (and a
//! file descriptor) forever: 3,000 such connections were all still open
//! 45 s later, and enough of them exhaust the process's descriptors, after
//! which intake and PostgreSQL connections fail for every account.
//!
//! Here every connection has [`Limits::header_timeout`] to send each
//! request's head: the same timer runs while a keep-alive connection waits
//! for its next request, so it is the idle timeout too (hyper starts it as
//! soon as the connection waits for a head). At most
//! [`Limits::max_connections`] connections are open at once; past that new
//! ones wait in the listen backlog until one closes, rather than being
//! refused. Per-client limits (connections and request rates by address)
//! need the client's address as the network saw it, and belong to the
//! proxy or load balancer in front (see docs/security.md).

use std::{sync::Arc, time::Duration};

use axum::Router;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once, at most.
    pub max_connections: usize,
    /// Time to send a request's head, and to start the next request on a
    /// kept-alive connection.
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown`, then lets the requests in
/// flight finish (the caller bounds how long).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection gone before it
                    // was accepted: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = graceful.watch(
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone())),
        );
        metrics::gauge!("amohook_http_connections").increment(1.0);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // A client that timed out or went away: its own business.
                tracing::debug!(error = %e, "connection ended");
            }
            metrics::gauge!("amohook_http_connections").decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
