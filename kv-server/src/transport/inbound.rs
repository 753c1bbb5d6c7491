//! The inbound side: the accept loop, the acceptor's half of the handshake,
//! and the readers of stream and snapshot connections.
//!
//! Whatever a remote end sends, the worst outcome is that its own connection
//! is closed (and logged at warn): a garbage, oversized or undecodable frame, a
//! frame out of place, or a message not addressed to this node from that
//! remote node. Nothing here panics on input.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use raft_core::{Message, MessageType, NodeId};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::codec::Framed;

use super::Shared;
use super::codec::{ConnKind, Frame, FrameCodec, Hello, HelloReply, MAGIC, PROTOCOL_VERSION};
use super::peer::{LinkError, within};
use super::stats::{PeerCounters, add};

/// How long the accept loop pauses after an accept error (typically running
/// out of file descriptors), so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The snapshot buffer is preallocated up to this size; beyond it grows as
/// chunks arrive, so a header alone cannot make the node reserve gigabytes.
const MAX_SNAPSHOT_PREALLOC: u64 = 64 * 1024 * 1024;

/// Accepts peer connections until shutdown; each gets a task of its own.
pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, remote)) => {
                shared.spawn(serve_connection(shared.clone(), stream, remote));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a peer connection failed");
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                }
            }
        }
    }
}

/// Checks a dialer's hello against this node (`id` of `cluster_id`);
/// `removed` tells whether the dialer was removed from the cluster.
///
/// # Errors
/// The reason to refuse the connection, sent back to the dialer.
pub(crate) fn check_hello(
    hello: &Hello,
    id: NodeId,
    cluster_id: u64,
    removed: bool,
) -> Result<(), String> {
    if hello.magic != MAGIC {
        return Err("not a kv-server peer (bad magic)".into());
    }
    if hello.version != PROTOCOL_VERSION {
        return Err(format!(
            "unsupported protocol version {} (this node speaks {PROTOCOL_VERSION})",
            hello.version
        ));
    }
    if hello.cluster_id != cluster_id {
        return Err(format!(
            "cluster id mismatch: this node is in cluster {cluster_id:#x}, the dialer in {:#x}",
            hello.cluster_id
        ));
    }
    if hello.to != id {
        return Err(format!("this is node {id}, not node {}", hello.to));
    }
    if hello.from == id || hello.from == raft_core::NONE {
        return Err(format!("invalid dialer id {}", hello.from));
    }
    if removed {
        return Err(format!("node {} was removed from the cluster", hello.from));
    }
    Ok(())
}

/// Checks a message read from a connection of node `from` to node `id`.
///
/// # Errors
/// What is wrong with it.
pub(crate) fn check_message(m: &Message, id: NodeId, from: NodeId) -> Result<(), LinkError> {
    if m.to != id {
        return Err(LinkError::Protocol(format!(
            "{:?} addressed to node {}, not to this node",
            m.msg_type, m.to
        )));
    }
    // A follower forwards a leader transfer request as raft built it, with
    // `from` naming the transferee (etcd raft's convention), not the sender.
    if m.from != from && m.msg_type != MessageType::TransferLeader {
        return Err(LinkError::Protocol(format!(
            "{:?} claims to be from node {} on a connection from node {from}",
            m.msg_type, m.from
        )));
    }
    if m.msg_type.is_local() {
        return Err(LinkError::Protocol(format!(
            "local message type {:?} from the network",
            m.msg_type
        )));
    }
    Ok(())
}

