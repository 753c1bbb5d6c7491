//! The outbound side: one long-lived stream connection per peer, owned by a
//! task fed through a bounded queue, and one short-lived connection per
//! snapshot.
//!
//! The stream task's life:
//!
//! ```text
//!        ┌──────────── backoff elapsed: drop what queued meanwhile ─────────────┐
//!        ▼                                                                      │
//!   Connecting ── dial + handshake ok ──▶ Connected ── write/read fails ──▶ Down
//!  (send queues)   (backoff reset)      (send queues,   (report Unreachable,    ▲
//!        │                               batch writes)   drop the queue)        │
//!        └──────────────── dial, handshake fails or is refused ─────────────────┘
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use raft_core::{Message, NodeId};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::codec::{CodecError, ConnKind, Frame, FrameCodec, Hello, HelloReply};
use super::stats::{PeerCounters, add};
use super::{Shared, TransportEvent};

/// How much the writer buffers before it writes without waiting for the end
/// of the batch (tokio-util's default of 8 KiB would cut a burst of small
/// messages into many writes).
const WRITE_BUFFER_BOUNDARY: usize = 1024 * 1024;

/// Why a connection failed. Internal: the node only learns "unreachable".
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("refused by peer: {0}")]
    Refused(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("connection closed by peer")]
    Closed,
    #[error("transport stopped or peer removed")]
    Cancelled,
}

impl LinkError {
    /// True when the remote end broke the protocol (as opposed to the network
    /// failing or the peer going away).
    pub(crate) fn is_protocol(&self) -> bool {
        match self {
            LinkError::Protocol(_) => true,
            LinkError::Codec(CodecError::Decode(_) | CodecError::TooLarge { .. }) => true,
            // tokio-util reports a length prefix above the maximum this way.
            LinkError::Codec(CodecError::Io(e)) => e.kind() == std::io::ErrorKind::InvalidData,
            _ => false,
        }
    }
}

/// Runs `fut` for at most `limit`.
pub(crate) async fn within<T>(
    limit: Duration,
    what: &'static str,
    fut: impl Future<Output = Result<T, LinkError>>,
) -> Result<T, LinkError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| LinkError::Timeout(what))?
}

const CONNECTING: u8 = 0;
const CONNECTED: u8 = 1;
const DOWN: u8 = 2;

/// What the peer's handle and its task share.
struct Link {
    id: NodeId,
    /// CONNECTING, CONNECTED or DOWN; written only by the task.
    state: AtomicU8,
    /// Set when `Unreachable` was reported; cleared when the connection comes
    /// up or a batch is written. Coalesces reports (see the module docs).
    unreachable_reported: AtomicBool,
    counters: Arc<PeerCounters>,
}

impl Link {
    fn report_unreachable(&self, shared: &Shared) {
        if !self.unreachable_reported.swap(true, Ordering::AcqRel) {
            add(&self.counters.unreachable_reports, 1);
            let _ = shared.events.send(TransportEvent::Unreachable(self.id));
        }
    }

    fn reachable(&self) {
        self.unreachable_reported.store(false, Ordering::Release);
    }

    fn set_state(&self, state: u8) {
        self.state.store(state, Ordering::Release);
    }

    fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    fn drop_message(&self, shared: &Shared) {
        add(&self.counters.dropped_sent, 1);
        self.report_unreachable(shared);
    }
}

/// The transport's handle on one peer.
pub(crate) struct PeerHandle {
    addr: String,
    queue: mpsc::Sender<Message>,
    link: Arc<Link>,
    /// Stops the stream task and the peer's snapshot transfers.
    cancel: CancellationToken,
}

