//! Scripted interaction tests of raft-core, in the spirit of etcd raft's
//! `testdata/*.txt` interaction tests: each file in `raft-core/testdata/` is a
//! scenario (one per file, opening with prose saying what it checks and why)
//! made of commands and their expected output, run by the `goldenscript`
//! crate against the [`Cluster`] harness below.
//!
//! The expected output is generated, not written by hand. After changing a
//! scenario or raft-core, regenerate it with
//!
//! ```sh
//! UPDATE_GOLDENFILES=1 cargo test -p raft-core --test interaction
//! ```
//!
//! and review the diff line by line against Raft's rules: the output is the
//! assertion, so an unreviewed regeneration proves nothing.
//!
//! # The harness
//!
//! A [`Cluster`] holds nodes (`RawNode<MemStorage>` plus the application
//! state around it: the applied "state machine" and the history of applied
//! membership) and one in-flight network: messages taken out of a Ready wait
//! there, in send order, until a `deliver-msgs` or `stabilize` steps them into
//! their recipient (or drops them). Storage writes are synchronous: handling a
//! Ready persists its snapshot, entries and hard state, queues its
//! `messages()` and `persisted_messages()`, applies its committed entries
//! (configuration changes through `apply_conf_change`) and calls `advance`.
//!
//! Output conventions (written for this harness, after etcd's):
//! - an entry is `term/index Type payload`, e.g. `1/4 EntryNormal "foo"`;
//!   configuration changes print their changes as `v4` (add voter 4), `l4`
//!   (add learner 4), `r4` (remove 4), `u4` (update 4);
//! - a message is `from->to Type Term:T` and its relevant fields, e.g.
//!   `1->2 MsgApp Term:1 Log:1/3 Commit:3 Entries:[1/4 EntryNormal "foo"]`
//!   (`Log:` is the term/index the entries follow; in a rejection
//!   `Hint: term/index` is the follower's hint);
//! - `INFO` lines report a node's role, term or leader changing, the
//!   application of a configuration change and harness events; `DEBUG` lines
//!   (after `log-level debug`) add commit index and progress changes.
//!
//! Commands (ids are node ids; lists of ids are quoted, `voters="1 2 3"`):
//! - `add-nodes N [voters=..] [learners=..] [index=I] [options]`: adds N nodes
//!   with the next free ids. With `voters`, their storage is bootstrapped with
//!   that membership in a snapshot at index I (default 0; term 1 if I > 0);
//!   without, they start empty, like a node joining an existing cluster.
//!   Options (raft-core's `Config`; this harness turns pre-vote and
//!   check-quorum off unless asked, to show the bare protocol): `pre-vote=`,
//!   `check-quorum=`, `read-only=safe|lease`, `max-inflight=`,
//!   `max-inflight-bytes=`, `max-size-per-msg=`, `max-uncommitted-size=`,
//!   `max-committed-size-per-ready=`, `step-down-on-removal=`,
//!   `disable-proposal-forwarding=`, `election-tick=`, `heartbeat-tick=`.
//! - `campaign ID`, `propose ID DATA...`, `read-index ID CTX`,
//!   `transfer-leader FROM TO`, `report-unreachable ID PEER`,
//!   `report-snapshot ID PEER ok|fail`.
//! - `propose-conf-change ID [v1=true] [transition=auto|implicit|explicit]
//!   CHANGE...` with changes `vN`, `lN`, `rN`, `uN` as above; `v1=true`
//!   proposes a V1 `ConfChange` (exactly one change).
//! - `tick ID [N]`, `tick-heartbeat ID` (heartbeat_tick ticks),
//!   `tick-election ID...` (a leader alone: election_tick ticks; otherwise
//!   the nodes tick in lockstep until one's election timeout fires, at most
//!   2 * election_tick ticks).
//! - `ready ID` takes a Ready and queues only its `messages()`; `advance ID`
//!   then persists it, queues its `persisted_messages()`, applies and
//!   advances (`process-ready` does both at once).
//! - `process-ready ID...`, `deliver-msgs [ID...] [drop=..] [type=T]
//!   [from=..]`, `stabilize [ID...]`.
//! - `partition ID... [/ ID...]...` (groups; unnamed nodes form one more
//!   group; messages across groups are dropped at delivery), `heal`.
//! - `send FROM TO TYPE [term=] [log-term=] [index=] [commit=] [reject=]
//!   [hint=] [entries="T/I[:data] ..."] [context=] [snap-index=]
//!   [snap-term=] [snap-voters=..]`: queues a crafted message.
//! - `compact ID INDEX` (snapshot at INDEX, then compact the storage),
//!   `restart ID`, `set-snapshot-unavailable ID BOOL`.
//! - `raft-log ID`, `raft-state`, `status ID`, `applied ID`,
//!   `log-level none|info|debug`, `measure-election-timeout ID rounds=N`.
//!
//! Every command also checks two safety properties: at most one leader per
//! term, and no two nodes ever apply different entries at the same index.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error as StdError;
use std::fmt::Write as _;

use bytes::Bytes;
use goldenscript::{Argument, Command, Runner};
use raft_core::{
    ConfChange, ConfChangeI, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2,
    ConfState, Config, Entry, EntryId, EntryType, HardState, MemStorage, Message, MessageType,
    NodeId, RawNode, ReadOnlyOption, Ready, Snapshot, SnapshotMetadata, SnapshotStatus, StateRole,
    Storage,
};

type CmdResult = Result<String, Box<dyn StdError>>;

/// The most iterations `stabilize` runs before giving up: scenarios settle
/// in a few dozen, so hitting it means a livelock.
const MAX_STABILIZE_ROUNDS: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    None,
    Info,
    Debug,
}

/// One node: raft plus the application around it.
struct Node {
    raw: RawNode<MemStorage>,
    config: Config,
    /// The applied state machine: `(index, data)` of every applied non-empty
    /// normal entry (entries restored from a snapshot carry its index).
    state: Vec<(u64, String)>,
    /// The membership as of each index where it changed, to build a snapshot
    /// with the right membership at any applied index.
    conf_history: Vec<(u64, ConfState)>,
    /// A Ready taken by `ready` and not yet passed to `advance`.
    pending: Option<Ready>,
}

impl Node {
    fn conf_state_at(&self, index: u64) -> ConfState {
        self.conf_history
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, cs)| cs.clone())
            .unwrap_or_default()
    }
}

