//! One HTTP request, start to end: authenticate, impersonate, authorize, dispatch, audit.
//!
//! The order is the API server's (k8s.io/apiserver DefaultBuildHandlerChain):
//! authentication (401), impersonation (403/500), authorization (403), then the handler.
//! A request refused at any step never reaches the store or a pod.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::Cluster;
use super::audit::{Event, ObjectRef};
use super::discovery::{self, ResourceType};
use super::identity::UserInfo;
use super::rbac::{Attributes, Decision, ImpersonationError, forbidden_message};
use super::request::{self, ResourceRequest, Target};
use super::selector::Selector;
use super::status::ApiError;
use super::store::SUPPORTED_FIELDS;
use super::{authn, streams, table};

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Largest request body accepted (objects are small; this bounds memory per request).
const MAX_BODY: usize = 3 * 1024 * 1024;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

pub fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(full(bytes));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.body(),
    )
}

/// What the handler learned about a request, for its audit event.
pub struct Ctx {
    pub event: Event,
    pub user: UserInfo,
}

/// Serve one request.
pub async fn handle(
    cluster: Arc<Cluster>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let received = SystemTime::now();
    let uri = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let params = query_params(req.uri().query());
    let watch = params
        .iter()
        .any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
    let target = request::parse(req.method(), req.uri().path(), watch);
    let (verb, object_ref) = match &target {
        Target::Resource(r) => (
            r.verb.clone(),
            Some(ObjectRef {
                resource: r.resource.clone(),
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                api_group: r.group.clone(),
                api_version: r.version.clone(),
                subresource: r.subresource.clone(),
            }),
        ),
        Target::NonResource => (req.method().as_str().to_lowercase(), None),
    };
    let event = |user: UserInfo, imp: Option<UserInfo>| {
        Event::new(
            uri.clone(),
            verb.clone(),
            user,
            imp,
            peer.ip().to_string(),
            user_agent.clone(),
            object_ref.clone(),
            received,
        )
    };

    // Authentication.
    let caller = match cluster.tokens.authenticate(req.headers()) {
        Ok(u) => u,
        Err(()) => {
            let e = ApiError::unauthorized();
            return Ok(finish(
                &cluster,
                event(UserInfo::default(), None),
                error_response(&e),
                Some(&e),
            ));
        }
    };

    // Impersonation.
    let imp_req = match authn::impersonation(req.headers()) {
        Ok(r) => r,
        Err(m) => {
            let e = ApiError::bad_request(m);
            return Ok(finish(
                &cluster,
                event(caller, None),
                error_response(&e),
                Some(&e),
            ));
        }
    };
    let impersonating = imp_req.user.as_deref().is_some_and(|u| !u.is_empty())
        || imp_req.uid.as_deref().is_some_and(|u| !u.is_empty())
        || !imp_req.groups.is_empty()
        || !imp_req.extra.is_empty();
    let rbac = cluster.rbac();
    let user = if impersonating {
        match rbac.impersonate(&caller, &imp_req) {
            Ok(u) => u,
            Err(err) => {
                let e = match err {
                    ImpersonationError::Forbidden {
                        message,
                        details_kind,
                        details_name,
                    } => {
                        let group = if matches!(details_kind.as_str(), "uids" | "userextras") {
                            "authentication.k8s.io"
                        } else {
                            ""
                        };
                        ApiError::forbidden(message, group, &details_kind, &details_name)
                    }
                    ImpersonationError::WithoutUser { message } => ApiError::internal(message),
                };
                return Ok(finish(
                    &cluster,
                    event(caller, None),
                    error_response(&e),
                    Some(&e),
                ));
            }
        }
    } else {
        caller.clone()
    };
    let mut ctx = Ctx {
        event: event(caller, impersonating.then(|| user.clone())),
        user,
    };

    let result = match target {
        Target::NonResource => non_resource(&cluster, &ctx.user, req.uri().path()),
        Target::Resource(r) => resource(&cluster, &mut ctx, r, req, params).await,
    };
    let (response, err) = match result {
        Ok(r) => (r, None),
        Err(e) => (error_response(&e), Some(e)),
    };
    Ok(finish(&cluster, ctx.event, response, err.as_ref()))
}