impl PeerHandle {
    /// Spawns the stream task of peer `id` at `addr`.
    pub(crate) fn spawn(shared: &Arc<Shared>, id: NodeId, addr: String) -> PeerHandle {
        let (queue, rx) = mpsc::channel(shared.cfg.queue_capacity.max(1));
        let link = Arc::new(Link {
            id,
            state: AtomicU8::new(CONNECTING),
            unreachable_reported: AtomicBool::new(false),
            counters: shared.counters.peer(id),
        });
        let cancel = shared.shutdown.child_token();
        shared.spawn(run_stream(
            shared.clone(),
            link.clone(),
            addr.clone(),
            rx,
            cancel.clone(),
        ));
        PeerHandle {
            addr,
            queue,
            link,
            cancel,
        }
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.link.state() == CONNECTED
    }

    /// Ends the peer's tasks; their connections close.
    pub(crate) fn stop(&self) {
        self.cancel.cancel();
    }

    /// Queues `m` for the stream, or drops it (see the module docs of
    /// `transport` for when).
    pub(crate) fn enqueue(&self, shared: &Shared, m: Message) {
        if self.link.state() == DOWN {
            self.link.drop_message(shared);
            return;
        }
        match self.queue.try_send(m) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => self.link.drop_message(shared),
        }
    }

    /// Streams the `Snap` message `m` on a connection of its own.
    pub(crate) fn send_snapshot(&self, shared: &Arc<Shared>, m: Message) {
        shared.spawn(run_snapshot(
            shared.clone(),
            self.link.clone(),
            self.addr.clone(),
            m,
            self.cancel.child_token(),
        ));
    }
}

/// Exponential backoff with jitter: the n-th delay is drawn from
/// `[d/2, d]` where `d = min(max, min * 2^n)`. The jitter keeps the nodes of a
/// cluster that lost a peer together from redialing it in lockstep.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter_ns = fastrand::u64(0..=u64::try_from(half.as_nanos()).unwrap_or(u64::MAX));
        ceiling - half + Duration::from_nanos(jitter_ns)
    }
}

/// Dials `addr` and performs the handshake as node `shared.id` reaching `to`.
async fn dial(
    shared: &Shared,
    addr: &str,
    to: NodeId,
    kind: ConnKind,
) -> Result<Framed<TcpStream, FrameCodec>, LinkError> {
    let stream = within(shared.cfg.connect_timeout, "connecting", async {
        TcpStream::connect(addr).await.map_err(LinkError::Connect)
    })
    .await?;
    // Raft messages are small and latency-bound; the writer batches itself.
    stream.set_nodelay(true).map_err(LinkError::Connect)?;
    let mut framed = Framed::new(stream, FrameCodec::new(shared.cfg.max_frame_len));
    let hello = Hello::new(shared.cluster_id, shared.id, to, kind);
    within(shared.cfg.handshake_timeout, "in handshake", async {
        framed.send(Frame::Hello(hello)).await?;
        match framed.next().await {
            Some(Ok(Frame::HelloReply(HelloReply::Accept))) => Ok(()),
            Some(Ok(Frame::HelloReply(HelloReply::Refuse { reason }))) => {
                Err(LinkError::Refused(reason))
            }
            Some(Ok(_)) => Err(LinkError::Protocol("expected a hello reply".into())),
            Some(Err(e)) => Err(e.into()),
            None => Err(LinkError::Closed),
        }
    })
    .await?;
    Ok(framed)
}

