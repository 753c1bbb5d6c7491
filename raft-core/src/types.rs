//! The data types raft-core exchanges with the application: log entries, hard
//! state, configuration state, snapshots, messages and configuration changes.
//!
//! They are plain Rust structs and enums. With the default `serde` feature they
//! derive `Serialize`/`Deserialize`, so any codec (the server uses postcard) can
//! carry them between nodes and onto disk. Payloads are [`Bytes`], so handing
//! the same entry to several followers clones a reference count, not the data.

use bytes::Bytes;
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

/// The identifier of a node in a cluster. Zero means "none".
pub type NodeId = u64;

/// The node id that means "no node" (no leader, no vote).
pub const NONE: NodeId = 0;

/// The identifier of a log entry: its term and index.
///
/// Raft's log matching property (Raft thesis §3.5) says two logs that hold an
/// entry with the same `EntryId` are identical up to and including it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct EntryId {
    /// The term of the entry.
    pub term: u64,
    /// The index of the entry.
    pub index: u64,
}

impl EntryId {
    /// Builds an id from a term and an index.
    pub const fn new(term: u64, index: u64) -> Self {
        EntryId { term, index }
    }
}

/// What an [`Entry`] carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum EntryType {
    /// Application data (may be empty: a new leader appends an empty entry).
    #[default]
    Normal,
    /// An encoded [`ConfChange`].
    ConfChange,
    /// An encoded [`ConfChangeV2`].
    ConfChangeV2,
}

/// A log entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Entry {
    /// The term in which a leader created the entry.
    pub term: u64,
    /// The position of the entry in the log (the first entry has index 1).
    pub index: u64,
    /// What `data` holds.
    pub entry_type: EntryType,
    /// The payload.
    pub data: Bytes,
}

impl Entry {
    /// A normal entry with the given payload.
    pub fn new(term: u64, index: u64, data: impl Into<Bytes>) -> Self {
        Entry {
            term,
            index,
            entry_type: EntryType::Normal,
            data: data.into(),
        }
    }

    /// The id (term, index) of the entry.
    pub fn id(&self) -> EntryId {
        EntryId::new(self.term, self.index)
    }

    /// The size the entry counts for in size limits (`max_size_per_msg`,
    /// `max_committed_size_per_ready`, inflight bytes): its payload plus a fixed
    /// per-entry overhead, so that empty entries are not free.
    pub fn size(&self) -> u64 {
        self.data.len() as u64 + ENTRY_OVERHEAD
    }

    /// The size counted against `max_uncommitted_entries_size`: the payload
    /// only (etcd's `payloadSize`), so that empty entries appended by a new
    /// leader never make a proposal fail.
    pub fn payload_size(&self) -> u64 {
        self.data.len() as u64
    }
}

/// The fixed per-entry overhead counted by [`Entry::size`] (term, index, type).
pub const ENTRY_OVERHEAD: u64 = 16;

/// Sums [`Entry::size`] over a slice.
pub fn entries_size(ents: &[Entry]) -> u64 {
    ents.iter().map(Entry::size).sum()
}

/// Sums [`Entry::payload_size`] over a slice.
pub fn payloads_size(ents: &[Entry]) -> u64 {
    ents.iter().map(Entry::payload_size).sum()
}

/// Returns the longest prefix of `ents` whose total [`Entry::size`] is at most
/// `max_size`, but at least one entry if `ents` is not empty (etcd's
/// `limitSize`): a single entry over the limit is still sent.
pub fn limit_size(ents: &mut Vec<Entry>, max_size: u64) {
    if ents.is_empty() {
        return;
    }
    let mut size = ents[0].size();
    let mut limit = 1;
    while limit < ents.len() {
        size += ents[limit].size();
        if size > max_size {
            break;
        }
        limit += 1;
    }
    ents.truncate(limit);
}

/// The state a node must persist before it sends the messages of a Ready:
/// the current term, the vote cast in it, and the highest known commit index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct HardState {
    /// The current term.
    pub term: u64,
    /// The node voted for in `term`, or [`NONE`].
    pub vote: NodeId,
    /// The highest index known to be committed.
    pub commit: u64,
}

impl HardState {
    /// True for the all-zero hard state of a node that never ran.
    pub fn is_empty(&self) -> bool {
        *self == HardState::default()
    }
}

