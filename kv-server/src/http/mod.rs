//! The HTTP/1.1 API of the client port (axum), exactly as the two tables of DESIGN.md give it.
//!
//! # Routing
//!
//! A first path segment that is one of `keys nodes members servers health state stats
//! metrics leader` names an API route; any other path is a key at the root, raftexample
//! style. The segment is compared before percent-decoding, so `/keys%2Fa` is the key
//! `keys/a` and `/%6Beys` is the key `keys`, while a key named `keys` can always be reached
//! as `/keys/keys`. A reserved first segment with a path no route has (`/health/x`,
//! `/nodes`) is a 404.
//!
//! At the root, `PUT` and `GET` always address a key (`PUT /123` sets the key `123`).
//! `POST` and `DELETE` follow raftexample: `POST /{id}` (body = peer URL) adds node `id` as a
//! voter and `DELETE /{id}` removes it, where `{id}` is a decimal number; a root `POST` or
//! `DELETE` of anything else is a 405 (use `PUT /{key}`, or `DELETE /keys/{key}` to delete a
//! key named `123`). Root and `/keys/` share one namespace: `PUT /my-key` and
//! `PUT /keys/my-key` set the same key, and everything `/keys/{key}` takes (consistency,
//! `prev_value`, `prev_exist`) works at the root too.
//!
//! # Decisions
//!
//! - Keys are percent-decoded (strictly: a stray `%` is a 400; `+` stays `+`) and must be
//!   UTF-8; query values are form-decoded (`+` is a space). An empty key is a 400, a key over
//!   the limit a 413.
//! - Unknown or repeated query parameters, and bad values (`limit=abc`, `values=yes`,
//!   `consistency=eventual`, `limit=0`), are 400s. `limit` above the server's page size is
//!   lowered to it; `more` then says whether keys were left out.
//! - `prev_value=V&prev_exist=true` means `prev_value=V`; with `prev_exist=false` it is a 400.
//! - `POST /keys/{key}` takes its value from `?val=`, or from the body when `val` is absent;
//!   both at once is a 400.
//! - `POST /nodes/{id}` takes the peer address from `?addr=`, or from the body.
//! - A list with `values=true` shows a UTF-8 value as `"value": "..."` and any other value as
//!   `"value_base64": "..."` (standard alphabet, padded), so no byte is lost or mangled.
//! - `GET /keys/` lists like `GET /keys`. `HEAD` is accepted wherever `GET` is.
//! - A value body over the limit is a 413, never buffered past the limit; a modest excess is
//!   read and discarded first so that the client sees the 413 rather than a reset.
//! - A batch body is a JSON object of string values (400 otherwise); a key given twice takes
//!   the later value. Its JSON text may be up to twice `max_batch_bytes` (413 past that).
//! - `GET /health` with no leader is a 503 whose body is `{"error": "no leader", "health":
//!   false, "leader": 0}`, satisfying both "JSON error for every 5xx" and the health shape.
//! - Request counts by route and status, and latency by route, are recorded in the backend's
//!   [`Metrics`] as `kv_http_requests_total` and `kv_http_request_duration_seconds`.

mod parse;
mod render;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{Method, StatusCode, request::Parts};
use axum::middleware::{self, Next};
use axum::response::Response as HttpResponse;
use axum::routing::any;
use bytes::Bytes;

use crate::api::{ApiError, Backend, Condition, Limits, ListRequest, MAX_PEER_ADDR, Request};
use crate::metrics::{Counter, Histogram, Metrics};
use parse::Query;

/// First path segments that name an API route rather than a key.
pub const RESERVED_SEGMENTS: [&str; 9] = [
    "keys", "nodes", "members", "servers", "health", "state", "stats", "metrics", "leader",
];

/// Route label for requests that match no route or method.
const OTHER: &str = "other";

#[derive(Clone)]
struct AppState<B> {
    backend: B,
    limits: Limits,
}

