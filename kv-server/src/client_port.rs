//! The client port: one TCP listener serving both HTTP/1.1 and the binary protocol.
//!
//! In the style of mini-redis, the caller owns the listener and the shutdown signal;
//! [`serve`] runs the accept loop and one task per connection. Each connection is sniffed: if
//! its first 4 bytes are [`crate::binary::PREAMBLE`] it speaks the binary protocol, otherwise
//! the bytes read so far are replayed into hyper's HTTP/1.1 server running the axum router.
//!
//! # Shutdown
//!
//! Cancelling `shutdown` stops the accept loop and closes the listener at once. Open
//! connections then finish what is in flight: an HTTP connection answers its current request
//! and closes (hyper's graceful shutdown; idle keep-alive connections close at once), a binary
//! connection stops reading and answers the requests it has already read. [`serve`] returns
//! when every connection has closed, or after the grace period, when the rest are dropped.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{Backend, Limits};
use crate::binary::{self, PREAMBLE};
use crate::metrics::Metrics;

/// How long [`serve`] lets in-flight requests finish after shutdown is signalled.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a new connection may take to send its first bytes, and an HTTP client its
/// request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Back-off after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the client port on `listener` until `shutdown` is cancelled, then drains in-flight
/// requests for at most [`SHUTDOWN_GRACE`].
pub async fn serve<B: Backend>(
    listener: TcpListener,
    backend: B,
    limits: Limits,
    shutdown: CancellationToken,
) {
    serve_with_grace(listener, backend, limits, shutdown, SHUTDOWN_GRACE).await;
}

/// [`serve`] with a chosen grace period.
pub async fn serve_with_grace<B: Backend>(
    listener: TcpListener,
    backend: B,
    limits: Limits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let router = crate::http::router(backend.clone(), limits);
    let tracker = TaskTracker::new();
    // Cancelled when the grace period runs out: every connection task then returns at once.
    let force = CancellationToken::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                tracing::trace!(%peer, "client connection");
                let conn = Connection {
                    backend: backend.clone(),
                    router: router.clone(),
                    limits,
                    shutdown: shutdown.clone(),
                    force: force.clone(),
                };
                tracker.spawn(conn.run(stream));
            }
            // The peer gave up before we accepted: nothing to do.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            connections = tracker.len(),
            "shutdown grace period over; dropping open client connections"
        );
        force.cancel();
        tracker.wait().await;
    }
}

struct Connection<B> {
    backend: B,
    router: axum::Router,
    limits: Limits,
    shutdown: CancellationToken,
    force: CancellationToken,
}

impl<B: Backend> Connection<B> {
    async fn run(self, mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let sniffed = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            r = tokio::time::timeout(HEADER_TIMEOUT, sniff(&mut stream)) => r,
        };
        let (prefix, len) = match sniffed {
            Ok(Ok(Some(prefix))) => prefix,
            // Closed, failed or silent before sending anything useful.
            _ => return,
        };
        let metrics = self.backend.metrics().clone();
        if &prefix[..len] == PREAMBLE {
            let _open = OpenConnection::new(&metrics, "binary");
            binary::conn::serve_connection(
                stream,
                self.backend,
                self.limits,
                self.shutdown,
                self.force,
            )
            .await;
        } else {
            let _open = OpenConnection::new(&metrics, "http");
            let io = Rewind {
                prefix,
                start: 0,
                end: len,
                inner: stream,
            };
            self.serve_http(io).await;
        }
    }

    async fn serve_http(self, io: Rewind) {
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(self.router));
        tokio::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = self.shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    r = conn.as_mut() => r,
                    _ = self.force.cancelled() => Ok(()),
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "HTTP connection ended with an error");
        }
    }
}

/// Reads until the first bytes either are the 4-byte preamble or cannot begin it.
/// `Ok(None)`: the peer closed without sending anything.
async fn sniff(stream: &mut TcpStream) -> io::Result<Option<([u8; 4], usize)>> {
    let mut buf = [0u8; 4];
    let mut len = 0;
    // Reading into `buf[len..]` never takes more than 4 bytes, so a binary connection has
    // nothing left over to replay.
    while len < buf.len() && PREAMBLE.starts_with(&buf[..len]) {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    Ok((len > 0).then_some((buf, len)))
}

/// Counts a connection in `kv_client_connections` while it lives.
struct OpenConnection {
    gauge: crate::metrics::Gauge,
}

impl OpenConnection {
    fn new(metrics: &Metrics, protocol: &str) -> Self {
        metrics
            .counter_with(
                "kv_client_connections_total",
                "Client connections accepted, by protocol.",
                &[("protocol", protocol)],
            )
            .inc();
        let gauge = metrics.gauge_with(
            "kv_client_connections",
            "Open client connections, by protocol.",
            &[("protocol", protocol)],
        );
        gauge.add(1);
        OpenConnection { gauge }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.add(-1);
    }
}

/// A TCP stream whose first bytes, already read while sniffing, are read again.
struct Rewind {
    prefix: [u8; 4],
    // Invariant: start <= end <= 4; prefix[start..end] is still to be replayed.
    start: usize,
    end: usize,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.start < self.end {
            let n = (self.end - self.start).min(buf.remaining());
            let start = self.start;
            buf.put_slice(&self.prefix[start..start + n]);
            self.start += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