/// The membership of a cluster, as stored in snapshots and returned by
/// `apply_conf_change`.
///
/// Outside a joint configuration `voters_outgoing` and `learners_next` are
/// empty and `auto_leave` is false.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ConfState {
    /// The voters of the incoming configuration (the only one when not joint).
    pub voters: Vec<NodeId>,
    /// The learners.
    pub learners: Vec<NodeId>,
    /// The voters of the outgoing configuration while joint.
    pub voters_outgoing: Vec<NodeId>,
    /// Nodes that are voters in the outgoing configuration and become learners
    /// when the joint configuration is left.
    pub learners_next: Vec<NodeId>,
    /// Whether the joint configuration is left automatically once it commits.
    pub auto_leave: bool,
}

impl ConfState {
    /// A configuration of the given voters, no learners, not joint.
    pub fn with_voters(voters: impl Into<Vec<NodeId>>) -> Self {
        ConfState {
            voters: voters.into(),
            ..Default::default()
        }
    }

    /// Compares two ConfStates ignoring the order of ids in each list.
    pub fn equivalent(&self, other: &ConfState) -> bool {
        fn sorted(v: &[NodeId]) -> Vec<NodeId> {
            let mut v = v.to_vec();
            v.sort_unstable();
            v
        }
        sorted(&self.voters) == sorted(&other.voters)
            && sorted(&self.learners) == sorted(&other.learners)
            && sorted(&self.voters_outgoing) == sorted(&other.voters_outgoing)
            && sorted(&self.learners_next) == sorted(&other.learners_next)
            && self.auto_leave == other.auto_leave
    }
}

/// What a snapshot covers: the last entry folded into it and the membership
/// at that point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct SnapshotMetadata {
    /// The membership as of `index`.
    pub conf_state: ConfState,
    /// The index of the last entry the snapshot contains.
    pub index: u64,
    /// The term of that entry.
    pub term: u64,
}

/// A snapshot of the application state, with its metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Snapshot {
    /// The application's serialized state; opaque to raft.
    pub data: Bytes,
    /// What the snapshot covers.
    pub metadata: SnapshotMetadata,
}

impl Snapshot {
    /// True for the empty snapshot (index 0).
    pub fn is_empty(&self) -> bool {
        self.metadata.index == 0
    }

    /// The id of the last entry the snapshot covers.
    pub fn id(&self) -> EntryId {
        EntryId::new(self.metadata.term, self.metadata.index)
    }
}

/// The kinds of [`Message`].
///
/// Local messages (`Hup`, `Beat`, `Unreachable`, `SnapStatus`, `CheckQuorum`)
/// are only ever stepped into the local node, never sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum MessageType {
    /// Local: start an election.
    #[default]
    Hup,
    /// Local: the leader should send heartbeats.
    Beat,
    /// A proposal of entries (local, or forwarded by a follower to the leader).
    Prop,
    /// Append entries (leader to follower).
    App,
    /// The answer to `App`.
    AppResp,
    /// Request a vote.
    Vote,
    /// The answer to `Vote`.
    VoteResp,
    /// Install a snapshot (leader to follower).
    Snap,
    /// Heartbeat (leader to follower), carrying the commit index.
    Heartbeat,
    /// The answer to `Heartbeat`.
    HeartbeatResp,
    /// Local: the application could not reach a peer.
    Unreachable,
    /// Local: the outcome of sending a snapshot.
    SnapStatus,
    /// Local: the leader should check it still hears from a quorum.
    CheckQuorum,
    /// Ask the leader to transfer leadership (local, or forwarded).
    TransferLeader,
    /// Tells the transfer target to campaign at once.
    TimeoutNow,
    /// A linearizable read request (local, or forwarded to the leader).
    ReadIndex,
    /// The leader's answer to a forwarded `ReadIndex`.
    ReadIndexResp,
    /// Request a pre-vote (Raft thesis §9.6).
    PreVote,
    /// The answer to `PreVote`.
    PreVoteResp,
}

impl MessageType {
    /// True for messages that are only stepped locally and never sent.
    pub fn is_local(self) -> bool {
        matches!(
            self,
            MessageType::Hup
                | MessageType::Beat
                | MessageType::Unreachable
                | MessageType::SnapStatus
                | MessageType::CheckQuorum
        )
    }

