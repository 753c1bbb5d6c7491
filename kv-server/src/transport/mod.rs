//! The peer transport: raft messages between kv-server nodes over TCP.
//!
//! [`Transport::start`] takes a listener the caller bound (mini-redis's
//! `run(listener, shutdown)` shape) and spawns, on the current tokio runtime:
//!
//! - an accept loop; each inbound connection is handshaken ([`codec::Hello`])
//!   and then read by its own task, which hands raft messages to the node
//!   through the `inbound` channel given at construction;
//! - per peer, one task that owns the long-lived outbound connection (see
//!   `peer.rs`), fed by a bounded queue;
//! - per snapshot, a task that streams it on a connection of its own.
//!
//! The wire format is documented in [`codec`].
//!
//! # Behaviour the node relies on
//!
//! - [`Transport::send`] never blocks and never fails: it is called from the
//!   node's thread, which is not a tokio worker. A message that cannot be sent
//!   (queue full, peer down, unknown peer) is dropped, counted, and the peer is
//!   reported [`TransportEvent::Unreachable`] so the node calls
//!   `RawNode::report_unreachable`. Dropping is safe: Raft retransmits
//!   (Raft thesis §3.5: "Raft RPCs are idempotent", and a leader retries
//!   AppendEntries until it succeeds).
//! - Every `Snap` message yields exactly one [`TransportEvent::SnapshotStatus`]:
//!   `ok` once the receiver acknowledged the whole snapshot, `!ok` on any
//!   failure, so the node calls `RawNode::report_snapshot`.
//! - Messages arrive in the order they were sent to the same peer, as long as
//!   its connection lives; a snapshot travels on its own connection, so it is
//!   not ordered with the stream (Raft does not need it to be).
//!
//! # Judgement calls
//!
//! - Unreachable reports are coalesced: one per episode of trouble, where an
//!   episode ends when the outbound connection comes up or a batch is written.
//!   etcd reports on every dropped message; that would flood the unbounded
//!   event channel with thousands of identical events while a peer is down,
//!   and `report_unreachable` is idempotent in effect (it only moves a
//!   replicating follower to probing).
//! - While the first dial (or a redial after backoff) is in flight, messages
//!   queue; while a peer is down between dials, they are dropped at once. So a
//!   node that starts before its peers does not replay seconds-old heartbeats,
//!   yet the messages of a fresh start are not lost to a dial that will succeed.
//! - Inbound raft messages are dropped when the node's inbound channel is full
//!   (Raft retransmits; blocking would only move the backlog into the socket);
//!   a reassembled snapshot instead waits for room, because it is expensive to
//!   send again.
//! - Connections are one-way: a node dials each peer for its own messages and
//!   accepts its peers' dials for theirs (as etcd's rafthttp streams do). A new
//!   stream from a peer replaces its previous one, which closes the half-open
//!   connection a crashed peer leaves behind.
//! - Any node of the same cluster may connect, not only configured peers: a
//!   node that joins may dial before this node applied its addition. A node
//!   given to [`Transport::remove_peer`] is refused from then on, as etcd
//!   refuses removed members.

pub mod codec;
mod inbound;
mod peer;
mod stats;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use raft_core::{Message, MessageType, NodeId};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

pub use stats::{PeerStats, TransportStats};

use codec::ConnKind;
use peer::PeerHandle;
use stats::{Counters, add};

/// What the transport tells the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportEvent {
    /// A message to the peer was dropped, or the connection to it failed or
    /// was lost: call `RawNode::report_unreachable(peer)`.
    Unreachable(NodeId),
    /// The outcome of sending a snapshot: call `RawNode::report_snapshot(to,
    /// if ok { Finish } else { Failure })`.
    SnapshotStatus {
        /// The peer the snapshot was sent to.
        to: NodeId,
        /// Whether the peer acknowledged the whole snapshot.
        ok: bool,
    },
}