/// Handshakes an accepted connection and serves it until it ends.
async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, remote: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, FrameCodec::new(shared.cfg.max_frame_len));
    let first = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        r = within(shared.cfg.handshake_timeout, "waiting for hello", async {
            match framed.next().await {
                Some(Ok(Frame::Hello(hello))) => Ok(Some(hello)),
                Some(Ok(_)) => Err(LinkError::Protocol("expected a hello".into())),
                Some(Err(e)) => Err(e.into()),
                None => Ok(None),
            }
        }) => r,
    };
    let hello = match first {
        Ok(Some(hello)) => hello,
        // Closed before saying anything (a port probe): nothing to report.
        Ok(None) => return,
        Err(e) => {
            closed_with(&shared, remote, None, &e);
            return;
        }
    };
    let from = hello.from;
    let verdict = check_hello(
        &hello,
        shared.id,
        shared.cluster_id,
        shared.is_removed(from),
    )
    .and_then(|()| {
        shared
            .register_inbound(from, hello.kind)
            .ok_or_else(|| format!("node {from} was removed from the cluster"))
    });
    let (conn_id, token) = match verdict {
        Ok(registration) => registration,
        Err(reason) => {
            // Counted and logged before the dialer hears of it.
            add(&shared.counters.refused_handshakes, 1);
            tracing::warn!(
                %remote,
                from,
                cluster_id = hello.cluster_id,
                %reason,
                "refused peer connection"
            );
            let refusal = Frame::HelloReply(HelloReply::Refuse { reason });
            let _ = within(shared.cfg.handshake_timeout, "refusing hello", async {
                Ok(framed.send(refusal).await?)
            })
            .await;
            return;
        }
    };
    let answered = within(shared.cfg.handshake_timeout, "answering hello", async {
        Ok(framed.send(Frame::HelloReply(HelloReply::Accept)).await?)
    })
    .await;
    let served = match answered {
        Err(e) => Err(e),
        Ok(()) => {
            let counters = shared.counters.peer(from);
            tokio::select! {
                _ = token.cancelled() => Ok(()),
                r = async {
                    match hello.kind {
                        ConnKind::Stream => read_stream(&shared, &counters, &mut framed, from).await,
                        ConnKind::Snapshot => read_snapshot(&shared, &counters, &mut framed, from).await,
                    }
                } => r,
            }
        }
    };
    if hello.kind == ConnKind::Stream {
        shared.unregister_inbound(from, conn_id);
    }
    if let Err(e) = served {
        closed_with(&shared, remote, Some(from), &e);
    }
}

/// Logs why a connection closed: protocol violations at warn (and counted),
/// network trouble at debug.
fn closed_with(shared: &Shared, remote: SocketAddr, from: Option<NodeId>, e: &LinkError) {
    if e.is_protocol() {
        add(&shared.counters.protocol_errors, 1);
        tracing::warn!(%remote, from, error = %e, "closing peer connection");
    } else {
        tracing::debug!(%remote, from, error = %e, "peer connection ended");
    }
}

/// Reads raft messages from a stream connection of node `from` and hands them
/// to the node. Returns `Ok` on a clean end of stream.
async fn read_stream(
    shared: &Shared,
    counters: &PeerCounters,
    framed: &mut Framed<TcpStream, FrameCodec>,
    from: NodeId,
) -> Result<(), LinkError> {
    let mut decoded = framed.codec().bytes_decoded;
    while let Some(frame) = framed.next().await {
        let m = match frame? {
            Frame::Message(m) => m,
            _ => return Err(LinkError::Protocol("expected a message frame".into())),
        };
        check_message(&m, shared.id, from)?;
        let now = framed.codec().bytes_decoded;
        add(&counters.bytes_received, now - decoded);
        decoded = now;
        // Counted before it is handed over, so that whoever sees the message
        // sees it counted.
        match shared.inbound.try_reserve() {
            Ok(permit) => {
                add(&counters.msgs_received, 1);
                permit.send(m);
            }
            Err(TrySendError::Full(())) => {
                tracing::debug!(from, msg_type = ?m.msg_type, "node inbound queue full, dropping message");
                add(&counters.dropped_received, 1);
            }
            // The node is gone; the transport is about to be shut down.
            Err(TrySendError::Closed(())) => return Ok(()),
        }
    }
    Ok(())
}

