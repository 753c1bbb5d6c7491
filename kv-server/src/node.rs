//! The node: one thread that owns the [`RawNode`], the WAL and the state
//! machine, and runs the Ready loop (our version of etcd's `node.go` and
//! raftexample's `raft.go`).
//!
//! Everything reaches the node as an [`Event`] on one channel. The loop
//! waits for an event or the next tick, drains every event already queued,
//! and then handles one Ready: everything that arrived while the previous
//! Ready was being synced goes into the next one, so one WAL sync covers
//! many writes (group commit).
//!
//! The order within a Ready follows raft-core's contract:
//! 1. send `messages()` at once: a leader's appends go out while its own
//!    write is in flight (Raft thesis §10.2.1); raft-core keeps every
//!    acknowledgement in `persisted_messages()`, so nothing is acked early;
//! 2. restore a snapshot from the leader (its file saved first);
//! 3. apply committed entries, answering the requests that arrived here.
//!    This comes before our own write of the Ready's new entries, as etcd's
//!    server applies concurrently with it: a committed entry is already
//!    durable on a quorum (acknowledgements, the leader's own included, are
//!    sent only after persisting), so answering it cannot wait for another
//!    sync; and the state machine lives in memory, so a crash loses nothing
//!    that recovery (snapshot + WAL) does not rebuild;
//! 4. persist the entries and hard state, with one sync;
//! 5. send `persisted_messages()`;
//! 6. note read states, `advance`, serve reads whose index is applied;
//! 7. snapshot (only now: the entries it covers are in the log storage)
//!    after a membership change and every `snapshot_count` entries; the file
//!    is written on another thread and the WAL released once it is durable.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use raft_core::{
    ConfChange, ConfChangeI, ConfChangeSingle, ConfChangeType, Config, Entry, EntryType,
    Error as RaftError, MemStorage, Message, NodeId, RawNode, Ready, Snapshot, SnapshotStatus,
    StateRole, Storage,
};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::api::{ApiError, Limits, Request, Response};
use crate::metrics::{Histogram, Metrics};
use crate::state_machine::{Command, Proposal, StateMachine};
use crate::storage::{DiskStorage, NodeSnapshot};

/// How a node is configured (from the command line).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id (1-based, as in raftexample).
    pub id: NodeId,
    /// The peer URLs of the initial cluster (node i+1 is the i-th URL).
    pub peers: BTreeMap<NodeId, String>,
    /// Join an existing cluster instead of bootstrapping a new one.
    pub join: bool,
    /// Where the WAL and snapshots live.
    pub data_dir: std::path::PathBuf,
    /// Applied entries between snapshots.
    pub snapshot_count: u64,
    /// Entries kept in the log behind a snapshot, so that a follower that is
    /// only a little behind catches up from the log rather than a snapshot.
    pub catch_up_entries: u64,
    /// The tick interval.
    pub tick: Duration,
    /// Ticks before a follower campaigns.
    pub election_tick: usize,
    /// Ticks between heartbeats.
    pub heartbeat_tick: usize,
    /// How long a request may wait for its outcome.
    pub request_timeout: Duration,
}

/// Who is asking, and where to send the answer.
type Responder = oneshot::Sender<Result<Response, ApiError>>;

/// What the node is asked to do.
pub enum Event {
    /// A raft message from a peer.
    Raft(Message),
    /// A write to replicate; answered once applied here.
    Propose(Command, Responder),
    /// A read (`Get` or `List`) to serve linearizably, after a ReadIndex
    /// round.
    Read(Request, Responder),
    /// A read to serve from local state at once (serializable).
    LocalRead(Request, Responder),
    /// A membership change.
    ConfChange(MemberChange, Responder),
    /// Hand leadership to another node.
    TransferLeader(NodeId, Responder),
    /// The transport could not deliver to a peer.
    Unreachable(NodeId),
    /// The outcome of sending a snapshot.
    SnapshotStatus(NodeId, bool),
    /// A read of the node's status (for /state, /stats, /members, /health).
    Status(oneshot::Sender<NodeStatus>),
    /// Stop: fail pending requests, sync, exit the loop.
    Shutdown,
}

/// A membership change request.
#[derive(Clone, Debug)]
pub enum MemberChange {
    /// Add a voter (or a learner) with its peer URL.
    Add {
        /// The new node's id.
        id: NodeId,
        /// Its peer URL.
        url: String,
        /// Add as a learner.
        learner: bool,
    },
    /// Promote a learner to voter.
    Promote(NodeId),
    /// Remove a node.
    Remove(NodeId),
}

/// A member of the cluster as the node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The node id.
    pub id: NodeId,
    /// Its peer URL.
    pub peer_url: String,
    /// Voter (true) or learner.
    pub voter: bool,
}

