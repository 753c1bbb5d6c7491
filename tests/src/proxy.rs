//! A fault-injecting TCP proxy between kv-server peers.
//!
//! The proxy has one listener per node. The nodes' `--cluster` URLs name
//! these listeners, and each node listens for real on `--listen-peer`, so
//! every peer connection goes through the proxy. A kv-server peer
//! connection is one-way: the dialer sends its raft messages to the
//! acceptor (see `kv_server::transport`), and the acceptor only answers the
//! handshake (and acknowledges snapshots). The proxy reads the first frame,
//! the [`Hello`](kv_server::transport::codec::Hello), with kv-server's own codec to learn the dialer (`from`);
//! the listener it arrived on names `to`. So the frames of a connection are
//! the messages of one directed link `from -> to`, and faults are set per
//! directed link:
//!
//! - [`Fault::Drop`]: a black hole. Frames read from the dialer are
//!   discarded whole (at frame boundaries: a frame is never cut or
//!   corrupted), and a new connection is held after its hello, unanswered,
//!   as a connect into a partition would hang. Healing lets held
//!   connections through and forwards frames again; what was dropped stays
//!   dropped (Raft retransmits).
//! - [`Fault::Cut`]: existing connections are closed at once and new ones
//!   closed after their hello, as a crashed or resetting link would be.
//! - [`Fault::Delay`]: every frame is held for the duration before it is
//!   forwarded, in order.
//! - [`Fault::Corrupt`]: every frame's payload is replaced by garbage that
//!   cannot decode (the one fault that sends what no node wrote); the
//!   length prefix stays intact.
//!
//! Partitions are drops: [`Proxy::partition`] (both ways),
//! [`Proxy::partition_one_way`], [`Proxy::isolate`] (every link to and from
//! a node), [`Proxy::heal`] (every fault cleared).
//!
//! The answers from the acceptor (hello reply, snapshot ack) travel back
//! untouched on an open connection: they are the connection's own
//! handshake, not messages of the link `to -> from`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use kv_server::transport::codec::{DEFAULT_MAX_FRAME_LEN, FRAME_HEADER_LEN, Frame, FrameCodec};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::codec::{Decoder, FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

/// A node id.
pub type NodeId = u64;

/// What happens to the frames of one directed link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Discard frames; hold new connections (a black hole).
    Drop,
    /// Close connections.
    Cut,
    /// Forward every frame after this delay.
    Delay(Duration),
    /// Replace every frame's payload with garbage of the same length that
    /// cannot decode (its first byte is not a `Frame` variant), keeping the
    /// length prefix intact: the acceptor must refuse it as a protocol
    /// error, never act on it.
    Corrupt,
}

/// Counters of one directed link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Connections whose hello named this link.
    pub connections: u64,
    /// Connections closed because of a [`Fault::Cut`].
    pub cut: u64,
    /// Frames forwarded after the hello.
    pub forwarded: u64,
    /// Frames discarded by a [`Fault::Drop`].
    pub dropped: u64,
    /// Frames replaced by garbage by a [`Fault::Corrupt`].
    pub corrupted: u64,
}

#[derive(Default)]
struct State {
    faults: HashMap<(NodeId, NodeId), Fault>,
    stats: BTreeMap<(NodeId, NodeId), LinkStats>,
    nodes: BTreeMap<NodeId, SocketAddr>,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped on every change of the faults, so that connections re-read
    /// theirs.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn fault(&self, link: (NodeId, NodeId)) -> Option<Fault> {
        self.state
            .lock()
            .expect("proxy lock")
            .faults
            .get(&link)
            .copied()
    }

    fn count(&self, link: (NodeId, NodeId), f: impl FnOnce(&mut LinkStats)) {
        f(self
            .state
            .lock()
            .expect("proxy lock")
            .stats
            .entry(link)
            .or_default());
    }
}

/// The proxy. Dropping it stops every listener and connection.
pub struct Proxy {
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy::new()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// How long a dialer may take to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long dialing the real peer port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

impl Proxy {
    /// A proxy with no nodes yet. It runs on the current tokio runtime.
    pub fn new() -> Self {
        Proxy {
            shared: Arc::new(Shared {
                state: Mutex::default(),
                changed: watch::Sender::new(0),
            }),
            cancel: CancellationToken::new(),
        }
    }