/// What the harness watches to report changes after each input.
#[derive(Clone, PartialEq, Eq)]
struct Observed {
    role: StateRole,
    term: u64,
    lead: NodeId,
    commit: u64,
    progress: BTreeMap<NodeId, String>,
}

/// The cluster under test (the goldenscript runner).
struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    /// Messages sent and not yet delivered, in send order.
    network: Vec<Message>,
    /// The partition groups, if any: messages between different groups are
    /// dropped at delivery.
    partition: Option<Vec<BTreeSet<NodeId>>>,
    level: Level,
    /// Safety check: the leader of every term seen so far.
    leaders: BTreeMap<u64, NodeId>,
    /// Safety check: the entry every node applied at each index.
    applied_ids: BTreeMap<u64, (EntryId, NodeId)>,
}

impl Cluster {
    fn new() -> Self {
        Cluster {
            nodes: BTreeMap::new(),
            network: Vec::new(),
            partition: None,
            level: Level::Info,
            leaders: BTreeMap::new(),
            applied_ids: BTreeMap::new(),
        }
    }

    fn node(&mut self, id: NodeId) -> Result<&mut Node, Box<dyn StdError>> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| format!("no node {id}").into())
    }

    fn log(&self, level: Level, out: &mut String, indent: &str, line: impl AsRef<str>) {
        if level <= self.level {
            let tag = if level == Level::Debug {
                "DEBUG"
            } else {
                "INFO"
            };
            writeln!(out, "{indent}{tag} {}", line.as_ref()).unwrap();
        }
    }

    // ---- observation ----

    fn observe(&self, id: NodeId) -> Observed {
        let r = self.nodes[&id].raw.raft();
        let progress = if r.state() == StateRole::Leader {
            r.tracker()
                .progress
                .iter()
                .map(|(id, pr)| (*id, pr.to_string()))
                .collect()
        } else {
            BTreeMap::new()
        };
        Observed {
            role: r.state(),
            term: r.term,
            lead: r.leader_id(),
            commit: r.raft_log.committed(),
            progress,
        }
    }

    /// Reports what changed on `id` between `before` and now.
    fn report(&mut self, id: NodeId, before: &Observed, out: &mut String, indent: &str) {
        let after = self.observe(id);
        if (before.role, before.term, before.lead) != (after.role, after.term, after.lead) {
            self.log(
                Level::Info,
                out,
                indent,
                format!("{id} is {}", describe_role(&after)),
            );
        }
        if after.role == StateRole::Leader {
            match self.leaders.get(&after.term) {
                Some(&other) if other != id => panic!(
                    "safety violation: {id} and {other} are both leaders of term {}",
                    after.term
                ),
                _ => {
                    self.leaders.insert(after.term, id);
                }
            }
        }
        if before.commit != after.commit {
            self.log(
                Level::Debug,
                out,
                indent,
                format!("{id} commit {} -> {}", before.commit, after.commit),
            );
        }
        if after.role == StateRole::Leader {
            for (peer, pr) in &after.progress {
                if before.progress.get(peer) != Some(pr) {
                    let was = before.progress.get(peer).map_or("-", String::as_str);
                    let line = format!("{id} progress of {peer}: {was} -> {pr}");
                    self.log(Level::Debug, out, indent, line);
                }
            }
        }
    }

    // ---- Ready handling ----

    /// Handles `id`'s Ready, if any: prints it, persists it, queues its
    /// messages, applies its committed entries and advances. Returns whether
    /// there was one.
    fn process_ready(&mut self, id: NodeId, out: &mut String) -> Result<bool, Box<dyn StdError>> {
        if self.node(id)?.pending.is_some() {
            return Err(format!("{id} has a Ready taken and not advanced").into());
        }
        if !self.node(id)?.raw.has_ready() {
            return Ok(false);
        }
        self.take_ready(id, out)?;
        self.advance(id, out)?;
        Ok(true)
    }

    /// Takes `id`'s Ready (etcd's acceptReady), prints it and queues the
    /// messages that may leave before the Ready is persisted.
    fn take_ready(&mut self, id: NodeId, out: &mut String) -> Result<(), Box<dyn StdError>> {
        let before = self.observe(id);
        let node = self.node(id)?;
        let mut rd = node.raw.ready();
        writeln!(out, "> {id} handling Ready")?;
        let mut body = String::new();
        writeln!(body, "Ready MustSync={}:", rd.must_sync())?;
        if let Some(ss) = rd.soft_state() {
            writeln!(body, "Lead:{} State:{:?}", ss.leader_id, ss.raft_state)?;
        }
        if let Some(hs) = rd.hard_state() {
            writeln!(body, "{}", fmt_hard_state(hs))?;
        }
        if let Some(snap) = rd.snapshot() {
            writeln!(body, "Snapshot {}", fmt_snapshot(snap))?;
        }
        write_list(&mut body, "Entries", rd.entries().iter().map(fmt_entry))?;
        write_list(
            &mut body,
            "CommittedEntries",
            rd.committed_entries().iter().map(fmt_entry),
        )?;
        write_list(
            &mut body,
            "ReadStates",
            rd.read_states()
                .iter()
                .map(|rs| format!("Index:{} Ctx:{:?}", rs.index, lossy(&rs.request_ctx))),
        )?;
        write_list(&mut body, "Messages", rd.messages().iter().map(fmt_msg))?;
        write_list(
            &mut body,
            "PersistedMessages",
            rd.persisted_messages().iter().map(fmt_msg),
        )?;
        indent_into(out, &body, "  ");
        // These may go out in parallel with the write (Raft thesis §10.2.1).
        let msgs = rd.take_messages();
        node.pending = Some(rd);
        self.network.extend(msgs);
        self.report(id, &before, out, "  ");
        Ok(())
    }

    /// Finishes the Ready taken by `take_ready`: persists it (synchronously:
    /// snapshot, entries, hard state), queues the messages that needed it
    /// persisted, applies the committed entries and advances.
    fn advance(&mut self, id: NodeId, out: &mut String) -> Result<(), Box<dyn StdError>> {
        let before = self.observe(id);
        let node = self.node(id)?;
        let mut rd = node
            .pending
            .take()
            .ok_or_else(|| format!("{id} has no Ready to advance"))?;
        let store = node.raw.store_mut();
        if let Some(snap) = rd.snapshot().cloned() {
            store.apply_snapshot(snap.clone())?;
            node.state = decode_state(&snap);
            node.conf_history = vec![(snap.metadata.index, snap.metadata.conf_state.clone())];
        }
        store.append(rd.entries())?;
        if let Some(hs) = rd.hard_state() {
            store.set_hard_state(*hs);
        }
        self.network.extend(rd.take_persisted_messages());
        for e in rd.take_committed_entries() {
            self.apply_entry(id, e, out)?;
        }
        self.node(id)?.raw.advance(rd);
        self.report(id, &before, out, "  ");
        Ok(())
    }

    fn apply_entry(
        &mut self,
        id: NodeId,
        e: Entry,
        out: &mut String,
    ) -> Result<(), Box<dyn StdError>> {
        match self.applied_ids.get(&e.index) {
            Some((other, by)) if *other != e.id() => panic!(
                "safety violation: {id} applies {}/{} but {by} applied {}/{}",
                e.term, e.index, other.term, other.index
            ),
            Some(_) => {}
            None => {
                self.applied_ids.insert(e.index, (e.id(), id));
            }
        }
        if e.entry_type == EntryType::Normal {
            if !e.data.is_empty() {
                self.node(id)?.state.push((e.index, lossy(&e.data)));
            }
            return Ok(());
        }
        let cc = ConfChangeI::from_entry(&e)?;
        let node = self.node(id)?;
        match node.raw.apply_conf_change(&cc) {
            Ok(cs) => {
                node.raw.store_mut().set_conf_state(cs.clone());
                node.conf_history.push((e.index, cs));
                let line = format!(
                    "{id} applied conf change {} at index {}: {}",
                    fmt_conf_change(&cc),
                    e.index,
                    node.raw.raft().tracker().config
                );
                self.log(Level::Info, out, "  ", line);
            }
            Err(err) => {
                let line = format!("{id} rejected conf change {}: {err}", fmt_conf_change(&cc));
                self.log(Level::Info, out, "  ", line);
            }
        }
        Ok(())
    }

    // ---- delivery ----

    /// Delivers (or, for ids in `drop`, drops) the queued messages selected
    /// by the filters, grouped by recipient in id order. Returns how many
    /// messages were taken off the network.
    fn deliver(
        &mut self,
        to: Option<&BTreeSet<NodeId>>,
        drop: &BTreeSet<NodeId>,
        msg_type: Option<MessageType>,
        from: Option<&BTreeSet<NodeId>>,
        out: &mut String,
    ) -> Result<usize, Box<dyn StdError>> {
        let selected = |m: &Message| {
            msg_type.is_none_or(|t| m.msg_type == t) && from.is_none_or(|f| f.contains(&m.from))
        };
        let mut taken: BTreeMap<NodeId, Vec<Message>> = BTreeMap::new();
        let mut kept = Vec::new();
        for m in std::mem::take(&mut self.network) {
            let wanted = drop.contains(&m.to) || to.is_none_or(|t| t.contains(&m.to));
            if selected(&m) && wanted {
                taken.entry(m.to).or_default().push(m);
            } else {
                kept.push(m);
            }
        }
        self.network = kept;
        let mut n = 0;
        for (rcpt, msgs) in taken {
            n += msgs.len();
            if drop.contains(&rcpt) {
                writeln!(out, "> dropping messages to {rcpt}")?;
                for m in msgs {
                    writeln!(out, "  {}", fmt_msg(&m))?;
                }
                continue;
            }
            writeln!(out, "> {rcpt} receiving messages")?;
            for m in msgs {
                writeln!(out, "  {}", fmt_msg(&m))?;
                if self.partitioned(m.from, m.to) {
                    writeln!(out, "  dropped: partitioned")?;
                    continue;
                }
                if !self.nodes.contains_key(&rcpt) {
                    writeln!(out, "  dropped: no such node")?;
                    continue;
                }
                let before = self.observe(rcpt);
                if let Err(e) = self.node(rcpt)?.raw.step(m) {
                    self.log(Level::Info, out, "  ", format!("{rcpt} step error: {e}"));
                }
                self.report(rcpt, &before, out, "  ");
            }
        }
        Ok(n)
    }

    fn partitioned(&self, a: NodeId, b: NodeId) -> bool {
        let Some(groups) = &self.partition else {
            return false;
        };
        let group_of = |id: NodeId| groups.iter().position(|g| g.contains(&id));
        group_of(a) != group_of(b)
    }

    fn stabilize(&mut self, ids: &[NodeId], out: &mut String) -> Result<(), Box<dyn StdError>> {
        let set: BTreeSet<NodeId> = ids.iter().copied().collect();
        for _ in 0..MAX_STABILIZE_ROUNDS {
            let mut busy = self.deliver(Some(&set), &BTreeSet::new(), None, None, out)? > 0;
            for &id in ids {
                busy |= self.process_ready(id, out)?;
            }
            if !busy {
                return Ok(());
            }
        }
        Err(format!("not stable after {MAX_STABILIZE_ROUNDS} rounds").into())
    }

    // ---- commands ----

    fn add_nodes(&mut self, cmd: &Command) -> CmdResult {
        let mut args = cmd.consume_args();
        let n: u64 = args.next_pos().ok_or("add-nodes N")?.parse()?;
        let voters = args
            .lookup("voters")
            .map(|a| parse_ids(&a.value))
            .transpose()?;
        let learners = args
            .lookup("learners")
            .map(|a| parse_ids(&a.value))
            .transpose()?;
        let index: u64 = args.lookup_parse("index")?.unwrap_or(0);
        let options = args.rest_key();
        args.reject_rest()?;
        let mut out = String::new();
        let first = self.nodes.keys().max().copied().unwrap_or(0) + 1;
        for id in first..first + n {
            let mut config = Config::new(id);
            config.pre_vote = false;
            config.check_quorum = false;
            for opt in &options {
                apply_option(&mut config, opt)?;
            }
            let mut store = MemStorage::new();
            let mut conf_history = vec![(0, ConfState::default())];
            if voters.is_some() || learners.is_some() {
                let cs = ConfState {
                    voters: voters.clone().unwrap_or_default(),
                    learners: learners.clone().unwrap_or_default(),
                    ..Default::default()
                };
                if index == 0 {
                    store = MemStorage::new_with_conf_state(cs.clone());
                } else {
                    store.apply_snapshot(Snapshot {
                        data: Bytes::new(),
                        metadata: SnapshotMetadata {
                            conf_state: cs.clone(),
                            index,
                            term: 1,
                        },
                    })?;
                    store.set_hard_state(HardState {
                        term: 1,
                        vote: 0,
                        commit: index,
                    });
                }
                conf_history = vec![(index, cs)];
            }
            let raw = RawNode::new(&config, store)?;
            let r = raw.raft();
            writeln!(
                out,
                "INFO {id} starts as follower at term {}: {} first={} last={} commit={}",
                r.term,
                r.tracker().config,
                r.raft_log.first_index(),
                r.raft_log.last_index(),
                r.raft_log.committed(),
            )?;
            self.nodes.insert(
                id,
                Node {
                    raw,
                    config,
                    state: Vec::new(),
                    conf_history,
                    pending: None,
                },
            );
        }
        Ok(if self.level >= Level::Info {
            out
        } else {
            String::new()
        })
    }

    /// Runs `f` on node `id` and reports the changes it made; an error
    /// returned by raft is printed, not raised (scripts show refusals).
    fn on_node(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut RawNode<MemStorage>) -> raft_core::Result<()>,
    ) -> CmdResult {
        let mut out = String::new();
        let before = self.observe(id);
        if let Err(e) = f(&mut self.node(id)?.raw) {
            writeln!(out, "error: {e}")?;
        }
        self.report(id, &before, &mut out, "");
        Ok(out)
    }

    fn tick(&mut self, id: NodeId, n: usize) -> CmdResult {
        let mut out = String::new();
        for _ in 0..n {
            let before = self.observe(id);
            self.node(id)?.raw.tick();
            self.report(id, &before, &mut out, "");
        }
        Ok(out)
    }

    /// Ticks the given nodes in lockstep: a leader alone gets election_tick
    /// ticks; otherwise ticking stops as soon as the election timeout of one
    /// of them fires (it changes role or term, or has messages to send),
    /// after at most 2 * election_tick ticks.
    fn tick_election(&mut self, ids: &[NodeId]) -> CmdResult {
        let mut et = 0;
        for &id in ids {
            et = et.max(self.node(id)?.config.election_tick);
        }
        if let [id] = ids {
            if self.node(*id)?.raw.raft().state() == StateRole::Leader {
                return self.tick(*id, et);
            }
        }
        let mut out = String::new();
        for _ in 0..2 * et {
            let mut fired = false;
            for &id in ids {
                let before = self.observe(id);
                let had_ready = self.node(id)?.raw.has_ready();
                self.node(id)?.raw.tick();
                self.report(id, &before, &mut out, "");
                let after = self.observe(id);
                // A pre-candidate starting another pre-election changes
                // neither role nor term, but has messages to send.
                fired |= (before.role, before.term) != (after.role, after.term)
                    || (!had_ready && self.node(id)?.raw.has_ready());
            }
            if fired {
                break;
            }
        }
        Ok(out)
    }

    fn propose_conf_change(&mut self, cmd: &Command) -> CmdResult {
        let mut args = cmd.consume_args();
        let id: NodeId = args.next_pos().ok_or("propose-conf-change ID")?.parse()?;
        let v1: bool = args.lookup_parse("v1")?.unwrap_or(false);
        let transition = match args.lookup("transition").map(|a| a.value.as_str()) {
            None | Some("auto") => ConfChangeTransition::Auto,
            Some("implicit") => ConfChangeTransition::JointImplicit,
            Some("explicit") => ConfChangeTransition::JointExplicit,
            Some(t) => return Err(format!("unknown transition {t}").into()),
        };
        let changes = args
            .rest_pos()
            .iter()
            .map(|a| parse_change(&a.value))
            .collect::<Result<Vec<_>, _>>()?;
        args.reject_rest()?;
        let cc: ConfChangeI = if v1 {
            let [c] = changes[..] else {
                return Err("a V1 change has exactly one change".into());
            };
            ConfChange {
                change_type: c.change_type,
                node_id: c.node_id,
                context: Bytes::new(),
            }
            .into()
        } else {
            ConfChangeV2 {
                transition,
                changes,
                context: Bytes::new(),
            }
            .into()
        };
        self.on_node(id, |raw| raw.propose_conf_change(cc))
    }

    fn send(&mut self, cmd: &Command) -> CmdResult {
        let mut args = cmd.consume_args();
        let from: NodeId = args.next_pos().ok_or("send FROM TO TYPE")?.parse()?;
        let to: NodeId = args.next_pos().ok_or("send FROM TO TYPE")?.parse()?;
        let msg_type = parse_msg_type(&args.next_pos().ok_or("send FROM TO TYPE")?.value)?;
        let mut m = Message::new(msg_type, from, to);
        m.term = args.lookup_parse("term")?.unwrap_or(0);
        m.log_term = args.lookup_parse("log-term")?.unwrap_or(0);
        m.index = args.lookup_parse("index")?.unwrap_or(0);
        m.commit = args.lookup_parse("commit")?.unwrap_or(0);
        m.reject = args.lookup_parse("reject")?.unwrap_or(false);
        m.reject_hint = args.lookup_parse("hint")?.unwrap_or(0);
        if let Some(ctx) = args.lookup("context") {
            m.context = Bytes::from(ctx.value.clone().into_bytes());
        }
        if let Some(ents) = args.lookup("entries") {
            m.entries = parse_entries(&ents.value)?;
        }
        if msg_type == MessageType::Snap {
            // The membership defaults to the receiver's own.
            let conf_state = match args.lookup("snap-voters") {
                Some(a) => ConfState::with_voters(parse_ids(&a.value)?),
                None => self.node(to)?.raw.raft().tracker().conf_state(),
            };
            m.snapshot = Some(Box::new(Snapshot {
                data: Bytes::new(),
                metadata: SnapshotMetadata {
                    conf_state,
                    index: args.lookup_parse("snap-index")?.unwrap_or(0),
                    term: args.lookup_parse("snap-term")?.unwrap_or(0),
                },
            }));
        }
        args.reject_rest()?;
        let line = fmt_msg(&m);
        self.network.push(m);
        Ok(format!("queued {line}\n"))
    }

    fn compact(&mut self, id: NodeId, index: u64) -> CmdResult {
        let node = self.node(id)?;
        let applied = node.raw.raft().raft_log.applied();
        if index > applied {
            return Err(format!("cannot snapshot {index}: only {applied} applied").into());
        }
        let data = node
            .state
            .iter()
            .filter(|(i, _)| *i <= index)
            .map(|(_, d)| d.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let cs = node.conf_state_at(index);
        let store = node.raw.store_mut();
        let snap = store.create_snapshot(index, Some(cs), data)?;
        store.compact(index)?;
        Ok(format!(
            "{id} compacted its log to snapshot {}\n",
            fmt_snapshot(&snap)
        ))
    }

    fn restart(&mut self, id: NodeId) -> CmdResult {
        let node = self.node(id)?;
        // The state machine is taken to be durable with its applied index
        // (as an application that persists it with each apply would), so the
        // node restarts with `applied` and does not re-apply entries. What is
        // lost is everything raft held in memory: role, leader, progress,
        // timers, and entries and commit index not yet handed out in a Ready.
        let mut config = node.config.clone();
        config.applied = node.raw.raft().raft_log.applied();
        let store = node.raw.store().clone();
        // A Ready taken but not advanced was not persisted: it is lost.
        node.pending = None;
        node.raw = RawNode::new(&config, store)?;
        let r = node.raw.raft();
        let line = format!(
            "{id} restarted at term {} (vote {}): {} first={} last={} commit={} applied={}",
            r.term,
            r.vote,
            r.tracker().config,
            r.raft_log.first_index(),
            r.raft_log.last_index(),
            r.raft_log.committed(),
            r.raft_log.applied(),
        );
        let mut out = String::new();
        self.log(Level::Info, &mut out, "", line);
        Ok(out)
    }

    fn raft_log(&mut self, id: NodeId) -> CmdResult {
        let node = self.node(id)?;
        let log = &node.raw.raft().raft_log;
        let store = node.raw.store();
        let (first, last) = (log.first_index(), log.last_index());
        let mut out = String::new();
        if first > 1 {
            writeln!(
                out,
                "snapshot {}/{}",
                store.term(first - 1).unwrap_or(0),
                first - 1
            )?;
        }
        if first > last {
            writeln!(out, "log is empty: first index={first}, last index={last}")?;
        }
        let unstable_from = log.unstable().offset();
        for e in log.all_entries() {
            let mark = if e.index >= unstable_from {
                " (unstable)"
            } else {
                ""
            };
            writeln!(out, "{}{mark}", fmt_entry(&e))?;
        }
        Ok(out)
    }

    fn raft_state(&mut self) -> CmdResult {
        let mut out = String::new();
        for (id, node) in &self.nodes {
            let r = node.raw.raft();
            let kind = if r.tracker().config.voters.ids().any(|v| v == *id) {
                "voter"
            } else if r.tracker().progress.contains_key(id) {
                "learner"
            } else {
                "non-member"
            };
            writeln!(
                out,
                "{id}: {:?} ({kind}) Term:{} Lead:{} Commit:{} Applied:{}",
                r.state(),
                r.term,
                r.leader_id(),
                r.raft_log.committed(),
                r.raft_log.applied()
            )?;
            if r.state() == StateRole::Leader {
                for (peer, pr) in &r.tracker().progress {
                    writeln!(out, "  {peer}: {pr}")?;
                }
            }
        }
        Ok(out)
    }

    fn status(&mut self, id: NodeId) -> CmdResult {
        let st = self.node(id)?.raw.status();
        let mut out = String::new();
        writeln!(
            out,
            "{} {:?} Lead:{} {} Applied:{}",
            st.id,
            st.soft_state.raft_state,
            st.soft_state.leader_id,
            fmt_hard_state(&st.hard_state),
            st.applied
        )?;
        writeln!(out, "config: {}", st.config)?;
        if st.lead_transferee != 0 {
            writeln!(out, "transferring leadership to {}", st.lead_transferee)?;
        }
        for (peer, pr) in &st.progress {
            writeln!(out, "{peer}: {pr}")?;
        }
        Ok(out)
    }

    /// Lets node `id` (which must be unable to win: its messages are
    /// discarded) campaign `rounds` times, recording the number of ticks
    /// each election timeout took, and checks they are all in
    /// `[election_tick, 2 * election_tick)` (Raft thesis §3.4).
    fn measure_election_timeout(&mut self, id: NodeId, rounds: usize) -> CmdResult {
        let et = self.node(id)?.config.election_tick;
        let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
        for _ in 0..rounds {
            let term = self.node(id)?.raw.raft().term;
            let mut ticks = 0;
            while self.node(id)?.raw.raft().term == term {
                if ticks > 2 * et {
                    return Err(format!("no election after {ticks} ticks").into());
                }
                self.node(id)?.raw.tick();
                ticks += 1;
            }
            *seen.entry(ticks).or_default() += 1;
            // Persist and discard the Ready: nobody hears this candidate.
            let node = self.node(id)?;
            while node.raw.has_ready() {
                let rd = node.raw.ready();
                if let Some(hs) = rd.hard_state() {
                    node.raw.store_mut().set_hard_state(*hs);
                }
                node.raw.store_mut().append(rd.entries())?;
                node.raw.advance(rd);
            }
        }
        let (min, max) = (
            *seen.keys().next().unwrap_or(&0),
            *seen.keys().last().unwrap_or(&0),
        );
        assert!(
            min >= et && max < 2 * et,
            "election timeouts {seen:?} outside [{et}, {})",
            2 * et
        );
        let mut out = format!(
            "{rounds} elections: timeouts in [{min}, {max}] ticks, {} distinct values, within [{et}, {})\n",
            seen.len(),
            2 * et
        );
        for (ticks, count) in seen {
            writeln!(out, "{ticks} ticks: {count}")?;
        }
        Ok(out)
    }
}