/// The node's view of itself and the cluster.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// This node's id.
    pub id: NodeId,
    /// Its role.
    pub role: StateRole,
    /// Whether it is a learner.
    pub learner: bool,
    /// The current term.
    pub term: u64,
    /// The known leader (0 if none).
    pub leader: NodeId,
    /// The commit index.
    pub commit: u64,
    /// The applied index.
    pub applied: u64,
    /// The members.
    pub members: Vec<Member>,
    /// raft progress of each follower (on the leader): (id, match, next, state).
    pub progress: Vec<(NodeId, u64, u64, String)>,
    /// The index of the last snapshot.
    pub snapshot_index: u64,
    /// Number of keys in the store.
    pub keys: usize,
    /// WAL statistics.
    pub wal: wal::WalStats,
}

/// A request waiting for its entry to be applied.
struct Waiter {
    tx: Responder,
    deadline: Instant,
    proposed: Instant,
    /// Whether the write's entry is known durable in this node's WAL (only
    /// observed on the leader, which appends its own proposals).
    synced: bool,
}

/// Reads sharing one ReadIndex round.
struct ReadBatch {
    reads: Vec<(Request, Responder)>,
    deadline: Instant,
    started: Instant,
}

/// The node's state, owned by its thread.
pub struct Node<T: PeerSink> {
    cfg: NodeConfig,
    raw: RawNode<MemStorage>,
    disk: DiskStorage,
    sm: StateMachine,
    members: BTreeMap<NodeId, String>,
    transport: T,
    metrics: NodeMetrics,
    limits: Limits,
    next_req: u64,
    waiters: HashMap<u64, Waiter>,
    /// Reads not yet sent as a ReadIndex request (waiting for the next
    /// round, or for a leader), with their deadline.
    unsent_reads: Vec<(Request, Responder, Instant)>,
    /// Writes that raft refused for now (no leader yet, a leader transfer in
    /// progress): retried every tick and when a leader appears, until their
    /// deadline. Safe to retry: a refused proposal was never appended.
    parked: Vec<(Command, Responder, Instant)>,
    /// Reads sent as a ReadIndex request, by request context.
    sent_reads: BTreeMap<u64, ReadBatch>,
    /// Confirmed reads waiting for `applied >= index`, in index order.
    confirmed_reads: VecDeque<(u64, ReadBatch)>,
    next_read_ctx: u64,
    transfers: Vec<(NodeId, Responder, Instant)>,
    leader: NodeId,
    applied: u64,
    snapshot_index: u64,
    /// A membership change was applied in this Ready: take a snapshot once
    /// it is persisted.
    conf_changed: bool,
    /// While this node leads: its term, the last index when it took over,
    /// and when; until every member has acknowledged that index (or an
    /// election timeout has passed), then it proposes the term's marker.
    leading: Option<(u64, u64, Instant)>,
    /// The last term whose marker this node applied (see [`Node::mark_term`]).
    marked_term: u64,
    removed: bool,
}

/// Where the node sends raft messages (the peer transport, or a test double).
pub trait PeerSink: Send + 'static {
    /// Sends messages; never blocks (drops when a peer's queue is full).
    fn send(&self, msgs: Vec<Message>);
    /// A member was added (or its address changed).
    fn add_peer(&self, id: NodeId, url: &str);
    /// A member was removed.
    fn remove_peer(&self, id: NodeId);
}

/// Proposal ids carry the proposing node in their high bits, so that the
/// node that received a request answers it when it applies the entry.
const ORIGIN_SHIFT: u32 = 40;

fn origin_of(proposal_id: u64) -> NodeId {
    proposal_id >> ORIGIN_SHIFT
}

/// The context of a conf change: who asked, and the peer URL.
fn encode_cc_context(origin: NodeId, req: u64, url: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(16 + url.len());
    b.put_u64_le(origin);
    b.put_u64_le(req);
    b.put_slice(url.as_bytes());
    b.freeze()
}

fn decode_cc_context(mut data: &[u8]) -> Option<(NodeId, u64, String)> {
    if data.len() < 16 {
        return None;
    }
    let origin = data.get_u64_le();
    let req = data.get_u64_le();
    Some((origin, req, String::from_utf8_lossy(data).into_owned()))
}

