//! The `metrics_listen` endpoint: `/metrics` (OpenMetrics text), `/healthz` (the process
//! answers) and `/readyz` (the gateway can take new sessions).
//!
//! Readiness is what a Kubernetes readiness probe and a load balancer need to know: it
//! fails (503, with one line per problem) while the revocation list is unusable (every
//! login is refused then), while the recordings directory is not writable or has less
//! than `recordings_min_free` free (every session is refused then), while the spool of a
//! recordings store is over its limits with `when_spool_full: refuse` (ditto; a store that
//! is down while the spool has room does not make the gateway unready: sessions go on into
//! the spool, and `podgate_store_up` says the store is down), and once the gateway
//! is draining, so that new connections go to another replica. The policy and the CA keys
//! are loaded and checked before the gateway serves at all and do not change afterwards,
//! so they cannot make a running gateway unready.
//!
//! Guarantees: plain HTTP/1.1 on the configured address, GET/HEAD only, at most
//! [`MAX_CONNECTIONS`] connections at once, each with a header read timeout; no request
//! changes anything.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::Revocations;
use crate::gateway::Gateway;
use crate::recording::session::check_space;

/// Scrapers and probes served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 32;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the gateway cannot take new sessions now; empty when it can.
pub fn readiness(gateway: &Gateway, draining: bool) -> Vec<String> {
    let mut problems = Vec::new();
    if draining {
        problems.push("draining: the gateway is shutting down".to_owned());
    }
    if let Revocations::Unavailable(why) = &*gateway.revocations.borrow() {
        problems.push(format!("revocation list unusable: {why}"));
    }
    if let Some(why) = gateway.shipping.as_ref().and_then(|s| s.readiness()) {
        problems.push(why);
    }
    let dir = &gateway.recordings;
    if let Err(e) = check_space(dir, gateway.recordings_min_free) {
        problems.push(format!("recordings directory {}: {e}", dir.display()));
    }
    if let Err(e) = nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK) {
        problems.push(format!(
            "recordings directory {} is not writable: {e}",
            dir.display()
        ));
    }
    problems
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    response
}

fn handle(
    gateway: &Gateway,
    draining: bool,
    req: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            gateway.metrics.encode(),
        ),
        "/healthz" | "/livez" => respond(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => {
            let problems = readiness(gateway, draining);
            if problems.is_empty() {
                respond(StatusCode::OK, TEXT, "ok\n".into())
            } else {
                let body = format!("not ready:\n{}\n", problems.join("\n"));
                respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, body)
            }
        }
        _ => respond(StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}

/// Serve the endpoints on `listener` until the task is dropped. `draining` is the gateway's
/// shutdown token: once it fires, `/readyz` fails while `/metrics` and `/healthz` go on
/// answering for the rest of the drain.
pub async fn run(listener: TcpListener, gateway: Arc<Gateway>, draining: CancellationToken) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let gateway = gateway.clone();
        let draining = draining.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let response = handle(&gateway, draining.is_cancelled(), &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true);
            // A keep-alive connection holds a slot; none holds it for long.
            let conn = builder.serve_connection(TokioIo::new(tcp), svc);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                tracing::debug!(%peer, error = %e, "metrics connection ended");
            }
        });
    }
}
