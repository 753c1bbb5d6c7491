//! A minimal HTTP/1.1 client over one keep-alive TCP connection, for `bench --protocol http`.
//!
//! It does what a lean HTTP client does per request, and no more: one write of the request
//! head and body, then the response head parsed with `httparse` and the body read by
//! `Content-Length`, chunked encoding, or until the server closes. One request at a time: like
//! every common HTTP/1.1 client it does not pipeline.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most headers a response may carry.
const MAX_HEADERS: usize = 32;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A response: status and body.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    #[allow(dead_code)] // Read by tests; the bench only needs the status.
    pub(crate) body: Bytes,
}

/// One keep-alive connection.
pub(crate) struct HttpConn {
    stream: TcpStream,
    host: String,
    /// Bytes received and not yet consumed.
    buf: BytesMut,
    /// The request being written, reused across requests.
    out: Vec<u8>,
    /// The server said `Connection: close`: no further request may be sent.
    closed: bool,
}

/// How the body of a response is delimited.
enum BodyLen {
    Exact(usize),
    Chunked,
    UntilClose,
}

impl HttpConn {
    /// Connects to `addr` (`host:port`).
    pub(crate) async fn connect(addr: &str) -> io::Result<HttpConn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(HttpConn {
            stream,
            host: addr.to_owned(),
            buf: BytesMut::with_capacity(8192),
            out: Vec::with_capacity(512),
            closed: false,
        })
    }

    /// Sends one request (`target` is the path and query, already percent-encoded) and reads
    /// its response.
    ///
    /// # Errors
    ///
    /// I/O errors, a connection the server closed, or a malformed response. The connection
    /// must not be used after an error.
    pub(crate) async fn request(
        &mut self,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> io::Result<HttpResponse> {
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the server closed the connection",
            ));
        }
        self.out.clear();
        self.out.extend_from_slice(method.as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(target.as_bytes());
        self.out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        self.out.extend_from_slice(self.host.as_bytes());
        if !body.is_empty() || method == "PUT" || method == "POST" {
            self.out.extend_from_slice(b"\r\nContent-Length: ");
            self.out
                .extend_from_slice(body.len().to_string().as_bytes());
        }
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(body);
        self.stream.write_all(&self.out).await?;
        self.read_response(method == "HEAD").await
    }

    async fn fill(&mut self) -> io::Result<usize> {
        self.stream.read_buf(&mut self.buf).await
    }

    async fn read_response(&mut self, head_only: bool) -> io::Result<HttpResponse> {
        let (status, head_len, body_len) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp
                .parse(&self.buf)
                .map_err(|e| invalid(format!("bad response head: {e}")))?
            {
                httparse::Status::Complete(n) => {
                    let status = resp.code.unwrap_or(0);
                    let mut len = None;
                    let mut chunked = false;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let v = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .ok_or_else(|| invalid("bad Content-Length"))?;
                            len = Some(v);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = h.value.eq_ignore_ascii_case(b"chunked");
                        } else if h.name.eq_ignore_ascii_case("connection")
                            && h.value.eq_ignore_ascii_case(b"close")
                        {
                            self.closed = true;
                        }
                    }
                    let body_len = if head_only || status == 204 || status == 304 || status < 200 {
                        BodyLen::Exact(0)
                    } else if chunked {
                        BodyLen::Chunked
                    } else if let Some(len) = len {
                        BodyLen::Exact(len)
                    } else {
                        BodyLen::UntilClose
                    };
                    break (status, n, body_len);
                }
                httparse::Status::Partial => {
                    if self.fill().await? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the server closed the connection before answering",
                        ));
                    }
                }
            }
        };
        self.buf.advance(head_len);
        let body = match body_len {
            BodyLen::Exact(len) => {
                while self.buf.len() < len {
                    if self.fill().await? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the server closed the connection in the middle of a body",
                        ));
                    }
                }
                self.buf.split_to(len).freeze()
            }
            BodyLen::Chunked => self.read_chunked().await?,
            BodyLen::UntilClose => {
                while self.fill().await? != 0 {}
                self.closed = true;
                self.buf.split().freeze()
            }
        };
        Ok(HttpResponse { status, body })
    }

    /// Reads a line ending in CRLF and returns it without the CRLF.
    async fn read_line(&mut self) -> io::Result<BytesMut> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.split_to(i);
                self.buf.advance(2);
                return Ok(line);
            }
            if self.buf.len() > 8192 {
                return Err(invalid("chunk line too long"));
            }
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection in a chunked body",
                ));
            }
        }
    }

    async fn read_chunked(&mut self) -> io::Result<Bytes> {
        let mut body = BytesMut::new();
        loop {
            let line = self.read_line().await?;
            let size_text = line[..].split(|b| *b == b';').next().unwrap_or_default();
            let size = std::str::from_utf8(size_text)
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .ok_or_else(|| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body.freeze());
            }
            while self.buf.len() < size + 2 {
                if self.fill().await? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection in a chunk",
                    ));
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.advance(size + 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Serves the canned `responses` one per request on one connection, and returns what the
    /// client sent.
    async fn serve(listener: TcpListener, responses: Vec<&'static [u8]>) -> Vec<u8> {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        for r in responses {
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            seen.extend_from_slice(&buf[..n]);
            s.write_all(r).await.unwrap();
        }
        seen
    }

    #[tokio::test]
    async fn keep_alive_with_length_chunked_and_empty_bodies() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(serve(
            listener,
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
                b"HTTP/1.1 204 No Content\r\n\r\n",
                b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nrest",
            ],
        ));
        let mut conn = HttpConn::connect(&addr).await.unwrap();
        let r = conn.request("GET", "/keys/a", b"").await.unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
        let r = conn.request("PUT", "/keys/a", b"value").await.unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
        let r = conn.request("GET", "/keys/b", b"").await.unwrap();
        assert_eq!((r.status, &r.body[..]), (404, &b"abcde"[..]));
        let r = tokio::spawn(async move {
            let r = conn.request("GET", "/keys/c", b"").await.unwrap();
            assert!(conn.request("GET", "/x", b"").await.is_err());
            r
        });
        let seen = String::from_utf8(server.await.unwrap()).unwrap();
        let r = r.await.unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"rest"[..]));
        assert!(seen.starts_with(&format!("GET /keys/a HTTP/1.1\r\nHost: {addr}\r\n\r\n")));
        assert!(seen.contains("PUT /keys/a HTTP/1.1\r\nHost: "));
        assert!(seen.contains("Content-Length: 5\r\n\r\nvalue"));
    }
}