impl<T: PeerSink> Node<T> {
    /// Opens the data directory (recovering or bootstrapping) and builds the
    /// node.
    ///
    /// # Errors
    /// If the WAL or snapshot cannot be read (corruption is reported, never
    /// skipped), or the configuration is invalid.
    pub fn open(
        cfg: NodeConfig,
        transport: T,
        metrics: &Metrics,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        let bootstrap = (!cfg.join).then(|| NodeSnapshot {
            members: cfg.peers.clone(),
            kv: StateMachine::default().snapshot(),
        });
        let voters: Vec<NodeId> = cfg.peers.keys().copied().collect();
        let (disk, recovered) = DiskStorage::open(&cfg.data_dir, bootstrap, voters)?;
        let mut storage = MemStorage::new();
        let mut sm = StateMachine::default();
        let mut members = cfg.peers.clone();
        let mut snapshot_index = 0;
        if let Some(snap) = recovered.snapshot {
            let state = NodeSnapshot::decode(&snap.data)?;
            sm = StateMachine::restore(&state.kv)?;
            members = state.members;
            snapshot_index = snap.metadata.index;
            storage.apply_snapshot(snap)?;
        }
        storage.append(&recovered.entries)?;
        if let Some(hs) = recovered.hard_state {
            storage.set_hard_state(hs);
        }
        let mut rc = Config::new(cfg.id);
        rc.election_tick = cfg.election_tick;
        rc.heartbeat_tick = cfg.heartbeat_tick;
        rc.applied = snapshot_index;
        rc.max_size_per_msg = 1024 * 1024;
        rc.max_inflight_msgs = 256;
        rc.max_committed_size_per_ready = 16 * 1024 * 1024;
        rc.max_uncommitted_entries_size = 256 * 1024 * 1024;
        // Build appends when the Ready is taken: one message per follower for
        // everything proposed since the last Ready.
        rc.batch_appends = true;
        rc.seed = cfg.id ^ (std::process::id() as u64) << 32;
        let mut raw = RawNode::new(&rc, storage)?;
        for (&id, url) in &members {
            if id != cfg.id {
                transport.add_peer(id, url);
            }
        }
        let voters = raw.raft().tracker().config.voters.ids().collect::<Vec<_>>();
        if voters == [cfg.id] {
            // A single-node cluster need not wait out an election timeout.
            raw.campaign()?;
        }
        info!(id = cfg.id, snapshot_index, "node started");
        Ok(Node {
            cfg,
            raw,
            disk,
            sm,
            members,
            transport,
            metrics: NodeMetrics::new(metrics),
            limits,
            next_req: 1,
            waiters: HashMap::new(),
            unsent_reads: Vec::new(),
            parked: Vec::new(),
            sent_reads: BTreeMap::new(),
            confirmed_reads: VecDeque::new(),
            next_read_ctx: 1,
            transfers: Vec::new(),
            leader: 0,
            applied: snapshot_index,
            snapshot_index,
            conf_changed: false,
            leading: None,
            marked_term: 0,
            removed: false,
        })
    }