impl Runner for Cluster {
    fn run(&mut self, cmd: &Command) -> CmdResult {
        let pos = |i: usize| -> Result<u64, Box<dyn StdError>> {
            let a = cmd
                .args
                .iter()
                .filter(|a| a.key.is_none())
                .nth(i)
                .ok_or_else(|| format!("{}: missing argument {}", cmd.name, i + 1))?;
            Ok(a.value.parse()?)
        };
        match cmd.name.as_str() {
            "add-nodes" => self.add_nodes(cmd),
            "campaign" => self.on_node(pos(0)?, |raw| raw.campaign()),
            "propose" => {
                let id = pos(0)?;
                let mut out = String::new();
                for a in cmd.args.iter().skip(1) {
                    let data = a.value.clone();
                    out.push_str(&self.on_node(id, |raw| raw.propose(data.into_bytes()))?);
                }
                Ok(out)
            }
            "propose-conf-change" => self.propose_conf_change(cmd),
            "read-index" => {
                let ctx = cmd.args.get(1).ok_or("read-index ID CTX")?.value.clone();
                self.on_node(pos(0)?, |raw| raw.read_index(ctx.into_bytes()))
            }
            "transfer-leader" => {
                let to = pos(1)?;
                self.on_node(pos(0)?, |raw| {
                    raw.transfer_leader(to);
                    Ok(())
                })
            }
            "report-unreachable" => {
                let peer = pos(1)?;
                self.on_node(pos(0)?, |raw| {
                    raw.report_unreachable(peer);
                    Ok(())
                })
            }
            "report-snapshot" => {
                let peer = pos(1)?;
                let status = match cmd.args.get(2).map(|a| a.value.as_str()) {
                    Some("ok") => SnapshotStatus::Finish,
                    Some("fail") => SnapshotStatus::Failure,
                    _ => return Err("report-snapshot ID PEER ok|fail".into()),
                };
                self.on_node(pos(0)?, |raw| {
                    raw.report_snapshot(peer, status);
                    Ok(())
                })
            }
            "tick" => {
                let n = if cmd.args.len() > 1 { pos(1)? } else { 1 };
                self.tick(pos(0)?, n as usize)
            }
            "tick-heartbeat" => {
                let id = pos(0)?;
                let n = self.node(id)?.config.heartbeat_tick;
                self.tick(id, n)
            }
            "tick-election" => {
                let ids: Vec<NodeId> = cmd
                    .args
                    .iter()
                    .map(|a| a.value.parse())
                    .collect::<Result<_, _>>()?;
                self.tick_election(&ids)
            }
            "ready" => {
                let id = pos(0)?;
                if !self.node(id)?.raw.has_ready() {
                    return Ok(format!("{id} has no Ready\n"));
                }
                let mut out = String::new();
                self.take_ready(id, &mut out)?;
                Ok(out)
            }
            "advance" => {
                let id = pos(0)?;
                let mut out = format!("> {id} persisting and advancing its Ready\n");
                self.advance(id, &mut out)?;
                Ok(out)
            }
            "process-ready" => {
                let mut out = String::new();
                for a in &cmd.args {
                    self.process_ready(a.value.parse()?, &mut out)?;
                }
                Ok(out)
            }
            "deliver-msgs" => {
                let mut args = cmd.consume_args();
                let drop = args
                    .lookup("drop")
                    .map(|a| parse_ids(&a.value))
                    .transpose()?
                    .unwrap_or_default();
                let msg_type = args
                    .lookup("type")
                    .map(|a| parse_msg_type(&a.value))
                    .transpose()?;
                let from: Option<BTreeSet<NodeId>> = args
                    .lookup("from")
                    .map(|a| parse_ids(&a.value))
                    .transpose()?
                    .map(|v| v.into_iter().collect());
                let to: BTreeSet<NodeId> = args
                    .rest_pos()
                    .iter()
                    .map(|a| a.value.parse())
                    .collect::<Result<_, _>>()?;
                args.reject_rest()?;
                let drop: BTreeSet<NodeId> = drop.into_iter().collect();
                // With only drop= given, nothing is delivered.
                let to = if to.is_empty() && drop.is_empty() {
                    None
                } else {
                    Some(to)
                };
                let mut out = String::new();
                self.deliver(to.as_ref(), &drop, msg_type, from.as_ref(), &mut out)?;
                Ok(out)
            }
            "stabilize" => {
                let mut ids: Vec<NodeId> = cmd
                    .args
                    .iter()
                    .map(|a| a.value.parse())
                    .collect::<Result<_, _>>()?;
                if ids.is_empty() {
                    ids = self.nodes.keys().copied().collect();
                }
                let mut out = String::new();
                self.stabilize(&ids, &mut out)?;
                Ok(out)
            }
            "partition" => {
                let mut groups = vec![BTreeSet::new()];
                for a in &cmd.args {
                    if a.value == "/" {
                        groups.push(BTreeSet::new());
                    } else {
                        groups.last_mut().unwrap().insert(a.value.parse()?);
                    }
                }
                let named: BTreeSet<NodeId> = groups.iter().flatten().copied().collect();
                let rest: BTreeSet<NodeId> = self
                    .nodes
                    .keys()
                    .copied()
                    .filter(|id| !named.contains(id))
                    .collect();
                if !rest.is_empty() {
                    groups.push(rest);
                }
                let desc: Vec<String> = groups.iter().map(|g| fmt_ids(g.iter())).collect();
                self.partition = Some(groups);
                Ok(format!("partitioned: {}\n", desc.join(" | ")))
            }
            "heal" => {
                self.partition = None;
                Ok(String::new())
            }
            "send" => self.send(cmd),
            "compact" => self.compact(pos(0)?, pos(1)?),
            "restart" => self.restart(pos(0)?),
            "set-snapshot-unavailable" => {
                let on: bool = cmd.args.get(1).ok_or("BOOL")?.value.parse()?;
                self.node(pos(0)?)?
                    .raw
                    .store_mut()
                    .set_snapshot_unavailable(on);
                Ok(String::new())
            }
            "raft-log" => self.raft_log(pos(0)?),
            "raft-state" => self.raft_state(),
            "status" => self.status(pos(0)?),
            "applied" => {
                let id = pos(0)?;
                let node = self.node(id)?;
                let values: Vec<&str> = node.state.iter().map(|(_, d)| d.as_str()).collect();
                Ok(format!(
                    "{id} applied up to {}: [{}]\n",
                    node.raw.raft().raft_log.applied(),
                    values.join(" ")
                ))
            }
            "log-level" => {
                self.level = match cmd.args.first().map(|a| a.value.as_str()) {
                    Some("none") => Level::None,
                    Some("info") => Level::Info,
                    Some("debug") => Level::Debug,
                    _ => return Err("log-level none|info|debug".into()),
                };
                Ok(String::new())
            }
            "measure-election-timeout" => {
                let mut args = cmd.consume_args();
                let id: NodeId = args.next_pos().ok_or("ID")?.parse()?;
                let rounds: usize = args.lookup_parse("rounds")?.unwrap_or(100);
                args.reject_rest()?;
                self.measure_election_timeout(id, rounds)
            }
            name => Err(format!("unknown command {name}").into()),
        }
    }
}

