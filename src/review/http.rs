//! The review page's HTTP/1.1 listener: GET and HEAD only, bounded connections, each
//! request answered by `serve::Review` on the blocking pool (it reads files and hashes
//! transcripts), with the security headers of `serve::SECURITY_HEADERS`.
//!
//! It binds where it is told; refusing a non-loopback address unless asked is the
//! caller's check ([`check_listen`]), so that the refusal names the flag.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

use super::serve::{Body, Review, SECURITY_HEADERS};

/// Browser connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The page is for the reviewer's own browser: loopback unless `allow_remote`.
pub fn check_listen(addr: SocketAddr, allow_remote: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || allow_remote {
        Ok(())
    } else {
        Err(format!(
            "{addr} is not a loopback address: recordings would be readable from the network; \
             pass --allow-remote to serve them there anyway"
        ))
    }
}

type ReplyBody = BoxBody<Bytes, std::io::Error>;

fn full(bytes: impl Into<Bytes>) -> ReplyBody {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

fn plain(status: StatusCode, text: String) -> Response<ReplyBody> {
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r
}

/// The body of a reply; a file is streamed in 64 KiB reads.
async fn body(body: Body) -> Result<(ReplyBody, Option<u64>), std::io::Error> {
    Ok(match body {
        Body::Bytes(b) => (full(b), None),
        Body::Static(b) => (full(Bytes::from_static(b)), None),
        Body::File(path) => {
            let file = tokio::fs::File::open(&path).await?;
            let len = file.metadata().await?.len();
            let stream = ReaderStream::with_capacity(file.take(len), 64 << 10);
            (
                StreamBody::new(stream.map_ok(Frame::data)).boxed(),
                Some(len),
            )
        }
    })
}

async fn answer(review: Arc<Review>, req: Request<hyper::body::Incoming>) -> Response<ReplyBody> {
    let mut response = if req.method() != Method::GET && req.method() != Method::HEAD {
        plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".to_owned())
    } else {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().map(str::to_owned);
        let reply = tokio::task::spawn_blocking(move || review.get(&path, query.as_deref())).await;
        match reply {
            Ok(reply) => match body(reply.body).await {
                Ok((b, len)) => {
                    let mut r = Response::new(b);
                    *r.status_mut() = StatusCode::from_u16(reply.status)
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    let headers = r.headers_mut();
                    if let Ok(v) = http::HeaderValue::from_str(reply.content_type) {
                        headers.insert(http::header::CONTENT_TYPE, v);
                    }
                    if let Some(len) = len {
                        headers.insert(http::header::CONTENT_LENGTH, len.into());
                    }
                    r
                }
                Err(e) => plain(StatusCode::NOT_FOUND, format!("{e}\n")),
            },
            Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        }
    };
    for (name, value) in SECURITY_HEADERS {
        response
            .headers_mut()
            .insert(name, http::HeaderValue::from_static(value));
    }
    response
}

/// Serve `review` on `listener` until `shutdown` fires.
pub async fn run(listener: TcpListener, review: Arc<Review>, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let tcp = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "review accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let review = review.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let review = review.clone();
                async move { Ok::<_, Infallible>(answer(review, req).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_unless_allowed() {
        let cases = [
            ("127.0.0.1:8080", false, true),
            ("[::1]:8080", false, true),
            ("0.0.0.0:8080", false, false),
            ("10.1.2.3:8080", false, false),
            ("0.0.0.0:8080", true, true),
        ];
        for (addr, allow, ok) in cases {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(check_listen(addr, allow).is_ok(), ok, "{addr}");
        }
    }
}
