//! The Raft state machine: terms, roles, elections, replication and
//! membership, driven by [`Raft::step`] and [`Raft::tick`].
//!
//! This is etcd raft's `raft.go`. Role-specific message handling lives in
//! `raft/leader.rs`, `raft/candidate.rs` and `raft/follower.rs`. Nothing here does I/O: outgoing
//! messages are queued in `msgs` / `msgs_after_append` and handed to the
//! application by [`RawNode::ready`](crate::RawNode::ready).

mod candidate;
mod follower;
mod leader;

use bytes::Bytes;

use crate::confchange::{self, Changer};
use crate::config::Config;
use crate::error::{Error, Result, StorageError};
use crate::raft_log::RaftLog;
use crate::read_only::{ReadOnly, ReadOnlyOption};
use crate::storage::Storage;
use crate::tracker::{Config as TrackerConfig, ProgressMap, ProgressState, ProgressTracker};
use crate::types::{
    ConfChangeV2, ConfState, Entry, EntryId, EntryType, HardState, LogSlice, Message, MessageType,
    NONE, NodeId, ReadState, Snapshot, SoftState, StateRole, payloads_size,
};

/// The context of vote requests sent by a leader transfer's target: they are
/// granted even by followers that still hear a live leader (Raft thesis
/// §3.10, leadership transfer).
pub(crate) const CAMPAIGN_TRANSFER: &[u8] = b"CampaignTransfer";

/// Why a node campaigns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CampaignType {
    /// A pre-vote round first (when `pre_vote` is on).
    PreElection,
    /// A normal election.
    Election,
    /// An election forced by a leader transfer (no pre-vote, breaks leases).
    Transfer,
}

/// The raft state machine of one node.
pub struct Raft<S: Storage> {
    /// This node's id.
    pub id: NodeId,
    /// The current term.
    pub term: u64,
    /// The vote cast in `term`, or [`NONE`].
    pub vote: NodeId,
    /// The log.
    pub raft_log: RaftLog<S>,
    /// Read requests answered since the last Ready.
    pub(crate) read_states: Vec<ReadState>,
    /// Progress of every member and the current configuration.
    pub(crate) trk: ProgressTracker,
    /// This node's role.
    pub(crate) state: StateRole,
    /// Whether this node is a learner in the current configuration.
    pub(crate) is_learner: bool,
    /// Messages that may be sent as soon as the Ready carrying them is taken,
    /// even before its entries and hard state are durable (Raft thesis §10.2.1
    /// allows a leader to send appends in parallel with its own write).
    pub(crate) msgs: Vec<Message>,
    /// Messages that may only be sent once the Ready's entries and hard state
    /// are durable: append acks and votes. Those addressed to this node itself
    /// (the leader's self-ack, a candidate's own vote) are stepped back in by
    /// `advance`.
    pub(crate) msgs_after_append: Vec<Message>,
    /// The known leader, or [`NONE`].
    pub(crate) lead: NodeId,
    /// The target of a leader transfer in progress, or [`NONE`].
    pub(crate) lead_transferee: NodeId,
    /// Only one configuration change may be pending (in the log, not yet
    /// applied) at a time. Use: set to the index of the newest one appended;
    /// a new one is refused while `pending_conf_index > applied`.
    pub(crate) pending_conf_index: u64,
    /// Payload bytes of entries appended by this leader and not yet applied
    /// (an estimate that may undercount, never overcount).
    pub(crate) uncommitted_size: u64,
    pub(crate) read_only: ReadOnly,
    /// Read requests that arrived before this leader committed an entry of
    /// its term (Raft thesis §6.4: until then its commit index may be stale).
    pub(crate) pending_read_index_messages: Vec<Message>,
    /// Ticks since the last election timeout reset (follower/candidate) or
    /// check-quorum round (leader).
    pub(crate) election_elapsed: usize,
    /// Ticks since the last heartbeat (leader only).
    pub(crate) heartbeat_elapsed: usize,
    pub(crate) check_quorum: bool,
    pub(crate) pre_vote: bool,
    pub(crate) heartbeat_timeout: usize,
    pub(crate) election_timeout: usize,
    /// Randomized in `[election_timeout, 2 * election_timeout)` on every
    /// reset (Raft thesis §3.4).
    pub(crate) randomized_election_timeout: usize,
    pub(crate) disable_proposal_forwarding: bool,
    pub(crate) step_down_on_removal: bool,
    pub(crate) max_msg_size: u64,
    pub(crate) max_uncommitted_size: u64,
    /// `Config::batch_appends`.
    pub(crate) batch_appends: bool,
    /// With `batch_appends`: a broadcast of appends is owed, to be sent by
    /// `flush_appends` when the next Ready is taken. Use: set by
    /// `bcast_append_or_defer`, cleared by `flush_appends` and on any role
    /// change.
    pub(crate) appends_pending: bool,
    rng: SplitMix64,
}