/// Errors of the transport's API.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransportError {
    /// A peer address is not `host:port` (optionally `http://host:port`).
    #[error("invalid peer address {addr:?}: {reason}")]
    InvalidAddr {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// How a [`Transport`] is set up. [`TransportConfig::new`] fills in the
/// defaults; the fields are public so a caller can override any of them.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// The cluster's id; connections from other clusters are refused.
    pub cluster_id: u64,
    /// The initial peers and their addresses (`host:port` or
    /// `http://host:port`). An entry for `id` itself is ignored, so the
    /// whole `--cluster` list can be passed.
    pub peers: BTreeMap<NodeId, String>,
    /// Messages queued per peer before further ones are dropped.
    pub queue_capacity: usize,
    /// The largest frame payload read or written. A raft message must encode
    /// within it (keep raft's `max_size_per_msg` well below); snapshot data is
    /// chunked and is not bound by it.
    pub max_frame_len: usize,
    /// The size of the chunks snapshot data is streamed in.
    pub snapshot_chunk_len: usize,
    /// The largest snapshot accepted from a peer.
    pub max_snapshot_len: u64,
    /// The first reconnect delay; it doubles per failure up to `backoff_max`.
    pub backoff_min: Duration,
    /// The longest reconnect delay.
    pub backoff_max: Duration,
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// How long a handshake may take, on either side.
    pub handshake_timeout: Duration,
    /// How long a snapshot transfer may make no progress (one chunk written or
    /// read, the acknowledgement awaited) before it fails.
    pub snapshot_timeout: Duration,
}

impl TransportConfig {
    /// A configuration with the default limits and timings: queue 4096
    /// messages, frames up to [`codec::DEFAULT_MAX_FRAME_LEN`], 1 MiB snapshot
    /// chunks, snapshots up to 8 GiB, backoff 50 ms doubling to 2 s, connect
    /// timeout 1 s, handshake timeout 5 s, snapshot progress timeout 30 s.
    pub fn new(id: NodeId, cluster_id: u64, peers: BTreeMap<NodeId, String>) -> Self {
        TransportConfig {
            id,
            cluster_id,
            peers,
            queue_capacity: 4096,
            max_frame_len: codec::DEFAULT_MAX_FRAME_LEN,
            snapshot_chunk_len: 1024 * 1024,
            max_snapshot_len: 8 * 1024 * 1024 * 1024,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(5),
            snapshot_timeout: Duration::from_secs(30),
        }
    }
}

/// Turns a peer URL into the `host:port` to dial: strips a leading `http://`
/// (raftexample's `--cluster http://127.0.0.1:12379` form) and a trailing `/`.
///
/// # Errors
/// [`TransportError::InvalidAddr`] unless the rest is `host:port` with a
/// non-empty host and a non-zero port.
pub fn peer_addr(url: &str) -> Result<String, TransportError> {
    let invalid = |reason| TransportError::InvalidAddr {
        addr: url.to_string(),
        reason,
    };
    let trimmed = url.trim();
    let rest = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains("://") {
        return Err(invalid("only http:// URLs or host:port"));
    }
    if rest.contains('/') {
        return Err(invalid("a peer URL has no path"));
    }
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| invalid("no port"))?;
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(invalid("port must be 1..=65535")),
        Ok(_) => Ok(rest.to_string()),
    }
}