// ---- parsing ----

fn parse_ids(s: &str) -> Result<Vec<NodeId>, Box<dyn StdError>> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().map_err(Into::into))
        .collect()
}

fn apply_option(c: &mut Config, a: &Argument) -> Result<(), Box<dyn StdError>> {
    let key = a.key.as_deref().unwrap_or_default();
    match key {
        "pre-vote" => c.pre_vote = a.parse()?,
        "check-quorum" => c.check_quorum = a.parse()?,
        "read-only" => {
            c.read_only_option = match a.value.as_str() {
                "safe" => ReadOnlyOption::Safe,
                "lease" => ReadOnlyOption::LeaseBased,
                v => return Err(format!("read-only={v}").into()),
            }
        }
        "max-inflight" => c.max_inflight_msgs = a.parse()?,
        "max-inflight-bytes" => c.max_inflight_bytes = a.parse()?,
        "max-size-per-msg" => c.max_size_per_msg = a.parse()?,
        "max-uncommitted-size" => c.max_uncommitted_entries_size = a.parse()?,
        "max-committed-size-per-ready" => c.max_committed_size_per_ready = a.parse()?,
        "step-down-on-removal" => c.step_down_on_removal = a.parse()?,
        "disable-proposal-forwarding" => c.disable_proposal_forwarding = a.parse()?,
        "election-tick" => c.election_tick = a.parse()?,
        "heartbeat-tick" => c.heartbeat_tick = a.parse()?,
        k => return Err(format!("unknown option {k}").into()),
    }
    Ok(())
}

