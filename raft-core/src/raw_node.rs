//! [`RawNode`]: the thread-unsafe, I/O-free interface to a raft node, and
//! the [`Ready`] batches it hands to the application.

use bytes::Bytes;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::raft::Raft;
use crate::status::Status;
use crate::storage::Storage;
use crate::types::{
    ConfChangeI, ConfState, Entry, EntryId, HardState, Message, MessageType, NodeId, ReadState,
    Snapshot, SoftState, entries_size, payloads_size,
};

/// The outcome of sending a snapshot, reported with
/// [`RawNode::report_snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// The follower received the snapshot.
    Finish,
    /// Sending failed; the leader retries after a heartbeat interval.
    Failure,
}

/// Everything raft asks the application to do, handed out once by
/// [`RawNode::ready`]. Handle it in this order, then call
/// [`RawNode::advance`]:
///
/// 1. Send [`messages`](Ready::messages) (may be done at once, in parallel
///    with step 2: Raft thesis §10.2.1).
/// 2. Persist [`snapshot`](Ready::snapshot), [`entries`](Ready::entries) and
///    [`hard_state`](Ready::hard_state) (an entry at an index already stored
///    replaces it and everything after it), durably if
///    [`must_sync`](Ready::must_sync).
/// 3. Only then send [`persisted_messages`](Ready::persisted_messages).
/// 4. Apply the snapshot, then [`committed_entries`](Ready::committed_entries)
///    (configuration changes through [`RawNode::apply_conf_change`]), and
///    serve reads whose [`read_states`](Ready::read_states) index is applied.
#[derive(Debug, Default)]
#[must_use = "a Ready must be handled and then passed to advance()"]
pub struct Ready {
    soft_state: Option<SoftState>,
    hard_state: Option<HardState>,
    read_states: Vec<ReadState>,
    entries: Vec<Entry>,
    snapshot: Option<Snapshot>,
    committed_entries: Vec<Entry>,
    messages: Vec<Message>,
    persisted_messages: Vec<Message>,
    must_sync: bool,
}

impl Ready {
    /// The new leader and role, if they changed. Not to be persisted.
    pub fn soft_state(&self) -> Option<&SoftState> {
        self.soft_state.as_ref()
    }

    /// The hard state to persist, if it changed.
    pub fn hard_state(&self) -> Option<&HardState> {
        self.hard_state.as_ref()
    }

    /// Read requests that are now confirmed: serve each once the applied
    /// index reaches its `index`.
    pub fn read_states(&self) -> &[ReadState] {
        &self.read_states
    }

    /// Entries to append to stable storage.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// A snapshot received from the leader, to persist and apply.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// Committed entries to apply to the state machine, in order. They may
    /// include entries of this same Ready's `entries`: persist first.
    pub fn committed_entries(&self) -> &[Entry] {
        &self.committed_entries
    }

    /// Messages that may be sent before this Ready's entries and hard state
    /// are durable.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Messages that must be sent only after this Ready's entries and hard
    /// state are durable (acks of appended entries, votes).
    pub fn persisted_messages(&self) -> &[Message] {
        &self.persisted_messages
    }

    /// Whether the entries and hard state must be synced to disk before the
    /// persisted messages are sent (false when only the commit index
    /// changed, which can be recovered from the log).
    pub fn must_sync(&self) -> bool {
        self.must_sync
    }

    /// Takes the entries out of the Ready (to persist them without cloning).
    pub fn take_entries(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.entries)
    }

    /// Takes the committed entries out of the Ready.
    pub fn take_committed_entries(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.committed_entries)
    }

    /// Takes the messages out of the Ready.
    pub fn take_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.messages)
    }

    /// Takes the persisted messages out of the Ready.
    pub fn take_persisted_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.persisted_messages)
    }

    /// Takes the read states out of the Ready.
    pub fn take_read_states(&mut self) -> Vec<ReadState> {
        std::mem::take(&mut self.read_states)
    }

    /// Takes the snapshot out of the Ready.
    pub fn take_snapshot(&mut self) -> Option<Snapshot> {
        self.snapshot.take()
    }
}