    /// True for the answers to requests (they never start a new term for the
    /// receiver on their own).
    pub fn is_response(self) -> bool {
        matches!(
            self,
            MessageType::AppResp
                | MessageType::VoteResp
                | MessageType::HeartbeatResp
                | MessageType::Unreachable
                | MessageType::ReadIndexResp
                | MessageType::PreVoteResp
        )
    }

    /// The response type that answers a vote request of this type.
    ///
    /// # Panics
    /// If `self` is not `Vote` or `PreVote`.
    pub fn vote_response(self) -> MessageType {
        match self {
            MessageType::Vote => MessageType::VoteResp,
            MessageType::PreVote => MessageType::PreVoteResp,
            other => panic!("not a vote message: {other:?}"),
        }
    }
}

/// A message between raft nodes (or a local input stepped into one).
///
/// Which fields are meaningful depends on `msg_type`; unused ones are zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Message {
    /// The kind of message.
    pub msg_type: MessageType,
    /// The receiver.
    pub to: NodeId,
    /// The sender.
    pub from: NodeId,
    /// The sender's term (0 for local messages and proposals).
    pub term: u64,
    /// `App`: the term of the entry at `index`. Votes: the candidate's last
    /// term. `Snap`: unused.
    pub log_term: u64,
    /// `App`: the index the entries follow. `AppResp`: the highest index
    /// matched, or the rejected index. Votes: the candidate's last index.
    pub index: u64,
    /// Entries carried by `App` and `Prop`.
    pub entries: Vec<Entry>,
    /// The sender's commit index (`App`, `Heartbeat`).
    pub commit: u64,
    /// The snapshot carried by `Snap`. Boxed: a snapshot's metadata is
    /// larger than all the other fields together, and only `Snap` carries
    /// one, so inline it would make every message (moved through each
    /// Ready and the application's queues) more than twice as big.
    pub snapshot: Option<Box<Snapshot>>,
    /// Whether a response rejects the request.
    pub reject: bool,
    /// A rejecting `AppResp`: the follower's hint of where its log may match
    /// (its last index or an index of lower term), for fast backtracking.
    pub reject_hint: u64,
    /// Opaque context: read request context for `ReadIndex`, the campaign type
    /// for votes started by a leader transfer.
    pub context: Bytes,
}

impl Message {
    /// A message of the given type from one node to another, all else zero.
    pub fn new(msg_type: MessageType, from: NodeId, to: NodeId) -> Self {
        Message {
            msg_type,
            from,
            to,
            ..Default::default()
        }
    }
}

/// The role of a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum StateRole {
    /// Follows a leader (or waits for one).
    #[default]
    Follower,
    /// Runs a pre-vote round before campaigning (Raft thesis §9.6).
    PreCandidate,
    /// Campaigns for leadership.
    Candidate,
    /// Leads the cluster.
    Leader,
}

impl std::fmt::Display for StateRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StateRole::Follower => "follower",
            StateRole::PreCandidate => "pre-candidate",
            StateRole::Candidate => "candidate",
            StateRole::Leader => "leader",
        })
    }
}

/// Volatile state worth reporting to the application (not persisted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct SoftState {
    /// The known leader, or [`NONE`].
    pub leader_id: NodeId,
    /// This node's role.
    pub raft_state: StateRole,
}

/// The answer to a `read_index` request: once the application has applied up
/// to `index`, a read for `request_ctx` is linearizable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ReadState {
    /// The commit index at the time the read was confirmed.
    pub index: u64,
    /// The context the application passed to `read_index`.
    pub request_ctx: Bytes,
}

/// The kind of a single membership change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum ConfChangeType {
    /// Add a voter (or promote a learner).
    #[default]
    AddNode,
    /// Remove a node.
    RemoveNode,
    /// No change to membership (carries an application context only).
    UpdateNode,
    /// Add a learner (or demote a voter).
    AddLearnerNode,
}

/// A single membership change (the V1 API).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ConfChange {
    /// What to do.
    pub change_type: ConfChangeType,
    /// The node it applies to.
    pub node_id: NodeId,
    /// Opaque application context (kv-server puts the peer address here).
    pub context: Bytes,
}

/// One change inside a [`ConfChangeV2`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ConfChangeSingle {
    /// What to do.
    pub change_type: ConfChangeType,
    /// The node it applies to.
    pub node_id: NodeId,
}