/// The route label recorded in metrics, attached to every response by its handler.
#[derive(Clone, Copy)]
struct RouteLabel(&'static str);

/// The axum router of the HTTP API over `backend`, enforcing `limits`.
pub fn router<B: Backend>(backend: B, limits: Limits) -> Router {
    let metrics = HttpMetrics {
        registry: backend.metrics().clone(),
        handles: Arc::default(),
    };
    let state = AppState { backend, limits };
    Router::new()
        .route("/keys", any(keys_collection::<B>))
        .route("/keys/", any(keys_collection::<B>))
        .route("/keys/{*key}", any(key_item::<B>))
        .route("/nodes/{id}", any(node_item::<B>))
        .route("/nodes/{id}/promote", any(node_promote::<B>))
        .route("/leader", any(leader::<B>))
        .route("/members", any(members::<B>))
        .route("/servers", any(members::<B>))
        .route("/health", any(health::<B>))
        .route("/state", any(node_state::<B>))
        .route("/stats", any(stats::<B>))
        .route("/metrics", any(metrics_text::<B>))
        .fallback(root::<B>)
        .layer(middleware::from_fn_with_state(metrics, record_metrics))
        .with_state(state)
}

async fn record_metrics(
    State(metrics): State<HttpMetrics>,
    req: HttpRequest,
    next: Next,
) -> HttpResponse {
    let start = Instant::now();
    let resp = next.run(req).await;
    let route = resp.extensions().get::<RouteLabel>().map_or(OTHER, |r| r.0);
    let (count, latency) = metrics.series(route, resp.status());
    count.inc();
    latency.observe(start.elapsed());
    resp
}

/// The request metrics' handles by route and status, looked up in the registry once each
/// and kept: a lookup renders the labels and takes the registry's lock, which on a small
/// request is a visible share of its cost.
#[derive(Clone)]
struct HttpMetrics {
    registry: Metrics,
    handles: Arc<RwLock<HashMap<(&'static str, StatusCode), RequestSeries>>>,
}

/// The request counter and the latency histogram of one route and status.
type RequestSeries = (Counter, Histogram);

impl HttpMetrics {
    fn series(&self, route: &'static str, status: StatusCode) -> RequestSeries {
        let read = self.handles.read().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = read.get(&(route, status)) {
            return h.clone();
        }
        drop(read);
        let h = (
            self.registry.counter_with(
                "kv_http_requests_total",
                "HTTP requests by route and status.",
                &[("route", route), ("status", status.as_str())],
            ),
            self.registry.histogram_with(
                "kv_http_request_duration_seconds",
                "HTTP request latency by route, until the response head.",
                &[("route", route)],
            ),
        );
        let mut write = self.handles.write().unwrap_or_else(|e| e.into_inner());
        write.entry((route, status)).or_insert(h).clone()
    }
}

/// Checks and executes a parsed request, and renders the answer.
async fn call<B: Backend>(
    st: &AppState<B>,
    route: &'static str,
    parsed: Result<Request, ApiError>,
) -> HttpResponse {
    let values = matches!(&parsed, Ok(Request::List(l)) if l.values);
    let result = match parsed.and_then(|r| r.check(&st.limits)) {
        Ok(req) => st.backend.call(req).await,
        Err(e) => Err(e),
    };
    labelled(render::answer(result, values), route)
}

fn labelled(mut resp: HttpResponse, route: &'static str) -> HttpResponse {
    resp.extensions_mut().insert(RouteLabel(route));
    resp
}

fn not_allowed(parts: &Parts, route: &str, allowed: &[&str]) -> HttpResponse {
    labelled(
        render::method_not_allowed(parts.method.as_str(), route, allowed),
        OTHER,
    )
}

fn is_get(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

fn query(parts: &Parts, allowed: &[&'static str]) -> Result<Query, ApiError> {
    Query::parse(parts.uri.query(), allowed)
}

fn condition(q: &Query) -> Result<Option<Condition>, ApiError> {
    match (q.bytes("prev_value"), q.bool("prev_exist")?) {
        (Some(v), None | Some(true)) => Ok(Some(Condition::PrevValue(Bytes::copy_from_slice(v)))),
        (Some(_), Some(false)) => Err(ApiError::bad_request(
            "prev_value and prev_exist=false contradict each other",
        )),
        (None, Some(exist)) => Ok(Some(Condition::PrevExist(exist))),
        (None, None) => Ok(None),
    }
}

fn get_key(parts: &Parts, key: String) -> Result<Request, ApiError> {
    let q = query(parts, &["consistency"])?;
    Ok(Request::Get {
        key,
        consistency: q.consistency()?,
    })
}

async fn put_key(
    parts: &Parts,
    body: Body,
    key: String,
    limits: &Limits,
) -> Result<Request, ApiError> {
    let q = query(parts, &["prev_value", "prev_exist"])?;
    let condition = condition(&q)?;
    let value = parse::read_body(&parts.headers, body, limits.max_value).await?;
    Ok(Request::Put {
        key,
        value,
        condition,
    })
}

/// rkv's `POST /keys/{key}?val=V`.
async fn post_key(
    parts: &Parts,
    body: Body,
    key: String,
    limits: &Limits,
) -> Result<Request, ApiError> {
    let q = query(parts, &["val", "prev_value", "prev_exist"])?;
    let condition = condition(&q)?;
    let body = parse::read_body(&parts.headers, body, limits.max_value).await?;
    let value = match q.bytes("val") {
        Some(_) if !body.is_empty() => {
            return Err(ApiError::bad_request(
                "give the value either as ?val= or as the body, not both",
            ));
        }
        Some(val) => Bytes::copy_from_slice(val),
        None => body,
    };
    Ok(Request::Put {
        key,
        value,
        condition,
    })
}

fn list(parts: &Parts) -> Result<Request, ApiError> {
    let q = query(
        parts,
        &["prefix", "after", "limit", "values", "consistency"],
    )?;
    Ok(Request::List(ListRequest {
        prefix: q.string("prefix")?.unwrap_or_default(),
        after: q.string("after")?,
        limit: q.number("limit")?,
        values: q.bool("values")?.unwrap_or(false),
        consistency: q.consistency()?,
    }))
}

async fn batch(parts: &Parts, body: Body, limits: &Limits) -> Result<Request, ApiError> {
    query(parts, &[])?;
    let limit = limits.max_batch_bytes.saturating_mul(2) + (64 << 10);
    let body = parse::read_body(&parts.headers, body, limit).await?;
    let map: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("batch must be a JSON object of strings: {e}"))
        })?;
    Ok(Request::Batch {
        items: map.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect(),
    })
}

/// A peer address from a request body: UTF-8, surrounding whitespace trimmed.
async fn addr_from_body(parts: &Parts, body: Body) -> Result<String, ApiError> {
    let body = parse::read_body(&parts.headers, body, MAX_PEER_ADDR).await?;
    let addr = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("peer address is not UTF-8"))?
        .trim();
    if addr.is_empty() {
        return Err(ApiError::bad_request("missing peer address"));
    }
    Ok(addr.to_owned())
}