fn parse_change(s: &str) -> Result<ConfChangeSingle, Box<dyn StdError>> {
    let (kind, id) = s.split_at(1);
    let change_type = match kind {
        "v" => ConfChangeType::AddNode,
        "l" => ConfChangeType::AddLearnerNode,
        "r" => ConfChangeType::RemoveNode,
        "u" => ConfChangeType::UpdateNode,
        _ => return Err(format!("unknown change {s}").into()),
    };
    Ok(ConfChangeSingle {
        change_type,
        node_id: id.parse()?,
    })
}

fn parse_msg_type(s: &str) -> Result<MessageType, Box<dyn StdError>> {
    use MessageType::*;
    let all = [
        Hup,
        Beat,
        Prop,
        App,
        AppResp,
        Vote,
        VoteResp,
        Snap,
        Heartbeat,
        HeartbeatResp,
        Unreachable,
        SnapStatus,
        CheckQuorum,
        TransferLeader,
        TimeoutNow,
        ReadIndex,
        ReadIndexResp,
        PreVote,
        PreVoteResp,
    ];
    let name = s.strip_prefix("Msg").unwrap_or(s);
    all.into_iter()
        .find(|t| format!("{t:?}") == name)
        .ok_or_else(|| format!("unknown message type {s}").into())
}