    /// Listens, on a new loopback port, for connections to node `id`, and
    /// forwards them to `upstream` (the node's `--listen-peer`). Returns the
    /// address peers must dial (the node's URL in `--cluster`).
    ///
    /// # Errors
    /// If no listener can be bound.
    pub async fn add_node(&self, id: NodeId, upstream: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        self.shared
            .state
            .lock()
            .expect("proxy lock")
            .nodes
            .insert(id, addr);
        let shared = self.shared.clone();
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    _ = cancel.cancelled() => return,
                    c = listener.accept() => c,
                };
                let Ok((conn, _)) = conn else { continue };
                let _ = conn.set_nodelay(true);
                let (shared, cancel) = (shared.clone(), cancel.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = relay(conn, id, upstream, &shared) => {}
                    }
                });
            }
        });
        Ok(addr)
    }

    /// The address peers dial to reach node `id`, if it was added.
    pub fn addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.shared
            .state
            .lock()
            .expect("proxy lock")
            .nodes
            .get(&id)
            .copied()
    }

    fn update(&self, f: impl FnOnce(&mut HashMap<(NodeId, NodeId), Fault>)) {
        f(&mut self.shared.state.lock().expect("proxy lock").faults);
        self.shared.changed.send_modify(|g| *g += 1);
    }

    /// Sets the fault of the link `from -> to`.
    pub fn set(&self, from: NodeId, to: NodeId, fault: Fault) {
        self.update(|f| {
            f.insert((from, to), fault);
        });
    }

    /// Clears the fault of the link `from -> to`.
    pub fn clear(&self, from: NodeId, to: NodeId) {
        self.update(|f| {
            f.remove(&(from, to));
        });
    }

    /// Drops every message from `from` to `to` (and none the other way).
    pub fn partition_one_way(&self, from: NodeId, to: NodeId) {
        self.set(from, to, Fault::Drop);
    }

    /// Drops every message between `a` and `b`, both ways.
    pub fn partition(&self, a: NodeId, b: NodeId) {
        self.update(|f| {
            f.insert((a, b), Fault::Drop);
            f.insert((b, a), Fault::Drop);
        });
    }

    /// Drops every message to and from `id` (including nodes added later
    /// only once this is called again).
    pub fn isolate(&self, id: NodeId) {
        let others: Vec<NodeId> = self
            .shared
            .state
            .lock()
            .expect("proxy lock")
            .nodes
            .keys()
            .copied()
            .filter(|&n| n != id)
            .collect();
        self.update(|f| {
            for n in others {
                f.insert((id, n), Fault::Drop);
                f.insert((n, id), Fault::Drop);
            }
        });
    }

    /// Clears every fault.
    pub fn heal(&self) {
        self.update(HashMap::clear);
    }

    /// The counters of the link `from -> to`.
    pub fn stats(&self, from: NodeId, to: NodeId) -> LinkStats {
        self.shared
            .state
            .lock()
            .expect("proxy lock")
            .stats
            .get(&(from, to))
            .copied()
            .unwrap_or_default()
    }
}

fn frame_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(FRAME_HEADER_LEN)
        // Snapshot chunks are far below this; the slack covers the envelope.
        .max_frame_length(DEFAULT_MAX_FRAME_LEN)
        .new_codec()
}

/// Decodes a frame's payload with kv-server's codec.
fn decode_frame(payload: &[u8]) -> Option<Frame> {
    let mut buf = BytesMut::with_capacity(FRAME_HEADER_LEN + payload.len());
    buf.put_u32(u32::try_from(payload.len()).ok()?);
    buf.put_slice(payload);
    FrameCodec::default().decode(&mut buf).ok().flatten()
}

/// `len` bytes that no kv-server decodes as a frame: postcard encodes the
/// variant index first, as a varint, and 0x7f is far past the last variant.
fn garbage(len: usize) -> Bytes {
    let mut b: Vec<u8> = (0..len.max(1)).map(|_| fastrand::u8(..)).collect();
    b[0] = 0x7f;
    Bytes::from(b)
}