async fn keys_collection<B: Backend>(
    State(st): State<AppState<B>>,
    req: HttpRequest,
) -> HttpResponse {
    let (parts, body) = req.into_parts();
    match parts.method {
        ref m if is_get(m) => call(&st, "list", list(&parts)).await,
        Method::POST => {
            let parsed = batch(&parts, body, &st.limits).await;
            call(&st, "batch", parsed).await
        }
        _ => not_allowed(&parts, "/keys", &["GET", "HEAD", "POST"]),
    }
}

async fn key_item<B: Backend>(State(st): State<AppState<B>>, req: HttpRequest) -> HttpResponse {
    let (parts, body) = req.into_parts();
    let raw = parts.uri.path().strip_prefix("/keys/").unwrap_or_default();
    let key = parse::decode_path(raw);
    match parts.method {
        ref m if is_get(m) => call(&st, "get_key", key.and_then(|k| get_key(&parts, k))).await,
        Method::PUT => {
            let parsed = match key {
                Ok(k) => put_key(&parts, body, k, &st.limits).await,
                Err(e) => Err(e),
            };
            call(&st, "put_key", parsed).await
        }
        Method::POST => {
            let parsed = match key {
                Ok(k) => post_key(&parts, body, k, &st.limits).await,
                Err(e) => Err(e),
            };
            call(&st, "post_key", parsed).await
        }
        Method::DELETE => {
            let parsed = key.and_then(|key| {
                query(&parts, &[])?;
                Ok(Request::Delete { key })
            });
            call(&st, "delete_key", parsed).await
        }
        _ => not_allowed(
            &parts,
            "/keys/{key}",
            &["GET", "HEAD", "PUT", "POST", "DELETE"],
        ),
    }
}

async fn node_item<B: Backend>(State(st): State<AppState<B>>, req: HttpRequest) -> HttpResponse {
    let (parts, body) = req.into_parts();
    let raw = parts.uri.path().strip_prefix("/nodes/").unwrap_or_default();
    let id = parse::node_id(raw);
    match parts.method {
        Method::POST => {
            let parsed = async {
                let id = id?;
                let q = query(&parts, &["addr", "learner"])?;
                let learner = q.bool("learner")?.unwrap_or(false);
                let addr = match q.string("addr")? {
                    Some(addr) => addr,
                    None => addr_from_body(&parts, body).await?,
                };
                Ok(Request::AddNode { id, addr, learner })
            }
            .await;
            call(&st, "add_node", parsed).await
        }
        Method::DELETE => {
            let parsed = id.and_then(|id| {
                query(&parts, &[])?;
                Ok(Request::RemoveNode { id })
            });
            call(&st, "remove_node", parsed).await
        }
        _ => not_allowed(&parts, "/nodes/{id}", &["POST", "DELETE"]),
    }
}

