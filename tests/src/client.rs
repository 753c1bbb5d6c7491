//! A small HTTP/1.1 client for kv-server's API, over a raw tokio
//! `TcpStream`: one request per connection (`Connection: close`), the whole
//! exchange bounded by a timeout.
//!
//! It tells apart the two ways a request can fail, which a history needs:
//! [`ClientError::Connect`] (no connection, so nothing was sent: the
//! request certainly had no effect) and everything after the connection was
//! made ([`ClientError::Io`], [`ClientError::Timeout`],
//! [`ClientError::Malformed`]: the server may have acted on it).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use kv_server::api::{Member, NodeState};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::linearizability::Cond;

/// Why a request got no answer.
#[derive(Debug)]
pub enum ClientError {
    /// The connection could not be made: nothing was sent.
    Connect(std::io::Error),
    /// The connection failed after it was made.
    Io(std::io::Error),
    /// No complete answer within the timeout.
    Timeout,
    /// The answer was not HTTP/1.1 as expected.
    Malformed(String),
}

impl ClientError {
    /// Whether the request may have reached the server (everything but a
    /// failed connect).
    pub fn maybe_sent(&self) -> bool {
        !matches!(self, ClientError::Connect(_))
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "connect: {e}"),
            ClientError::Io(e) => write!(f, "i/o: {e}"),
            ClientError::Timeout => write!(f, "timed out"),
            ClientError::Malformed(m) => write!(f, "malformed answer: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// An HTTP answer.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (chunked encoding undone).
    pub body: Vec<u8>,
}

impl Response {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Errors
    /// If it is not `T` in JSON.
    pub fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("status {} body {:?}: {e}", self.status, self.text()))
    }

    /// A header's value (`name` lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.text())
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters and `/`
/// (a key may contain `/`, and the server takes the rest of the path as the
/// key).
pub fn encode_path(s: &str) -> String {
    encode(s, true)
}

/// Percent-encodes a query value.
pub fn encode_query(s: &str) -> String {
    encode(s, false)
}

fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A client of one node's client port.
#[derive(Clone, Debug)]
pub struct Client {
    addr: SocketAddr,
    timeout: Duration,
}

/// The default bound of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A page of `GET /keys?values=true`.
#[derive(Deserialize)]
struct ItemsPage {
    items: Vec<Item>,
    more: bool,
}

#[derive(Deserialize)]
struct Item {
    key: String,
    value: Option<String>,
    value_base64: Option<String>,
}

#[derive(Deserialize)]
struct MembersBody {
    members: Vec<Member>,
}

impl Client {
    /// A client of the node whose client port is `addr`, with
    /// [`DEFAULT_TIMEOUT`].
    pub fn new(addr: SocketAddr) -> Self {
        Client {
            addr,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same client with another per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The node's client address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one request; `target` is the path and query.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn request(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> Result<Response, ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut stream =
            match tokio::time::timeout_at(deadline, TcpStream::connect(self.addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(ClientError::Connect(e)),
                Err(_) => {
                    return Err(ClientError::Connect(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timed out",
                    )));
                }
            };
        let exchange = async {
            let head = format!(
                "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                self.addr,
                body.len()
            );
            let mut req = head.into_bytes();
            req.extend_from_slice(body);
            stream.write_all(&req).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok(raw)) => raw,
            Ok(Err(e)) => return Err(ClientError::Io(e)),
            Err(_) => return Err(ClientError::Timeout),
        };
        parse_response(&raw).map_err(ClientError::Malformed)
    }