/// A small deterministic PRNG (SplitMix64) for election timeouts; raft-core
/// takes no dependency for this and stays reproducible from `Config::seed`.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `[0, n)`; `n` is small, so modulo bias is negligible.
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

impl<S: Storage> Raft<S> {
    /// Builds the state machine from a validated config and the storage's
    /// persisted state, as a follower.
    ///
    /// # Errors
    /// [`Error::ConfigInvalid`] for a bad config, [`Error::Storage`] if the
    /// storage fails, [`Error::ConfChangeInvalid`] if the stored ConfState is
    /// inconsistent.
    pub fn new(c: &Config, store: S) -> Result<Self> {
        c.validate()?;
        let raft_log = RaftLog::new(store, c.effective_max_committed_size())?;
        let rs = raft_log.store().initial_state()?;
        let mut r = Raft {
            id: c.id,
            term: 0,
            vote: NONE,
            raft_log,
            read_states: Vec::new(),
            trk: ProgressTracker::new(c.max_inflight_msgs, c.max_inflight_bytes),
            state: StateRole::Follower,
            is_learner: false,
            msgs: Vec::new(),
            msgs_after_append: Vec::new(),
            lead: NONE,
            lead_transferee: NONE,
            pending_conf_index: 0,
            uncommitted_size: 0,
            read_only: ReadOnly::new(c.read_only_option),
            pending_read_index_messages: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            check_quorum: c.check_quorum,
            pre_vote: c.pre_vote,
            heartbeat_timeout: c.heartbeat_tick,
            election_timeout: c.election_tick,
            randomized_election_timeout: c.election_tick,
            disable_proposal_forwarding: c.disable_proposal_forwarding,
            step_down_on_removal: c.step_down_on_removal,
            max_msg_size: c.max_size_per_msg,
            max_uncommitted_size: c.effective_max_uncommitted_size(),
            batch_appends: c.batch_appends,
            appends_pending: false,
            rng: SplitMix64(c.seed ^ c.id.wrapping_mul(0x2545_F491_4F6C_DD1D)),
        };
        let (cfg, prs) = confchange::restore(
            &Changer {
                tracker: &r.trk,
                last_index: r.raft_log.last_index(),
            },
            &rs.conf_state,
        )
        .map_err(Error::ConfChangeInvalid)?;
        let cs = r.switch_to_config(cfg, prs);
        assert!(
            cs.equivalent(&rs.conf_state),
            "restored ConfState {cs:?} differs from the stored {:?}",
            rs.conf_state
        );
        if !rs.hard_state.is_empty() {
            r.load_state(&rs.hard_state);
        }
        if c.applied > 0 {
            r.raft_log.applied_to(c.applied, 0);
        }
        r.become_follower(r.term, NONE);
        Ok(r)
    }

    fn load_state(&mut self, hs: &HardState) {
        let (first, last) = (self.raft_log.committed, self.raft_log.last_index());
        assert!(
            hs.commit >= first && hs.commit <= last,
            "node {}: stored commit {} is out of range [{first}, {last}]",
            self.id,
            hs.commit
        );
        self.raft_log.committed = hs.commit;
        self.term = hs.term;
        self.vote = hs.vote;
    }