/// Relays one connection to node `to`, applying the faults of its link
/// until either side closes or the link is cut.
async fn relay(conn: TcpStream, to: NodeId, upstream: SocketAddr, shared: &Shared) {
    let (rd, mut wr) = conn.into_split();
    let mut reader = FramedRead::new(rd, frame_codec());
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, reader.next()).await {
        Ok(Some(Ok(payload))) => payload.freeze(),
        _ => return,
    };
    let Some(Frame::Hello(h)) = decode_frame(&hello) else {
        // Not a kv-server peer: pass nothing on.
        return;
    };
    let link = (h.from, to);
    shared.count(link, |s| s.connections += 1);
    let mut changed = shared.changed.subscribe();

    // Hold the connection while the link is a black hole; close it if cut.
    loop {
        match shared.fault(link) {
            Some(Fault::Cut) => {
                shared.count(link, |s| s.cut += 1);
                return;
            }
            Some(Fault::Drop) => {
                if changed.changed().await.is_err() {
                    return;
                }
            }
            _ => break,
        }
    }

    let up = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(s)) => s,
        _ => return,
    };
    let _ = up.set_nodelay(true);
    let (mut up_rd, up_wr) = up.into_split();
    let mut writer = FramedWrite::new(up_wr, frame_codec());
    if writer.send(hello).await.is_err() {
        return;
    }
    // The acceptor's answers go back as they are.
    let back = tokio::io::copy(&mut up_rd, &mut wr);
    tokio::pin!(back);

    // Frames waiting for their delay to pass, in arrival order.
    let mut pending: VecDeque<(Instant, Bytes)> = VecDeque::new();
    let mut reading = true;
    loop {
        let due = pending.front().map(|p| p.0);
        tokio::select! {
            _ = &mut back => return,
            c = changed.changed() => {
                if c.is_err() {
                    return;
                }
                if shared.fault(link) == Some(Fault::Cut) {
                    shared.count(link, |s| s.cut += 1);
                    return;
                }
            }
            f = reader.next(), if reading => match f {
                Some(Ok(frame)) => {
                    let frame = frame.freeze();
                    match shared.fault(link) {
                        None if pending.is_empty() => {
                            if writer.send(frame).await.is_err() {
                                return;
                            }
                            shared.count(link, |s| s.forwarded += 1);
                        }
                        None => pending.push_back((Instant::now(), frame)),
                        Some(Fault::Delay(d)) => pending.push_back((Instant::now() + d, frame)),
                        Some(Fault::Drop) => shared.count(link, |s| s.dropped += 1),
                        Some(Fault::Corrupt) => {
                            shared.count(link, |s| s.corrupted += 1);
                            pending.push_back((Instant::now(), garbage(frame.len())));
                        }
                        Some(Fault::Cut) => {
                            shared.count(link, |s| s.cut += 1);
                            return;
                        }
                    }
                }
                // The dialer closed (or sent garbage): deliver what is
                // pending, then close.
                _ => reading = false,
            },
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let (_, frame) = pending.pop_front().expect("a pending frame");
                if writer.send(frame).await.is_err() {
                    return;
                }
                shared.count(link, |s| s.forwarded += 1);
            }
        }
        if !reading && pending.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_server::transport::codec::{ConnKind, Hello, HelloReply};

    async fn dial(
        proxy: SocketAddr,
        from: NodeId,
        to: NodeId,
    ) -> tokio_util::codec::Framed<TcpStream, FrameCodec> {
        let s = TcpStream::connect(proxy).await.unwrap();
        let mut f = tokio_util::codec::Framed::new(s, FrameCodec::default());
        f.send(Frame::Hello(Hello::new(7, from, to, ConnKind::Stream)))
            .await
            .unwrap();
        f
    }

    fn chunk(i: u8) -> Frame {
        Frame::SnapshotChunk(Bytes::from(vec![i; 100]))
    }

    /// An acceptor that answers hellos and forwards every later frame.
    async fn acceptor() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Frame>) {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut f = tokio_util::codec::Framed::new(s, FrameCodec::default());
                    while let Some(Ok(frame)) = f.next().await {
                        if matches!(frame, Frame::Hello(_)) {
                            f.send(Frame::HelloReply(HelloReply::Accept)).await.unwrap();
                        } else {
                            let _ = tx.send(frame);
                        }
                    }
                });
            }
        });
        (addr, rx)
    }

    async fn recv(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Frame>) -> Frame {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a frame in time")
            .expect("acceptor alive")
    }

    #[tokio::test]
    async fn frames_pass_dropped_frames_vanish_whole_and_heal_resumes() {
        let (up, mut rx) = acceptor().await;
        let proxy = Proxy::new();
        let addr = proxy.add_node(2, up).await.unwrap();
        let mut c = dial(addr, 1, 2).await;
        let reply = tokio::time::timeout(Duration::from_secs(5), c.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(reply, Frame::HelloReply(HelloReply::Accept));
        c.send(chunk(1)).await.unwrap();
        assert_eq!(recv(&mut rx).await, chunk(1));

        proxy.partition_one_way(1, 2);
        c.send(chunk(2)).await.unwrap();
        // The reverse direction is not affected: a connection 2 -> 1 would
        // pass. Wait until the proxy has seen (and dropped) frame 2.
        let deadline = Instant::now() + Duration::from_secs(5);
        while proxy.stats(1, 2).dropped == 0 {
            assert!(Instant::now() < deadline, "frame 2 never reached the proxy");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        proxy.heal();
        c.send(chunk(3)).await.unwrap();
        // Frame 3 arrives intact and frame 2 never does.
        assert_eq!(recv(&mut rx).await, chunk(3));
        let s = proxy.stats(1, 2);
        assert_eq!((s.connections, s.forwarded, s.dropped), (1, 2, 1));
    }

    #[tokio::test]
    async fn cut_closes_connections_and_refuses_new_ones() {
        let (up, mut rx) = acceptor().await;
        let proxy = Proxy::new();
        let addr = proxy.add_node(2, up).await.unwrap();
        let mut c = dial(addr, 1, 2).await;
        c.next().await.unwrap().unwrap();
        proxy.set(1, 2, Fault::Cut);
        let end = tokio::time::timeout(Duration::from_secs(5), c.next())
            .await
            .unwrap();
        assert!(end.is_none() || end.unwrap().is_err(), "connection closed");
        let mut again = dial(addr, 1, 2).await;
        let end = tokio::time::timeout(Duration::from_secs(5), again.next())
            .await
            .unwrap();
        assert!(
            end.is_none() || end.unwrap().is_err(),
            "new connection closed"
        );
        // Another link is unaffected.
        let mut other = dial(addr, 3, 2).await;
        other.next().await.unwrap().unwrap();
        other.send(chunk(9)).await.unwrap();
        assert_eq!(recv(&mut rx).await, chunk(9));
        assert_eq!(proxy.stats(1, 2).cut, 2);
    }

    #[tokio::test]
    async fn corrupted_frames_keep_their_length_and_never_decode() {
        for _ in 0..1000 {
            let len = fastrand::usize(1..200);
            let g = garbage(len);
            assert_eq!(g.len(), len);
            assert_eq!(decode_frame(&g), None);
        }
        let (up, _rx) = acceptor().await;
        let proxy = Proxy::new();
        let addr = proxy.add_node(2, up).await.unwrap();
        proxy.set(1, 2, Fault::Corrupt);
        let mut c = dial(addr, 1, 2).await;
        c.next().await.unwrap().unwrap();
        c.send(chunk(1)).await.unwrap();
        // The acceptor cannot decode it and drops the connection.
        let end = tokio::time::timeout(Duration::from_secs(5), c.next())
            .await
            .unwrap();
        assert!(end.is_none() || end.unwrap().is_err());
        assert_eq!(proxy.stats(1, 2).corrupted, 1);
    }

    #[tokio::test]
    async fn delay_keeps_order() {
        let (up, mut rx) = acceptor().await;
        let proxy = Proxy::new();
        let addr = proxy.add_node(2, up).await.unwrap();
        proxy.set(1, 2, Fault::Delay(Duration::from_millis(50)));
        let mut c = dial(addr, 1, 2).await;
        c.next().await.unwrap().unwrap();
        for i in 0..5 {
            c.send(chunk(i)).await.unwrap();
        }
        for i in 0..5 {
            assert_eq!(recv(&mut rx).await, chunk(i));
        }
        assert_eq!(proxy.stats(1, 2).forwarded, 5);
    }
}