/// What a taken Ready promised, acknowledged by `advance` (etcd's
/// `stepsOnAdvance` for synchronous storage).
#[derive(Debug)]
struct Accepted {
    /// The last entry handed out for persisting.
    last_entry: Option<EntryId>,
    /// The index of the snapshot handed out.
    snapshot_index: Option<u64>,
    /// The last committed entry handed out for applying, with the total
    /// [`Entry::size`] and payload size of the committed entries.
    applied: Option<(u64, u64, u64)>,
    /// Messages to this node itself (the leader's ack of its own entries, a
    /// candidate's own vote), stepped in once the Ready is durable.
    self_msgs: Vec<Message>,
}

/// Splits the messages to send after persisting into those addressed to
/// this node `id` (stepped back in by `advance`) and the others, keeping the
/// order of each. A leader's are usually all its own acks and a follower's
/// all to the leader, so the common cases move the vector whole.
fn split_self_msgs(msgs: Vec<Message>, id: NodeId) -> (Vec<Message>, Vec<Message>) {
    if msgs.iter().all(|m| m.to == id) {
        return (msgs, Vec::new());
    }
    if msgs.iter().all(|m| m.to != id) {
        return (Vec::new(), msgs);
    }
    msgs.into_iter().partition(|m| m.to == id)
}

/// A raft node without threads, clocks or I/O: the application feeds it
/// ticks, messages and proposals, and handles the [`Ready`] batches it
/// produces.
///
/// Not thread-safe: one owner drives it (kv-server runs it on one thread).
pub struct RawNode<S: Storage> {
    raft: Raft<S>,
    prev_soft_st: SoftState,
    prev_hard_st: HardState,
    // Use: Some between `ready()` and `advance()`.
    accepted: Option<Accepted>,
}

impl<S: Storage> RawNode<S> {
    /// Creates a node from a config and the storage it restarts from. A
    /// fresh cluster's storage must hold its initial membership (see
    /// [`MemStorage::new_with_conf_state`](crate::MemStorage::new_with_conf_state));
    /// a node joining an existing cluster starts with an empty one and waits
    /// for the leader.
    ///
    /// # Errors
    /// [`Error::ConfigInvalid`] for a bad config, [`Error::Storage`] if the
    /// storage fails.
    pub fn new(config: &Config, store: S) -> Result<Self> {
        let raft = Raft::new(config, store)?;
        let (prev_soft_st, prev_hard_st) = (raft.soft_state(), raft.hard_state());
        Ok(RawNode {
            raft,
            prev_soft_st,
            prev_hard_st,
            accepted: None,
        })
    }

    /// Advances the logical clock by one tick (election and heartbeat
    /// timeouts are counted in ticks).
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Starts an election now (pre-vote first if enabled).
    ///
    /// # Errors
    /// None in practice; returns `Result` for symmetry with `step`.
    pub fn campaign(&mut self) -> Result<()> {
        self.raft
            .step(Message::new(MessageType::Hup, self.raft.id, 0))
    }

