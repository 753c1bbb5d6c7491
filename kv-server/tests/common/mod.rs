//! Shared helpers for the client-port tests: a served [`LocalBackend`] on `127.0.0.1:0` and a
//! minimal HTTP/1.1 client over raw TCP (so the tests see exactly what goes on the wire).

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use kv_server::api::Limits;
use kv_server::client_port;
use kv_server::testing::LocalBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound on any one test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `f` and fails the test if it takes longer than [`TEST_TIMEOUT`].
pub async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test did not finish in time")
}

/// A client port serving a [`LocalBackend`].
pub struct Server {
    pub addr: SocketAddr,
    pub backend: LocalBackend,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(Limits::default(), client_port::SHUTDOWN_GRACE).await
    }

    pub async fn start_with(limits: Limits, grace: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = LocalBackend::new(limits);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(client_port::serve_with_grace(
            listener,
            backend.clone(),
            limits,
            shutdown.clone(),
            grace,
        ));
        Server {
            addr,
            backend,
            shutdown,
            task,
        }
    }

    /// Signals shutdown and waits for `serve` to return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }

    pub async fn request(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        http(self.addr, method, path, &[], body).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, b"").await
    }

    pub async fn put(&self, path: &str, body: &[u8]) -> Reply {
        self.request("PUT", path, body).await
    }
}

/// One HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// Asserts a 4xx/5xx status with a JSON body `{"error": "<non-empty>", ...}`.
    #[track_caller]
    pub fn assert_error(&self, status: u16) {
        assert_eq!(
            self.status,
            status,
            "body: {:?}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        let error = self.json()["error"].as_str().map(str::to_owned);
        assert!(
            error.is_some_and(|e| !e.is_empty()),
            "no error message: {self:?}"
        );
    }
}

/// Sends one request with `Connection: close` and reads the whole response.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut raw = req.into_bytes();
    raw.extend_from_slice(body);
    let replies = if method == "HEAD" {
        let buf = exchange_raw(addr, &raw).await;
        parse_responses_with(&buf, true)
    } else {
        exchange(addr, &raw).await
    };
    assert_eq!(replies.len(), 1, "expected one response");
    replies.into_iter().next().unwrap()
}

/// Writes `raw` (one or more requests, the last one closing the connection) and parses
/// every response until the server closes. The write runs concurrently with the read, so a
/// server answering before reading everything cannot deadlock the test.
pub async fn exchange(addr: SocketAddr, raw: &[u8]) -> Vec<Reply> {
    parse_responses(&exchange_raw(addr, raw).await)
}

/// Writes `raw` and reads everything until the server closes.
pub async fn exchange_raw(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let raw = raw.to_vec();
    let writer = tokio::spawn(async move {
        // The server may close early (e.g. after a 413); that is for the reader to judge.
        let _ = wr.write_all(&raw).await;
        wr
    });
    let mut buf = Vec::new();
    rd.read_to_end(&mut buf).await.unwrap();
    drop(writer.await);
    buf
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses back-to-back HTTP/1.1 responses (Content-Length or chunked bodies).
pub fn parse_responses(buf: &[u8]) -> Vec<Reply> {
    parse_responses_with(buf, false)
}

/// As [`parse_responses`]; `head_requests` says the requests were HEADs, whose responses have no body.
pub fn parse_responses_with(mut buf: &[u8], head_requests: bool) -> Vec<Reply> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let head_end = find(buf, b"\r\n\r\n").expect("incomplete response head");
        let head = std::str::from_utf8(&buf[..head_end]).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut rest = &buf[head_end + 4..];
        let body = if head_requests {
            Vec::new()
        } else if let Some(len) = get("content-length") {
            let len: usize = len.parse().unwrap();
            let body = rest[..len].to_vec();
            rest = &rest[len..];
            body
        } else if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            let mut body = Vec::new();
            loop {
                let line_end = find(rest, b"\r\n").unwrap();
                let size =
                    usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16)
                        .unwrap();
                rest = &rest[line_end + 2..];
                if size == 0 {
                    rest = &rest[2..];
                    break;
                }
                body.extend_from_slice(&rest[..size]);
                rest = &rest[size + 2..];
            }
            body
        } else if status == 204 || status == 304 {
            Vec::new()
        } else {
            let body = rest.to_vec();
            rest = &[];
            body
        };
        out.push(Reply {
            status,
            headers,
            body,
        });
        buf = rest;
    }
    out
}
