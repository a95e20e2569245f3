//! The long-running endpoints: `pods/log` (chunked text), `pods/exec` and
//! `pods/portforward` (websocket upgrades), and `watch` lists.
//!
//! Every precondition (pod, container, phase, parameters, subprotocol) is checked before
//! the 101 answer, so a refused upgrade is an ordinary Status response; kubectl then
//! retries the same request over SPDY (a POST), which gets the same Status, and prints
//! the server's message (see the notes on client-go's fallback executor).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::Cluster;
use super::channel::Protocol;
use super::exec::{self, ExecRequest};
use super::fixture::{Phase, Serve};
use super::handler::Body;
use super::logs::{self, LogQuery};
use super::portforward::{self, Backend, PortForwardRequest};
use super::request::ResourceRequest;
use super::status::ApiError;
use super::store::PodRuntime;

/// Largest websocket message accepted from a client.
const MAX_WS_MESSAGE: usize = 4 * 1024 * 1024;
/// How long a watch stays open when the client does not say (`timeoutSeconds`).
const DEFAULT_WATCH: Duration = Duration::from_secs(30 * 60);

type Ws = WebSocketStream<TokioIo<Upgraded>>;

fn flag(params: &[(String, String)], key: &str) -> bool {
    params
        .iter()
        .any(|(k, v)| k == key && matches!(v.as_str(), "true" | "1" | ""))
}

fn value<'a>(params: &'a [(String, String)], key: &str) -> &'a str {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

fn pod(cluster: &Cluster, r: &ResourceRequest) -> Result<Arc<PodRuntime>, ApiError> {
    cluster
        .store
        .pod(&r.namespace, &r.name)
        .ok_or_else(|| ApiError::not_found("", "pods", &r.name))
}

