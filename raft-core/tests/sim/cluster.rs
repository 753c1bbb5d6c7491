//! The simulated cluster: nodes, network, the Ready loop, the application,
//! and the safety checks run after every step (the random events are in
//! `events`, the liveness phase in `liveness`).
//!
//! Time is counted in rounds. A round: random events (client requests,
//! crashes, restarts, partitions, membership changes), then ticks, then
//! steps until the round is quiet. A step is one of: deliver one message
//! (picked at random among those due and, unless reordered, first in their
//! link's order), take a Ready from a node, or finish persisting and
//! applying a taken Ready. The safety checks run after every step.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use raft_core::{
    ConfChangeI, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
    Entry, EntryType, Error as RaftError, HardState, MemStorage, Message, MessageType, RawNode,
    ReadOnlyOption, Snapshot, SnapshotMetadata, SnapshotStatus, StateRole, Storage,
};

use super::checker::{Applied, Checker, ReadReq, members};
use super::node::{AppState, Node, NodeState, Pending, apply_hash, digest};
use super::options::Options;
use super::rng::{Rng, splitmix64};

/// A round that takes more steps than this is a livelock in raft (or a
/// storm that never settles): a failure. Generous: with every message
/// reordered and no delay, a pipeline of single-entry appends is rejected
/// and resent many times over within one round (seed 16373 of one version
/// took 100,000 steps), which is slow but settles.
const MAX_STEPS_PER_ROUND: usize = 250_000;
/// Node ids are below this (bootstrap voters plus spares).
const MAX_ID: usize = 16;
/// Clients stop proposing while the longest log is this far ahead of the
/// highest commit index.
pub(super) const MAX_BACKLOG: u64 = 100;
/// At most this many nodes are down at once (more would mostly stall
/// the cluster).
pub(super) const MAX_DOWN: usize = 2;
/// Payloads of the proposals of the liveness phase start with this.
pub(super) const MARKER: &[u8] = b"live:";
/// The state machine hash of the bootstrap state (at index 1).
const BOOTSTRAP_HASH: u64 = 0xB007;

/// What one run did, summed over seeds by the runner.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub rounds: u64,
    pub steps: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub leaders: u64,
    pub max_commit: u64,
    pub crashes: u64,
    pub lost_readies: u64,
    pub snapshots_sent: u64,
    pub snapshots_applied: u64,
    pub compactions: u64,
    pub conf_changes: u64,
    pub stale_conf_changes: u64,
    pub reads_served: u64,
    /// Lease-based reads served at an index below what was known committed
    /// when they were issued (not linearizable; see `Sim::check_read`).
    pub stale_lease_reads: u64,
    /// The first few seeds with stale lease reads, to look at.
    pub stale_lease_seeds: Vec<u64>,
    pub joint_configs: u64,
    /// Removals of the node that was leading when the change applied.
    pub leaders_removed: u64,
    pub transfers: u64,
    pub liveness_ticks: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.rounds += o.rounds;
        self.steps += o.steps;
        self.delivered += o.delivered;
        self.dropped += o.dropped;
        self.leaders += o.leaders;
        self.max_commit += o.max_commit;
        self.crashes += o.crashes;
        self.lost_readies += o.lost_readies;
        self.snapshots_sent += o.snapshots_sent;
        self.snapshots_applied += o.snapshots_applied;
        self.compactions += o.compactions;
        self.conf_changes += o.conf_changes;
        self.stale_conf_changes += o.stale_conf_changes;
        self.reads_served += o.reads_served;
        self.stale_lease_reads += o.stale_lease_reads;
        self.stale_lease_seeds.extend(
            o.stale_lease_seeds
                .iter()
                .take(10 - self.stale_lease_seeds.len().min(10)),
        );
        self.joint_configs += o.joint_configs;
        self.leaders_removed += o.leaders_removed;
        self.transfers += o.transfers;
        self.liveness_ticks += o.liveness_ticks;
    }
}

/// A message on the wire.
struct InFlight {
    /// The round from which it may be delivered.
    at: u64,
    /// Send order, over all links.
    seq: u64,
    /// Whether it keeps its place on its link (sender, to): it is delivered
    /// only after every earlier in-order message of that link (a TCP stream,
    /// as raft transports use). Otherwise it may overtake and be overtaken.
    in_order: bool,
    /// The node that sent it (not always `msg.from`: a forwarded
    /// TransferLeader names the transferee) and its incarnation then.
    sender: u64,
    sender_inc: u64,
    msg: Message,
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Deliver(usize),
    Take(u64),
    Finish(u64),
}

