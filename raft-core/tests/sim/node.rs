//! One simulated server: its raft node (or its disk, while it is down), the
//! Ready it is handling, and the application state machine.

use bytes::Bytes;
use raft_core::{
    ConfState, Entry, HardState, MemStorage, RawNode, ReadState, Ready, Snapshot, StateRole,
};

use super::rng::splitmix64;

/// The life cycle of a server.
pub enum NodeState {
    /// A spare id, not started yet: started (with an empty disk) when a
    /// membership change first proposes to add it.
    Idle,
    /// Running. Its `MemStorage` (inside the `RawNode`) is the disk: the
    /// harness writes to it only what a Ready asked to persist, so it holds
    /// exactly what survives a crash.
    Up(Box<RawNode<MemStorage>>),
    /// Crashed: only the disk is left.
    Down(Box<MemStorage>),
    /// Removed from the cluster and shut down for good.
    Stopped,
}

/// A Ready taken from the node and not yet persisted.
pub struct Pending {
    pub rd: Ready,
    /// The round at which the disk write completes.
    pub due: u64,
}

/// The application's state machine: a running hash over every applied entry
/// (index, term, payload), plus the membership it has applied.
///
/// Durability (a judgement call; the alternative was to persist the state
/// machine with every apply): the state machine is volatile. What survives
/// a crash is the newer of (a) the disk's raft snapshot, whose data is this
/// struct encoded, and (b) a checkpoint the application writes after some
/// Readies. A restarted node passes that state's `applied` as
/// `Config::applied` and raft replays the committed entries after it, so
/// the replay path (and re-applying configuration changes) is exercised on
/// every restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppState {
    pub applied: u64,
    pub hash: u64,
    /// The index of the last configuration change applied (not stale; see
    /// `Sim::apply_entry`). Proposals carry the `conf_index` they were
    /// computed from, and one computed from an older configuration is
    /// applied as a no-op: optimistic concurrency, as etcd's server
    /// validates a change against its current membership before applying.
    pub conf_index: u64,
    /// The membership as of `applied`.
    pub conf: ConfState,
}

impl AppState {
    /// The snapshot payload: `applied | hash | conf_index`, little endian
    /// (the membership travels in the snapshot's metadata).
    pub fn encode(&self) -> Bytes {
        let mut v = Vec::with_capacity(24);
        v.extend_from_slice(&self.applied.to_le_bytes());
        v.extend_from_slice(&self.hash.to_le_bytes());
        v.extend_from_slice(&self.conf_index.to_le_bytes());
        Bytes::from(v)
    }

    /// The state a snapshot holds. The index-0 snapshot of a bootstrapped
    /// (or empty) disk holds nothing but the initial membership.
    pub fn decode(snap: &Snapshot) -> Result<AppState, String> {
        let md = &snap.metadata;
        if md.index == 0 {
            return Ok(AppState {
                conf: md.conf_state.clone(),
                ..AppState::default()
            });
        }
        let d = &snap.data;
        if d.len() != 24 {
            return Err(format!(
                "snapshot {}/{} carries {} bytes of data, not 24",
                md.index,
                md.term,
                d.len()
            ));
        }
        let word = |i: usize| u64::from_le_bytes(d[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let st = AppState {
            applied: word(0),
            hash: word(1),
            conf_index: word(2),
            conf: md.conf_state.clone(),
        };
        if st.applied != md.index {
            return Err(format!(
                "snapshot at index {} holds a state machine at {}",
                md.index, st.applied
            ));
        }
        Ok(st)
    }
}

/// One server.
pub struct Node {
    pub id: u64,
    /// Bumped by every restart; messages and reports are tagged with it.
    pub incarnation: u64,
    pub state: NodeState,
    pub pending: Option<Pending>,
    pub app: AppState,
    /// The application's last durable checkpoint of `app`.
    pub checkpoint: AppState,
    /// Read states received, waiting for `app.applied` to reach their index.
    pub reads: Vec<ReadState>,
    /// The commit index last seen on this node in this incarnation.
    pub last_committed: u64,
    /// (term, role, leader) last seen, to trace changes.
    pub role: (u64, StateRole, u64),
    /// This node ticks in rounds where `(round + tick_phase) %
    /// rounds_per_tick == 0`: nodes do not tick in lock step.
    pub tick_phase: u64,
    /// Whether its storage currently refuses to hand out snapshots.
    pub snapshot_unavailable: bool,
    /// The last synced hard state, while later ones were written without a
    /// sync (a crash may revert to it).
    pub unsynced_hs: Option<HardState>,
}

impl Node {
    pub fn new(id: u64, tick_phase: u64) -> Node {
        Node {
            id,
            incarnation: 0,
            state: NodeState::Idle,
            pending: None,
            app: AppState::default(),
            checkpoint: AppState::default(),
            reads: Vec::new(),
            last_committed: 0,
            role: (0, StateRole::Follower, 0),
            tick_phase,
            snapshot_unavailable: false,
            unsynced_hs: None,
        }
    }

    pub fn raw(&self) -> Option<&RawNode<MemStorage>> {
        match &self.state {
            NodeState::Up(raw) => Some(raw),
            _ => None,
        }
    }

    pub fn raw_mut(&mut self) -> Option<&mut RawNode<MemStorage>> {
        match &mut self.state {
            NodeState::Up(raw) => Some(raw),
            _ => None,
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self.state, NodeState::Up(_))
    }

    /// A one-line summary for failure reports.
    pub fn describe(&self) -> String {
        match &self.state {
            NodeState::Idle => format!("node {}: idle", self.id),
            NodeState::Stopped => format!("node {}: stopped (removed)", self.id),
            NodeState::Down(disk) => format!(
                "node {}: down; disk hs {:?}, log [{:?}, {:?}], checkpoint applied {}",
                self.id,
                disk.hard_state(),
                raft_core::Storage::first_index(&**disk),
                raft_core::Storage::last_index(&**disk),
                self.checkpoint.applied
            ),
            NodeState::Up(raw) => {
                let r = raw.raft();
                let log = &r.raft_log;
                format!(
                    "node {} (inc {}): {} term {} lead {} | log [{}, {}] committed {} \
                     applied {} app {} | conf {:?} | pending ready: {}",
                    self.id,
                    self.incarnation,
                    r.state(),
                    r.term,
                    r.leader_id(),
                    log.first_index(),
                    log.last_index(),
                    log.committed(),
                    log.applied(),
                    self.app.applied,
                    r.tracker().conf_state(),
                    self.pending.is_some()
                )
            }
        }
    }
}

/// A digest of an entry's type and payload (FNV-1a, then mixed).
pub fn digest(e: &Entry) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    h ^= e.entry_type as u64;
    h = h.wrapping_mul(0x100_0000_01B3);
    for &b in e.data.iter() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01B3);
    }
    let mut s = h;
    splitmix64(&mut s)
}

/// The state machine's hash after applying `e` on top of `hash`.
pub fn apply_hash(hash: u64, e: &Entry) -> u64 {
    let mut s = hash ^ e.index.rotate_left(17) ^ e.term.rotate_left(41) ^ digest(e);
    splitmix64(&mut s)
}