/// `"T/I[:data] ..."`.
fn parse_entries(s: &str) -> Result<Vec<Entry>, Box<dyn StdError>> {
    s.split_whitespace()
        .map(|tok| {
            let (id, data) = tok.split_once(':').unwrap_or((tok, ""));
            let (t, i) = id.split_once('/').ok_or("entries are T/I[:data]")?;
            Ok(Entry::new(t.parse()?, i.parse()?, data.to_string()))
        })
        .collect()
}

/// The state machine a snapshot carries: its applied values, comma-joined.
fn decode_state(snap: &Snapshot) -> Vec<(u64, String)> {
    lossy(&snap.data)
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| (snap.metadata.index, s.to_string()))
        .collect()
}

// ---- formatting ----

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn fmt_ids<'a>(ids: impl Iterator<Item = &'a NodeId>) -> String {
    let ids: Vec<String> = ids.map(ToString::to_string).collect();
    format!("({})", ids.join(" "))
}

fn fmt_hard_state(hs: &HardState) -> String {
    format!(
        "HardState Term:{} Vote:{} Commit:{}",
        hs.term, hs.vote, hs.commit
    )
}

fn fmt_conf_state(cs: &ConfState) -> String {
    let mut s = format!("Voters:{}", fmt_ids(cs.voters.iter()));
    if !cs.voters_outgoing.is_empty() {
        write!(s, " VotersOutgoing:{}", fmt_ids(cs.voters_outgoing.iter())).unwrap();
    }
    if !cs.learners.is_empty() {
        write!(s, " Learners:{}", fmt_ids(cs.learners.iter())).unwrap();
    }
    if !cs.learners_next.is_empty() {
        write!(s, " LearnersNext:{}", fmt_ids(cs.learners_next.iter())).unwrap();
    }
    if cs.auto_leave {
        s.push_str(" AutoLeave");
    }
    s
}