pub struct Sim {
    pub opts: Options,
    pub(super) rng: Rng,
    pub now: u64,
    pub(super) nodes: BTreeMap<u64, Node>,
    net: Vec<InFlight>,
    /// Directed links (from, to) that drop everything.
    pub(super) blocked: BTreeSet<(u64, u64)>,
    /// Fault phase (crashes, drops, partitions, random client events) or
    /// liveness phase.
    pub(super) faults: bool,
    pub checker: Checker,
    pub stats: Stats,
    pub(super) next_proposal: u64,
    next_read: u64,
    next_seq: u64,
    /// The full trace, when replaying one seed.
    pub trace: Option<Vec<String>>,
}

macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {
        // Formatted only when tracing (a replay): the runs of the seed
        // sweep pay nothing for it.
        if $sim.trace.is_some() {
            let line = format!("[r{}] {}", $sim.now, format!($($arg)*));
            if let Some(t) = $sim.trace.as_mut() {
                t.push(line);
            }
        }
    };
}

/// A compact rendering of a message for the trace.
fn fmt_msg(m: &Message) -> String {
    let mut s = format!("{}->{} {:?} t{}", m.from, m.to, m.msg_type, m.term);
    match m.msg_type {
        MessageType::App => {
            s += &format!(" prev {}/{} c{}", m.index, m.log_term, m.commit);
            if let (Some(a), Some(b)) = (m.entries.first(), m.entries.last()) {
                s += &format!(" ents [{}..{}]", a.index, b.index);
            }
        }
        MessageType::AppResp => {
            s += &format!(" i{}", m.index);
            if m.reject {
                s += &format!(" REJECT hint {}/{}", m.reject_hint, m.log_term);
            }
        }
        MessageType::Vote | MessageType::PreVote => {
            s += &format!(" last {}/{}", m.index, m.log_term);
        }
        MessageType::VoteResp | MessageType::PreVoteResp if m.reject => s += " REJECT",
        MessageType::Heartbeat => s += &format!(" c{}", m.commit),
        MessageType::Snap => {
            if let Some(sn) = &m.snapshot {
                s += &format!(" snap {}/{}", sn.metadata.index, sn.metadata.term);
            }
        }
        MessageType::Prop => s += &format!(" {} ents", m.entries.len()),
        MessageType::ReadIndexResp => s += &format!(" i{}", m.index),
        _ => {}
    }
    s
}

/// Whether `cs` is a joint configuration.
pub(super) fn is_joint(cs: &ConfState) -> bool {
    !cs.voters_outgoing.is_empty()
}

impl Sim {
    pub fn new(seed: u64, tracing: bool) -> Sim {
        let opts = Options::from_seed(seed);
        let mut sm = seed ^ 0x5EED_5EED_5EED_5EED;
        let rng = Rng::new(splitmix64(&mut sm));
        let mut sim = Sim {
            opts,
            rng,
            now: 0,
            nodes: BTreeMap::new(),
            net: Vec::new(),
            blocked: BTreeSet::new(),
            faults: true,
            checker: Checker::default(),
            stats: Stats::default(),
            next_proposal: 0,
            next_read: 0,
            next_seq: 0,
            trace: tracing.then(Vec::new),
        };
        let initial = ConfState::with_voters((1..=sim.opts.size).collect::<Vec<_>>());
        sim.checker.configs.insert(0, initial.clone());
        for id in 1..=sim.opts.size + sim.opts.spare {
            let phase = sim.rng.below(sim.opts.rounds_per_tick);
            sim.nodes.insert(id, Node::new(id, phase));
        }
        let mut app = AppState {
            conf: initial.clone(),
            ..AppState::default()
        };
        let bootstrap = if sim.opts.bootstrap_index == 0 {
            MemStorage::new_with_conf_state(initial)
        } else {
            // The bootstrap state counts as applied entry 1 of term 1, so
            // that a snapshot of it can be checked like any other.
            app.applied = 1;
            app.hash = BOOTSTRAP_HASH;
            sim.checker.committed.insert(1, 1);
            sim.checker.max_commit = 1;
            sim.checker.applied.insert(
                1,
                Applied {
                    term: 1,
                    digest: 0,
                    hash: BOOTSTRAP_HASH,
                },
            );
            let mut disk = MemStorage::new();
            disk.apply_snapshot(Snapshot {
                data: app.encode(),
                metadata: SnapshotMetadata {
                    conf_state: initial,
                    index: 1,
                    term: 1,
                },
            })
            .expect("fresh storage");
            disk.set_hard_state(HardState {
                term: 1,
                vote: 0,
                commit: 1,
            });
            disk
        };
        for id in 1..=sim.opts.size {
            sim.start(id, bootstrap.clone(), app.clone());
        }
        trace!(sim, "options: {:?}", sim.opts);
        sim
    }

    /// Runs the fault phase, then the liveness phase.
    pub fn run(&mut self) -> Result<(), String> {
        while self.now < self.opts.fault_rounds {
            self.round()?;
        }
        self.liveness()
    }