    /// Runs the loop until `Shutdown` arrives or every sender is gone.
    ///
    /// # Errors
    /// A failed WAL write or sync: the node stops rather than acknowledge
    /// anything it could not make durable.
    pub fn run(mut self, events: mpsc::Receiver<Event>) -> anyhow::Result<()> {
        let mut next_tick = Instant::now() + self.cfg.tick;
        loop {
            let wait = if self.read_round_due() {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            let first = match events.recv_timeout(wait) {
                Ok(ev) => Some(ev),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut stop = false;
            // Group commit: take everything already queued into this Ready,
            // bounded so that a flood cannot starve ticks.
            for ev in first
                .into_iter()
                .chain(std::iter::from_fn(|| events.try_recv().ok()).take(4096))
            {
                if matches!(ev, Event::Shutdown) {
                    stop = true;
                    break;
                }
                self.handle_event(ev);
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                self.expire(now);
                next_tick += self.cfg.tick;
                if next_tick < now {
                    // We fell behind (e.g. a long sync): don't burst ticks.
                    next_tick = now + self.cfg.tick;
                }
            }
            self.send_read_index();
            self.mark_term();
            self.handle_ready()?;
            self.disk.finish_background_save(false)?;
            if stop {
                break;
            }
        }
        self.shutdown()
    }

    fn shutdown(mut self) -> anyhow::Result<()> {
        // Finish what is ready, then fail whatever still waits.
        self.handle_ready()?;
        self.disk.finish_background_save(true)?;
        self.disk.sync()?;
        let err = || ApiError::unavailable(None, "server is shutting down");
        for (_, w) in self.waiters.drain() {
            let _ = w.tx.send(Err(ApiError::timeout(
                "server shut down before the outcome was known",
            )));
        }
        for (_, tx, _) in self.unsent_reads.drain(..) {
            let _ = tx.send(Err(err()));
        }
        for (_, tx, _) in self.parked.drain(..) {
            let _ = tx.send(Err(err()));
        }
        for (_, b) in std::mem::take(&mut self.sent_reads) {
            fail_batch(b, err());
        }
        for (_, b) in self.confirmed_reads.drain(..) {
            fail_batch(b, err());
        }
        for (_, tx, _) in self.transfers.drain(..) {
            let _ = tx.send(Err(err()));
        }
        info!(id = self.cfg.id, "node stopped");
        Ok(())
    }

    fn handle_event(&mut self, ev: Event) {
        match ev {
            Event::Raft(m) => {
                if let Err(e) = self.raw.step(m) {
                    debug!(error = %e, "step failed");
                }
            }
            Event::Propose(cmd, tx) => {
                let deadline = Instant::now() + self.cfg.request_timeout;
                self.propose(cmd, tx, deadline);
            }
            Event::Read(op, tx) => {
                let deadline = Instant::now() + self.cfg.request_timeout;
                self.unsent_reads.push((op, tx, deadline));
            }
            Event::LocalRead(op, tx) => {
                let _ = tx.send(self.read(&op));
            }
            Event::ConfChange(change, tx) => self.propose_conf_change(change, tx),
            Event::TransferLeader(to, tx) => self.transfer_leader(to, tx),
            Event::Unreachable(id) => self.raw.report_unreachable(id),
            Event::SnapshotStatus(id, ok) => self.raw.report_snapshot(
                id,
                if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                },
            ),
            Event::Status(tx) => {
                let _ = tx.send(self.status());
            }
            Event::Shutdown => {}
        }
    }

    fn unavailable(&self) -> ApiError {
        let leader = (self.leader != 0).then_some(self.leader);
        ApiError::unavailable(leader, "no leader available; retry")
    }

    fn propose(&mut self, cmd: Command, tx: Responder, deadline: Instant) {
        if self.removed {
            let _ = tx.send(Err(ApiError::unavailable(
                None,
                "this node was removed from the cluster",
            )));
            return;
        }
        let req = self.next_proposal_id();
        let data = Proposal {
            id: req,
            command: cmd.clone(),
        }
        .encode();
        match self.raw.propose(data) {
            Ok(()) => {
                self.waiters.insert(
                    req,
                    Waiter {
                        tx,
                        deadline,
                        proposed: Instant::now(),
                        synced: false,
                    },
                );
            }
            Err(RaftError::ProposalDropped) => self.parked.push((cmd, tx, deadline)),
            Err(e) => {
                let _ = tx.send(Err(ApiError::internal(e.to_string())));
            }
        }
    }

    /// Proposes the parked writes again (when a leader may take them).
    fn retry_parked(&mut self) {
        for (cmd, tx, deadline) in std::mem::take(&mut self.parked) {
            self.propose(cmd, tx, deadline);
        }
    }

    fn next_proposal_id(&mut self) -> u64 {
        let id = (self.cfg.id << ORIGIN_SHIFT) | (self.next_req & ((1 << ORIGIN_SHIFT) - 1));
        self.next_req += 1;
        id
    }

    fn propose_conf_change(&mut self, change: MemberChange, tx: Responder) {
        let req = self.next_proposal_id();
        let (change_type, node_id, url) = match change {
            MemberChange::Add { id, url, learner } => {
                let t = if learner {
                    ConfChangeType::AddLearnerNode
                } else {
                    ConfChangeType::AddNode
                };
                (t, id, url)
            }
            MemberChange::Promote(id) => {
                let Some(url) = self.members.get(&id).cloned() else {
                    let _ = tx.send(Err(ApiError::not_found(format!(
                        "node {id} is not a member"
                    ))));
                    return;
                };
                if !self.raw.raft().tracker().config.learners.contains(&id) {
                    let _ = tx.send(Err(ApiError::bad_request(format!(
                        "node {id} is not a learner"
                    ))));
                    return;
                }
                (ConfChangeType::AddNode, id, url)
            }
            MemberChange::Remove(id) => {
                if !self.members.contains_key(&id) {
                    let _ = tx.send(Err(ApiError::not_found(format!(
                        "node {id} is not a member"
                    ))));
                    return;
                }
                (ConfChangeType::RemoveNode, id, String::new())
            }
        };
        if node_id == 0 {
            let _ = tx.send(Err(ApiError::bad_request("node id must be at least 1")));
            return;
        }
        let cc = ConfChange {
            change_type,
            node_id,
            context: encode_cc_context(self.cfg.id, req, &url),
        };
        match self.raw.propose_conf_change(cc) {
            Ok(()) => {
                let now = Instant::now();
                self.waiters.insert(
                    req,
                    Waiter {
                        tx,
                        deadline: now + self.cfg.request_timeout,
                        proposed: now,
                        synced: false,
                    },
                );
            }
            Err(_) => {
                let _ = tx.send(Err(self.unavailable()));
            }
        }
    }

    fn transfer_leader(&mut self, to: NodeId, tx: Responder) {
        let voters = &self.raw.raft().tracker().config.voters;
        if !voters.contains(to) {
            let _ = tx.send(Err(ApiError::bad_request(format!(
                "node {to} is not a voter"
            ))));
            return;
        }
        if self.leader == to {
            let _ = tx.send(Ok(Response::Done));
            return;
        }
        if self.leader == 0 {
            let _ = tx.send(Err(self.unavailable()));
            return;
        }
        self.raw.transfer_leader(to);
        // A transfer gets two election timeouts: raft abandons it after one.
        let deadline = Instant::now() + self.cfg.tick * (2 * self.cfg.election_tick as u32);
        self.transfers.push((to, tx, deadline));
    }

    /// On a leader: once every member has acknowledged the entries it held
    /// when it took over (so every member knows it leads), or an election
    /// timeout later (a member that is down cannot), proposes the term's
    /// marker, an empty entry. Whoever applies it knows the whole cluster
    /// follows this leader: a leader transfer answers then.
    fn mark_term(&mut self) {
        let Some((term, start, since)) = self.leading else {
            return;
        };
        let raft = self.raw.raft();
        let all_acked = raft
            .tracker()
            .progress
            .values()
            .all(|pr| pr.matched >= start);
        let waited = since.elapsed() >= self.cfg.tick * self.cfg.election_tick as u32;
        if raft.term != term || !(all_acked || waited) {
            return;
        }
        if self.raw.propose(Bytes::new()).is_ok() {
            self.leading = None;
        }
    }

    /// Whether waiting reads should start a ReadIndex round now. Without a
    /// leader no round can succeed: they wait for one. While a round is in
    /// flight, reads that arrive wait for it to end and then share the next
    /// one (as etcd's read loop does): under load one round serves many
    /// reads, instead of one round per loop iteration each costing every
    /// follower a heartbeat. A round older than a tick is presumed lost (a
    /// dropped message) and no longer holds the next one back.
    fn read_round_due(&self) -> bool {
        !self.unsent_reads.is_empty()
            && self.leader != 0
            && self
                .sent_reads
                .last_key_value()
                .is_none_or(|(_, b)| b.started.elapsed() >= self.cfg.tick)
    }

    /// Sends one ReadIndex request for every read that arrived since the
    /// last one, when [`Self::read_round_due`].
    fn send_read_index(&mut self) {
        if !self.read_round_due() {
            return;
        }
        // The leader keys pending ReadIndex requests by context and ignores a duplicate,
        // so contexts must be unique across nodes, not only within one: carry the node id
        // in the high bits, as proposal ids do.
        let ctx = (self.cfg.id << ORIGIN_SHIFT) | (self.next_read_ctx & ((1 << ORIGIN_SHIFT) - 1));
        self.next_read_ctx += 1;
        let reads = std::mem::take(&mut self.unsent_reads);
        let deadline = reads.iter().map(|r| r.2).max().expect("at least one read");
        let batch = ReadBatch {
            reads: reads.into_iter().map(|(r, tx, _)| (r, tx)).collect(),
            deadline,
            started: Instant::now(),
        };
        match self.raw.read_index(ctx.to_le_bytes().to_vec()) {
            Ok(()) => {
                self.sent_reads.insert(ctx, batch);
            }
            Err(_) => {
                let retry = batch.reads.into_iter().map(|(r, tx)| (r, tx, deadline));
                self.unsent_reads.extend(retry);
            }
        }
    }

    fn read(&self, req: &Request) -> Result<Response, ApiError> {
        self.sm
            .read(req, &self.limits)
            .unwrap_or_else(|| Err(ApiError::bad_request("not a read request")))
    }

    fn handle_ready(&mut self) -> anyhow::Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.soft_state() {
            self.on_soft_state(ss.leader_id, ss.raft_state);
        }
        // 1. Appends and heartbeats go out while we write.
        self.transport.send(rd.take_messages());
        // 2. A snapshot from the leader replaces our state.
        if let Some(snap) = rd.take_snapshot() {
            self.restore(snap)?;
        }
        // 3. Apply, and answer the writes. Committed entries are durable on a
        // quorum already (every acknowledgement, the leader's own included,
        // is sent only once persisted), so they need not wait for this
        // Ready's write of newer entries: that would add one sync to every
        // write's latency. (etcd's server applies concurrently with
        // persisting too.)
        for entry in rd.take_committed_entries() {
            self.apply(entry)?;
        }
        // 4. Persist, one sync.
        let sync_started = Instant::now();
        let appended = !rd.entries().is_empty();
        self.persist(&mut rd)?;
        self.metrics.sync.observe(sync_started.elapsed());
        if appended && self.raw.raft().state() == StateRole::Leader {
            // A leader's Ready carries every proposal made before it was
            // taken: those writes are now in our WAL.
            for w in self
                .waiters
                .values_mut()
                .filter(|w| !w.synced && w.proposed <= sync_started)
            {
                w.synced = true;
                self.metrics.to_sync.observe(w.proposed.elapsed());
            }
        }
        // 5. Acknowledgements only now.
        self.transport.send(rd.take_persisted_messages());
        // 6. Reads.
        for rs in rd.take_read_states() {
            let ctx = rs.request_ctx.as_ref().try_into().map(u64::from_le_bytes);
            let Some(ctx) = ctx.ok().filter(|c| self.sent_reads.contains_key(c)) else {
                continue;
            };
            // Older rounds still waiting were lost (a dropped message): their
            // reads arrived before this round began, so its index serves
            // them too, rather than letting them wait out their deadline.
            let newer = self.sent_reads.split_off(&(ctx + 1));
            for (_, batch) in std::mem::replace(&mut self.sent_reads, newer) {
                self.metrics.read_index.observe(batch.started.elapsed());
                self.confirmed_reads.push_back((rs.index, batch));
            }
        }
        self.raw.advance(rd);
        self.finish_transfers();
        self.serve_reads();
        // Snapshots only now that the entries they cover are in the log
        // storage (committed entries may have been applied before they were
        // persisted here).
        if std::mem::take(&mut self.conf_changed) {
            // A node added now will be caught up from a snapshot: it must
            // carry the membership that includes it, so take one.
            self.snapshot_now()?;
        }
        self.maybe_snapshot()?;
        Ok(())
    }

