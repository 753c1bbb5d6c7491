//! Strict decoding of paths, query strings and bodies: anything malformed is a 400 with a
//! message that says what, never a lenient guess.

use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::api::{ApiError, Consistency};

/// Decodes `%XX` escapes. In a query, `+` means a space (form encoding); in a path it is a
/// plain `+`.
///
/// # Errors
///
/// A `%` not followed by two hex digits.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> Result<Vec<u8>, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(ApiError::bad_request(format!(
                        "bad percent-encoding in {s:?}"
                    )));
                };
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Decodes a path component into a UTF-8 string.
///
/// # Errors
///
/// Bad percent-encoding or invalid UTF-8.
pub(crate) fn decode_path(raw: &str) -> Result<String, ApiError> {
    String::from_utf8(percent_decode(raw, false)?)
        .map_err(|_| ApiError::bad_request("path is not valid UTF-8 after percent-decoding"))
}

/// The decoded parameters of a query string, checked against the names a route accepts.
#[derive(Debug, Default)]
pub(crate) struct Query {
    params: Vec<(&'static str, Vec<u8>)>,
}

impl Query {
    /// Parses `raw` (the part after `?`), accepting only `allowed` names, each at most once.
    ///
    /// # Errors
    ///
    /// An unknown or repeated parameter, or bad percent-encoding.
    pub(crate) fn parse(raw: Option<&str>, allowed: &[&'static str]) -> Result<Query, ApiError> {
        let mut query = Query::default();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = String::from_utf8(percent_decode(name, true)?)
                .map_err(|_| ApiError::bad_request("query parameter name is not UTF-8"))?;
            let Some(&known) = allowed.iter().find(|a| **a == name) else {
                return Err(ApiError::bad_request(if allowed.is_empty() {
                    format!("unknown query parameter {name:?}: this route takes none")
                } else {
                    format!(
                        "unknown query parameter {name:?}: expected one of {}",
                        allowed.join(", ")
                    )
                }));
            };
            if query.params.iter().any(|(n, _)| *n == known) {
                return Err(ApiError::bad_request(format!(
                    "query parameter {name:?} given twice"
                )));
            }
            query.params.push((known, percent_decode(value, true)?));
        }
        Ok(query)
    }

    /// The raw bytes of `name`, if given.
    pub(crate) fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// `name` as a UTF-8 string, if given.
    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, ApiError> {
        self.bytes(name)
            .map(|v| {
                String::from_utf8(v.to_vec())
                    .map_err(|_| ApiError::bad_request(format!("{name} is not valid UTF-8")))
            })
            .transpose()
    }

    /// `name` as `true`/`false`, if given.
    pub(crate) fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.bytes(name)
            .map(|v| match v {
                b"true" => Ok(true),
                b"false" => Ok(false),
                _ => Err(ApiError::bad_request(format!(
                    "{name} must be true or false"
                ))),
            })
            .transpose()
    }

    /// `name` as a decimal integer, if given.
    pub(crate) fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.bytes(name)
            .map(|v| {
                parse_number(v).ok_or_else(|| {
                    ApiError::bad_request(format!("{name} must be a non-negative integer"))
                })
            })
            .transpose()
    }

    /// The `consistency` parameter (linearizable by default).
    pub(crate) fn consistency(&self) -> Result<Consistency, ApiError> {
        match self.bytes("consistency") {
            None | Some(b"linearizable") => Ok(Consistency::Linearizable),
            Some(b"serializable") => Ok(Consistency::Serializable),
            Some(_) => Err(ApiError::bad_request(
                "consistency must be linearizable or serializable",
            )),
        }
    }
}

/// Parses ASCII decimal digits (no sign, no spaces) as `T`.
pub(crate) fn parse_number<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Parses a node id path segment: decimal, non-zero.
///
/// # Errors
///
/// Anything else.
pub(crate) fn node_id(raw: &str) -> Result<u64, ApiError> {
    match parse_number::<u64>(raw.as_bytes()) {
        Some(0) => Err(ApiError::bad_request("node id must be non-zero")),
        Some(id) => Ok(id),
        None => Err(ApiError::bad_request(format!(
            "bad node id {raw:?}: expected a decimal number"
        ))),
    }
}