fn fmt_snapshot(s: &Snapshot) -> String {
    let mut out = format!(
        "Index:{} Term:{} {}",
        s.metadata.index,
        s.metadata.term,
        fmt_conf_state(&s.metadata.conf_state)
    );
    if !s.data.is_empty() {
        write!(out, " Data:{:?}", lossy(&s.data)).unwrap();
    }
    out
}

fn fmt_conf_change(cc: &ConfChangeI) -> String {
    let v2 = cc.as_v2();
    if v2.leave_joint() {
        return "leave-joint".to_string();
    }
    let mut parts: Vec<String> = v2
        .changes
        .iter()
        .map(|c| {
            let kind = match c.change_type {
                ConfChangeType::AddNode => 'v',
                ConfChangeType::AddLearnerNode => 'l',
                ConfChangeType::RemoveNode => 'r',
                ConfChangeType::UpdateNode => 'u',
            };
            format!("{kind}{}", c.node_id)
        })
        .collect();
    match v2.transition {
        ConfChangeTransition::Auto => {}
        ConfChangeTransition::JointImplicit => parts.push("transition=implicit".into()),
        ConfChangeTransition::JointExplicit => parts.push("transition=explicit".into()),
    }
    parts.join(" ")
}

fn fmt_entry(e: &Entry) -> String {
    let (kind, payload) = match e.entry_type {
        EntryType::Normal => ("EntryNormal", format!("{:?}", lossy(&e.data))),
        EntryType::ConfChange | EntryType::ConfChangeV2 => {
            let kind = if e.entry_type == EntryType::ConfChange {
                "EntryConfChange"
            } else {
                "EntryConfChangeV2"
            };
            let payload = match ConfChangeI::from_entry(e) {
                Ok(cc) => fmt_conf_change(&cc),
                Err(err) => format!("<{err}>"),
            };
            (kind, payload)
        }
    };
    format!("{}/{} {kind} {payload}", e.term, e.index)
}

