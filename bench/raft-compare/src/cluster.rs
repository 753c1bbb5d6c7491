//! What every library driver implements, and the pieces they share.
//!
//! A driver owns a 3-node in-memory cluster driven from one thread. Node 1 is
//! elected leader in `new()`; after that the harness only proposes on the leader
//! and runs the Ready loop to quiescence. Both drivers must handle a Ready the
//! same way (persist entries and hard state into the library's own MemStorage,
//! send messages by pushing them on one FIFO queue, apply committed entries,
//! advance), so that the comparison measures the libraries, not the drivers.

/// Largest append message, in bytes of entries (etcd's raftexample uses the same 1 MiB).
/// A batch of 1024 100-byte entries fits in one message.
pub const MAX_SIZE_PER_MSG: u64 = 1024 * 1024;
/// Append messages in flight per follower before the leader waits for acks.
pub const MAX_INFLIGHT_MSGS: usize = 256;
/// Election and heartbeat timeouts in ticks; no tick happens after the election.
pub const ELECTION_TICK: usize = 10;
/// See [`ELECTION_TICK`].
pub const HEARTBEAT_TICK: usize = 1;
/// Node ids of the cluster; node `i` lives at index `i - 1`, node 1 is the leader.
pub const VOTERS: [u64; 3] = [1, 2, 3];

/// How a message travels from one node to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Move the message as is: the receiver shares the entries' payload buffers
    /// with the sender (cheapest; isolates the library's own cost).
    Share,
    /// Give every entry payload a fresh buffer on delivery, as decoding from a
    /// wire would: each replica then owns its copy, so memory per replica is real.
    Copy,
}

impl Delivery {
    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Delivery::Share => "share",
            Delivery::Copy => "copy",
        }
    }
}

/// How the harness sets a cluster up; the same for every library.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// How messages travel between nodes.
    pub delivery: Delivery,
    /// Turn on the library's option, if it has one, that merges the appends
    /// queued for one follower into one message (raft-rs: `Config::batch_append`).
    /// Without it raft-rs sends one MsgAppend per proposal to each follower,
    /// which roughly halves its throughput at batch 64.
    pub merge_appends: bool,
}

/// What one node applied: normal entries with a payload (the leader's empty
/// entry of its term is not a proposal and is not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Proposals applied.
    pub count: u64,
    /// Wrapping sum of the little-endian u64 in each payload's first 8 bytes
    /// (the harness stamps a sequence number there), so every applied payload is
    /// read and the harness can check each node applied exactly what was proposed.
    pub checksum: u64,
    /// Sum of payload lengths.
    pub bytes: u64,
}

impl Applied {
    /// Applies one payload.
    #[inline]
    pub fn apply(&mut self, data: &[u8]) {
        let mut seq = [0u8; 8];
        let n = data.len().min(8);
        seq[..n].copy_from_slice(&data[..n]);
        self.count += 1;
        self.checksum = self.checksum.wrapping_add(u64::from_le_bytes(seq));
        self.bytes += data.len() as u64;
    }
}

/// A 3-node cluster of one library, driven in one thread.
pub trait Cluster: Sized {
    /// Library name in reports and on the command line.
    const NAME: &'static str;

    /// Builds the three nodes (voters 1, 2, 3, empty logs) and elects node 1:
    /// campaign on node 1, then run the Ready loop until quiescent.
    ///
    /// # Panics
    ///
    /// If node 1 is not leader afterwards.
    fn new(setup: Setup) -> Self;

    /// Proposes one entry with a copy of `data` on the leader (each proposal
    /// owns its payload, as a real application's would).
    fn propose(&mut self, data: &[u8]);

    /// Runs Ready handling on every node and delivers the messages, round after
    /// round, until no node has a Ready and no message is queued. Returns the
    /// proposals the leader applied during this call.
    fn run_until_quiescent(&mut self) -> u64;

    /// What each node (1, 2, 3) has applied so far.
    fn applied(&self) -> [Applied; 3];

    /// Drops every log entry below each node's applied index from its storage.
    /// Called only when quiescent, when every follower has every entry, so no
    /// snapshot is ever needed.
    fn compact(&mut self);
}