    /// Replaces this node's state with a snapshot from the leader (its file
    /// first: the WAL marker written with it must find it on restart).
    fn restore(&mut self, snap: Snapshot) -> anyhow::Result<()> {
        let state = NodeSnapshot::decode(&snap.data)?;
        self.disk.save_snapshot(&snap)?;
        self.sm = StateMachine::restore(&state.kv)?;
        self.set_members(state.members);
        self.applied = snap.metadata.index;
        self.snapshot_index = snap.metadata.index;
        self.raw.store_mut().apply_snapshot(snap)?;
        Ok(())
    }

    fn persist(&mut self, rd: &mut Ready) -> anyhow::Result<()> {
        let entries = rd.entries();
        if !entries.is_empty() {
            self.disk.append(entries)?;
            self.raw.store_mut().append(entries)?;
        }
        if let Some(hs) = rd.hard_state() {
            self.disk.save_hard_state(hs)?;
            self.raw.store_mut().set_hard_state(*hs);
        }
        if rd.must_sync() {
            self.disk.sync()?;
        }
        Ok(())
    }

    fn set_members(&mut self, members: BTreeMap<NodeId, String>) {
        for id in self.members.keys() {
            if !members.contains_key(id) && *id != self.cfg.id {
                self.transport.remove_peer(*id);
            }
        }
        for (&id, url) in &members {
            if id != self.cfg.id && self.members.get(&id) != Some(url) {
                self.transport.add_peer(id, url);
            }
        }
        self.members = members;
    }