    /// Proposes `data` to be appended to the log. On a follower the proposal
    /// is forwarded to the leader.
    ///
    /// # Errors
    /// [`Error::ProposalDropped`] if no leader is known, forwarding is
    /// disabled, a leader transfer is in progress, or the uncommitted log is
    /// full. The proposal may still be lost later (e.g. the leader changes):
    /// the application learns the outcome only when it applies the entry.
    pub fn propose(&mut self, data: impl Into<Bytes>) -> Result<()> {
        self.raft.step(Message {
            msg_type: MessageType::Prop,
            from: self.raft.id,
            entries: vec![Entry {
                data: data.into(),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    /// Proposes a membership change. It takes effect when the application
    /// applies the committed entry with [`RawNode::apply_conf_change`]. A
    /// change proposed while another is unapplied is replaced by an empty
    /// entry (applied as a no-op).
    ///
    /// # Errors
    /// As [`RawNode::propose`].
    pub fn propose_conf_change(&mut self, cc: impl Into<ConfChangeI>) -> Result<()> {
        let (entry_type, data) = cc.into().to_entry_data();
        self.raft.step(Message {
            msg_type: MessageType::Prop,
            from: self.raft.id,
            entries: vec![Entry {
                entry_type,
                data,
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    /// Applies a committed configuration change and returns the new
    /// membership (to store with the next snapshot).
    ///
    /// # Errors
    /// [`Error::ConfChangeInvalid`] if the change cannot apply to the current
    /// configuration (e.g. removing the last voter); nothing changes then.
    pub fn apply_conf_change(&mut self, cc: &ConfChangeI) -> Result<ConfState> {
        self.raft.apply_conf_change(&cc.as_v2())
    }

    /// Steps a message received from a peer.
    ///
    /// # Errors
    /// [`Error::StepLocalMsg`] for a local-only message type,
    /// [`Error::StepPeerNotFound`] for a response from a non-member, and
    /// [`Error::ProposalDropped`] for a forwarded proposal the leader cannot
    /// take.
    pub fn step(&mut self, m: Message) -> Result<()> {
        if m.msg_type.is_local() {
            return Err(Error::StepLocalMsg);
        }
        if m.msg_type.is_response() && !self.raft.trk.progress.contains_key(&m.from) {
            return Err(Error::StepPeerNotFound);
        }
        self.raft.step(m)
    }

    /// Requests a linearizable read. When the leader has confirmed its
    /// leadership, a [`ReadState`] with `ctx` and the read index appears in a
    /// Ready; serve the read once the applied index reaches it. Use a unique
    /// `ctx` per request (or per batch of requests).
    ///
    /// # Errors
    /// [`Error::ProposalDropped`] if no leader is known. A request may also be
    /// lost silently (leader change): the application should time it out.
    pub fn read_index(&mut self, ctx: impl Into<Bytes>) -> Result<()> {
        self.raft.step(Message {
            msg_type: MessageType::ReadIndex,
            from: self.raft.id,
            entries: vec![Entry {
                data: ctx.into(),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    /// Asks the leader to hand leadership to `transferee`. The leader catches
    /// it up, then tells it to campaign at once; proposals are refused
    /// meanwhile. Watch the soft state for the outcome; a transfer that does
    /// not finish within an election timeout is abandoned.
    pub fn transfer_leader(&mut self, transferee: NodeId) {
        let _ = self
            .raft
            .step(Message::new(MessageType::TransferLeader, transferee, 0));
    }

    /// Tells raft that the last message to `id` could not be delivered: the
    /// leader falls back to probing that follower.
    pub fn report_unreachable(&mut self, id: NodeId) {
        let _ = self
            .raft
            .step(Message::new(MessageType::Unreachable, id, 0));
    }

    /// Reports the outcome of sending a snapshot to `id`.
    pub fn report_snapshot(&mut self, id: NodeId, status: SnapshotStatus) {
        let mut m = Message::new(MessageType::SnapStatus, id, 0);
        m.reject = status == SnapshotStatus::Failure;
        let _ = self.raft.step(m);
    }

    /// Whether there is anything for the application to handle.
    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        if r.soft_state() != self.prev_soft_st {
            return true;
        }
        let hs = r.hard_state();
        if !hs.is_empty() && hs != self.prev_hard_st {
            return true;
        }
        r.raft_log.has_next_unstable_snapshot()
            // Owed appends may turn out to be none (every follower paused):
            // the Ready is then empty, once.
            || r.appends_pending
            || !r.msgs.is_empty()
            || !r.msgs_after_append.is_empty()
            || r.raft_log.has_next_unstable_ents()
            || r.raft_log.has_next_committed_ents(true)
            || !r.read_states.is_empty()
    }

    /// Returns what the application must handle now, and marks it as handed
    /// out (etcd's `acceptReady`): the same entries are not handed out again.
    ///
    /// # Panics
    /// If the previous Ready has not been passed to [`RawNode::advance`].
    pub fn ready(&mut self) -> Ready {
        assert!(
            self.accepted.is_none(),
            "ready() called again before advance() of the previous Ready"
        );
        let r = &mut self.raft;
        r.flush_appends();
        let entries = r.raft_log.next_unstable_ents().to_vec();
        // Synchronous storage: committed entries may include entries of this
        // very Ready, which the application persists before applying.
        let committed_entries = r.raft_log.next_committed_ents(true);
        let snapshot = r.raft_log.next_unstable_snapshot().cloned();
        let soft = r.soft_state();
        let soft_state = (soft != self.prev_soft_st).then_some(soft);
        let hard = r.hard_state();
        let hard_state = (hard != self.prev_hard_st).then_some(hard);
        let must_sync = !entries.is_empty()
            || snapshot.is_some()
            || hard.term != self.prev_hard_st.term
            || hard.vote != self.prev_hard_st.vote;
        let messages = std::mem::take(&mut r.msgs);
        let (self_msgs, persisted_messages) =
            split_self_msgs(std::mem::take(&mut r.msgs_after_append), r.id);
        let read_states = std::mem::take(&mut r.read_states);

        // Accept what is handed out.
        self.prev_soft_st = soft;
        self.prev_hard_st = hard;
        r.raft_log.accept_unstable();
        let applied = committed_entries.last().map(|last| {
            let (size, payload) = (
                entries_size(&committed_entries),
                payloads_size(&committed_entries),
            );
            r.raft_log.accept_applying(last.index, size, true);
            (last.index, size, payload)
        });
        self.accepted = Some(Accepted {
            last_entry: entries.last().map(Entry::id),
            snapshot_index: snapshot.as_ref().map(|s| s.metadata.index),
            applied,
            self_msgs,
        });
        Ready {
            soft_state,
            hard_state,
            read_states,
            entries,
            snapshot,
            committed_entries,
            messages,
            persisted_messages,
            must_sync,
        }
    }

    /// Tells raft the last [`Ready`] was handled: its snapshot and entries
    /// are durable, its committed entries applied, its messages sent.
    ///
    /// # Panics
    /// If no Ready is outstanding.
    pub fn advance(&mut self, rd: Ready) {
        drop(rd);
        let acc = self
            .accepted
            .take()
            .expect("advance() called without an outstanding Ready");
        let r = &mut self.raft;
        let mut self_msgs = acc.self_msgs;
        for m in self_msgs.drain(..) {
            // Stale ones (the term moved on) are ignored by step.
            let _ = r.step(m);
        }
        if r.msgs_after_append.capacity() == 0 {
            // Recycle the buffer: a busy leader queues a self-ack per Ready.
            r.msgs_after_append = self_msgs;
        }
        // The snapshot precedes the entries: acknowledge it first.
        if let Some(index) = acc.snapshot_index {
            r.applied_snap(index);
        }
        if let Some(id) = acc.last_entry {
            // Ignored by the log if those entries were since replaced.
            r.raft_log.stable_to(id);
        }
        if let Some((index, size, payload)) = acc.applied {
            r.applied_to(index, size);
            r.reduce_uncommitted_size(payload);
        }
    }

    /// A snapshot of the node's state, with follower progress on a leader.
    pub fn status(&self) -> Status {
        Status::new(&self.raft)
    }

    /// The storage raft reads from.
    pub fn store(&self) -> &S {
        self.raft.raft_log.store()
    }

    /// The storage, for the application to append what a Ready asks.
    pub fn store_mut(&mut self) -> &mut S {
        self.raft.raft_log.store_mut()
    }

    /// The underlying state machine (for inspection and tests).
    pub fn raft(&self) -> &Raft<S> {
        &self.raft
    }

    /// The underlying state machine, mutably (for tests that need to reach
    /// inside; normal use goes through the methods above).
    pub fn raft_mut(&mut self) -> &mut Raft<S> {
        &mut self.raft
    }
}