/// Record the audit event and hand the response back.
fn finish(
    cluster: &Cluster,
    mut event: Event,
    response: Response<Body>,
    err: Option<&ApiError>,
) -> Response<Body> {
    let code = response.status().as_u16();
    event.response_status.code = code;
    if let Some(e) = err {
        event.response_status.status = Some("Failure".into());
        event.response_status.reason = Some(e.reason.into());
        event.response_status.message = Some(e.message.clone());
    }
    if code == 101
        || response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v == "text/plain")
    {
        event.stage = "ResponseStarted";
    }
    cluster.audit.write(event);
    response
}

pub fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .take(1024)
        .collect()
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Paths everyone may read, as the bootstrap `system:public-info-viewer` role allows.
const PUBLIC_PATHS: &[&str] = &["/version", "/healthz", "/livez", "/readyz"];

fn non_resource(
    cluster: &Cluster,
    user: &UserInfo,
    path: &str,
) -> Result<Response<Body>, ApiError> {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let public = PUBLIC_PATHS.contains(&path);
    let discovery_path = path == "/api"
        || path == "/apis"
        || path.starts_with("/api/")
        || path.starts_with("/apis/");
    // Discovery is open to every authenticated user (bootstrap `system:discovery`); any
    // other path needs a nonResourceURLs grant.
    let allowed =
        public || (discovery_path && user.in_group(super::identity::AUTHENTICATED_GROUP)) || {
            let attrs = Attributes {
                user,
                verb: "get",
                api_group: "",
                resource: "",
                subresource: "",
                namespace: "",
                name: "",
                path,
            };
            matches!(cluster.rbac().authorize(&attrs), Decision::Allow)
        };
    if !allowed {
        let attrs = Attributes {
            user,
            verb: "get",
            api_group: "",
            resource: "",
            subresource: "",
            namespace: "",
            name: "",
            path,
        };
        return Err(ApiError::forbidden(forbidden_message(&attrs), "", "", ""));
    }
    let doc = match path {
        "/version" => Some(discovery::version()),
        "/healthz" | "/livez" | "/readyz" => {
            let mut r = Response::new(full("ok"));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return Ok(r);
        }
        "/api" => Some(discovery::core_versions(&cluster.server_address)),
        "/apis" => Some(discovery::group_list()),
        _ => {
            let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
            match parts.as_slice() {
                ["api", v] => discovery::resource_list("", v),
                ["apis", g] => discovery::group(g),
                ["apis", g, v] => discovery::resource_list(g, v),
                _ => None,
            }
        }
    };
    match doc {
        Some(v) => Ok(json_response(StatusCode::OK, &v)),
        None => Err(ApiError::no_route(path)),
    }
}

fn authorize(
    cluster: &Cluster,
    user: &UserInfo,
    r: &ResourceRequest,
    verb: &str,
) -> Result<(), ApiError> {
    let resource = r.resource.as_str();
    let attrs = Attributes {
        user,
        verb,
        api_group: &r.group,
        resource,
        subresource: &r.subresource,
        namespace: &r.namespace,
        name: &r.name,
        path: "",
    };
    match cluster.rbac().authorize(&attrs) {
        Decision::Allow => Ok(()),
        Decision::Deny { .. } => Err(ApiError::forbidden(
            forbidden_message(&attrs),
            &r.group,
            resource,
            &r.name,
        )),
    }
}

async fn resource(
    cluster: &Arc<Cluster>,
    ctx: &mut Ctx,
    r: ResourceRequest,
    req: Request<Incoming>,
    params: Vec<(String, String)>,
) -> Result<Response<Body>, ApiError> {
    if r.verb.is_empty() {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            req.method()
        )));
    }
    let Some(rt) = discovery::lookup(&r.group, &r.version, &r.resource) else {
        return Err(ApiError::no_route(req.uri().path()));
    };
    authorize(cluster, &ctx.user, &r, &r.verb)?;
    let streaming = matches!(r.subresource.as_str(), "exec" | "portforward");
    if streaming && req.method() == Method::GET {
        // Websocket upgrades are GETs; from Kubernetes 1.35 (PR #134577) they must also be
        // allowed to `create` the subresource, and we hold every client to that rule.
        authorize(cluster, &ctx.user, &r, "create")?;
    }
    match (rt.resource, r.subresource.as_str()) {
        ("pods", "log") => streams::logs(cluster, &r, &params),
        ("pods", "exec") => streams::exec(cluster, &r, &params, req),
        ("pods", "portforward") => streams::portforward(cluster, &r, &params, req),
        ("pods", "status") if r.verb == "get" => {
            let v = cluster.store.get(rt, &r.namespace, &r.name)?;
            Ok(object_response(StatusCode::OK, rt, &v, &req, &params))
        }
        (_, "") => objects(cluster, rt, &r, req, &params).await,
        _ => Err(ApiError::no_route(req.uri().path())),
    }
}