/// How a [`ConfChangeV2`] moves between configurations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum ConfChangeTransition {
    /// Simple change if possible (at most one voter changes), else joint
    /// consensus left automatically.
    #[default]
    Auto,
    /// Joint consensus, left automatically once the joint config commits.
    JointImplicit,
    /// Joint consensus, left only by an explicit empty `ConfChangeV2`.
    JointExplicit,
}

/// A membership change of any number of nodes (the V2 API). An empty change
/// list leaves a joint configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ConfChangeV2 {
    /// How to move between configurations.
    pub transition: ConfChangeTransition,
    /// The changes.
    pub changes: Vec<ConfChangeSingle>,
    /// Opaque application context.
    pub context: Bytes,
}

impl ConfChangeV2 {
    /// Whether this change enters a joint configuration, and if so whether it
    /// is left automatically (etcd's `EnterJoint`).
    pub fn enter_joint(&self) -> Option<bool> {
        if self.transition != ConfChangeTransition::Auto || self.changes.len() > 1 {
            let auto_leave = matches!(
                self.transition,
                ConfChangeTransition::Auto | ConfChangeTransition::JointImplicit
            );
            Some(auto_leave)
        } else {
            None
        }
    }

    /// Whether this is the empty change that leaves a joint configuration.
    pub fn leave_joint(&self) -> bool {
        self.transition == ConfChangeTransition::Auto && self.changes.is_empty()
    }
}

impl From<ConfChange> for ConfChangeV2 {
    fn from(cc: ConfChange) -> Self {
        ConfChangeV2 {
            transition: ConfChangeTransition::Auto,
            changes: vec![ConfChangeSingle {
                change_type: cc.change_type,
                node_id: cc.node_id,
            }],
            context: cc.context,
        }
    }
}

/// Either kind of configuration change, as accepted by `propose_conf_change`
/// and `apply_conf_change`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfChangeI {
    /// A V1 change.
    V1(ConfChange),
    /// A V2 change.
    V2(ConfChangeV2),
}

impl ConfChangeI {
    /// The change as a V2 change.
    pub fn as_v2(&self) -> ConfChangeV2 {
        match self {
            ConfChangeI::V1(cc) => cc.clone().into(),
            ConfChangeI::V2(cc) => cc.clone(),
        }
    }

    /// The entry type and encoded payload that carry this change in the log.
    pub fn to_entry_data(&self) -> (EntryType, Bytes) {
        match self {
            ConfChangeI::V1(cc) => (EntryType::ConfChange, cc.encode()),
            ConfChangeI::V2(cc) => (EntryType::ConfChangeV2, cc.encode()),
        }
    }

    /// Decodes the change carried by a `ConfChange` or `ConfChangeV2` entry.
    ///
    /// # Errors
    /// [`DecodeError`] if the entry is a normal entry or its data is malformed.
    pub fn from_entry(entry: &Entry) -> Result<ConfChangeI, DecodeError> {
        match entry.entry_type {
            EntryType::Normal => Err(DecodeError("not a configuration change entry")),
            EntryType::ConfChange => ConfChange::decode(&entry.data).map(ConfChangeI::V1),
            // Empty data is the empty change that leaves a joint configuration
            // (what a leader proposes to auto-leave).
            EntryType::ConfChangeV2 if entry.data.is_empty() => {
                Ok(ConfChangeI::V2(ConfChangeV2::default()))
            }
            EntryType::ConfChangeV2 => ConfChangeV2::decode(&entry.data).map(ConfChangeI::V2),
        }
    }
}

impl From<ConfChange> for ConfChangeI {
    fn from(cc: ConfChange) -> Self {
        ConfChangeI::V1(cc)
    }
}

impl From<ConfChangeV2> for ConfChangeI {
    fn from(cc: ConfChangeV2) -> Self {
        ConfChangeI::V2(cc)
    }
}