/// Extra bytes read (and discarded) past a body's limit before answering 413, so a client
/// that sent a modestly oversized body without waiting for `100 Continue` reads the 413
/// instead of a connection reset. Past it the connection is closed.
const DRAIN: usize = 8 << 20;

/// Reads a request body of at most `limit` bytes.
///
/// # Errors
///
/// [`crate::api::ErrorKind::PayloadTooLarge`] over the limit; `BadRequest` if the body
/// cannot be read.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = |n: Option<u64>| {
        ApiError::too_large(match n {
            Some(n) => format!("body of {n} bytes exceeds the limit of {limit} bytes"),
            None => format!("body exceeds the limit of {limit} bytes"),
        })
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| parse_number::<u64>(v.as_bytes()));
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let hopeless = |n: u64| n > limit as u64 && (expects_continue || n > (limit + DRAIN) as u64);
    if let Some(n) = declared.filter(|&n| hopeless(n)) {
        // Either the client waits for `100 Continue` and will not send the body, or the
        // body is too large to be worth draining.
        return Err(too_large(Some(n)));
    }
    let mut stream = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        total = total.saturating_add(chunk.len());
        if total > limit {
            if total > limit + DRAIN {
                break;
            }
            continue;
        }
        // The common single-chunk body is kept without a copy.
        match &first {
            None => first = Some(chunk),
            Some(f) => {
                if rest.is_empty() {
                    rest.extend_from_slice(f);
                }
                rest.extend_from_slice(&chunk);
            }
        }
    }
    if total > limit {
        return Err(too_large(declared));
    }
    Ok(if rest.is_empty() {
        first.unwrap_or_default()
    } else {
        rest.freeze()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(percent_decode("a%2Fb%20c+d", false).unwrap(), b"a/b c+d");
        assert_eq!(percent_decode("a+b%2B", true).unwrap(), b"a b+");
        assert_eq!(percent_decode("%e2%82%ac", false).unwrap(), "€".as_bytes());
        for bad in ["%", "%2", "%zz", "a%g1"] {
            assert!(percent_decode(bad, false).is_err(), "{bad}");
        }
        assert!(decode_path("%ff").is_err());
        assert_eq!(decode_path("caf%C3%A9").unwrap(), "café");
    }

    #[test]
    fn query_parsing() {
        let q = Query::parse(
            Some("prefix=a%2Fb&limit=10&values=true"),
            &["prefix", "limit", "values", "after"],
        )
        .unwrap();
        assert_eq!(q.string("prefix").unwrap().as_deref(), Some("a/b"));
        assert_eq!(q.number::<u32>("limit").unwrap(), Some(10));
        assert_eq!(q.bool("values").unwrap(), Some(true));
        assert_eq!(q.string("after").unwrap(), None);
        assert!(Query::parse(Some("bogus=1"), &["prefix"]).is_err());
        assert!(Query::parse(Some("a=1&a=2"), &["a"]).is_err());
        assert!(Query::parse(Some("a=%zz"), &["a"]).is_err());
        assert!(Query::parse(Some("&&"), &[]).is_ok());
        let q = Query::parse(
            Some("limit=-1&values=yes&consistency=eventual"),
            &["limit", "values", "consistency"],
        )
        .unwrap();
        assert!(q.number::<u32>("limit").is_err());
        assert!(q.bool("values").is_err());
        assert!(q.consistency().is_err());
        let q = Query::parse(Some("limit=99999999999"), &["limit"]).unwrap();
        assert!(q.number::<u32>("limit").is_err());
    }

    #[test]
    fn node_ids() {
        assert_eq!(node_id("42").unwrap(), 42);
        assert!(node_id("0").is_err());
        assert!(node_id("4a").is_err());
        assert!(node_id("+4").is_err());
        assert!(node_id("99999999999999999999").is_err());
    }
}