/// The peer transport of one node. See the [module docs](self).
///
/// Dropping it stops its tasks, as cancelling the shutdown token does.
pub struct Transport {
    shared: Arc<Shared>,
    _stop_on_drop: DropGuard,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("id", &self.shared.id)
            .field("cluster_id", &self.shared.cluster_id)
            .field("local_addr", &self.shared.local_addr)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Starts the transport on the current tokio runtime: accepts peers on
    /// `listener`, hands their messages to `inbound`, reports to `events`, and
    /// dials `cfg.peers`. Everything stops when `shutdown` is cancelled or the
    /// `Transport` is dropped.
    ///
    /// # Errors
    /// [`TransportError::InvalidAddr`] if a peer address is malformed.
    ///
    /// # Panics
    /// If called outside a tokio runtime, or if `cfg.id` is 0.
    pub fn start(
        cfg: TransportConfig,
        listener: TcpListener,
        inbound: mpsc::Sender<Message>,
        events: mpsc::UnboundedSender<TransportEvent>,
        shutdown: CancellationToken,
    ) -> Result<Transport, TransportError> {
        assert_ne!(cfg.id, raft_core::NONE, "a node id must not be 0");
        let peers = cfg
            .peers
            .iter()
            .filter(|(id, _)| **id != cfg.id)
            .map(|(id, url)| Ok((*id, peer_addr(url)?)))
            .collect::<Result<Vec<_>, TransportError>>()?;
        let shutdown = shutdown.child_token();
        let shared = Arc::new(Shared {
            id: cfg.id,
            cluster_id: cfg.cluster_id,
            local_addr: listener.local_addr().ok(),
            cfg,
            handle: Handle::current(),
            tracker: TaskTracker::new(),
            shutdown: shutdown.clone(),
            events,
            inbound,
            peers: Mutex::new(HashMap::new()),
            removed: Mutex::new(HashSet::new()),
            inbound_conns: Mutex::new(HashMap::new()),
            next_conn_id: AtomicU64::new(0),
            counters: Counters::default(),
        });
        shared.tracker.spawn_on(
            inbound::accept_loop(shared.clone(), listener),
            &shared.handle,
        );
        {
            let mut map = lock(&shared.peers);
            for (id, addr) in peers {
                map.insert(id, PeerHandle::spawn(&shared, id, addr));
            }
        }
        Ok(Transport {
            shared,
            _stop_on_drop: shutdown.drop_guard(),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// The address the listener was bound to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.local_addr
    }

    /// Queues messages for their peers. Never blocks, never fails, and may be
    /// called from any thread, inside a runtime or not.
    ///
    /// A message that cannot be queued (its peer is unknown or down, or its
    /// queue is full) is dropped and its peer reported
    /// [`TransportEvent::Unreachable`]. A `Snap` message is streamed on a
    /// connection of its own and answered by a
    /// [`TransportEvent::SnapshotStatus`].
    pub fn send(&self, msgs: impl IntoIterator<Item = Message>) {
        let shared = &self.shared;
        let peers = lock(&shared.peers);
        for m in msgs {
            let Some(peer) = peers.get(&m.to) else {
                tracing::debug!(to = m.to, msg_type = ?m.msg_type, "dropping message to unknown peer");
                add(&shared.counters.dropped_unknown_peer, 1);
                let to = m.to;
                let _ = shared.events.send(TransportEvent::Unreachable(to));
                if m.msg_type == MessageType::Snap {
                    let _ = shared
                        .events
                        .send(TransportEvent::SnapshotStatus { to, ok: false });
                }
                continue;
            };
            if m.msg_type == MessageType::Snap {
                peer.send_snapshot(shared, m);
            } else {
                peer.enqueue(shared, m);
            }
        }
    }

    /// Adds a peer, or changes its address, at runtime; a no-op for this node
    /// itself or for a peer already at that address. A node removed earlier
    /// is accepted again.
    ///
    /// # Errors
    /// [`TransportError::InvalidAddr`] if `addr` is malformed.
    pub fn add_peer(&self, id: NodeId, addr: &str) -> Result<(), TransportError> {
        let addr = peer_addr(addr)?;
        if id == self.shared.id {
            return Ok(());
        }
        lock(&self.shared.removed).remove(&id);
        let mut peers = lock(&self.shared.peers);
        if let Some(old) = peers.get(&id) {
            if old.addr() == addr {
                return Ok(());
            }
            old.stop();
        }
        tracing::info!(peer = id, %addr, "adding peer");
        peers.insert(id, PeerHandle::spawn(&self.shared, id, addr));
        Ok(())
    }

    /// Removes a peer: closes the connection to it and every connection from
    /// it, fails its snapshots in flight, and refuses it from now on.
    pub fn remove_peer(&self, id: NodeId) {
        if id == self.shared.id {
            return;
        }
        tracing::info!(peer = id, "removing peer");
        // `removed` first, so a connection from the peer racing with this
        // call is refused at registration if not at the handshake.
        lock(&self.shared.removed).insert(id);
        if let Some(peer) = lock(&self.shared.peers).remove(&id) {
            peer.stop();
        }
        if let Some(conns) = lock(&self.shared.inbound_conns).remove(&id) {
            conns.all.cancel();
        }
    }

    /// The ids and addresses of the current peers.
    pub fn peers(&self) -> BTreeMap<NodeId, String> {
        lock(&self.shared.peers)
            .iter()
            .map(|(id, p)| (*id, p.addr().to_string()))
            .collect()
    }

    /// A snapshot of the transport's counters, for `/stats`.
    pub fn stats(&self) -> TransportStats {
        let links = lock(&self.shared.peers)
            .iter()
            .map(|(id, p)| (*id, (p.addr().to_string(), p.is_connected())))
            .collect();
        self.shared.counters.snapshot(links)
    }

    /// Waits until every task of the transport has ended. Call it after
    /// cancelling the shutdown token (or it waits for that).
    pub async fn closed(&self) {
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }
}

/// Locks a mutex, ignoring poisoning: the maps it guards stay consistent
/// across a panic because each update is a single insert or remove.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// State shared by the transport's handle and its tasks.
pub(crate) struct Shared {
    id: NodeId,
    cluster_id: u64,
    local_addr: Option<SocketAddr>,
    /// Limits and timings; `cfg.peers` is only the initial set (see `peers`).
    cfg: TransportConfig,
    /// The runtime tasks are spawned on, also from `send` on a plain thread.
    handle: Handle,
    tracker: TaskTracker,
    /// Cancelled by the caller's token or when the `Transport` is dropped.
    shutdown: CancellationToken,
    events: mpsc::UnboundedSender<TransportEvent>,
    inbound: mpsc::Sender<Message>,
    /// The current peers. Invariant: never contains `id`.
    peers: Mutex<HashMap<NodeId, PeerHandle>>,
    /// Nodes refused at the handshake since they were removed.
    removed: Mutex<HashSet<NodeId>>,
    /// The accepted connections per remote node.
    inbound_conns: Mutex<HashMap<NodeId, InboundConns>>,
    next_conn_id: AtomicU64,
    counters: Counters,
}

/// The accepted connections of one remote node.
struct InboundConns {
    /// Parent of every connection's token: cancelled when the node is removed.
    all: CancellationToken,
    /// The current stream connection (id, token); a newer one cancels it.
    stream: Option<(u64, CancellationToken)>,
}

impl Shared {
    fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn_on(task, &self.handle);
    }

    /// Registers an accepted connection from `from`; `None` if `from` was
    /// removed. Returns the connection's id and the token that closes it.
    fn register_inbound(&self, from: NodeId, kind: ConnKind) -> Option<(u64, CancellationToken)> {
        let removed = lock(&self.removed);
        if removed.contains(&from) {
            return None;
        }
        let mut conns = lock(&self.inbound_conns);
        let entry = conns.entry(from).or_insert_with(|| InboundConns {
            all: self.shutdown.child_token(),
            stream: None,
        });
        let conn_id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let token = entry.all.child_token();
        if kind == ConnKind::Stream {
            if let Some((_, previous)) = entry.stream.replace((conn_id, token.clone())) {
                tracing::debug!(peer = from, "new stream replaces the previous one");
                previous.cancel();
            }
        }
        Some((conn_id, token))
    }

    /// Forgets a stream connection that ended, unless a newer one replaced it.
    fn unregister_inbound(&self, from: NodeId, conn_id: u64) {
        let mut conns = lock(&self.inbound_conns);
        if let Some(entry) = conns.get_mut(&from) {
            if entry.stream.as_ref().is_some_and(|(id, _)| *id == conn_id) {
                entry.stream = None;
            }
        }
    }

    fn is_removed(&self, id: NodeId) -> bool {
        lock(&self.removed).contains(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addr_accepts_host_port_and_http_urls() {
        assert_eq!(peer_addr("127.0.0.1:12379").unwrap(), "127.0.0.1:12379");
        assert_eq!(
            peer_addr("http://127.0.0.1:12379").unwrap(),
            "127.0.0.1:12379"
        );
        assert_eq!(peer_addr("http://node-1:2380/").unwrap(), "node-1:2380");
        assert_eq!(peer_addr(" localhost:1 ").unwrap(), "localhost:1");
        assert_eq!(peer_addr("[::1]:2380").unwrap(), "[::1]:2380");
    }

    #[test]
    fn peer_addr_rejects_malformed_addresses() {
        for bad in [
            "",
            "127.0.0.1",
            ":2380",
            "host:0",
            "host:65536",
            "host:port",
            "https://host:1",
            "http://host:1/path",
        ] {
            assert!(peer_addr(bad).is_err(), "{bad:?} accepted");
        }
    }
}
