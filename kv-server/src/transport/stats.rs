//! Transport counters, and the snapshot of them served by `/stats`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use raft_core::NodeId;
use serde::Serialize;

/// What the transport did with one peer, since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeerStats {
    /// The peer's address, if it is a configured peer.
    pub addr: Option<String>,
    /// Whether the outbound stream to the peer is established.
    pub connected: bool,
    /// Raft messages written to the peer (snapshots included).
    pub msgs_sent: u64,
    /// Bytes written to the peer, frame headers included.
    pub bytes_sent: u64,
    /// Batches written to the stream, each with one flush: `msgs_sent /
    /// batches_sent` is the batching factor.
    pub batches_sent: u64,
    /// Raft messages received from the peer and handed to the node.
    pub msgs_received: u64,
    /// Bytes read from the peer, frame headers included.
    pub bytes_received: u64,
    /// Messages to the peer dropped: queue full, peer down, or unencodable.
    pub dropped_sent: u64,
    /// Messages from the peer dropped because the node's inbound queue was full.
    pub dropped_received: u64,
    /// Outbound stream connections established (the first one included).
    pub connects: u64,
    /// Outbound dials or handshakes that failed (refusals included).
    pub connect_failures: u64,
    /// `Unreachable` events reported for the peer.
    pub unreachable_reports: u64,
    /// Snapshots the peer acknowledged.
    pub snapshots_sent: u64,
    /// Snapshots that could not be delivered to the peer.
    pub snapshots_failed: u64,
    /// Snapshots received from the peer.
    pub snapshots_received: u64,
}

/// A snapshot of the transport's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TransportStats {
    /// Per peer: every configured peer, and every node that ever connected.
    pub peers: BTreeMap<NodeId, PeerStats>,
    /// Messages dropped because their `to` was not a known peer.
    pub dropped_unknown_peer: u64,
    /// Inbound connections refused at the handshake (other cluster, wrong
    /// node, removed node, bad version).
    pub refused_handshakes: u64,
    /// Inbound connections closed for a protocol violation (garbage or
    /// oversized frame, unexpected frame, misaddressed message).
    pub protocol_errors: u64,
}

/// The live counters of one peer. Relaxed atomics: they are statistics, read
/// without any ordering promise against each other.
#[derive(Debug, Default)]
pub(crate) struct PeerCounters {
    pub msgs_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub batches_sent: AtomicU64,
    pub msgs_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub dropped_sent: AtomicU64,
    pub dropped_received: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub unreachable_reports: AtomicU64,
    pub snapshots_sent: AtomicU64,
    pub snapshots_failed: AtomicU64,
    pub snapshots_received: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl PeerCounters {
    fn snapshot(&self) -> PeerStats {
        PeerStats {
            addr: None,
            connected: false,
            msgs_sent: get(&self.msgs_sent),
            bytes_sent: get(&self.bytes_sent),
            batches_sent: get(&self.batches_sent),
            msgs_received: get(&self.msgs_received),
            bytes_received: get(&self.bytes_received),
            dropped_sent: get(&self.dropped_sent),
            dropped_received: get(&self.dropped_received),
            connects: get(&self.connects),
            connect_failures: get(&self.connect_failures),
            unreachable_reports: get(&self.unreachable_reports),
            snapshots_sent: get(&self.snapshots_sent),
            snapshots_failed: get(&self.snapshots_failed),
            snapshots_received: get(&self.snapshots_received),
        }
    }
}

/// All counters of a transport.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    // Entries are never removed, so a removed peer's history stays in /stats
    // and a counter handed to a task stays the one reported.
    peers: Mutex<BTreeMap<NodeId, Arc<PeerCounters>>>,
    pub dropped_unknown_peer: AtomicU64,
    pub refused_handshakes: AtomicU64,
    pub protocol_errors: AtomicU64,
}

impl Counters {
    /// The counters of `id`, created on first use.
    pub fn peer(&self, id: NodeId) -> Arc<PeerCounters> {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.entry(id).or_default().clone()
    }

    /// Reads every counter; `links` gives the address and connection state of
    /// the configured peers.
    pub fn snapshot(&self, links: BTreeMap<NodeId, (String, bool)>) -> TransportStats {
        let mut peers: BTreeMap<NodeId, PeerStats> = {
            let counters = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            counters.iter().map(|(id, c)| (*id, c.snapshot())).collect()
        };
        for (id, (addr, connected)) in links {
            let stats = peers.entry(id).or_default();
            stats.addr = Some(addr);
            stats.connected = connected;
        }
        TransportStats {
            peers,
            dropped_unknown_peer: get(&self.dropped_unknown_peer),
            refused_handshakes: get(&self.refused_handshakes),
            protocol_errors: get(&self.protocol_errors),
        }
    }
}