    fn on_soft_state(&mut self, leader: NodeId, role: StateRole) {
        self.leading = (role == StateRole::Leader).then(|| {
            let raft = self.raw.raft();
            (raft.term, raft.raft_log.last_index(), Instant::now())
        });
        if leader != self.leader {
            info!(id = self.cfg.id, leader, ?role, "leader changed");
            self.leader = leader;
            // ReadIndex requests in flight may have been dropped with the old
            // leader: ask again (reads have no side effects).
            for (_, batch) in std::mem::take(&mut self.sent_reads) {
                let deadline = batch.deadline;
                let retry = batch.reads.into_iter().map(|(r, tx)| (r, tx, deadline));
                self.unsent_reads.extend(retry);
            }
            if leader != 0 {
                self.retry_parked();
            }
        }
    }

    /// Answers the leader transfers that are complete: this node sees their
    /// target as leader and has applied the marker of the target's term, so
    /// every member has acknowledged the new leader (or, if one could not
    /// within an election timeout, every member that could).
    fn finish_transfers(&mut self) {
        let raft = self.raw.raft();
        let leader = raft.leader_id();
        if self.transfers.is_empty() || leader == 0 || self.marked_term != raft.term {
            return;
        }
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.transfers)
            .into_iter()
            .partition(|(to, _, _)| *to == leader);
        for (_, tx, _) in done {
            let _ = tx.send(Ok(Response::Done));
        }
        self.transfers = waiting;
    }

    fn apply(&mut self, entry: Entry) -> anyhow::Result<()> {
        let index = entry.index;
        match entry.entry_type {
            EntryType::Normal => {
                if entry.data.is_empty() {
                    // A new leader's empty entry opens its term; an empty
                    // entry later in the same term is its marker.
                    let prev = self.raw.raft().raft_log.term(index - 1).ok();
                    if prev == Some(entry.term) {
                        self.marked_term = entry.term;
                    }
                } else if let Ok(p) = Proposal::decode(&entry.data) {
                    let mine = origin_of(p.id) == self.cfg.id;
                    if let Some(w) = self.waiters.get(&p.id).filter(|_| mine) {
                        self.metrics.to_commit.observe(w.proposed.elapsed());
                    }
                    let result = self
                        .sm
                        .apply(p.command)
                        .map(|()| Response::Done)
                        .map_err(ApiError::from);
                    if mine {
                        if let Some(w) = self.waiters.remove(&p.id) {
                            self.metrics.apply.observe(w.proposed.elapsed());
                            let _ = w.tx.send(result);
                        }
                    }
                } else {
                    // Every node skips it alike, so the replicas stay equal.
                    warn!(index, "skipping an entry of unknown format");
                }
            }
            EntryType::ConfChange | EntryType::ConfChangeV2 => {
                let cc = ConfChangeI::from_entry(&entry)
                    .map_err(|e| anyhow::anyhow!("entry {index}: {e}"))?;
                self.apply_conf_change(&cc);
                self.conf_changed = true;
            }
        }
        self.applied = index;
        Ok(())
    }

    fn apply_conf_change(&mut self, cc: &ConfChangeI) {
        let v2 = cc.as_v2();
        let ctx = decode_cc_context(&v2.context);
        let answer = match self.raw.apply_conf_change(cc) {
            Ok(_) => {
                let mut members = self.members.clone();
                for ConfChangeSingle {
                    change_type,
                    node_id,
                } in &v2.changes
                {
                    match change_type {
                        ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                            if let Some((_, _, url)) = &ctx {
                                if !url.is_empty() {
                                    members.insert(*node_id, url.clone());
                                }
                            }
                        }
                        ConfChangeType::RemoveNode => {
                            members.remove(node_id);
                            if *node_id == self.cfg.id && !self.removed {
                                info!(id = self.cfg.id, "this node was removed from the cluster");
                                self.removed = true;
                            }
                        }
                        ConfChangeType::UpdateNode => {}
                    }
                }
                self.set_members(members);
                Ok(Response::Done)
            }
            Err(e) => Err(ApiError::bad_request(e.to_string())),
        };
        if let Some((origin, req, _)) = ctx {
            if origin == self.cfg.id {
                if let Some(w) = self.waiters.remove(&req) {
                    let _ = w.tx.send(answer);
                }
            }
        }
    }

    fn serve_reads(&mut self) {
        while let Some((index, _)) = self.confirmed_reads.front() {
            if *index > self.applied {
                break;
            }
            let (_, batch) = self.confirmed_reads.pop_front().expect("front exists");
            for (op, tx) in batch.reads {
                let _ = tx.send(self.read(&op));
            }
        }
    }

    fn maybe_snapshot(&mut self) -> anyhow::Result<()> {
        if self.applied < self.snapshot_index + self.cfg.snapshot_count {
            return Ok(());
        }
        self.snapshot_now()
    }

    fn snapshot_now(&mut self) -> anyhow::Result<()> {
        if self.applied <= self.snapshot_index {
            return Ok(());
        }
        let started = Instant::now();
        let index = self.applied;
        let state = NodeSnapshot {
            members: self.members.clone(),
            kv: self.sm.snapshot(),
        };
        let cs = self.raw.raft().tracker().conf_state();
        let snap = self
            .raw
            .store_mut()
            .create_snapshot(index, Some(cs), state.encode())?;
        self.snapshot_index = index;
        // Keep some entries so slightly lagging followers need no snapshot.
        let compact_to = index.saturating_sub(self.cfg.catch_up_entries);
        if compact_to > self.raw.store().first_index()? {
            self.raw.store_mut().compact(compact_to)?;
        }
        // The WAL keeps every entry until the file is durable and its marker
        // written; if a save is still in flight this one is only in memory
        // (raft sends it to followers) and a later one goes to disk.
        self.disk.save_snapshot_in_background(snap)?;
        self.metrics.snapshot.observe(started.elapsed());
        info!(id = self.cfg.id, index, "snapshot taken");
        Ok(())
    }

    fn expire(&mut self, now: Instant) {
        for k in expired_keys(&self.waiters, now, |w| w.deadline) {
            if let Some(w) = self.waiters.remove(&k) {
                let _ = w.tx.send(Err(ApiError::timeout(
                    "timed out waiting for the write to apply; it may or may not have taken effect",
                )));
            }
        }
        for k in expired_keys(&self.sent_reads, now, |b| b.deadline) {
            if let Some(b) = self.sent_reads.remove(&k) {
                let err = ApiError::unavailable(None, "timed out confirming leadership for a read");
                fail_batch(b, err);
            }
        }
        for (_, tx, _) in take_expired(&mut self.parked, now, |p| p.2) {
            let _ = tx.send(Err(self.unavailable()));
        }
        self.retry_parked();
        for (_, tx, _) in take_expired(&mut self.unsent_reads, now, |r| r.2) {
            let _ = tx.send(Err(self.unavailable()));
        }
        for (to, tx, _) in take_expired(&mut self.transfers, now, |t| t.2) {
            let msg = format!("leadership transfer to {to} did not complete");
            let _ = tx.send(Err(ApiError::unavailable(None, msg)));
        }
    }

    fn status(&self) -> NodeStatus {
        let st = self.raw.status();
        let cfg = &st.config;
        // The map iterates in id order.
        let members: Vec<Member> = self
            .members
            .iter()
            .map(|(&id, url)| Member {
                id,
                peer_url: url.clone(),
                voter: !cfg.learners.contains(&id),
            })
            .collect();
        NodeStatus {
            id: self.cfg.id,
            role: st.soft_state.raft_state,
            learner: cfg.learners.contains(&self.cfg.id),
            term: st.hard_state.term,
            leader: st.soft_state.leader_id,
            commit: st.hard_state.commit,
            applied: self.applied,
            members,
            progress: st
                .progress
                .iter()
                .map(|(&id, pr)| (id, pr.matched, pr.next, pr.state.to_string()))
                .collect(),
            snapshot_index: self.snapshot_index,
            keys: self.sm.len(),
            wal: self.disk.stats(),
        }
    }
}