    /// `GET /keys/{key}` (linearizable).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn get(&self, key: &str) -> Result<Response, ClientError> {
        self.request("GET", &format!("/keys/{}", encode_path(key)), b"")
            .await
    }

    /// `GET /keys/{key}?consistency=serializable`: this node's local state.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn get_serializable(&self, key: &str) -> Result<Response, ClientError> {
        self.request(
            "GET",
            &format!("/keys/{}?consistency=serializable", encode_path(key)),
            b"",
        )
        .await
    }

    /// `PUT /keys/{key}` with `value` as the body.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn put(&self, key: &str, value: &str) -> Result<Response, ClientError> {
        self.request(
            "PUT",
            &format!("/keys/{}", encode_path(key)),
            value.as_bytes(),
        )
        .await
    }

    /// A compare-and-set: `PUT /keys/{key}?prev_value=..` or
    /// `?prev_exist=..`.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn cas(&self, key: &str, value: &str, cond: &Cond) -> Result<Response, ClientError> {
        let query = match cond {
            Cond::PrevValue(p) => format!("prev_value={}", encode_query(p)),
            Cond::PrevExist(e) => format!("prev_exist={e}"),
        };
        self.request(
            "PUT",
            &format!("/keys/{}?{query}", encode_path(key)),
            value.as_bytes(),
        )
        .await
    }

    /// `DELETE /keys/{key}`.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn delete(&self, key: &str) -> Result<Response, ClientError> {
        self.request("DELETE", &format!("/keys/{}", encode_path(key)), b"")
            .await
    }

    /// `GET /state`.
    ///
    /// # Errors
    /// A failed request, or an answer that is not a 200 with the state.
    pub async fn state(&self) -> Result<NodeState, String> {
        let r = self
            .request("GET", "/state", b"")
            .await
            .map_err(|e| format!("GET /state on {}: {e}", self.addr))?;
        if r.status != 200 {
            return Err(format!("GET /state on {}: {r}", self.addr));
        }
        r.json()
    }

    /// `GET /health`: 200 when the node sees a leader, 503 otherwise.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn health(&self) -> Result<Response, ClientError> {
        self.request("GET", "/health", b"").await
    }

    /// `GET /stats` as JSON.
    ///
    /// # Errors
    /// A failed request or a non-200 answer.
    pub async fn stats(&self) -> Result<serde_json::Value, String> {
        let r = self
            .request("GET", "/stats", b"")
            .await
            .map_err(|e| format!("GET /stats on {}: {e}", self.addr))?;
        if r.status != 200 {
            return Err(format!("GET /stats on {}: {r}", self.addr));
        }
        r.json()
    }

    /// `GET /members`.
    ///
    /// # Errors
    /// A failed request or a non-200 answer.
    pub async fn members(&self) -> Result<Vec<Member>, String> {
        let r = self
            .request("GET", "/members", b"")
            .await
            .map_err(|e| format!("GET /members on {}: {e}", self.addr))?;
        if r.status != 200 {
            return Err(format!("GET /members on {}: {r}", self.addr));
        }
        Ok(r.json::<MembersBody>()?.members)
    }

    /// `POST /nodes/{id}?addr={peer_addr}`: add a voter.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn add_node(&self, id: u64, peer_addr: &str) -> Result<Response, ClientError> {
        self.request(
            "POST",
            &format!("/nodes/{id}?addr={}", encode_query(peer_addr)),
            b"",
        )
        .await
    }

    /// `POST /nodes/{id}?addr={peer_addr}&learner=true`: add a learner.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn add_learner(&self, id: u64, peer_addr: &str) -> Result<Response, ClientError> {
        self.request(
            "POST",
            &format!("/nodes/{id}?addr={}&learner=true", encode_query(peer_addr)),
            b"",
        )
        .await
    }

    /// `POST /nodes/{id}/promote`: make learner `id` a voter.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn promote_node(&self, id: u64) -> Result<Response, ClientError> {
        self.request("POST", &format!("/nodes/{id}/promote"), b"")
            .await
    }

    /// `DELETE /nodes/{id}`.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn remove_node(&self, id: u64) -> Result<Response, ClientError> {
        self.request("DELETE", &format!("/nodes/{id}"), b"").await
    }

    /// `POST /leader?to={id}`.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn transfer_leader(&self, to: u64) -> Result<Response, ClientError> {
        self.request("POST", &format!("/leader?to={to}"), b"").await
    }

    /// Every key and value on this node, from its local state
    /// (`GET /keys?values=true&consistency=serializable`, page by page).
    ///
    /// # Errors
    /// A failed request, a non-200 answer, or a value that is not UTF-8.
    pub async fn dump(&self) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let mut target = "/keys?values=true&consistency=serializable".to_owned();
            if let Some(a) = &after {
                target.push_str(&format!("&after={}", encode_query(a)));
            }
            let r = self
                .request("GET", &target, b"")
                .await
                .map_err(|e| format!("GET {target} on {}: {e}", self.addr))?;
            if r.status != 200 {
                return Err(format!("GET {target} on {}: {r}", self.addr));
            }
            let page: ItemsPage = r.json()?;
            for item in page.items {
                let value = item.value.ok_or_else(|| {
                    format!(
                        "key {:?} has a non-UTF-8 value ({:?})",
                        item.key, item.value_base64
                    )
                })?;
                after = Some(item.key.clone());
                out.insert(item.key, value);
            }
            if !page.more {
                return Ok(out);
            }
        }
    }
}

/// Parses a complete HTTP/1.1 response (the connection was read to its end).
fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of head in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|e| format!("head: {e}"))?;
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(format!("bad status line {status_line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let find = |n: &str| headers.iter().find(|(h, _)| h == n).map(|(_, v)| v.clone());
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().map_err(|_| format!("content-length {len:?}"))?;
        if rest.len() < len {
            return Err(format!("body of {} bytes, expected {len}", rest.len()));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line not terminated")?;
        let size_line = std::str::from_utf8(&data[..eol]).map_err(|e| e.to_string())?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_line:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
        assert_eq!(r.header("x-a"), Some("b"));
        let r = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.text(), "abcde");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn encodes_keys_and_values() {
        assert_eq!(encode_path("a/b c%"), "a/b%20c%25");
        assert_eq!(encode_query("a/b&c=d+"), "a%2Fb%26c%3Dd%2B");
    }
}
