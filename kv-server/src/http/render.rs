//! Turning answers into HTTP responses with the exact status codes and JSON shapes of the
//! API tables in DESIGN.md.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response as HttpResponse;
use bytes::Bytes;
use serde::Serialize;

use crate::api::{ApiError, ErrorKind, ListResponse, Member, Response};

/// Seconds a client is told to wait before retrying after a 503: about one election.
const RETRY_AFTER_SECS: &str = "1";

fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> HttpResponse {
    let mut resp = HttpResponse::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn json(status: StatusCode, value: &impl Serialize) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(body) => with_body(status, "application/json", body),
        Err(e) => error(&ApiError::internal(format!("encoding JSON: {e}"))),
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// `{"error": message}` with the kind's status; a 503 carries `Retry-After`.
pub(crate) fn error(err: &ApiError) -> HttpResponse {
    let status =
        StatusCode::from_u16(err.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json(
        status,
        &ErrorBody {
            error: &err.message,
        },
    );
    if matches!(err.kind, ErrorKind::Unavailable { .. }) {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    resp
}

/// 405 with `Allow` and a JSON error naming the allowed methods.
pub(crate) fn method_not_allowed(method: &str, route: &str, allowed: &[&str]) -> HttpResponse {
    let allow = allowed.join(", ");
    let mut resp = error(&ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("method {method} not allowed on {route}; allowed: {allow}"),
    ));
    if let Ok(v) = HeaderValue::from_str(&allow) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

#[derive(Serialize)]
struct Keys<'a> {
    keys: Vec<&'a str>,
    more: bool,
}

/// One listed item. A value that is valid UTF-8 is shown as a string in `value`; any other
/// value is shown base64-encoded (standard alphabet, padded) in `value_base64`, so that no
/// byte is lost and a string is never mistaken for the raw bytes.
#[derive(Serialize)]
struct Item<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
}

#[derive(Serialize)]
struct Items<'a> {
    items: Vec<Item<'a>>,
    more: bool,
}

#[derive(Serialize)]
struct Members<'a> {
    members: &'a [Member],
}

#[derive(Serialize)]
struct HealthBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    health: bool,
    leader: u64,
}

fn list(page: &ListResponse, values: bool) -> HttpResponse {
    if !values {
        return json(
            StatusCode::OK,
            &Keys {
                keys: page.items.iter().map(|i| i.key.as_str()).collect(),
                more: page.more,
            },
        );
    }
    let items = page
        .items
        .iter()
        .map(|i| {
            let raw: &[u8] = i.value.as_deref().unwrap_or_default();
            match std::str::from_utf8(raw) {
                Ok(s) => Item {
                    key: &i.key,
                    value: Some(s),
                    value_base64: None,
                },
                Err(_) => Item {
                    key: &i.key,
                    value: None,
                    value_base64: Some(crate::api::base64(raw)),
                },
            }
        })
        .collect();
    json(
        StatusCode::OK,
        &Items {
            items,
            more: page.more,
        },
    )
}

/// Renders a backend's answer; `values` says whether a list asked for values.
pub(crate) fn answer(result: Result<Response, ApiError>, values: bool) -> HttpResponse {
    let resp = match result {
        Err(e) => return error(&e),
        Ok(r) => r,
    };
    match resp {
        Response::Done => {
            let mut r = HttpResponse::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Response::Value(v) => with_body(StatusCode::OK, "application/octet-stream", v),
        Response::List(page) => list(&page, values),
        Response::Members(members) => json(StatusCode::OK, &Members { members: &members }),
        Response::Health(h) if h.is_healthy() => json(
            StatusCode::OK,
            &HealthBody {
                error: None,
                health: true,
                leader: h.leader,
            },
        ),
        Response::Health(_) => {
            let mut r = json(
                StatusCode::SERVICE_UNAVAILABLE,
                &HealthBody {
                    error: Some("no leader"),
                    health: false,
                    leader: 0,
                },
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
            r
        }
        Response::State(state) => json(StatusCode::OK, &state),
        Response::Stats(text) => with_body(StatusCode::OK, "application/json", Bytes::from(text)),
        Response::Metrics(text) => with_body(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            Bytes::from(text),
        ),
    }
}