/// The keys of the entries whose deadline has passed.
fn expired_keys<'a, K: Copy + 'a, V: 'a>(
    map: impl IntoIterator<Item = (&'a K, &'a V)>,
    now: Instant,
    deadline: impl Fn(&V) -> Instant,
) -> Vec<K> {
    map.into_iter()
        .filter(|(_, v)| deadline(v) <= now)
        .map(|(k, _)| *k)
        .collect()
}

/// Removes and returns the items whose deadline has passed.
fn take_expired<T>(items: &mut Vec<T>, now: Instant, deadline: impl Fn(&T) -> Instant) -> Vec<T> {
    let (late, waiting) = std::mem::take(items)
        .into_iter()
        .partition(|t| deadline(t) <= now);
    *items = waiting;
    late
}

fn fail_batch(batch: ReadBatch, err: ApiError) {
    for (_, tx) in batch.reads {
        let _ = tx.send(Err(err.clone()));
    }
}

/// The node's latency histograms, exported on `/metrics`.
struct NodeMetrics {
    /// One WAL write + sync per Ready.
    sync: Histogram,
    /// A write from proposal to durable in the leader's WAL.
    to_sync: Histogram,
    /// A write from proposal to committed (seen in a Ready on this node).
    to_commit: Histogram,
    /// A write from proposal to applied on this node.
    apply: Histogram,
    /// A ReadIndex round, from request to confirmation.
    read_index: Histogram,
    /// Taking a snapshot: serializing, saving, releasing the WAL.
    snapshot: Histogram,
}

impl NodeMetrics {
    fn new(m: &Metrics) -> Self {
        NodeMetrics {
            sync: m.histogram(
                "kv_wal_sync_seconds",
                "Time to write and sync one Ready's entries and hard state to the WAL.",
            ),
            to_sync: m.histogram(
                "kv_write_to_wal_sync_seconds",
                "Time from proposing a write to its entry being synced in the leader's WAL.",
            ),
            to_commit: m.histogram(
                "kv_write_to_commit_seconds",
                "Time from proposing a write to seeing it committed on the node that received it.",
            ),
            apply: m.histogram(
                "kv_write_apply_seconds",
                "Time from proposing a write to applying it on the node that received it.",
            ),
            read_index: m.histogram(
                "kv_read_index_seconds",
                "Time for a ReadIndex round (leadership confirmed by a quorum).",
            ),
            snapshot: m.histogram(
                "kv_snapshot_seconds",
                "Time the node loop spends taking one snapshot (the file is written on another thread).",
            ),
        }
    }
}