fn streaming_body<S>(content_type: &'static str, s: S) -> Response<Body>
where
    S: futures::Stream<Item = Bytes> + Send + 'static,
{
    let body = StreamBody::new(s.map(|b| Ok::<_, std::io::Error>(Frame::data(b)))).boxed_unsync();
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn logs(
    cluster: &Arc<Cluster>,
    r: &ResourceRequest,
    params: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    if r.verb != "get" {
        return Err(ApiError::method_not_allowed("pods/log only supports get"));
    }
    let q = LogQuery::parse(params)?;
    let pod = pod(cluster, r)?;
    let container = pod.container(&q.container)?.clone();
    logs::check(&pod, &container, &q)?;
    let stop = cluster.shutdown.clone();
    Ok(streaming_body(
        "text/plain",
        logs::stream(pod, container, q, stop),
    ))
}

pub fn watch(
    cluster: &Arc<Cluster>,
    items: Vec<Value>,
    params: &[(String, String)],
) -> Response<Body> {
    let timeout = value(params, "timeoutSeconds")
        .parse::<u64>()
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_WATCH);
    let stop = cluster.shutdown.clone();
    let initial = futures::stream::iter(items.into_iter().map(|o| {
        let mut line =
            serde_json::to_vec(&json!({"type": "ADDED", "object": o})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }));
    // The devcluster does not generate change events; the watch stays open, as a quiet
    // real watch does, until its timeout or shutdown.
    let tail = futures::stream::once(async move {
        tokio::select! {
            _ = tokio::time::sleep(timeout) => {}
            _ = stop.cancelled() => {}
        }
    })
    .filter_map(|()| async { None::<Bytes> });
    streaming_body("application/json", initial.chain(tail))
}

/// Answer a websocket upgrade with `protocols` (server preference irrelevant: the first
/// protocol the client offers that we support wins, as in k8s wsstream), then run `serve`
/// on the upgraded connection.
fn upgrade<F, Fut>(
    cluster: &Arc<Cluster>,
    mut req: Request<Incoming>,
    protocols: &[Protocol],
    serve: F,
) -> Result<Response<Body>, ApiError>
where
    F: FnOnce(Ws, Protocol) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let headers = req.headers();
    let wants_websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !wants_websocket || req.method() != Method::GET {
        // The SPDY fallback of client-go (or a plain request) after every check passed.
        return Err(ApiError::bad_request(
            "Upgrade request required: the podgate devcluster serves exec and port-forward over \
             websockets only (v5.channel.k8s.io, v4.channel.k8s.io); SPDY is not supported",
        ));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| ApiError::bad_request("missing Sec-WebSocket-Key"))?;
    let accept = derive_accept_key(key.as_bytes());
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
        .collect();
    let chosen = offered
        .iter()
        .find_map(|o| Protocol::from_name(o).filter(|p| protocols.contains(p)))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {:?}",
                protocols.iter().map(|p| p.name()).collect::<Vec<_>>()
            ))
        })?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let stop = cluster.shutdown.clone();
    tokio::spawn(async move {
        let upgraded = tokio::select! {
            u = on_upgrade => u,
            _ = stop.cancelled() => return,
        };
        match upgraded {
            Ok(up) => {
                let mut config = WebSocketConfig::default();
                config.max_message_size = Some(MAX_WS_MESSAGE);
                config.max_frame_size = Some(MAX_WS_MESSAGE);
                // tungstenite zero-fills its whole read buffer (128 KiB by default) before
                // each read: 16 KiB keeps an idle stream cheap and a busy one fast (client
                // frames here are stdin and resizes, small).
                config.read_buffer_size = 16 * 1024;
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, Some(config))
                        .await;
                serve(ws, chosen).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut r = Response::new(super::handler::full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(chosen.name()),
    );
    Ok(r)
}

pub fn exec(
    cluster: &Arc<Cluster>,
    r: &ResourceRequest,
    params: &[(String, String)],
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let pod = pod(cluster, r)?;
    let container = pod.container(value(params, "container"))?.name.clone();
    match pod.phase {
        Phase::Running => {}
        Phase::Succeeded | Phase::Failed => {
            return Err(ApiError::bad_request(format!(
                "cannot exec into a container in a completed pod; current phase is {}",
                pod.phase.as_str()
            )));
        }
        Phase::Pending => {
            return Err(ApiError::bad_request(format!(
                "unable to upgrade connection: container not found ({container:?})"
            )));
        }
    }
    let command: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let (stdin, stdout, stderr, tty) = (
        flag(params, "stdin"),
        flag(params, "stdout"),
        flag(params, "stderr"),
        flag(params, "tty"),
    );
    if !(stdin || stdout || stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    if tty && stderr {
        return Err(ApiError::bad_request("tty and stderr cannot both be true"));
    }
    let workdir = cluster
        .sandbox_root
        .join(&pod.namespace)
        .join(&pod.name)
        .join(&container);
    std::fs::create_dir_all(&workdir).map_err(|e| {
        ApiError::internal(format!("creating the sandbox {}: {e}", workdir.display()))
    })?;
    let request = ExecRequest {
        command,
        stdin,
        stdout,
        stderr,
        tty,
        workdir,
        env: vec![
            ("HOSTNAME".into(), pod.name.clone()),
            ("POD_NAME".into(), pod.name.clone()),
            ("POD_NAMESPACE".into(), pod.namespace.clone()),
            ("CONTAINER_NAME".into(), container),
        ],
    };
    let stop = pod.deleted.clone();
    upgrade(
        cluster,
        req,
        &[Protocol::V5, Protocol::V4],
        move |ws, proto| exec::serve(ws, proto, request, stop),
    )
}

pub fn portforward(
    cluster: &Arc<Cluster>,
    r: &ResourceRequest,
    params: &[(String, String)],
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let pod = pod(cluster, r)?;
    if pod.phase != Phase::Running {
        return Err(ApiError::bad_request(format!(
            "pod {} is not running and cannot be port-forwarded (phase {})",
            pod.name,
            pod.phase.as_str()
        )));
    }
    let mut ports = Vec::new();
    for (_, v) in params.iter().filter(|(k, _)| k == "ports") {
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::bad_request(format!("invalid port {p:?}")))?;
            ports.push(port);
        }
    }
    if ports.is_empty() {
        return Err(ApiError::bad_request("at least one port must be specified"));
    }
    if ports.len() > 128 {
        return Err(ApiError::bad_request(
            "at most 128 ports may be forwarded at once",
        ));
    }
    let backends = ports
        .into_iter()
        .map(|port| {
            let serve = pod
                .containers
                .iter()
                .flat_map(|c| c.ports.iter())
                .find(|(p, _)| *p == port)
                .map(|(_, s)| s.clone());
            let backend = match serve {
                Some(Serve::Http) => Backend::Http {
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                },
                Some(Serve::Echo) => Backend::Echo,
                Some(Serve::Address(a)) => Backend::Address(a),
                None => Backend::Unavailable,
            };
            (port, backend)
        })
        .collect();
    let request = PortForwardRequest {
        namespace: pod.namespace.clone(),
        pod: pod.name.clone(),
        uid: pod.uid.clone(),
        ports: backends,
    };
    let stop = pod.deleted.clone();
    upgrade(cluster, req, &[Protocol::V4], move |ws, _| {
        portforward::serve(ws, request, stop)
    })
}