fn object_response(
    code: StatusCode,
    rt: &ResourceType,
    v: &Value,
    req: &Request<Incoming>,
    params: &[(String, String)],
) -> Response<Body> {
    if table::wanted(accept(req)) {
        let rv = super::store::str_at(v, &["metadata", "resourceVersion"]);
        let t = table::build(
            rt.resource,
            std::slice::from_ref(v),
            rv,
            param(params, "includeObject").unwrap_or(""),
            SystemTime::now(),
        );
        return json_response(code, &t);
    }
    json_response(code, v)
}

fn accept(req: &Request<Incoming>) -> &str {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn read_body(req: Request<Incoming>) -> Result<Value, ApiError> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?
        .to_bytes();
    // JSON is YAML, and kubectl/kube-rs send JSON; YAML bodies are accepted too.
    serde_json::from_slice(&bytes)
        .or_else(|_| serde_yaml::from_slice(&bytes))
        .map_err(|e| ApiError::bad_request(format!("the request body is not a valid object: {e}")))
}

async fn objects(
    cluster: &Arc<Cluster>,
    rt: &'static ResourceType,
    r: &ResourceRequest,
    req: Request<Incoming>,
    params: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let ns = if rt.namespaced {
        r.namespace.as_str()
    } else {
        ""
    };
    if rt.namespaced && r.namespace.is_empty() && !matches!(r.verb.as_str(), "list" | "watch") {
        return Err(ApiError::no_route(req.uri().path()));
    }
    match r.verb.as_str() {
        "get" => {
            let v = cluster.store.get(rt, ns, &r.name)?;
            Ok(object_response(StatusCode::OK, rt, &v, &req, params))
        }
        "list" | "watch" => {
            let labels = Selector::parse_labels(param(params, "labelSelector").unwrap_or(""))
                .map_err(ApiError::bad_request)?;
            let fields = Selector::parse_fields(param(params, "fieldSelector").unwrap_or(""))
                .map_err(ApiError::bad_request)?;
            if let Some(bad) = fields.keys().find(|k| !SUPPORTED_FIELDS.contains(k)) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {bad}"
                )));
            }
            let (items, rv) = cluster.store.list(rt, ns, &labels, &fields);
            if r.verb == "watch" {
                return Ok(streams::watch(cluster, items, params));
            }
            if table::wanted(accept(&req)) {
                let t = table::build(
                    rt.resource,
                    &items,
                    &rv,
                    param(params, "includeObject").unwrap_or(""),
                    SystemTime::now(),
                );
                return Ok(json_response(StatusCode::OK, &t));
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "kind": format!("{}List", rt.kind),
                    "apiVersion": rt.api_version(),
                    "metadata": {"resourceVersion": rv},
                    "items": items,
                }),
            ))
        }
        "create" => {
            let body = read_body(req).await?;
            let made = cluster.store.create(rt, ns, body)?;
            cluster.objects_changed(rt);
            Ok(json_response(StatusCode::CREATED, &made))
        }
        "update" | "patch" => {
            let patch = r.verb == "patch";
            let body = read_body(req).await?;
            let v = cluster.store.update(rt, ns, &r.name, body, patch)?;
            cluster.objects_changed(rt);
            Ok(json_response(StatusCode::OK, &v))
        }
        "delete" => {
            let v = cluster.store.delete(rt, ns, &r.name)?;
            cluster.objects_changed(rt);
            Ok(json_response(StatusCode::OK, &v))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            r.verb
        ))),
    }
}