/// The stream task of one peer (see the module docs for its states).
async fn run_stream(
    shared: Arc<Shared>,
    link: Arc<Link>,
    addr: String,
    mut queue: mpsc::Receiver<Message>,
    cancel: CancellationToken,
) {
    let peer = link.id;
    let mut backoff = Backoff::new(shared.cfg.backoff_min, shared.cfg.backoff_max);
    // Whether this episode of trouble was logged at warn already; later
    // failures of the same episode go to debug, so a peer that is down for an
    // hour does not write a warning every two seconds.
    let mut warned = false;
    loop {
        link.set_state(CONNECTING);
        let dialed = tokio::select! {
            _ = cancel.cancelled() => return,
            r = dial(&shared, &addr, peer, ConnKind::Stream) => r,
        };
        match dialed {
            Ok(framed) => {
                backoff.reset();
                add(&link.counters.connects, 1);
                link.set_state(CONNECTED);
                link.reachable();
                if warned {
                    tracing::info!(peer, %addr, "connected to peer again");
                } else {
                    tracing::debug!(peer, %addr, "connected to peer");
                }
                match write_stream(&shared, &link, framed, &mut queue, &cancel).await {
                    Ok(()) => return,
                    // A loss is always worth a warning; the redials that
                    // follow are the same episode.
                    Err(e) => {
                        tracing::warn!(peer, %addr, error = %e, "lost connection to peer");
                        warned = true;
                    }
                }
            }
            Err(e) => {
                add(&link.counters.connect_failures, 1);
                if warned {
                    tracing::debug!(peer, %addr, error = %e, "cannot reach peer");
                } else {
                    tracing::warn!(peer, %addr, error = %e, "cannot reach peer");
                    warned = true;
                }
            }
        }
        link.set_state(DOWN);
        link.report_unreachable(&shared);
        drain(&link, &mut queue);
        let delay = backoff.next_delay();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        // Whatever slipped in while the state was changing is stale now.
        drain(&link, &mut queue);
    }
}

/// Drops every queued message.
fn drain(link: &Link, queue: &mut mpsc::Receiver<Message>) {
    let mut n = 0;
    while queue.try_recv().is_ok() {
        n += 1;
    }
    add(&link.counters.dropped_sent, n);
}

/// Writes queued messages until the connection fails (`Err`) or the task is
/// stopped (`Ok`).
async fn write_stream(
    shared: &Shared,
    link: &Link,
    mut framed: Framed<TcpStream, FrameCodec>,
    queue: &mut mpsc::Receiver<Message>,
    cancel: &CancellationToken,
) -> Result<(), LinkError> {
    framed.set_backpressure_boundary(WRITE_BUFFER_BOUNDARY);
    let max_batch = shared.cfg.queue_capacity.max(1);
    loop {
        // The peer sends nothing on a stream after the handshake, so reading
        // only notices that it closed the connection (restart, crash, removal
        // on its side) before the next write would.
        let first = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            m = queue.recv() => match m {
                Some(m) => m,
                None => return Ok(()),
            },
            frame = framed.next() => return Err(match frame {
                None => LinkError::Closed,
                Some(Ok(_)) => LinkError::Protocol("peer sent a frame on a stream".into()),
                Some(Err(e)) => e.into(),
            }),
        };
        let before = framed.codec().bytes_encoded;
        let written = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = write_batch(link, &mut framed, first, queue, max_batch) => r?,
        };
        add(&link.counters.msgs_sent, written);
        add(&link.counters.batches_sent, 1);
        add(
            &link.counters.bytes_sent,
            framed.codec().bytes_encoded - before,
        );
        link.reachable();
    }
}

/// Encodes `first` and everything queued behind it (at most `max_batch`
/// messages), then flushes once: a burst of small raft messages costs one
/// write. Returns how many messages were written.
async fn write_batch(
    link: &Link,
    framed: &mut Framed<TcpStream, FrameCodec>,
    first: Message,
    queue: &mut mpsc::Receiver<Message>,
    max_batch: usize,
) -> Result<u64, LinkError> {
    let mut written = 0;
    let mut next = Some(first);
    let mut taken = 0;
    while let Some(m) = next {
        taken += 1;
        let (to, msg_type) = (m.to, m.msg_type);
        match framed.feed(Frame::Message(m)).await {
            Ok(()) => written += 1,
            // Nothing was buffered for it; the connection is fine. Raft will
            // retry and fail again: the fix is a lower max_size_per_msg.
            Err(e @ (CodecError::TooLarge { .. } | CodecError::Encode(_))) => {
                tracing::warn!(peer = to, ?msg_type, error = %e, "dropping unsendable message");
                add(&link.counters.dropped_sent, 1);
            }
            Err(e) => return Err(e.into()),
        }
        next = if taken < max_batch {
            queue.try_recv().ok()
        } else {
            None
        };
    }
    framed.flush().await?;
    Ok(written)
}

