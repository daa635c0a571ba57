//! The simulator's front door: every request to an account passes here,
//! where amoCRM's rate limit, held answers, single faults and latency are
//! applied before the API ([`crate::api`]) or the token endpoint answers.

use std::time::{Duration, Instant};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};

use crate::{
    answers::{html, problem},
    api::route,
    Fault, Seen, Shared,
};

fn fault_response(fault: &Fault) -> Option<Response> {
    match fault {
        Fault::Status(429) => {
            Some((StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response())
        }
        Fault::Status(s @ 400..=499) if *s != 403 => {
            Some(problem(*s, "Bad Request", "Request failed", None))
        }
        Fault::Status(s) => Some(html(*s)),
        Fault::Problem { status, hint } => Some(problem(
            *status,
            "Некорректный запрос",
            "В запросе отсутствует ряд параметров или параметры невалидны",
            Some(hint),
        )),
        Fault::Delay(_) | Fault::AfterWork(_) | Fault::WorkThenDelay(_) => None,
    }
}

/// Answers one request to an account (`/{domain}/...`).
pub(crate) async fn handle(
    State(shared): State<Shared>,
    Path((domain, _rest)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path()
        .strip_prefix(&format!("/{domain}"))
        .unwrap_or("")
        .to_owned();
    let arrived = Instant::now();
    let (fault, latency, limited) = {
        let mut s = shared.lock().expect("simulator state");
        // amoCRM's limit: requests to one account within the last second.
        // The log is in arrival order (give or take the moment between
        // `arrived` and the push below), so only its tail is read: scanning
        // all of it made every request cost more the more requests the
        // simulator had seen (a benchmark with 10,000 accounts holds tens
        // of thousands), under the one lock every request takes.
        let limited = s.rate_limit.is_some_and(|limit| {
            let recent = s
                .seen
                .iter()
                .rev()
                .take_while(|r| arrived.saturating_duration_since(r.at) < Duration::from_secs(2))
                .filter(|r| {
                    r.domain == domain && arrived.duration_since(r.at) < Duration::from_secs(1)
                })
                .count();
            recent >= limit
        });
        let held = s
            .holds
            .get(&domain)
            .filter(|(_, until)| *until > arrived)
            .map(|(status, _)| Fault::Status(*status));
        let fault = match s.outage {
            Some(status) => Some(Fault::Status(status)),
            None => held.or_else(|| s.take_fault(&domain, &path)),
        };
        let latency = match s.slow.get(&domain) {
            Some(slow) => *slow,
            None => Some(s.latency),
        };
        (fault, latency, limited)
    };
    // The request counts from its arrival, whatever happens next.
    let index = {
        let mut s = shared.lock().expect("simulator state");
        s.seen.push(Seen {
            at: arrived,
            domain: domain.clone(),
            method: method.clone(),
            path: path.clone(),
            query: url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&"),
            status: 0,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        s.seen.len() - 1
    };
    // Counted until answered, or until the client gives up and the
    // handler is dropped.
    let _in_flight = InFlight::enter(&shared);
    match latency {
        Some(latency) if latency.is_zero() => {}
        Some(latency) => tokio::time::sleep(latency).await,
        None => std::future::pending::<()>().await,
    }
    if let Some(Fault::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let answer = |shared: &Shared| {
        route(
            shared,
            &domain,
            &method,
            &path,
            uri.query(),
            &headers,
            &body,
        )
    };
    let response = if limited {
        (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response()
    } else {
        match &fault {
            Some(Fault::AfterWork(status)) => {
                let _ = answer(&shared);
                html(*status)
            }
            Some(Fault::WorkThenDelay(wait)) => {
                let response = answer(&shared);
                shared.lock().expect("simulator state").seen[index].status =
                    response.status().as_u16();
                tokio::time::sleep(*wait).await;
                response
            }
            Some(other) => fault_response(other).unwrap_or_else(|| answer(&shared)),
            None => answer(&shared),
        }
    };
    shared.lock().expect("simulator state").seen[index].status = response.status().as_u16();
    response
}

/// One request in flight, counted in the simulator's state until dropped.
struct InFlight(Shared);

impl InFlight {
    fn enter(shared: &Shared) -> InFlight {
        let mut s = shared.lock().expect("simulator state");
        s.in_flight += 1;
        s.most_in_flight = s.most_in_flight.max(s.in_flight);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Not while unwinding from a panic that poisoned the lock.
        if let Ok(mut s) = self.0.lock() {
            s.in_flight -= 1;
        }
    }
}