    /// The current soft state (leader and role).
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            leader_id: self.lead,
            raft_state: self.state,
        }
    }

    /// The current hard state (term, vote, commit).
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.raft_log.committed,
        }
    }

    /// This node's role.
    pub fn state(&self) -> StateRole {
        self.state
    }

    /// The known leader, or [`NONE`].
    pub fn leader_id(&self) -> NodeId {
        self.lead
    }

    /// The progress tracker: configuration and per-node progress.
    pub fn tracker(&self) -> &ProgressTracker {
        &self.trk
    }

    /// Whether this node can campaign: it is a voter of the current
    /// configuration and is not applying a snapshot.
    pub fn promotable(&self) -> bool {
        self.trk
            .progress
            .get(&self.id)
            .is_some_and(|pr| !pr.is_learner)
            && !self.raft_log.has_next_or_in_progress_snapshot()
    }

    // ---- sending ----

    /// Queues `m` for sending, stamping `from` and (for everything but votes,
    /// proposals and forwarded reads) the current term.
    pub(crate) fn send(&mut self, mut m: Message) {
        if m.from == NONE {
            m.from = self.id;
        }
        match m.msg_type {
            MessageType::Vote
            | MessageType::VoteResp
            | MessageType::PreVote
            | MessageType::PreVoteResp => {
                // Vote messages carry the term they are about, which for
                // pre-votes is in our future: it must be set by the caller.
                assert_ne!(m.term, 0, "term must be set for {:?}", m.msg_type);
            }
            _ => {
                assert_eq!(m.term, 0, "term must not be set for {:?}", m.msg_type);
                // Proposals and forwarded read requests are handed to the
                // leader as they are: they carry no term (like local messages).
                if !matches!(m.msg_type, MessageType::Prop | MessageType::ReadIndex) {
                    m.term = self.term;
                }
            }
        }
        if matches!(
            m.msg_type,
            MessageType::AppResp | MessageType::VoteResp | MessageType::PreVoteResp
        ) {
            // These acknowledge state that must be durable first: appended
            // entries, or a vote (Raft thesis §3.8, persisted state).
            self.msgs_after_append.push(m);
        } else {
            assert_ne!(m.to, self.id, "message to self: {m:?}");
            self.msgs.push(m);
        }
    }

    /// Sends an append (or a snapshot) to `to` if it is not paused, even if
    /// it carries no entries (to tell the follower the commit index).
    pub(crate) fn send_append(&mut self, to: NodeId) {
        self.maybe_send_append(to, true);
    }

    /// Sends an append to `to` if it is not paused and, unless
    /// `send_if_empty`, there are entries to send. Falls back to a snapshot
    /// when the entries it needs were compacted. Returns whether it sent.
    pub(crate) fn maybe_send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let Some(pr) = self.trk.progress.get(&to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let (next, state, inflights_full) = (pr.next, pr.state, pr.inflights.full());
        let prev_index = next - 1;
        let Ok(prev_term) = self.raft_log.term(prev_index) else {
            // The log was compacted past what this follower needs.
            return self.maybe_send_snapshot(to);
        };
        // A throttled follower in Replicate gets only empty appends, so that
        // replication resumes even if every in-flight append was lost (its ack
        // or rejection frees the inflights).
        let ents = if state != ProgressState::Replicate || !inflights_full {
            match self.raft_log.entries(next, self.max_msg_size) {
                Ok(ents) => ents,
                Err(_) => return self.maybe_send_snapshot(to),
            }
        } else {
            Vec::new()
        };
        if ents.is_empty() && !send_if_empty {
            return false;
        }
        let committed = self.raft_log.committed;
        let (n, bytes) = (ents.len(), payloads_size(&ents));
        self.send(Message {
            msg_type: MessageType::App,
            to,
            index: prev_index,
            log_term: prev_term,
            entries: ents,
            commit: committed,
            ..Default::default()
        });
        let pr = self
            .trk
            .progress
            .get_mut(&to)
            .expect("progress checked above");
        pr.update_on_entries_send(n, bytes);
        pr.sent_commit(committed);
        true
    }

    fn maybe_send_snapshot(&mut self, to: NodeId) -> bool {
        let pr = &self.trk.progress[&to];
        if !pr.recent_active {
            // Don't build a snapshot for a follower that may be down.
            return false;
        }
        let snapshot = match self.raft_log.snapshot() {
            Ok(s) => s,
            Err(StorageError::SnapshotTemporarilyUnavailable) => return false,
            Err(e) => panic!("node {}: failed to get a snapshot for {to}: {e}", self.id),
        };
        assert!(
            !snapshot.is_empty(),
            "node {}: need a non-empty snapshot to catch up {to}",
            self.id
        );
        let index = snapshot.metadata.index;
        self.trk
            .progress
            .get_mut(&to)
            .expect("progress checked above")
            .become_snapshot(index);
        self.send(Message {
            msg_type: MessageType::Snap,
            to,
            snapshot: Some(Box::new(snapshot)),
            ..Default::default()
        });
        true
    }

    /// Sends a heartbeat to `to` with the commit index it can safely take.
    pub(crate) fn send_heartbeat(&mut self, to: NodeId, ctx: Bytes) {
        let pr = self
            .trk
            .progress
            .get_mut(&to)
            .expect("heartbeat to a node without progress");
        // A follower may not hold entries up to our commit index yet: it must
        // never be told to commit past what it has (Raft thesis §3.5).
        let commit = pr.matched.min(self.raft_log.committed);
        pr.sent_commit(commit);
        self.send(Message {
            msg_type: MessageType::Heartbeat,
            to,
            commit,
            context: ctx,
            ..Default::default()
        });
    }

    /// The ids of all members but this node, in order.
    fn peers(&self) -> Vec<NodeId> {
        self.trk
            .progress
            .keys()
            .copied()
            .filter(|&id| id != self.id)
            .collect()
    }

    /// The smallest member id above `after` other than this node: the
    /// broadcasts walk the members with it instead of collecting their ids
    /// (an allocation on every proposal).
    fn next_peer(&self, after: NodeId) -> Option<NodeId> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.trk
            .progress
            .range((Excluded(after), Unbounded))
            .map(|(&id, _)| id)
            .find(|&id| id != self.id)
    }

    /// Sends appends (with entries, or empty to carry the commit index) to
    /// every follower that is not paused.
    pub(crate) fn bcast_append(&mut self) {
        let mut after = NONE;
        while let Some(id) = self.next_peer(after) {
            self.send_append(id);
            after = id;
        }
    }

    /// [`bcast_append`](Self::bcast_append) now, or with `batch_appends`
    /// when the next Ready is taken ([`flush_appends`](Self::flush_appends)):
    /// the appends of all the proposals and commit index advances in between
    /// then go out together. Deferring only changes how the entries are
    /// grouped into messages: nothing leaves before the Ready anyway.
    pub(crate) fn bcast_append_or_defer(&mut self) {
        if self.batch_appends {
            self.appends_pending = true;
        } else {
            self.bcast_append();
        }
    }

    /// Sends the broadcast owed by [`bcast_append_or_defer`](Self::bcast_append_or_defer):
    /// to each follower as many appends of the entries it lacks as flow
    /// control allows, or one empty append if it has them all but not the
    /// commit index.
    pub(crate) fn flush_appends(&mut self) {
        if !std::mem::take(&mut self.appends_pending) || self.state != StateRole::Leader {
            return;
        }
        let mut after = NONE;
        while let Some(id) = self.next_peer(after) {
            let committed = self.raft_log.committed;
            let mut send_if_empty = self.trk.progress[&id].can_bump_commit(committed);
            while self.maybe_send_append(id, send_if_empty) {
                send_if_empty = false;
            }
            after = id;
        }
    }

    /// Sends heartbeats to every follower, carrying the newest pending read
    /// request's context.
    pub(crate) fn bcast_heartbeat(&mut self) {
        let ctx = self
            .read_only
            .last_pending_request_ctx()
            .unwrap_or_default();
        self.bcast_heartbeat_with_ctx(ctx);
    }

    pub(crate) fn bcast_heartbeat_with_ctx(&mut self, ctx: Bytes) {
        let mut after = NONE;
        while let Some(id) = self.next_peer(after) {
            self.send_heartbeat(id, ctx.clone());
            after = id;
        }
    }

    // ---- log and commit ----

    /// Advances the commit index to the highest index replicated on a quorum,
    /// if that entry is of the current term (Raft thesis §3.6.2: a leader
    /// never commits entries of earlier terms by counting replicas).
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let at = EntryId::new(self.term, self.trk.committed());
        self.raft_log.maybe_commit(at)
    }

    /// Appends entries proposed to this leader, stamping term and index.
    /// Returns false (appending nothing) if the uncommitted log is full.
    pub(crate) fn append_entry(&mut self, mut es: Vec<Entry>) -> bool {
        let li = self.raft_log.last_index();
        for (i, e) in es.iter_mut().enumerate() {
            e.term = self.term;
            e.index = li + 1 + i as u64;
        }
        if !self.increase_uncommitted_size(&es) {
            return false;
        }
        let li = self.raft_log.append(es);
        // The leader acks its own entries once they are durable: this message
        // is stepped back in by `advance`, after the Ready is persisted.
        //
        // Unlike etcd, which queues one self-ack per append, a pending
        // self-ack of this term is raised to `li` instead: all of them are
        // stepped together after the same write, the leader's log only grows
        // within its term, and acking `li` acks everything before it. So a
        // batch of proposals costs one ack to step rather than one each.
        let (id, term) = (self.id, self.term);
        let pending = self.msgs_after_append.iter_mut().rev().find(|m| {
            m.to == id && m.msg_type == MessageType::AppResp && m.term == term && !m.reject
        });
        match pending {
            Some(ack) => ack.index = li,
            None => self.send(Message {
                msg_type: MessageType::AppResp,
                to: self.id,
                index: li,
                ..Default::default()
            }),
        }
        true
    }

    fn increase_uncommitted_size(&mut self, ents: &[Entry]) -> bool {
        let s = payloads_size(ents);
        // An empty uncommitted tail admits a proposal of any size, and empty
        // entries (a new leader's, auto-leave) are always admitted.
        if self.uncommitted_size > 0
            && s > 0
            && self.uncommitted_size.saturating_add(s) > self.max_uncommitted_size
        {
            return false;
        }
        self.uncommitted_size += s;
        true
    }

    pub(crate) fn reduce_uncommitted_size(&mut self, s: u64) {
        // The estimate may undercount (e.g. across a leadership change), so
        // saturate instead of underflowing.
        self.uncommitted_size = self.uncommitted_size.saturating_sub(s);
    }

    /// Whether the entry at the commit index is of this term: a new leader's
    /// commit index is only known to be current once it is (Raft thesis §6.4).
    pub(crate) fn committed_entry_in_current_term(&self) -> bool {
        self.raft_log
            .term(self.raft_log.committed)
            .is_ok_and(|t| t == self.term)
    }

    /// The application applied entries up to `index` (whose sizes sum to
    /// `size`); a leader in an auto-leave joint configuration now proposes
    /// leaving it.
    pub(crate) fn applied_to(&mut self, index: u64, size: u64) {
        let new_applied = index.max(self.raft_log.applied);
        self.raft_log.applied_to(new_applied, size);
        if self.trk.config.auto_leave
            && new_applied >= self.pending_conf_index
            && self.state == StateRole::Leader
        {
            // Empty data decodes to the empty ConfChangeV2 that leaves the
            // joint config, and counts 0 against the uncommitted size limit,
            // so this proposal cannot be refused for size.
            let m = Message {
                msg_type: MessageType::Prop,
                from: self.id,
                entries: vec![Entry {
                    entry_type: EntryType::ConfChangeV2,
                    ..Default::default()
                }],
                ..Default::default()
            };
            // Refused only while a transfer is in progress; it is retried at
            // the next apply.
            let _ = self.step(m);
        }
    }

    /// The application applied (and persisted) the snapshot it was handed.
    pub(crate) fn applied_snap(&mut self, snap_index: u64) {
        self.raft_log.stable_snap_to(snap_index);
        self.applied_to(snap_index, 0);
    }

    // ---- roles ----

    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = NONE;
        }
        self.lead = NONE;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.abort_leader_transfer();
        self.trk.reset_votes();
        let (last, id) = (self.raft_log.last_index(), self.id);
        let (max_inflight, max_bytes) = (self.trk.max_inflight, self.trk.max_inflight_bytes);
        self.trk.visit(|pid, pr| {
            let is_learner = pr.is_learner;
            *pr = crate::tracker::Progress::new(last + 1, max_inflight, max_bytes);
            pr.is_learner = is_learner;
            if pid == id {
                pr.matched = last;
            }
        });
        self.pending_conf_index = 0;
        self.uncommitted_size = 0;
        self.appends_pending = false;
        self.read_only = ReadOnly::new(self.read_only.option);
    }

    fn reset_randomized_election_timeout(&mut self) {
        self.randomized_election_timeout =
            self.election_timeout + self.rng.below(self.election_timeout);
    }

    pub(crate) fn past_election_timeout(&self) -> bool {
        self.election_elapsed >= self.randomized_election_timeout
    }

    /// Becomes a follower of `lead` (or of nobody) in `term`.
    pub fn become_follower(&mut self, term: u64, lead: NodeId) {
        self.reset(term);
        self.lead = lead;
        self.state = StateRole::Follower;
    }

    /// Becomes a pre-candidate: a pre-vote round changes neither term nor
    /// vote (Raft thesis §9.6).
    ///
    /// # Panics
    /// If this node is the leader.
    pub fn become_pre_candidate(&mut self) {
        assert_ne!(
            self.state,
            StateRole::Leader,
            "invalid transition [leader -> pre-candidate]"
        );
        self.trk.reset_votes();
        self.lead = NONE;
        self.state = StateRole::PreCandidate;
    }

    /// Becomes a candidate in the next term, voting for itself.
    ///
    /// # Panics
    /// If this node is the leader.
    pub fn become_candidate(&mut self) {
        assert_ne!(
            self.state,
            StateRole::Leader,
            "invalid transition [leader -> candidate]"
        );
        self.reset(self.term + 1);
        self.vote = self.id;
        self.state = StateRole::Candidate;
    }

    /// Becomes the leader of the current term and appends an empty entry,
    /// whose commit also commits every earlier entry (Raft thesis §3.6.2).
    ///
    /// # Panics
    /// If this node is a follower (it must have won an election).
    pub fn become_leader(&mut self) {
        assert_ne!(
            self.state,
            StateRole::Follower,
            "invalid transition [follower -> leader]"
        );
        self.reset(self.term);
        self.lead = self.id;
        self.state = StateRole::Leader;
        let pr = self
            .trk
            .progress
            .get_mut(&self.id)
            .expect("a leader is a member");
        // The leader trivially replicates to itself and is always active.
        pr.become_replicate();
        pr.recent_active = true;
        // Any entry up to the last index may be a configuration change: delay
        // new ones until all of them are applied rather than scan the log.
        self.pending_conf_index = self.raft_log.last_index();
        let appended = self.append_entry(vec![Entry::default()]);
        assert!(appended, "an empty entry is always admitted");
    }

    fn hup(&mut self, t: CampaignType) {
        if self.state == StateRole::Leader {
            return;
        }
        if !self.promotable() {
            return;
        }
        if self.has_unapplied_conf_changes() {
            // Campaigning with a configuration change committed but not applied
            // could count votes by the wrong configuration.
            return;
        }
        self.campaign(t);
    }

    fn has_unapplied_conf_changes(&self) -> bool {
        let (lo, hi) = (self.raft_log.applied + 1, self.raft_log.committed + 1);
        let mut found = false;
        // Page through the entries so that a long unapplied tail does not
        // load at once.
        self.raft_log
            .scan(lo, hi, self.max_msg_size.max(1), |ents| {
                found = ents.iter().any(|e| e.entry_type != EntryType::Normal);
                !found
            })
            .unwrap_or_else(|e| panic!("node {}: reading [{lo}, {hi}): {e}", self.id));
        found
    }

    pub(crate) fn campaign(&mut self, t: CampaignType) {
        assert!(self.promotable(), "node {} is not promotable", self.id);
        let (term, vote_msg) = if t == CampaignType::PreElection {
            self.become_pre_candidate();
            // Pre-votes ask about the next term without moving to it.
            (self.term + 1, MessageType::PreVote)
        } else {
            self.become_candidate();
            (self.term, MessageType::Vote)
        };
        let last = self.raft_log.last_entry_id();
        let context = if t == CampaignType::Transfer {
            Bytes::from_static(CAMPAIGN_TRANSFER)
        } else {
            Bytes::new()
        };
        let voters: Vec<NodeId> = self.trk.config.voters.ids().collect();
        for id in voters {
            if id == self.id {
                // Our own vote counts once it is durable: the response is
                // stepped back in by `advance`.
                self.send(Message {
                    msg_type: vote_msg.vote_response(),
                    to: id,
                    term,
                    ..Default::default()
                });
                continue;
            }
            self.send(Message {
                msg_type: vote_msg,
                to: id,
                term,
                index: last.index,
                log_term: last.term,
                context: context.clone(),
                ..Default::default()
            });
        }
    }

    fn poll(&mut self, id: NodeId, granted: bool) -> crate::quorum::VoteResult {
        self.trk.record_vote(id, granted);
        self.trk.tally_votes().2
    }

    // ---- ticks ----

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        if self.state == StateRole::Leader {
            self.tick_heartbeat();
        } else {
            self.tick_election();
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.past_election_timeout() {
            self.election_elapsed = 0;
            let _ = self.step(Message::new(MessageType::Hup, self.id, NONE));
        }
    }

    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.election_elapsed = 0;
            if self.check_quorum {
                let _ = self.step(Message::new(MessageType::CheckQuorum, self.id, NONE));
            }
            // A transfer that did not finish within an election timeout is
            // abandoned, and this node goes on leading.
            if self.state == StateRole::Leader && self.lead_transferee != NONE {
                self.abort_leader_transfer();
            }
        }
        if self.state != StateRole::Leader {
            return;
        }
        if self.heartbeat_elapsed >= self.heartbeat_timeout {
            self.heartbeat_elapsed = 0;
            let _ = self.step(Message::new(MessageType::Beat, self.id, NONE));
        }
    }

    // ---- step ----

    /// Processes one message (local or from a peer).
    ///
    /// # Errors
    /// [`Error::ProposalDropped`] when a proposal (or a read request) cannot
    /// be handled; other messages never fail.
    pub fn step(&mut self, m: Message) -> Result<()> {
        // Handle the message's term, which may make this node step down.
        if m.term > self.term && m.term != 0 {
            if matches!(m.msg_type, MessageType::Vote | MessageType::PreVote) {
                let force = m.context.as_ref() == CAMPAIGN_TRANSFER;
                let in_lease = self.check_quorum
                    && self.lead != NONE
                    && self.election_elapsed < self.election_timeout;
                if !force && in_lease {
                    // Leader stickiness (Raft thesis §4.2.3): a node that heard
                    // from a live leader within the minimum election timeout
                    // neither updates its term nor grants a vote.
                    return Ok(());
                }
            }
            match m.msg_type {
                // A pre-vote never changes our term.
                MessageType::PreVote => {}
                // A granted pre-vote carries the pre-candidate's future term;
                // we move to it only if the pre-election wins.
                MessageType::PreVoteResp if !m.reject => {}
                MessageType::App | MessageType::Heartbeat | MessageType::Snap => {
                    self.become_follower(m.term, m.from);
                }
                _ => self.become_follower(m.term, NONE),
            }
        } else if m.term < self.term && m.term != 0 {
            if (self.check_quorum || self.pre_vote)
                && matches!(m.msg_type, MessageType::Heartbeat | MessageType::App)
            {
                // A leader of an older term: this node may have raised its
                // term while partitioned and can neither win nor rejoin the
                // old term. With check-quorum or pre-vote, vote requests at
                // its term are ignored, so answer with our term to make that
                // leader step down and let a fresh election include us.
                self.send(Message::new(MessageType::AppResp, NONE, m.from));
            } else if matches!(m.msg_type, MessageType::PreVote | MessageType::Vote) {
                // Reject so that a (pre-)candidate with a stale term learns
                // of ours (Raft thesis Figure 3.1: the RequestVote reply
                // carries the current term, for the candidate to update
                // itself). Otherwise a cluster mixing pre-vote and an older,
                // higher-term candidate could deadlock; and without pre-vote,
                // nodes that keep campaigning under a stale configuration
                // raise their terms while the one node that can win, to which
                // they send nothing, falls behind for good: its vote requests
                // are all stale. etcd ignores a stale MsgVote; the reject
                // changes nothing on this node, it only lets the candidate
                // catch up.
                self.send(Message {
                    msg_type: m.msg_type.vote_response(),
                    to: m.from,
                    term: self.term,
                    reject: true,
                    ..Default::default()
                });
            }
            // Other messages of older terms are stale: ignore them.
            return Ok(());
        }

        match m.msg_type {
            MessageType::Hup => {
                if self.pre_vote {
                    self.hup(CampaignType::PreElection);
                } else {
                    self.hup(CampaignType::Election);
                }
            }
            MessageType::Vote | MessageType::PreVote => self.handle_vote_request(m),
            _ => match self.state {
                StateRole::Leader => return self.step_leader(m),
                StateRole::Candidate | StateRole::PreCandidate => return self.step_candidate(m),
                StateRole::Follower => return self.step_follower(m),
            },
        }
        Ok(())
    }

    fn handle_vote_request(&mut self, m: Message) {
        // We can vote if this repeats a vote we cast, if we have not voted
        // and know no leader in this term, or if it is a pre-vote for a
        // future term...
        let can_vote = self.vote == m.from
            || (self.vote == NONE && self.lead == NONE)
            || (m.msg_type == MessageType::PreVote && m.term > self.term);
        // ...and the candidate's log is at least as up to date as ours
        // (Raft thesis §3.6.1, election restriction).
        let up_to_date = self
            .raft_log
            .is_up_to_date(EntryId::new(m.log_term, m.index));
        // Learners vote too: a learner may have been promoted by a change it
        // has not yet seen, and the candidate that knows it may need its vote.
        if can_vote && up_to_date {
            // Answer with the request's term, not ours: a pre-candidate must
            // recognize the answer even though we did not move to its term.
            self.send(Message {
                msg_type: m.msg_type.vote_response(),
                to: m.from,
                term: m.term,
                ..Default::default()
            });
            if m.msg_type == MessageType::Vote {
                // Only real votes are recorded.
                self.election_elapsed = 0;
                self.vote = m.from;
            }
        } else {
            self.send(Message {
                msg_type: m.msg_type.vote_response(),
                to: m.from,
                term: self.term,
                reject: true,
                ..Default::default()
            });
        }
    }

    // ---- follower-side handlers (also used by candidates) ----

    pub(crate) fn handle_append_entries(&mut self, m: Message) {
        if m.index < self.raft_log.committed {
            // Already committed here: tell the leader how far we are.
            let committed = self.raft_log.committed;
            self.send(Message {
                msg_type: MessageType::AppResp,
                to: m.from,
                index: committed,
                ..Default::default()
            });
            return;
        }
        let (from, index, log_term, commit) = (m.from, m.index, m.log_term, m.commit);
        let slice = LogSlice {
            term: m.term,
            prev: EntryId::new(log_term, index),
            entries: m.entries,
        };
        if let Err(why) = slice.valid() {
            // A malformed append (impossible from a correct leader): drop it
            // rather than corrupt the log.
            debug_assert!(false, "node {}: invalid append from {from}: {why}", self.id);
            return;
        }
        if let Some(last) = self.raft_log.maybe_append(slice, commit) {
            self.send(Message {
                msg_type: MessageType::AppResp,
                to: from,
                index: last,
                ..Default::default()
            });
            return;
        }
        // Our log does not match at `index`. Hint the largest (index, term)
        // where it may: the last entry with term <= log_term at or below
        // index, which lets the leader skip whole terms of our uncommitted
        // tail instead of probing one index per round trip.
        let hint_index = index.min(self.raft_log.last_index());
        let (hint_index, hint_term) = self.raft_log.find_conflict_by_term(hint_index, log_term);
        self.send(Message {
            msg_type: MessageType::AppResp,
            to: from,
            index,
            reject: true,
            reject_hint: hint_index,
            log_term: hint_term,
            ..Default::default()
        });
    }

    pub(crate) fn handle_heartbeat(&mut self, m: Message) {
        // The leader never sends a commit index beyond what we acked.
        let commit = m.commit.min(self.raft_log.last_index());
        self.raft_log.commit_to(commit);
        self.send(Message {
            msg_type: MessageType::HeartbeatResp,
            to: m.from,
            context: m.context,
            ..Default::default()
        });
    }

    pub(crate) fn handle_snapshot(&mut self, m: Message) {
        let s = m.snapshot.map(|s| *s).unwrap_or_default();
        let index = if self.restore(s) {
            self.raft_log.last_index()
        } else {
            self.raft_log.committed
        };
        self.send(Message {
            msg_type: MessageType::AppResp,
            to: m.from,
            index,
            ..Default::default()
        });
    }

    /// Restores the log and configuration from a snapshot sent by the
    /// leader. Returns false if the snapshot is stale or not for us.
    pub(crate) fn restore(&mut self, s: Snapshot) -> bool {
        if s.metadata.index <= self.raft_log.committed {
            return false;
        }
        if self.state != StateRole::Follower {
            // Defense in depth: only followers restore snapshots. Move to a
            // new term as a follower rather than risk a leader's log.
            self.become_follower(self.term + 1, NONE);
            return false;
        }
        // More defense in depth: a snapshot whose configuration does not
        // include us would leave us without progress.
        let cs = &s.metadata.conf_state;
        if ![&cs.voters, &cs.learners, &cs.voters_outgoing]
            .iter()
            .any(|set| set.contains(&self.id))
        {
            return false;
        }
        if self.raft_log.match_term(s.id()) {
            // We already have the snapshot's last entry: fast-forward the
            // commit index instead of discarding the log.
            self.raft_log.commit_to(s.metadata.index);
            return false;
        }
        if self.raft_log.applying() > self.raft_log.applied() {
            // The application is still applying committed entries handed out
            // before this snapshot arrived. Restoring now would switch to the
            // snapshot's configuration under it, and a configuration change
            // among those entries would then be applied a second time, on top
            // of a configuration that already includes it. Decline: the
            // leader retries (after the snapshot's status is reported and the
            // next heartbeat), by when they are applied.
            return false;
        }
        let cs = cs.clone();
        self.raft_log.restore(s);
        self.trk = ProgressTracker::new(self.trk.max_inflight, self.trk.max_inflight_bytes);
        let (cfg, prs) = confchange::restore(
            &Changer {
                tracker: &self.trk,
                last_index: self.raft_log.last_index(),
            },
            &cs,
        )
        .unwrap_or_else(|e| panic!("node {}: unable to restore config {cs:?}: {e}", self.id));
        let restored = self.switch_to_config(cfg, prs);
        assert!(
            restored.equivalent(&cs),
            "restored ConfState {restored:?} differs from the snapshot's {cs:?}"
        );
        true
    }

    // ---- membership ----

    /// Applies a committed configuration change and returns the new
    /// membership.
    ///
    /// # Errors
    /// [`Error::ConfChangeInvalid`] if the change is impossible from the
    /// current configuration (nothing changes then).
    pub fn apply_conf_change(&mut self, cc: &ConfChangeV2) -> Result<ConfState> {
        let changer = Changer {
            tracker: &self.trk,
            last_index: self.raft_log.last_index(),
        };
        let result = if cc.leave_joint() {
            changer.leave_joint()
        } else if let Some(auto_leave) = cc.enter_joint() {
            changer.enter_joint(auto_leave, &cc.changes)
        } else {
            changer.simple(&cc.changes)
        };
        let (cfg, prs) = result.map_err(Error::ConfChangeInvalid)?;
        Ok(self.switch_to_config(cfg, prs))
    }

    /// Installs a new configuration and progress map, and reacts to it: a
    /// removed leader steps down (if configured), a leader commits what the
    /// new quorum allows and probes new members.
    pub(crate) fn switch_to_config(&mut self, cfg: TrackerConfig, prs: ProgressMap) -> ConfState {
        self.trk.config = cfg;
        self.trk.progress = prs;
        let cs = self.trk.conf_state();
        let member = self.trk.progress.get(&self.id);
        self.is_learner = member.is_some_and(|pr| pr.is_learner);
        if (member.is_none() || self.is_learner) && self.state == StateRole::Leader {
            if self.step_down_on_removal {
                self.become_follower(self.term, NONE);
            }
            return cs;
        }
        if self.state != StateRole::Leader || cs.voters.is_empty() {
            return cs;
        }
        if self.maybe_commit() {
            // The new quorum commits more: tell everyone.
            self.bcast_append();
        } else {
            // Probe new members now rather than at the next heartbeat.
            for id in self.peers() {
                self.maybe_send_append(id, false);
            }
        }
        if self.lead_transferee != NONE && !self.trk.config.voters.contains(self.lead_transferee) {
            self.abort_leader_transfer();
        }
        cs
    }

    pub(crate) fn abort_leader_transfer(&mut self) {
        self.lead_transferee = NONE;
    }

    pub(crate) fn send_timeout_now(&mut self, to: NodeId) {
        self.send(Message::new(MessageType::TimeoutNow, NONE, to));
    }

    // ---- reads ----

    /// Answers a read request with `read_index`: locally as a ReadState, or
    /// to the follower that forwarded it.
    pub(crate) fn response_to_read_index_req(&mut self, req: Message, read_index: u64) {
        if req.from == NONE || req.from == self.id {
            self.read_states.push(ReadState {
                index: read_index,
                request_ctx: req.entries[0].data.clone(),
            });
            return;
        }
        self.send(Message {
            msg_type: MessageType::ReadIndexResp,
            to: req.from,
            index: read_index,
            entries: req.entries,
            ..Default::default()
        });
    }

    pub(crate) fn send_read_index_response(&mut self, m: Message) {
        match self.read_only.option {
            ReadOnlyOption::Safe => {
                // Confirm leadership with a heartbeat round (Raft thesis §6.4
                // step 3); our own ack counts at once.
                let ctx = m.entries[0].data.clone();
                self.read_only.add_request(self.raft_log.committed, m);
                self.read_only.recv_ack(self.id, &ctx);
                self.bcast_heartbeat_with_ctx(ctx);
            }
            ReadOnlyOption::LeaseBased => {
                let committed = self.raft_log.committed;
                self.response_to_read_index_req(m, committed);
            }
        }
    }

    pub(crate) fn release_pending_read_index_messages(&mut self) {
        if self.pending_read_index_messages.is_empty() || !self.committed_entry_in_current_term() {
            return;
        }
        for m in std::mem::take(&mut self.pending_read_index_messages) {
            self.send_read_index_response(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let (mut a, mut b) = (SplitMix64(7), SplitMix64(7));
        for _ in 0..1000 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
        }
    }
}