/// Sends one `Snap` message and reports its outcome.
async fn run_snapshot(
    shared: Arc<Shared>,
    link: Arc<Link>,
    addr: String,
    m: Message,
    cancel: CancellationToken,
) {
    let to = link.id;
    let index = m.snapshot.as_ref().map_or(0, |s| s.metadata.index);
    let result = tokio::select! {
        _ = cancel.cancelled() => Err(LinkError::Cancelled),
        r = transfer_snapshot(&shared, &link, &addr, m) => r,
    };
    let ok = match result {
        Ok(()) => {
            tracing::info!(peer = to, index, "snapshot sent");
            add(&link.counters.snapshots_sent, 1);
            add(&link.counters.msgs_sent, 1);
            true
        }
        Err(e) => {
            tracing::warn!(peer = to, index, error = %e, "failed to send snapshot");
            add(&link.counters.snapshots_failed, 1);
            false
        }
    };
    let _ = shared
        .events
        .send(TransportEvent::SnapshotStatus { to, ok });
}

/// Dials a snapshot connection, streams the header and the chunks, and waits
/// for the peer's acknowledgement.
async fn transfer_snapshot(
    shared: &Shared,
    link: &Link,
    addr: &str,
    mut m: Message,
) -> Result<(), LinkError> {
    let to = link.id;
    let Some(snapshot) = m.snapshot.as_mut() else {
        return Err(LinkError::Protocol(
            "Snap message without a snapshot".into(),
        ));
    };
    let data: Bytes = std::mem::take(&mut snapshot.data);
    let progress = shared.cfg.snapshot_timeout;
    let chunk_len = shared.cfg.snapshot_chunk_len.max(1);

    let mut framed = dial(shared, addr, to, ConnKind::Snapshot).await?;
    framed.set_backpressure_boundary(chunk_len);
    let header = Frame::SnapshotHeader {
        message: m,
        data_len: data.len() as u64,
    };
    within(progress, "sending snapshot header", async {
        Ok(framed.feed(header).await?)
    })
    .await?;
    let mut offset = 0;
    while offset < data.len() {
        let end = data.len().min(offset + chunk_len);
        // `slice` shares the buffer: the chunk is copied once, into the
        // write buffer.
        let chunk = Frame::SnapshotChunk(data.slice(offset..end));
        within(progress, "sending snapshot chunk", async {
            Ok(framed.feed(chunk).await?)
        })
        .await?;
        offset = end;
    }
    within(progress, "sending snapshot", async {
        Ok(framed.flush().await?)
    })
    .await?;
    add(&link.counters.bytes_sent, framed.codec().bytes_encoded);
    let ack = within(progress, "waiting for snapshot ack", async {
        match framed.next().await {
            Some(Ok(Frame::SnapshotAck { ok })) => Ok(ok),
            Some(Ok(_)) => Err(LinkError::Protocol("expected a snapshot ack".into())),
            Some(Err(e)) => Err(e.into()),
            None => Err(LinkError::Closed),
        }
    })
    .await?;
    if ack {
        Ok(())
    } else {
        Err(LinkError::Refused(
            "peer could not take the snapshot".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_bounds_up_to_the_cap() {
        let min = Duration::from_millis(50);
        let max = Duration::from_secs(2);
        let mut b = Backoff::new(min, max);
        let mut ceiling = min;
        for _ in 0..40 {
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(max);
        }
        b.reset();
        assert!(b.next_delay() <= min);
    }

    #[test]
    fn protocol_errors_are_told_from_network_errors() {
        use std::io::{Error, ErrorKind};
        assert!(LinkError::Protocol("x".into()).is_protocol());
        assert!(
            LinkError::Codec(CodecError::Io(Error::from(ErrorKind::InvalidData))).is_protocol()
        );
        assert!(
            !LinkError::Codec(CodecError::Io(Error::from(ErrorKind::ConnectionReset)))
                .is_protocol()
        );
        assert!(!LinkError::Closed.is_protocol());
        assert!(!LinkError::Refused("r".into()).is_protocol());
    }
}