/// A configuration change entry whose payload could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed configuration change: {0}")]
pub struct DecodeError(pub &'static str);

// The log encoding of configuration changes. raft-core must read them back
// from entries itself (to track pending changes), so it carries its own tiny
// format instead of depending on a codec crate:
//
//   ConfChange:   u8 type | u64 LE node_id | context bytes (rest)
//   ConfChangeV2: u8 transition | u32 LE count | count x (u8 type, u64 LE id)
//                 | context bytes (rest)

fn change_type_byte(t: ConfChangeType) -> u8 {
    match t {
        ConfChangeType::AddNode => 0,
        ConfChangeType::RemoveNode => 1,
        ConfChangeType::UpdateNode => 2,
        ConfChangeType::AddLearnerNode => 3,
    }
}

fn change_type_from(b: u8) -> Result<ConfChangeType, DecodeError> {
    Ok(match b {
        0 => ConfChangeType::AddNode,
        1 => ConfChangeType::RemoveNode,
        2 => ConfChangeType::UpdateNode,
        3 => ConfChangeType::AddLearnerNode,
        _ => return Err(DecodeError("unknown change type")),
    })
}

fn read_u8(buf: &mut &[u8]) -> Result<u8, DecodeError> {
    let (&b, rest) = buf.split_first().ok_or(DecodeError("truncated"))?;
    *buf = rest;
    Ok(b)
}

fn read_u64(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    if buf.len() < 8 {
        return Err(DecodeError("truncated"));
    }
    let (head, rest) = buf.split_at(8);
    *buf = rest;
    Ok(u64::from_le_bytes(head.try_into().expect("8 bytes")))
}

impl ConfChange {
    /// Encodes the change as the payload of a `ConfChange` entry.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(9 + self.context.len());
        out.push(change_type_byte(self.change_type));
        out.extend_from_slice(&self.node_id.to_le_bytes());
        out.extend_from_slice(&self.context);
        out.into()
    }

    /// Decodes the payload of a `ConfChange` entry.
    ///
    /// # Errors
    /// [`DecodeError`] if `data` is truncated or names an unknown change type.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut buf = data;
        let change_type = change_type_from(read_u8(&mut buf)?)?;
        let node_id = read_u64(&mut buf)?;
        Ok(ConfChange {
            change_type,
            node_id,
            context: Bytes::copy_from_slice(buf),
        })
    }
}