/// Reads one snapshot from a snapshot connection of node `from`, hands it to
/// the node and acknowledges it.
async fn read_snapshot(
    shared: &Shared,
    counters: &PeerCounters,
    framed: &mut Framed<TcpStream, FrameCodec>,
    from: NodeId,
) -> Result<(), LinkError> {
    let progress = shared.cfg.snapshot_timeout;
    let (mut m, data_len) =
        match next_frame(framed, progress, "waiting for snapshot header").await? {
            Frame::SnapshotHeader { message, data_len } => (message, data_len),
            _ => return Err(LinkError::Protocol("expected a snapshot header".into())),
        };
    check_message(&m, shared.id, from)?;
    if m.msg_type != MessageType::Snap || m.snapshot.is_none() {
        return Err(LinkError::Protocol(format!(
            "{:?} without a snapshot on a snapshot connection",
            m.msg_type
        )));
    }
    if data_len > shared.cfg.max_snapshot_len {
        return Err(LinkError::Protocol(format!(
            "snapshot of {data_len} bytes exceeds the maximum of {}",
            shared.cfg.max_snapshot_len
        )));
    }
    let total = usize::try_from(data_len)
        .map_err(|_| LinkError::Protocol("snapshot larger than memory".into()))?;
    let mut data = BytesMut::with_capacity(data_len.min(MAX_SNAPSHOT_PREALLOC) as usize);
    while data.len() < total {
        let chunk = match next_frame(framed, progress, "waiting for snapshot chunk").await? {
            Frame::SnapshotChunk(chunk) => chunk,
            _ => return Err(LinkError::Protocol("expected a snapshot chunk".into())),
        };
        if chunk.len() > total - data.len() {
            return Err(LinkError::Protocol(format!(
                "snapshot chunks exceed the announced {data_len} bytes"
            )));
        }
        data.extend_from_slice(&chunk);
    }
    add(&counters.bytes_received, framed.codec().bytes_decoded);
    if let Some(snapshot) = m.snapshot.as_mut() {
        snapshot.data = data.freeze();
    }
    let index = m.snapshot.as_ref().map_or(0, |s| s.metadata.index);
    // Unlike stream messages, a snapshot waits for room in the node's queue:
    // sending it again would cost the whole transfer.
    let permit = within(progress, "handing snapshot to the node", async {
        Ok(shared.inbound.reserve().await.ok())
    })
    .await
    .ok()
    .flatten();
    let ok = permit.is_some();
    if let Some(permit) = permit {
        add(&counters.msgs_received, 1);
        add(&counters.snapshots_received, 1);
        tracing::info!(from, index, bytes = data_len, "snapshot received");
        permit.send(m);
    } else {
        add(&counters.dropped_received, 1);
        tracing::warn!(from, index, "could not hand the snapshot to the node");
    }
    within(progress, "acknowledging snapshot", async {
        Ok(framed.send(Frame::SnapshotAck { ok }).await?)
    })
    .await
}

/// Reads the next frame within `limit`; the end of the stream is an error.
async fn next_frame(
    framed: &mut Framed<TcpStream, FrameCodec>,
    limit: Duration,
    what: &'static str,
) -> Result<Frame, LinkError> {
    within(limit, what, async {
        match framed.next().await {
            Some(frame) => Ok(frame?),
            None => Err(LinkError::Closed),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello::new(7, 2, 1, ConnKind::Stream)
    }

    #[test]
    fn hello_from_a_peer_of_the_cluster_is_accepted() {
        assert_eq!(check_hello(&hello(), 1, 7, false), Ok(()));
    }

    #[test]
    fn hello_is_refused_for_every_mismatch() {
        let cases: Vec<(Hello, bool)> = vec![
            (
                Hello {
                    magic: *b"HTTP",
                    ..hello()
                },
                false,
            ),
            (
                Hello {
                    version: PROTOCOL_VERSION + 1,
                    ..hello()
                },
                false,
            ),
            (
                Hello {
                    cluster_id: 8,
                    ..hello()
                },
                false,
            ),
            (Hello { to: 3, ..hello() }, false),
            (Hello { from: 1, ..hello() }, false),
            (Hello { from: 0, ..hello() }, false),
            (hello(), true),
        ];
        for (h, removed) in cases {
            assert!(
                check_hello(&h, 1, 7, removed).is_err(),
                "{h:?} removed={removed}"
            );
        }
    }

    #[test]
    fn misaddressed_spoofed_and_local_messages_are_protocol_errors() {
        let ok = Message::new(MessageType::Heartbeat, 2, 1);
        assert!(check_message(&ok, 1, 2).is_ok());
        for bad in [
            Message::new(MessageType::Heartbeat, 2, 3),
            Message::new(MessageType::Heartbeat, 3, 1),
            Message::new(MessageType::Hup, 2, 1),
        ] {
            let e = check_message(&bad, 1, 2).unwrap_err();
            assert!(e.is_protocol(), "{bad:?}");
        }
    }
}