    /// The state of every node, for failure reports.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for n in self.nodes.values() {
            s += &n.describe();
            s.push('\n');
        }
        s += &format!(
            "latest config {:?}; max commit {}; partition {:?}",
            self.checker.latest_config(),
            self.checker.max_commit,
            self.blocked
        );
        s
    }

    // ---- node life cycle ----

    /// Starts (or restarts) node `id` on `disk`, with the application state
    /// `app` that the disk's `Config::applied` must match.
    pub(super) fn start(&mut self, id: u64, mut disk: MemStorage, app: AppState) {
        // The membership raft restarts from is the application's durable
        // one: configuration changes after it are replayed from the log.
        disk.set_conf_state(app.conf.clone());
        disk.set_snapshot_unavailable(false);
        let node = self.nodes.get_mut(&id).expect("known id");
        node.incarnation += 1;
        let cfg = self.opts.config(id, node.incarnation, app.applied);
        let raw = RawNode::new(&cfg, disk).unwrap_or_else(|e| panic!("node {id}: restart: {e}"));
        node.last_committed = raw.raft().raft_log.committed();
        node.role = (raw.raft().term, raw.raft().state(), raw.raft().leader_id());
        node.state = NodeState::Up(Box::new(raw));
        node.checkpoint = app.clone();
        node.app = app;
        node.pending = None;
        node.reads.clear();
        node.snapshot_unavailable = false;
        let inc = node.incarnation;
        trace!(self, "node {id} starts (incarnation {inc})");
    }

    pub(super) fn crash(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known id");
        let NodeState::Up(raw) = std::mem::replace(&mut node.state, NodeState::Idle) else {
            panic!("crash of node {id}, which is not up");
        };
        // What the disk holds is all that survives; a Ready taken and not
        // yet persisted is lost (its `messages()` may have been sent).
        let lost = node.pending.take().is_some();
        let mut disk = raw.store().clone();
        // Hard states written without a sync (only the commit index moved)
        // survive or not.
        let unsynced = node.unsynced_hs.take();
        if let Some(hs) = unsynced
            && self.rng.chance(0.5)
        {
            disk.set_hard_state(hs);
            trace!(self, "node {id}: unsynced hard state lost, back to {hs:?}");
        }
        let node = self.nodes.get_mut(&id).expect("known id");
        node.state = NodeState::Down(Box::new(disk));
        node.reads.clear();
        self.stats.crashes += 1;
        if lost {
            self.stats.lost_readies += 1;
        }
        trace!(self, "node {id} CRASHES (unpersisted ready lost: {lost})");
    }

    pub(super) fn restart(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known id");
        let NodeState::Down(mut disk) = std::mem::replace(&mut node.state, NodeState::Idle) else {
            panic!("restart of node {id}, which is not down");
        };
        // Whatever was building a snapshot did not survive the crash.
        disk.set_snapshot_unavailable(false);
        // The durable application state: the checkpoint, or the disk's
        // snapshot if newer.
        let snap = disk.snapshot(0, 0).expect("MemStorage snapshot");
        let app = if snap.metadata.index > node.checkpoint.applied {
            AppState::decode(&snap).unwrap_or_else(|e| panic!("node {id}: {e}"))
        } else {
            node.checkpoint.clone()
        };
        let mut hs = disk.hard_state();
        if hs.commit < app.applied {
            // The checkpoint was written after a Ready whose commit index was
            // not synced (`must_sync() == false`) and the crash lost it.
            // Everything applied was committed, and its entries are durable
            // (entries are always synced), so the commit index may be raised
            // to the applied index; `Config::applied` above the stored commit
            // index would be refused (etcd issue 10217 is this hazard).
            hs.commit = app.applied;
            disk.set_hard_state(hs);
        }
        self.start(id, *disk, app);
    }

    /// Stops nodes that left the membership once every member has applied
    /// their removal: from then on nobody needs them (stopping them earlier
    /// could leave a member that has not applied the removal, and counts
    /// them in its quorum, without a quorum).
    fn stop_removed(&mut self) {
        let removals = self.checker.removals.clone();
        let latest = members(self.checker.latest_config());
        for (id, index) in removals {
            if matches!(self.nodes[&id].state, NodeState::Stopped) || latest.contains(&id) {
                continue;
            }
            let all_applied = latest.iter().all(|m| {
                let n = &self.nodes[m];
                n.is_up() && n.app.applied >= index
            });
            if all_applied {
                let node = self.nodes.get_mut(&id).expect("known id");
                node.state = NodeState::Stopped;
                node.pending = None;
                trace!(self, "node {id} STOPS (removed at {index})");
            }
        }
    }

    pub(super) fn down_ids(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| matches!(n.state, NodeState::Down(_)))
            .map(|n| n.id)
            .collect()
    }

    pub(super) fn up_ids(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.is_up())
            .map(|n| n.id)
            .collect()
    }

    pub(super) fn raw_mut(&mut self, id: u64) -> &mut RawNode<MemStorage> {
        self.nodes
            .get_mut(&id)
            .and_then(Node::raw_mut)
            .unwrap_or_else(|| panic!("node {id} is not up"))
    }

    /// The leader of the highest term among the running nodes.
    pub(super) fn leader(&self) -> Option<u64> {
        self.nodes
            .values()
            .filter_map(|n| n.raw().map(|r| (n.id, r.raft())))
            .filter(|(_, r)| r.state() == StateRole::Leader)
            .max_by_key(|(_, r)| r.term)
            .map(|(id, _)| id)
    }

    // ---- rounds ----

    pub(super) fn round(&mut self) -> Result<(), String> {
        self.now += 1;
        self.stats.rounds += 1;
        if self.faults {
            self.random_events()?;
        }
        self.stop_removed();
        for id in self.up_ids() {
            let node = &self.nodes[&id];
            if (self.now + node.tick_phase) % self.opts.rounds_per_tick != 0 {
                continue;
            }
            if self.faults && self.rng.chance(self.opts.tick_skip) {
                continue;
            }
            self.raw_mut(id).tick();
            self.check()?;
        }
        self.drain()
    }

    /// Steps until nothing is due this round.
    fn drain(&mut self) -> Result<(), String> {
        let mut actions = Vec::new();
        let mut heads = vec![u64::MAX; MAX_ID * MAX_ID];
        let link = |from: u64, to: u64| from as usize * MAX_ID + to as usize;
        for _ in 0..MAX_STEPS_PER_ROUND {
            actions.clear();
            // The head of each link's in-order stream (ids are small: a
            // flat table is much cheaper than a map on this hot path).
            heads.fill(u64::MAX);
            for m in self.net.iter().filter(|m| m.in_order) {
                let head = &mut heads[link(m.sender, m.msg.to)];
                *head = (*head).min(m.seq);
            }
            for (i, m) in self.net.iter().enumerate() {
                if m.at <= self.now && (!m.in_order || heads[link(m.sender, m.msg.to)] == m.seq) {
                    actions.push(Action::Deliver(i));
                }
            }
            for n in self.nodes.values() {
                let Some(raw) = n.raw() else { continue };
                match &n.pending {
                    Some(p) if p.due <= self.now => actions.push(Action::Finish(n.id)),
                    Some(_) => {}
                    None if raw.has_ready() => actions.push(Action::Take(n.id)),
                    None => {}
                }
            }
            let Some(action) = self.rng.pick(&actions) else {
                return Ok(());
            };
            self.stats.steps += 1;
            match action {
                Action::Deliver(i) => self.deliver(i)?,
                Action::Take(id) => self.take_ready(id)?,
                Action::Finish(id) => self.finish_ready(id)?,
            }
            self.check()?;
        }
        Err(format!(
            "round {} took more than {MAX_STEPS_PER_ROUND} steps (message storm?)",
            self.now
        ))
    }

    // ---- network ----

    fn send(&mut self, sender: u64, msgs: Vec<Message>) -> Result<(), String> {
        let inc = self.nodes[&sender].incarnation;
        for m in msgs {
            if m.to == sender || !self.nodes.contains_key(&m.to) {
                return Err(format!("node {sender} sends to a bad address: {m:?}"));
            }
            if m.msg_type.is_local() {
                return Err(format!("node {sender} sends a local message: {m:?}"));
            }
            if self.faults && self.rng.chance(self.opts.drop_rate) {
                self.dropped(sender, inc, &m, "lost");
                continue;
            }
            trace!(self, "send {}", fmt_msg(&m));
            if self.faults && self.rng.chance(self.opts.dup_rate) {
                // A duplicate turns up whenever it likes.
                let (at, _) = self.delivery_round();
                self.push(at, false, sender, inc, m.clone());
            }
            let (at, long) = self.delivery_round();
            let in_order = !long && !self.rng.chance(self.opts.reorder_rate);
            self.push(at, in_order, sender, inc, m);
        }
        Ok(())
    }

    fn push(&mut self, at: u64, in_order: bool, sender: u64, sender_inc: u64, msg: Message) {
        self.next_seq += 1;
        self.net.push(InFlight {
            at,
            seq: self.next_seq,
            in_order,
            sender,
            sender_inc,
            msg,
        });
    }

    /// The round in which a message sent now arrives, and whether it is
    /// held back much longer than usual.
    fn delivery_round(&mut self) -> (u64, bool) {
        let long = self.faults && self.rng.chance(self.opts.long_delay);
        let max = if long {
            3 * self.opts.election_tick as u64 * self.opts.rounds_per_tick
        } else {
            self.opts.max_delay
        };
        (self.now + self.rng.range(0, max), long)
    }

    /// A message was lost: the sender's transport may notice.
    fn dropped(&mut self, sender: u64, sender_inc: u64, m: &Message, why: &str) {
        self.stats.dropped += 1;
        trace!(self, "drop ({why}) {}", fmt_msg(m));
        let report =
            m.msg_type == MessageType::Snap || self.rng.chance(self.opts.report_unreachable);
        let node = self.nodes.get_mut(&sender).expect("known id");
        if node.incarnation != sender_inc || !report {
            return;
        }
        let Some(raw) = node.raw_mut() else { return };
        if m.msg_type == MessageType::Snap {
            // Always reported: a leader waits for the outcome of a snapshot
            // before sending that follower anything else.
            raw.report_snapshot(m.to, SnapshotStatus::Failure);
        } else {
            raw.report_unreachable(m.to);
        }
    }

    fn deliver(&mut self, i: usize) -> Result<(), String> {
        let InFlight {
            sender,
            sender_inc,
            msg,
            ..
        } = self.net.swap_remove(i);
        let to = msg.to;
        if self.blocked.contains(&(sender, to)) {
            self.dropped(sender, sender_inc, &msg, "partition");
            return Ok(());
        }
        if !self.nodes[&to].is_up() {
            self.dropped(sender, sender_inc, &msg, "target down");
            return Ok(());
        }
        self.stats.delivered += 1;
        trace!(self, "deliver {}", fmt_msg(&msg));
        let is_snap = msg.msg_type == MessageType::Snap;
        match self.raw_mut(to).step(msg) {
            Ok(()) | Err(RaftError::ProposalDropped | RaftError::StepPeerNotFound) => {}
            Err(e) => return Err(format!("node {to}: step failed: {e}")),
        }
        if is_snap {
            self.stats.snapshots_sent += 1;
            let fail = self.rng.chance(self.opts.snap_fail);
            let node = self.nodes.get_mut(&sender).expect("known id");
            if node.incarnation == sender_inc
                && let Some(raw) = node.raw_mut()
            {
                // The transport may report a failure even though the
                // snapshot arrived (e.g. the ack was lost).
                let status = if fail {
                    SnapshotStatus::Failure
                } else {
                    SnapshotStatus::Finish
                };
                raw.report_snapshot(to, status);
            }
        }
        Ok(())
    }

    // ---- the Ready loop, in two steps ----

    /// Step 1: take a Ready. Its `messages()` may leave now (Raft thesis
    /// §10.2.1); its entries and hard state are persisted later, by
    /// `finish_ready`, and a crash in between loses them.
    fn take_ready(&mut self, id: u64) -> Result<(), String> {
        let mut rd = self.raw_mut(id).ready();
        let early = self.rng.chance(self.opts.early_send);
        for rs in rd.take_read_states() {
            if self.check_read(id, &rs)? {
                self.nodes.get_mut(&id).expect("known").reads.push(rs);
            }
        }
        if let Some(m) = rd.messages().iter().find(|m| {
            matches!(
                m.msg_type,
                MessageType::AppResp | MessageType::VoteResp | MessageType::PreVoteResp
            )
        }) {
            return Err(format!(
                "node {id}: an ack may only be sent once persisted, but messages() holds {}",
                fmt_msg(m)
            ));
        }
        if early {
            let msgs = rd.take_messages();
            self.send(id, msgs)?;
        }
        let due = self.now + self.rng.range(0, self.opts.disk_delay);
        trace!(
            self,
            "node {id} takes ready: {} entries, hs {:?}, snap {:?}, {} committed, early send \
             {early}, persist at r{due}",
            rd.entries().len(),
            rd.hard_state(),
            rd.snapshot().map(|s| s.metadata.index),
            rd.committed_entries().len()
        );
        self.nodes.get_mut(&id).expect("known").pending = Some(Pending { rd, due });
        if self.faults
            && self.down_ids().len() < MAX_DOWN
            && self.rng.chance(self.opts.crash_after_take)
        {
            self.crash(id);
        }
        Ok(())
    }

    /// Step 2: persist the taken Ready, send what waited for that, apply
    /// the snapshot and committed entries, advance.
    fn finish_ready(&mut self, id: u64) -> Result<(), String> {
        let node = self.nodes.get_mut(&id).expect("known");
        let Pending { mut rd, .. } = node.pending.take().expect("pending ready");
        let raw = node.raw_mut().expect("up");
        let disk = raw.store_mut();
        if let Some(snap) = rd.snapshot() {
            disk.apply_snapshot(snap.clone())
                .map_err(|e| format!("node {id}: persisting snapshot: {e}"))?;
        }
        let ents = rd.take_entries();
        disk.append(&ents)
            .map_err(|e| format!("node {id}: persisting entries: {e}"))?;
        let prev_hs = disk.hard_state();
        if let Some(hs) = rd.hard_state() {
            disk.set_hard_state(*hs);
        }
        let must_sync = rd.must_sync();
        let hs_changed = rd.hard_state().is_some();
        if !must_sync
            && (!ents.is_empty()
                || rd.snapshot().is_some()
                || rd
                    .hard_state()
                    .is_some_and(|hs| (hs.term, hs.vote) != (prev_hs.term, prev_hs.vote)))
        {
            return Err(format!(
                "node {id}: a Ready with entries, a snapshot or a new term or vote says \
                 must_sync() == false (hard state {prev_hs:?} -> {:?})",
                rd.hard_state()
            ));
        }
        self.checker.persisted(id, raw.store(), &ents)?;
        if must_sync {
            node.unsynced_hs = None;
        } else if hs_changed && node.unsynced_hs.is_none() {
            // Not synced: a crash may lose this write (and any later unsynced
            // one), leaving the last synced hard state.
            node.unsynced_hs = Some(prev_hs);
        }
        // Durable: everything may be sent now.
        let persisted = rd.take_persisted_messages();
        self.check_durable_acks(id, &persisted)?;
        let mut msgs = rd.take_messages();
        msgs.extend(persisted);
        self.send(id, msgs)?;

        if let Some(snap) = rd.take_snapshot() {
            let st = AppState::decode(&snap).map_err(|e| format!("node {id}: {e}"))?;
            match self.checker.applied.get(&st.applied) {
                Some(a) if a.term == snap.metadata.term && a.hash == st.hash => {}
                other => {
                    return Err(format!(
                        "state machine safety: node {id} received snapshot {}/{} with hash \
                         {:x}, but the entry applied there is {other:?}",
                        snap.metadata.index, snap.metadata.term, st.hash
                    ));
                }
            }
            trace!(self, "node {id} applies snapshot {}", st.applied);
            self.stats.snapshots_applied += 1;
            self.nodes.get_mut(&id).expect("known").app = st;
        }
        for e in rd.take_committed_entries() {
            self.apply_entry(id, &e)?;
        }
        let node = self.nodes.get_mut(&id).expect("known");
        let raw = node.raw_mut().expect("up");
        raw.advance(rd);
        let raft_applied = raw.raft().raft_log.applied();
        if node.app.applied != raft_applied {
            return Err(format!(
                "node {id}: the application applied {} but raft says {raft_applied}",
                node.app.applied
            ));
        }
        self.serve_reads(id)?;
        if self.rng.chance(self.opts.checkpoint_rate) {
            let node = self.nodes.get_mut(&id).expect("known");
            node.checkpoint = node.app.clone();
        }
        self.maybe_snapshot(id)
    }

    /// What a node acknowledges must be on its disk when the ack leaves.
    /// An accepted append of term T up to index i: the disk holds an entry
    /// at i of a term <= T. Unless the disk is already in a later term: then
    /// a leader of that term may have replaced the acked entries before they
    /// were persisted, and the ack, though stale, still stands for an
    /// acceptance that happened (Raft's leader completeness argument only
    /// needs the entries to have been accepted before any later vote; what
    /// it cannot tolerate is an accepted entry lost in a crash). A granted
    /// vote in term T: the disk's term is T with that vote, or later (then
    /// this node never votes in T again).
    fn check_durable_acks(&self, id: u64, msgs: &[Message]) -> Result<(), String> {
        let disk = self.nodes[&id].raw().expect("up").store();
        let hs = disk.hard_state();
        for m in msgs {
            let durable = match m.msg_type {
                MessageType::AppResp if !m.reject => {
                    hs.term > m.term
                        || match disk.term(m.index) {
                            Ok(t) => t <= m.term,
                            // Compacted: covered by a snapshot, so committed.
                            Err(raft_core::StorageError::Compacted) => true,
                            Err(_) => false,
                        }
                }
                MessageType::VoteResp if !m.reject => {
                    hs.term > m.term || (hs.term == m.term && hs.vote == m.to)
                }
                _ => true,
            };
            if !durable {
                return Err(format!(
                    "node {id} acknowledges what is not durable: {} (disk: last index {:?}, \
                     term there {:?}, hard state {hs:?})",
                    fmt_msg(m),
                    disk.last_index(),
                    disk.term(m.index)
                ));
            }
        }
        Ok(())
    }

    /// Applies one committed entry to node `id`'s state machine.
    fn apply_entry(&mut self, id: u64, e: &Entry) -> Result<(), String> {
        let node = self.nodes.get_mut(&id).expect("known");
        if e.index != node.app.applied + 1 {
            return Err(format!(
                "node {id} applies {} right after {}",
                e.index, node.app.applied
            ));
        }
        match self.checker.committed.get(&e.index) {
            Some(&t) if t == e.term => {}
            other => {
                return Err(format!(
                    "node {id} applies {}/{}, but the committed entry there is {other:?}",
                    e.index, e.term
                ));
            }
        }
        let hash = apply_hash(node.app.hash, e);
        let a = Applied {
            term: e.term,
            digest: digest(e),
            hash,
        };
        match self.checker.applied.get(&e.index) {
            Some(prev) if *prev != a => {
                return Err(format!(
                    "state machine safety: node {id} applies {}/{} (hash {hash:x}), but {prev:?} \
                     was applied there before",
                    e.index, e.term
                ));
            }
            Some(_) => {}
            None => {
                self.checker.applied.insert(e.index, a);
                if e.data.starts_with(MARKER) && self.checker.first_marker.is_none() {
                    self.checker.first_marker = Some(e.index);
                }
            }
        }
        if e.entry_type != EntryType::Normal {
            self.apply_conf_change(id, e)?;
        }
        let node = self.nodes.get_mut(&id).expect("known");
        node.app.applied = e.index;
        node.app.hash = hash;
        Ok(())
    }

    fn apply_conf_change(&mut self, id: u64, e: &Entry) -> Result<(), String> {
        let cc = ConfChangeI::from_entry(e)
            .map_err(|err| format!("node {id}: undecodable conf change at {}: {err:?}", e.index))?;
        let node = self.nodes.get_mut(&id).expect("known");
        let mut v2 = cc.as_v2();
        // Proposals carry the conf_index they were computed from; the empty
        // change a leader proposes to leave a joint config carries none.
        let stale = v2.context.len() == 8
            && u64::from_le_bytes(v2.context[..].try_into().expect("8 bytes"))
                != node.app.conf_index;
        if stale {
            // Applied as a no-op, as etcd's server does with a change it
            // rejects: a simple change of node id 0. (Zeroing the ids of a
            // joint change would still enter a joint configuration.)
            v2 = ConfChangeV2 {
                transition: ConfChangeTransition::Auto,
                changes: vec![ConfChangeSingle {
                    change_type: ConfChangeType::AddNode,
                    node_id: raft_core::NONE,
                }],
                context: v2.context,
            };
            self.stats.stale_conf_changes += 1;
        }
        let raw = node.raw_mut().expect("up");
        let result = raw
            .apply_conf_change(&ConfChangeI::V2(v2))
            .map_err(|err| err.to_string());
        trace!(
            self,
            "node {id} applies conf change {}: {cc:?} (stale {stale}) -> {result:?}", e.index
        );
        let same = match (self.checker.conf_results.get(&e.index), &result) {
            (None, _) => {
                self.checker.conf_results.insert(e.index, result.clone());
                if let Ok(cs) = &result
                    && !stale
                {
                    self.record_config(e.index, cs.clone());
                }
                true
            }
            (Some(Ok(a)), Ok(b)) => a.equivalent(b),
            (Some(a), b) => a == b,
        };
        if !same {
            return Err(format!(
                "node {id} applying conf change {} got {result:?}, another node got {:?}",
                e.index, self.checker.conf_results[&e.index]
            ));
        }
        let node = self.nodes.get_mut(&id).expect("known");
        if let Ok(cs) = result {
            node.app.conf = cs;
            if !stale {
                node.app.conf_index = e.index;
            }
        }
        Ok(())
    }

    /// Records a new membership (first applied at `index`) and who left.
    pub(super) fn record_config(&mut self, index: u64, cs: ConfState) {
        self.stats.conf_changes += 1;
        if is_joint(&cs) {
            self.stats.joint_configs += 1;
        }
        let before = members(self.checker.latest_config());
        let after = members(&cs);
        for &gone in before.difference(&after) {
            if self.nodes[&gone]
                .raw()
                .is_some_and(|r| r.raft().state() == StateRole::Leader)
            {
                self.stats.leaders_removed += 1;
            }
            self.checker.retired.insert(gone);
            self.checker.removals.push((gone, index));
        }
        for &new in after.difference(&before) {
            assert!(
                !matches!(self.nodes[&new].state, NodeState::Idle | NodeState::Stopped),
                "node {new} joined at {index} but is not running"
            );
        }
        self.checker.configs.insert(index, cs);
    }

    /// Takes a snapshot of the state machine every `snapshot_interval`
    /// applied entries, and compacts the log behind it.
    ///
    /// Also after every configuration change: `MemStorage` hands a leader
    /// the last snapshot taken (etcd's semantics), and a node that joined
    /// after that snapshot rejects it (it is not in its membership), so a
    /// joining node could never catch up. etcd's server avoids this the same
    /// way in practice (it keeps many entries after its snapshots); raft-rs's
    /// `MemStorage` builds a fresh snapshot on every request instead.
    fn maybe_snapshot(&mut self, id: u64) -> Result<(), String> {
        let keep = self.rng.range(0, self.opts.compact_keep);
        let compact = self.rng.chance(0.8);
        let interval = self.opts.snapshot_interval;
        let node = self.nodes.get_mut(&id).expect("known");
        let app = node.app.clone();
        let slow = node.snapshot_unavailable;
        let disk = node.raw_mut().expect("up").store_mut();
        // Look past the "snapshot being built" test hook: the application
        // knows its own last snapshot.
        disk.set_snapshot_unavailable(false);
        let snap_index = disk.snapshot(0, 0).expect("MemStorage").metadata.index;
        disk.set_snapshot_unavailable(slow);
        if app.applied < snap_index + interval && app.conf_index <= snap_index {
            return Ok(());
        }
        disk.create_snapshot(app.applied, Some(app.conf.clone()), app.encode())
            .map_err(|e| format!("node {id}: create_snapshot({}): {e}", app.applied))?;
        let to = app.applied.saturating_sub(keep);
        let first = disk.first_index().expect("MemStorage");
        if compact && to >= first {
            disk.compact(to)
                .map_err(|e| format!("node {id}: compact({to}): {e}"))?;
            self.stats.compactions += 1;
        }
        trace!(
            self,
            "node {id} snapshots at {} (compacted to {to}: {compact})", app.applied
        );
        Ok(())
    }

    // ---- reads ----

    pub(super) fn issue_read(&mut self, id: u64) {
        self.next_read += 1;
        let ctx = Bytes::from(self.next_read.to_le_bytes().to_vec());
        if self.raw_mut(id).read_index(ctx.clone()).is_ok() {
            let req = ReadReq {
                node: id,
                incarnation: self.nodes[&id].incarnation,
                required: self.checker.max_commit,
                issued_round: self.now,
            };
            trace!(
                self,
                "node {id} issues read {} (required {})", self.next_read, req.required
            );
            self.checker.reads.insert(ctx, req);
        }
    }

    /// A read state reached node `id`. Linearizability: the read index must
    /// cover every write that was acknowledged (applied anywhere) before the
    /// read was issued, i.e. every index known committed then; and it must
    /// itself be committed. Returns whether the read is still to be served
    /// (its client was not lost in a crash).
    fn check_read(&mut self, id: u64, rs: &raft_core::ReadState) -> Result<bool, String> {
        let Some(req) = self.checker.reads.get(&rs.request_ctx).copied() else {
            return Err(format!(
                "node {id}: read state for an unknown request {rs:?}"
            ));
        };
        if req.node != id {
            return Err(format!(
                "node {id} got the read state of node {}'s request {rs:?}",
                req.node
            ));
        }
        if rs.index > self.checker.max_commit {
            return Err(format!(
                "node {id}: read index {} is not committed (max commit {})",
                rs.index, self.checker.max_commit
            ));
        }
        if rs.index < req.required {
            if self.opts.read_only == ReadOnlyOption::LeaseBased {
                // Lease reads trust that no other leader was elected within
                // an election timeout; with check-quorum's two-timeout window
                // and clocks that skip ticks that does not always hold (etcd
                // documents the option as unsafe under clock drift). Counted,
                // not failed.
                if self.stats.stale_lease_reads == 0 {
                    self.stats.stale_lease_seeds.push(self.opts.seed);
                }
                self.stats.stale_lease_reads += 1;
                trace!(
                    self,
                    "node {id}: STALE lease read {rs:?} (required {})", req.required
                );
                return Ok(false);
            }
            return Err(format!(
                "linearizability: node {id} got read index {} for a read issued in round {} \
                 when index {} was already known committed",
                rs.index, req.issued_round, req.required
            ));
        }
        Ok(req.incarnation == self.nodes[&id].incarnation)
    }

    fn serve_reads(&mut self, id: u64) -> Result<(), String> {
        let node = self.nodes.get_mut(&id).expect("known");
        let applied = node.app.applied;
        let before = node.reads.len();
        node.reads.retain(|rs| rs.index > applied);
        self.stats.reads_served += (before - node.reads.len()) as u64;
        Ok(())
    }

    // ---- safety checks ----

    /// Runs after every step.
    pub(super) fn check(&mut self) -> Result<(), String> {
        for id in self.nodes.keys().copied().collect::<Vec<_>>() {
            let node = &self.nodes[&id];
            let Some(raw) = node.raw() else { continue };
            let r = raw.raft();
            let log = &r.raft_log;
            let (committed, applied) = (log.committed(), log.applied());
            if applied > committed || node.app.applied > committed {
                return Err(format!(
                    "node {id}: applied {applied} (application {}) > committed {committed}",
                    node.app.applied
                ));
            }
            if committed < node.last_committed {
                return Err(format!(
                    "node {id}: commit index went back from {} to {committed} without a crash",
                    node.last_committed
                ));
            }
            if committed > node.last_committed {
                self.checker
                    .committed(id, log, node.last_committed, committed)?;
            }
            let role = (r.term, r.state(), r.leader_id());
            let changed = role != node.role;
            if r.state() == StateRole::Leader && self.checker.leader(r.term, id)? {
                self.stats.leaders += 1;
                self.checker.leader_complete(id, r.term, log)?;
            }
            let node = self.nodes.get_mut(&id).expect("known");
            node.last_committed = committed;
            if changed {
                node.role = role;
                trace!(
                    self,
                    "node {id} is now {} of term {} (leader {})", role.1, role.0, role.2
                );
            }
        }
        self.stats.max_commit = self.checker.max_commit;
        Ok(())
    }
}