fn fmt_entries(ents: &[Entry]) -> String {
    let v: Vec<String> = ents.iter().map(fmt_entry).collect();
    format!("[{}]", v.join(", "))
}

fn fmt_msg(m: &Message) -> String {
    use MessageType::*;
    let mut s = format!("{}->{} Msg{:?} Term:{}", m.from, m.to, m.msg_type, m.term);
    match m.msg_type {
        App => {
            write!(s, " Log:{}/{} Commit:{}", m.log_term, m.index, m.commit).unwrap();
            if !m.entries.is_empty() {
                write!(s, " Entries:{}", fmt_entries(&m.entries)).unwrap();
            }
        }
        AppResp => {
            write!(s, " Index:{}", m.index).unwrap();
            if m.reject {
                write!(s, " Rejected (Hint: {}/{})", m.log_term, m.reject_hint).unwrap();
            }
        }
        Vote | PreVote => write!(s, " Log:{}/{}", m.log_term, m.index).unwrap(),
        VoteResp | PreVoteResp if m.reject => s.push_str(" Rejected"),
        Heartbeat => write!(s, " Commit:{}", m.commit).unwrap(),
        Snap => {
            if let Some(snap) = &m.snapshot {
                write!(s, " Snapshot: {}", fmt_snapshot(snap)).unwrap();
            }
        }
        Prop => write!(s, " Entries:{}", fmt_entries(&m.entries)).unwrap(),
        ReadIndex => {
            if let Some(e) = m.entries.first() {
                write!(s, " Ctx:{:?}", lossy(&e.data)).unwrap();
            }
        }
        ReadIndexResp => {
            write!(s, " Index:{}", m.index).unwrap();
            if let Some(e) = m.entries.first() {
                write!(s, " Ctx:{:?}", lossy(&e.data)).unwrap();
            }
        }
        _ => {}
    }
    if !m.context.is_empty() {
        write!(s, " Context:{:?}", lossy(&m.context)).unwrap();
    }
    s
}

fn describe_role(o: &Observed) -> String {
    match o.role {
        StateRole::Follower if o.lead != 0 => {
            format!("follower of {} at term {}", o.lead, o.term)
        }
        StateRole::Follower => format!("follower at term {} (no leader)", o.term),
        StateRole::PreCandidate => format!("pre-candidate at term {}", o.term),
        StateRole::Candidate => format!("candidate at term {}", o.term),
        StateRole::Leader => format!("leader at term {}", o.term),
    }
}

fn write_list(
    out: &mut String,
    title: &str,
    items: impl Iterator<Item = String>,
) -> std::fmt::Result {
    let mut first = true;
    for item in items {
        if first {
            writeln!(out, "{title}:")?;
            first = false;
        }
        writeln!(out, "{item}")?;
    }
    Ok(())
}

fn indent_into(out: &mut String, body: &str, indent: &str) {
    for line in body.lines() {
        out.push_str(indent);
        out.push_str(line);
        out.push('\n');
    }
}

// ---- the tests: one per scenario file ----

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");

fn run_scenario(name: &str) {
    let path = format!("{TESTDATA}/{name}.txt");
    goldenscript::run(&mut Cluster::new(), &path).unwrap_or_else(|e| panic!("{path}: {e}"));
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_scenario(stringify!($name));
            }
        )*

        /// Every file in testdata/ has a test above (a new scenario that is
        /// not listed would silently never run).
        #[test]
        fn every_scenario_is_listed() {
            let listed: BTreeSet<String> =
                [$(stringify!($name)),*].iter().map(|s| s.to_string()).collect();
            let on_disk: BTreeSet<String> = std::fs::read_dir(TESTDATA)
                .expect("testdata directory")
                .filter_map(|e| {
                    let name = e.ok()?.file_name().into_string().ok()?;
                    name.strip_suffix(".txt").map(str::to_string)
                })
                .collect();
            assert_eq!(on_disk, listed, "testdata/*.txt and the scenarios! list differ");
        }
    };
}

scenarios! {
    campaign,
    checkquorum_step_down,
    commit_figure8,
    commit_previous_term_entries,
    confchange_join_from_log_hazard,
    confchange_joint_restart_snapshot,
    confchange_learner_must_vote,
    confchange_learners,
    confchange_pending_refusal,
    confchange_remove_follower,
    confchange_remove_leader,
    confchange_remove_leader_no_stepdown,
    confchange_v1_add_node,
    confchange_v2_auto_leave,
    confchange_v2_joint_explicit,
    confchange_v2_replace_leader,
    election_basic,
    election_log_restriction,
    election_partition_disrupts,
    election_randomized_timeout,
    election_split_vote,
    heartbeat_commit,
    heartbeat_resp_recovers_from_probing,
    inflights_bytes,
    inflights_count,
    leader_stickiness,
    leader_transfer,
    leader_transfer_lagging,
    leader_transfer_refused,
    leader_transfer_timeout,
    log_compaction,
    max_committed_size_per_ready,
    prevote_checkquorum,
    prevote_partition_rejoin,
    prevote_stale_term,
    progress_probe_replicate,
    proposal_dropped,
    proposal_forwarding,
    read_index_follower,
    read_index_lease,
    read_index_new_leader,
    read_index_safe,
    read_index_single_voter,
    ready_advance_contract,
    ready_advance_single_node,
    replication_backtracking,
    replication_pipeline,
    restart,
    snapshot_and_entries_in_one_ready,
    snapshot_follower_behind,
    snapshot_report_fail,
    snapshot_unavailable,
    term_higher_messages,
    term_lower_messages,
    vote_rules,
}