async fn node_promote<B: Backend>(State(st): State<AppState<B>>, req: HttpRequest) -> HttpResponse {
    let (parts, _) = req.into_parts();
    if parts.method != Method::POST {
        return not_allowed(&parts, "/nodes/{id}/promote", &["POST"]);
    }
    let raw = parts
        .uri
        .path()
        .strip_prefix("/nodes/")
        .and_then(|p| p.strip_suffix("/promote"))
        .unwrap_or_default();
    let parsed = parse::node_id(raw).and_then(|id| {
        query(&parts, &[])?;
        Ok(Request::PromoteNode { id })
    });
    call(&st, "promote_node", parsed).await
}

async fn leader<B: Backend>(State(st): State<AppState<B>>, req: HttpRequest) -> HttpResponse {
    let (parts, _) = req.into_parts();
    if parts.method != Method::POST {
        return not_allowed(&parts, "/leader", &["POST"]);
    }
    let parsed = query(&parts, &["to"]).and_then(|q| match q.number::<u64>("to")? {
        Some(to) => Ok(Request::TransferLeader { to }),
        None => Err(ApiError::bad_request("missing ?to={id}")),
    });
    call(&st, "transfer_leader", parsed).await
}

/// A `GET` route without parameters.
async fn simple_get<B: Backend>(
    st: AppState<B>,
    req: HttpRequest,
    path: &str,
    route: &'static str,
    request: Request,
) -> HttpResponse {
    let (parts, _) = req.into_parts();
    if !is_get(&parts.method) {
        return not_allowed(&parts, path, &["GET", "HEAD"]);
    }
    let parsed = query(&parts, &[]).map(|_| request);
    call(&st, route, parsed).await
}

async fn members<B: Backend>(State(st): State<AppState<B>>, req: HttpRequest) -> HttpResponse {
    let path = req.uri().path().to_owned();
    simple_get(st, req, &path, "members", Request::Members).await
}

async fn health<B: Backend>(State(st): State<AppState<B>>, req: HttpRequest) -> HttpResponse {
    simple_get(st, req, "/health", "health", Request::Health).await
}

async fn node_state<B: Backend>(State(st): State<AppState<B>>, req: HttpRequest) -> HttpResponse {
    simple_get(st, req, "/state", "state", Request::State).await
}

async fn stats<B: Backend>(State(st): State<AppState<B>>, req: HttpRequest) -> HttpResponse {
    simple_get(st, req, "/stats", "stats", Request::Stats).await
}

async fn metrics_text<B: Backend>(State(st): State<AppState<B>>, req: HttpRequest) -> HttpResponse {
    simple_get(st, req, "/metrics", "metrics", Request::Metrics).await
}

/// Everything no route matched: a key at the root, raftexample's node API, or a 404 under
/// a reserved segment.
async fn root<B: Backend>(State(st): State<AppState<B>>, req: HttpRequest) -> HttpResponse {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let rest = path.strip_prefix('/').unwrap_or(&path);
    let first = rest.split('/').next().unwrap_or_default();
    if RESERVED_SEGMENTS.contains(&first) {
        return labelled(
            render::error(&ApiError::not_found(format!("no such route: {path}"))),
            OTHER,
        );
    }
    let node_id = (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())).then_some(rest);
    match (&parts.method, node_id) {
        (m, _) if is_get(m) => {
            let parsed = parse::decode_path(rest).and_then(|k| get_key(&parts, k));
            call(&st, "get_key", parsed).await
        }
        (&Method::PUT, _) => {
            let parsed = match parse::decode_path(rest) {
                Ok(k) => put_key(&parts, body, k, &st.limits).await,
                Err(e) => Err(e),
            };
            call(&st, "put_key", parsed).await
        }
        (&Method::POST, Some(raw)) => {
            let parsed = async {
                let id = parse::node_id(raw)?;
                query(&parts, &[])?;
                let addr = addr_from_body(&parts, body).await?;
                Ok(Request::AddNode {
                    id,
                    addr,
                    learner: false,
                })
            }
            .await;
            call(&st, "add_node", parsed).await
        }
        (&Method::DELETE, Some(raw)) => {
            let parsed = parse::node_id(raw).and_then(|id| {
                query(&parts, &[])?;
                Ok(Request::RemoveNode { id })
            });
            call(&st, "remove_node", parsed).await
        }
        (_, Some(_)) => not_allowed(&parts, "/{id}", &["GET", "HEAD", "PUT", "POST", "DELETE"]),
        (&Method::DELETE, None) => labelled(
            render::method_not_allowed(
                "DELETE",
                "/{key} (DELETE /{id} removes a node; use DELETE /keys/{key} to delete a key)",
                &["GET", "HEAD", "PUT"],
            ),
            OTHER,
        ),
        _ => not_allowed(&parts, "/{key}", &["GET", "HEAD", "PUT"]),
    }
}