impl ConfChangeV2 {
    /// Encodes the change as the payload of a `ConfChangeV2` entry.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(5 + 9 * self.changes.len() + self.context.len());
        out.push(match self.transition {
            ConfChangeTransition::Auto => 0,
            ConfChangeTransition::JointImplicit => 1,
            ConfChangeTransition::JointExplicit => 2,
        });
        out.extend_from_slice(&(self.changes.len() as u32).to_le_bytes());
        for c in &self.changes {
            out.push(change_type_byte(c.change_type));
            out.extend_from_slice(&c.node_id.to_le_bytes());
        }
        out.extend_from_slice(&self.context);
        out.into()
    }

    /// Decodes the payload of a `ConfChangeV2` entry.
    ///
    /// # Errors
    /// [`DecodeError`] if `data` is truncated or holds an unknown transition
    /// or change type.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut buf = data;
        let transition = match read_u8(&mut buf)? {
            0 => ConfChangeTransition::Auto,
            1 => ConfChangeTransition::JointImplicit,
            2 => ConfChangeTransition::JointExplicit,
            _ => return Err(DecodeError("unknown transition")),
        };
        if buf.len() < 4 {
            return Err(DecodeError("truncated"));
        }
        let count = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        buf = &buf[4..];
        if buf.len() < count.saturating_mul(9) {
            return Err(DecodeError("truncated"));
        }
        let mut changes = Vec::with_capacity(count);
        for _ in 0..count {
            let change_type = change_type_from(read_u8(&mut buf)?)?;
            let node_id = read_u64(&mut buf)?;
            changes.push(ConfChangeSingle {
                change_type,
                node_id,
            });
        }
        Ok(ConfChangeV2 {
            transition,
            changes,
            context: Bytes::copy_from_slice(buf),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_size_keeps_at_least_one_entry() {
        let mk = |n: usize| -> Vec<Entry> {
            (1..=n as u64)
                .map(|i| Entry::new(1, i, vec![0u8; 84]))
                .collect()
        };
        // Each entry counts 84 + 16 = 100.
        let mut ents = mk(5);
        limit_size(&mut ents, 0);
        assert_eq!(ents.len(), 1);
        let mut ents = mk(5);
        limit_size(&mut ents, 250);
        assert_eq!(ents.len(), 2);
        let mut ents = mk(5);
        limit_size(&mut ents, 300);
        assert_eq!(ents.len(), 3);
        let mut ents = mk(5);
        limit_size(&mut ents, u64::MAX);
        assert_eq!(ents.len(), 5);
    }

    #[test]
    fn conf_change_round_trips() {
        let cc = ConfChange {
            change_type: ConfChangeType::AddLearnerNode,
            node_id: 42,
            context: Bytes::from_static(b"127.0.0.1:1"),
        };
        assert_eq!(ConfChange::decode(&cc.encode()).unwrap(), cc);
        let cc2 = ConfChangeV2 {
            transition: ConfChangeTransition::JointExplicit,
            changes: vec![
                ConfChangeSingle {
                    change_type: ConfChangeType::AddNode,
                    node_id: 4,
                },
                ConfChangeSingle {
                    change_type: ConfChangeType::RemoveNode,
                    node_id: 1,
                },
            ],
            context: Bytes::from_static(b"ctx"),
        };
        assert_eq!(ConfChangeV2::decode(&cc2.encode()).unwrap(), cc2);
    }

    #[test]
    fn conf_change_decode_rejects_garbage() {
        assert!(ConfChange::decode(&[]).is_err());
        assert!(ConfChange::decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(ConfChange::decode(&[0, 1, 2]).is_err());
        assert!(ConfChangeV2::decode(&[0, 255, 255, 255, 255]).is_err());
        assert!(ConfChangeV2::decode(&[7, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn enter_and_leave_joint() {
        let single = |t, id| ConfChangeSingle {
            change_type: t,
            node_id: id,
        };
        let mut cc = ConfChangeV2::default();
        assert!(cc.leave_joint());
        assert_eq!(cc.enter_joint(), None);
        cc.changes.push(single(ConfChangeType::AddNode, 2));
        assert_eq!(cc.enter_joint(), None);
        cc.changes.push(single(ConfChangeType::AddNode, 3));
        assert_eq!(cc.enter_joint(), Some(true));
        cc.transition = ConfChangeTransition::JointExplicit;
        assert_eq!(cc.enter_joint(), Some(false));
        cc.changes.clear();
        assert!(!cc.leave_joint());
    }
}

/// A run of entries that follow `prev`, as appended by the leader of `term`
/// (etcd's `logSlice`): the content of a `MsgApp`, or a leader's own append.
///
/// A valid slice (see [`LogSlice::valid`]) is what the log matching property
/// (Raft thesis §3.5) lets a follower reason about: if its log holds `prev`,
/// the slice can be written right after it, overwriting any conflicting
/// suffix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct LogSlice {
    /// The term of the leader that sent (or appended) the slice.
    /// Invariant: every entry's term, and `prev.term`, are `<= term`.
    pub term: u64,
    /// The id of the entry right before `entries` (index 0, term 0 for a slice
    /// that starts the log).
    pub prev: EntryId,
    /// The entries, at indexes `prev.index + 1 ..= prev.index + entries.len()`.
    pub entries: Vec<Entry>,
}

impl LogSlice {
    /// A slice of `entries` following `prev`, from the leader of `term`.
    pub fn new(term: u64, prev: EntryId, entries: Vec<Entry>) -> Self {
        LogSlice {
            term,
            prev,
            entries,
        }
    }

    /// The id of the last entry of the slice, or `prev` if it is empty.
    pub fn last_entry_id(&self) -> EntryId {
        self.entries.last().map_or(self.prev, Entry::id)
    }

    /// The index of the last entry of the slice, or `prev.index` if it is
    /// empty.
    pub fn last_index(&self) -> u64 {
        self.prev.index + self.entries.len() as u64
    }

    /// Checks the slice is well formed: `prev.term <= term`, entry indexes
    /// are contiguous from `prev.index + 1`, and entry terms never decrease
    /// (starting from `prev.term`) and never exceed `term`.
    ///
    /// # Errors
    /// A description of the first violation found.
    pub fn valid(&self) -> Result<(), String> {
        if self.prev.term > self.term {
            return Err(format!(
                "leader term {} is below the term of prev {:?}",
                self.term, self.prev
            ));
        }
        let mut prev = self.prev;
        for e in &self.entries {
            let id = e.id();
            if id.term < prev.term || id.term > self.term {
                return Err(format!(
                    "leader term {}, but entry {id:?} follows {prev:?}",
                    self.term
                ));
            }
            if id.index != prev.index + 1 {
                return Err(format!(
                    "log slice not contiguous: entry {id:?} follows {prev:?}"
                ));
            }
            prev = id;
        }
        Ok(())
    }
}
