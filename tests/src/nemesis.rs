//! Nemeses: the faults a [`LinRun`] injects while its clients work, and the
//! record of when each was active.
//!
//! Each nemesis is self-contained: it injects its fault, holds it while the
//! clients complete [`LinOptions::hold_ops`] more operations (for at least
//! [`LinOptions::min_hold`] and at most [`LinOptions::max_hold`]), repairs
//! it, and waits until every live node agrees on a leader again. Its window
//! in the [`FaultLog`] runs from the injection to that agreement, so the
//! recovery counts as faulted time and "healed" means a cluster that is
//! whole again. Then the clients get half as many operations on the healed
//! cluster before the next nemesis.
//!
//! | nemesis | fault |
//! |---|---|
//! | `kill-random` | kill -9 a random node, restart it |
//! | `kill-leader` | kill -9 the leader, wait for a new one, restart it |
//! | `kill-all` | kill -9 every node, restart them all |
//! | `pause-random` | SIGSTOP a random node, SIGCONT it |
//! | `pause-leader` | SIGSTOP the leader, wait for a new one, SIGCONT it |
//! | `isolate-leader` | cut the leader off from every node both ways |
//! | `mute-leader` | drop everything the leader sends (it still hears) |
//! | `majority-minority` | split the nodes into a random majority and minority |
//! | `bridge` | two halves that cannot talk, and one node that talks to both |
//! | `slow-links` | delay every peer link by 10-60 ms |
//! | `transfer-leader` | move leadership to a random follower |
//! | `membership` | add a learner, promote it, remove a voter (the leader one time in three), remove another and re-add a fresh node (new id, empty data directory) in its place |
//! | `combined` | two or three of kill, pause, a minority partition, slow links and an isolated leader at once |
//!
//! The partitions need the cluster's [`crate::proxy::Proxy`]. Clients
//! follow membership: the run's [`NodeSet`] drops a node before it is
//! removed and gains one as soon as it answers.
//!
//! [`LinOptions::hold_ops`]: crate::lin_run::LinOptions::hold_ops
//! [`LinOptions::min_hold`]: crate::lin_run::LinOptions::min_hold
//! [`LinOptions::max_hold`]: crate::lin_run::LinOptions::max_hold
//! [`NodeSet`]: crate::workload::NodeSet

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::cluster::NodeId;
use crate::lin_run::LinRun;
use crate::linearizability::Operation;
use crate::proxy::Fault;
use crate::wait_until;

/// A fault (or sequence of changes) injected while clients work. See the
/// [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Nemesis {
    /// kill -9 a random node, then restart it.
    KillRandom,
    /// kill -9 the leader, then restart it.
    KillLeader,
    /// kill -9 every node, then restart them.
    KillAll,
    /// SIGSTOP a random node, then SIGCONT.
    PauseRandom,
    /// SIGSTOP the leader, then SIGCONT.
    PauseLeader,
    /// Drop every message to and from the leader.
    IsolateLeader,
    /// Drop every message from the leader.
    MuteLeader,
    /// A random majority and minority that cannot talk.
    MajorityMinority,
    /// Two halves that cannot talk, bridged by one node.
    Bridge,
    /// Delay every peer link.
    SlowLinks,
    /// Leader transfer to a random follower.
    TransferLeader,
    /// Add a learner, promote it, remove a voter, replace another.
    Membership,
    /// Several faults at once.
    Combined,
}

impl Nemesis {
    /// Every nemesis.
    pub const ALL: [Nemesis; 13] = [
        Nemesis::KillRandom,
        Nemesis::KillLeader,
        Nemesis::KillAll,
        Nemesis::PauseRandom,
        Nemesis::PauseLeader,
        Nemesis::IsolateLeader,
        Nemesis::MuteLeader,
        Nemesis::MajorityMinority,
        Nemesis::Bridge,
        Nemesis::SlowLinks,
        Nemesis::TransferLeader,
        Nemesis::Membership,
        Nemesis::Combined,
    ];

    /// Its name in summaries and logs.
    pub fn name(self) -> &'static str {
        match self {
            Nemesis::KillRandom => "kill-random",
            Nemesis::KillLeader => "kill-leader",
            Nemesis::KillAll => "kill-all",
            Nemesis::PauseRandom => "pause-random",
            Nemesis::PauseLeader => "pause-leader",
            Nemesis::IsolateLeader => "isolate-leader",
            Nemesis::MuteLeader => "mute-leader",
            Nemesis::MajorityMinority => "majority-minority",
            Nemesis::Bridge => "bridge",
            Nemesis::SlowLinks => "slow-links",
            Nemesis::TransferLeader => "transfer-leader",
            Nemesis::Membership => "membership",
            Nemesis::Combined => "combined",
        }
    }
}

impl fmt::Display for Nemesis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// When one fault was active, in the history's clock (nanoseconds of the
/// run's [`crate::linearizability::Recorder`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultWindow {
    /// The nemesis.
    pub name: &'static str,
    /// Injected at.
    pub start: u64,
    /// Repaired, and the cluster agreed on a leader again, at.
    /// Invariant: `start <= end`.
    pub end: u64,
}

/// The faults of a run, in order.
#[derive(Clone, Debug, Default)]
pub struct FaultLog {
    windows: Vec<FaultWindow>,
}

impl FaultLog {
    /// Records a fault active over `[start, end]`.
    ///
    /// # Panics
    /// If `start > end`.
    pub fn push(&mut self, name: &'static str, start: u64, end: u64) {
        assert!(start <= end, "fault {name} ends before it starts");
        self.windows.push(FaultWindow { name, start, end });
    }

    /// The windows, in injection order.
    pub fn windows(&self) -> &[FaultWindow] {
        &self.windows
    }

    /// How many times each nemesis ran.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for w in &self.windows {
            *out.entry(w.name).or_default() += 1;
        }
        out
    }

    /// Availability over `history`: an operation counts as faulted if its
    /// span (invocation to answer) overlaps a fault window.
    pub fn availability(&self, history: &[Operation]) -> Availability {
        let mut a = Availability::default();
        for op in history {
            let faulted = self
                .windows
                .iter()
                .any(|w| op.invoke <= w.end && op.complete >= w.start);
            let ok = usize::from(op.outcome.is_ok());
            if faulted {
                a.faulted += 1;
                a.faulted_ok += ok;
            } else {
                a.healed += 1;
                a.healed_ok += ok;
            }
        }
        a
    }
}

/// Operations answered definitely ("ok": a read, an applied or a refused
/// write) while a fault was active and while the cluster was whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Availability {
    /// Operations overlapping a fault.
    pub faulted: usize,
    /// Of those, ok.
    pub faulted_ok: usize,
    /// Operations overlapping no fault.
    pub healed: usize,
    /// Of those, ok.
    pub healed_ok: usize,
}

impl Availability {
    /// Adds another run's counts.
    pub fn add(&mut self, o: &Availability) {
        self.faulted += o.faulted;
        self.faulted_ok += o.faulted_ok;
        self.healed += o.healed;
        self.healed_ok += o.healed_ok;
    }
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |ok: usize, n: usize| {
            if n == 0 {
                "-".to_owned()
            } else {
                format!("{:.1}%", 100.0 * ok as f64 / n as f64)
            }
        };
        write!(
            f,
            "{} ok during faults ({} ops), {} ok healed ({} ops)",
            pct(self.faulted_ok, self.faulted),
            self.faulted,
            pct(self.healed_ok, self.healed),
            self.healed
        )
    }
}

/// A membership change, made through the leader and retried until
/// `/members` shows it (see [`LinRun::conf_change`]).
#[derive(Clone, Copy, Debug)]
enum Change {
    AddLearner(NodeId),
    AddVoter(NodeId),
    Promote(NodeId),
    Remove(NodeId),
}

impl Change {
    /// Whether `members` (the leader's view) shows the change made.
    fn done(self, members: &[kv_server::api::Member]) -> bool {
        let find = |id| members.iter().find(|m| m.id == id);
        match self {
            // Promoted already counts as added.
            Change::AddLearner(id) => find(id).is_some(),
            Change::AddVoter(id) | Change::Promote(id) => find(id).is_some_and(|m| m.voter),
            Change::Remove(id) => find(id).is_none(),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::AddLearner(id) => write!(f, "add node {id} as a learner"),
            Change::AddVoter(id) => write!(f, "add node {id} as a voter"),
            Change::Promote(id) => write!(f, "promote node {id}"),
            Change::Remove(id) => write!(f, "remove node {id}"),
        }
    }
}

/// One part of a [`Nemesis::Combined`].
#[derive(Clone, Copy, Debug)]
enum Part {
    Kill,
    Pause,
    Minority,
    Slow,
    IsolateLeader,
}

impl LinRun<'_> {
    /// Injects `nemesis`, holds it, repairs it, and waits until the live
    /// nodes agree on a leader again. See the [module docs](self).
    ///
    /// # Panics
    /// If the cluster does not recover within [`LinOptions::wait`] at any
    /// step, a membership change keeps failing for that long, or a
    /// partition is asked of a cluster without a proxy.
    ///
    /// [`LinOptions::wait`]: crate::lin_run::LinOptions::wait
    pub async fn inject(&mut self, nemesis: Nemesis) {
        let wait = self.opts.wait;
        let leader = self.c.wait_for_leader(wait).await;
        let live = self.c.live();
        let others: Vec<NodeId> = live.iter().copied().filter(|&id| id != leader).collect();
        let start = self.recorder.now();
        self.c
            .log(&format!("nemesis {nemesis}: begin (leader {leader})"));
        match nemesis {
            Nemesis::KillRandom => {
                let v = self.pick(&live);
                self.c.log(&format!("nemesis: kill -9 node {v}"));
                self.c.kill(v);
                self.hold("operations with a node dead").await;
                self.c.restart(v).await;
            }
            Nemesis::KillLeader => {
                self.c.log(&format!("nemesis: kill -9 the leader {leader}"));
                self.c.kill(leader);
                self.c.wait_for_leader_among(&others, wait).await;
                self.hold("operations with the leader dead").await;
                self.c.restart(leader).await;
            }
            Nemesis::KillAll => {
                self.c.log("nemesis: kill -9 every node");
                for &id in &live {
                    self.c.kill(id);
                }
                for &id in &live {
                    self.c.restart(id).await;
                }
                self.c.wait_for_leader(wait).await;
                self.hold("operations after the whole cluster restarted")
                    .await;
            }
            Nemesis::PauseRandom => {
                let v = self.pick(&live);
                self.c.log(&format!("nemesis: SIGSTOP node {v}"));
                self.c.pause(v);
                self.hold("operations with a node paused").await;
                self.c.resume(v);
            }
            Nemesis::PauseLeader => {
                self.c.log(&format!("nemesis: SIGSTOP the leader {leader}"));
                self.c.pause(leader);
                self.c.wait_for_leader_among(&others, wait).await;
                self.hold("operations with the leader paused").await;
                self.c.resume(leader);
            }
            Nemesis::IsolateLeader => {
                self.c
                    .log(&format!("nemesis: isolate the leader {leader} both ways"));
                self.c.proxy().isolate(leader);
                self.c.wait_for_leader_among(&others, wait).await;
                self.hold("operations with the leader isolated").await;
                self.c.proxy().heal();
            }
            Nemesis::MuteLeader => {
                self.c.log(&format!(
                    "nemesis: the leader {leader} hears but cannot send"
                ));
                for &o in &others {
                    self.c.proxy().partition_one_way(leader, o);
                }
                self.c.wait_for_leader_among(&others, wait).await;
                self.hold("operations with the leader mute").await;
                self.c.proxy().heal();
            }
            Nemesis::MajorityMinority => {
                let (minority, majority) = self.split_minority(&live);
                self.c.log(&format!(
                    "nemesis: partition minority {minority:?} from majority {majority:?}"
                ));
                self.partition(&minority, &majority);
                self.c.wait_for_leader_among(&majority, wait).await;
                self.hold("operations with a minority cut off").await;
                self.c.proxy().heal();
            }
            Nemesis::Bridge => {
                let mut order = live.clone();
                self.rng.shuffle(&mut order);
                let bridge = order[0];
                let (a, b) = order[1..].split_at((order.len() - 1) / 2);
                self.c.log(&format!(
                    "nemesis: bridge: {a:?} and {b:?} cannot talk, node {bridge} talks to both"
                ));
                self.partition(a, b);
                // Which side leads, if any does steadily, depends on who
                // led before: no leader to wait for.
                self.hold("operations across a bridge").await;
                self.c.proxy().heal();
            }
            Nemesis::SlowLinks => {
                let d = Duration::from_millis(self.rng.u64(10..60));
                self.c.log(&format!("nemesis: delay every link by {d:?}"));
                self.slow_links(&live, d);
                self.hold("operations with slow links").await;
                self.c.proxy().heal();
            }
            Nemesis::TransferLeader => {
                let to = self.pick(&others);
                let r = self
                    .c
                    .client(leader)
                    .transfer_leader(to)
                    .await
                    .map(|r| r.to_string());
                // Under load a transfer may fail (503); it must break
                // nothing either way.
                self.c.log(&format!(
                    "nemesis: transfer leadership {leader} -> {to}: {r:?}"
                ));
                self.hold("operations after a transfer").await;
            }
            Nemesis::Membership => self.membership().await,
            Nemesis::Combined => self.combined(leader, &live).await,
        }
        self.c.wait_for_leader(wait).await;
        self.faults.push(nemesis.name(), start, self.recorder.now());
        self.c.log(&format!("nemesis {nemesis}: healed"));
        self.grow(self.opts.hold_ops / 2, "operations on the healed cluster")
            .await;
    }

    /// Holds a fault: waits until the clients have completed
    /// [`LinOptions::hold_ops`] more operations and
    /// [`LinOptions::min_hold`] has passed, or [`LinOptions::max_hold`]
    /// has.
    ///
    /// [`LinOptions::hold_ops`]: crate::lin_run::LinOptions::hold_ops
    /// [`LinOptions::min_hold`]: crate::lin_run::LinOptions::min_hold
    /// [`LinOptions::max_hold`]: crate::lin_run::LinOptions::max_hold
    pub(crate) async fn hold(&self, what: &str) {
        let target = self.recorder.len() + self.opts.hold_ops;
        let now = tokio::time::Instant::now();
        let (min, max) = (now + self.opts.min_hold, now + self.opts.max_hold);
        loop {
            let now = tokio::time::Instant::now();
            if (self.recorder.len() >= target && now >= min) || now >= max {
                break;
            }
            tokio::time::sleep(crate::POLL).await;
        }
        let n = self.recorder.len() + self.opts.hold_ops - target;
        self.c.log(&format!("{what}: held for {n} operations"));
    }

    fn pick(&mut self, ids: &[NodeId]) -> NodeId {
        assert!(!ids.is_empty(), "no node to pick");
        ids[self.rng.usize(0..ids.len())]
    }

    /// A random minority (at least one node) and the majority, of `live`.
    fn split_minority(&mut self, live: &[NodeId]) -> (Vec<NodeId>, Vec<NodeId>) {
        let mut order = live.to_vec();
        self.rng.shuffle(&mut order);
        let max_minority = (order.len() - 1) / 2;
        let n = self.rng.usize(1..=max_minority.max(1));
        let majority = order.split_off(n);
        (order, majority)
    }

    /// Drops every message between a node of `a` and a node of `b`.
    fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.c.proxy().partition(x, y);
            }
        }
    }

    fn slow_links(&self, live: &[NodeId], d: Duration) {
        for &a in live {
            for &b in live {
                if a != b {
                    self.c.proxy().set(a, b, Fault::Delay(d));
                }
            }
        }
    }

    /// Points the clients at the live nodes.
    fn follow_membership(&self) {
        let live = self.c.live();
        self.nodes
            .set(live.iter().map(|&id| self.c.client(id)).collect());
        self.c.log(&format!("clients now use nodes {live:?}"));
    }

    /// Makes `change` through the current leader, and retries until the
    /// leader's `/members` shows it: a change may be refused (503: no
    /// leader), time out (504: perhaps dropped because another change was
    /// still pending, perhaps applied) or lose its answer.
    ///
    /// # Panics
    /// On an answer other than 204, 503 or 504, or if the change is not
    /// made within [`LinOptions::wait`].
    ///
    /// [`LinOptions::wait`]: crate::lin_run::LinOptions::wait
    async fn conf_change(&self, change: Change) {
        let what = format!("the membership change: {change}");
        let wait = self.opts.wait;
        wait_until(&what, wait, || async {
            let leader = self.c.wait_for_leader(wait).await;
            let node = self.c.client(leader);
            let members = node.members().await?;
            if change.done(&members) {
                return Ok(());
            }
            let addr = |id: NodeId| self.c.peer_url(id).trim_start_matches("http://").to_owned();
            let r = match change {
                Change::AddLearner(id) => node.add_learner(id, &addr(id)).await,
                Change::AddVoter(id) => node.add_node(id, &addr(id)).await,
                Change::Promote(id) => node.promote_node(id).await,
                Change::Remove(id) => node.remove_node(id).await,
            };
            match r {
                Ok(r) if r.status == 204 => {
                    self.c.log(&format!("{change} via node {leader}: done"));
                    Ok(())
                }
                Ok(r) if [503, 504].contains(&r.status) => {
                    let m = format!("{change} via node {leader}: {r}; again");
                    self.c.log(&m);
                    Err(m)
                }
                Err(e) => {
                    let m = format!("{change} via node {leader}: {e}; again");
                    self.c.log(&m);
                    Err(m)
                }
                Ok(r) => panic!("{change} via node {leader}: unexpected answer {r}"),
            }
        })
        .await;
    }

    /// Waits until node `id` has applied what the leader had committed
    /// when asked.
    async fn wait_caught_up(&self, id: NodeId) {
        let leader = self.c.wait_for_leader(self.opts.wait).await;
        let target = self
            .c
            .client(leader)
            .state()
            .await
            .unwrap_or_else(|e| panic!("the leader's state: {e}"))
            .commit;
        wait_until(
            &format!("node {id} to apply index {target}"),
            self.opts.wait,
            || async {
                let s = self.c.client(id).state().await?;
                if s.applied >= target {
                    Ok(())
                } else {
                    Err(format!("{s:?}"))
                }
            },
        )
        .await;
    }

    /// Adds a fresh node (new id, empty data directory) as a learner or a
    /// voter, starts it with `--join`, lets the clients use it and waits
    /// until it has caught up.
    async fn add_fresh(&mut self, learner: bool) -> NodeId {
        let id = self.c.prepare_node().await;
        let change = if learner {
            Change::AddLearner(id)
        } else {
            Change::AddVoter(id)
        };
        self.conf_change(change).await;
        self.c.start_node(id).await;
        self.follow_membership();
        self.wait_caught_up(id).await;
        id
    }

    /// Removes node `id` (the clients stop using it first), then kills it,
    /// deletes its data (see [`Cluster::discard_data`]) and waits for the
    /// rest to agree on a leader.
    ///
    /// [`Cluster::discard_data`]: crate::cluster::Cluster::discard_data
    async fn remove(&mut self, id: NodeId) {
        let rest: Vec<NodeId> = self.c.live().into_iter().filter(|&n| n != id).collect();
        self.nodes
            .set(rest.iter().map(|&n| self.c.client(n)).collect());
        self.c.log(&format!("clients now use nodes {rest:?}"));
        self.conf_change(Change::Remove(id)).await;
        self.c.set_removed(id);
        self.c.kill(id);
        self.c.discard_data(id);
        self.c.wait_for_leader_among(&rest, self.opts.wait).await;
    }

    /// See [`Nemesis::Membership`]. The cluster ends with as many voters
    /// as it started with, one of them new.
    async fn membership(&mut self) {
        let learner = self.add_fresh(true).await;
        self.hold("operations with a learner").await;

        self.conf_change(Change::Promote(learner)).await;
        self.hold("operations after the promotion").await;

        let leader = self.c.wait_for_leader(self.opts.wait).await;
        let live = self.c.live();
        let followers: Vec<NodeId> = live.iter().copied().filter(|&id| id != leader).collect();
        let victim = if self.rng.u8(0..3) == 0 {
            leader
        } else {
            self.pick(&followers)
        };
        self.c.log(&format!(
            "nemesis: remove node {victim}{}",
            if victim == leader {
                " (the leader)"
            } else {
                ""
            }
        ));
        self.remove(victim).await;
        self.hold("operations after a removal").await;

        let leader = self.c.wait_for_leader(self.opts.wait).await;
        let followers: Vec<NodeId> = self
            .c
            .live()
            .into_iter()
            .filter(|&id| id != leader)
            .collect();
        let gone = self.pick(&followers);
        self.c
            .log(&format!("nemesis: replace node {gone} with a fresh node"));
        self.remove(gone).await;
        let fresh = self.add_fresh(false).await;
        self.c
            .log(&format!("nemesis: node {fresh} replaced node {gone}"));
        self.hold("operations after a replacement").await;
    }

    /// See [`Nemesis::Combined`].
    async fn combined(&mut self, leader: NodeId, live: &[NodeId]) {
        let mut parts = [
            Part::Kill,
            Part::Pause,
            Part::Minority,
            Part::Slow,
            Part::IsolateLeader,
        ];
        self.rng.shuffle(&mut parts);
        let parts = &parts[..self.rng.usize(2..=3)];
        // Distinct victims for kill and pause, so each can be repaired.
        let mut victims = live.to_vec();
        self.rng.shuffle(&mut victims);
        let (mut killed, mut paused) = (None, None);
        let mut described = Vec::new();
        for part in parts {
            match part {
                Part::Kill => {
                    let v = victims.pop().expect("a node to kill");
                    self.c.kill(v);
                    killed = Some(v);
                    described.push(format!("kill -9 node {v}"));
                }
                Part::Pause => {
                    let v = victims.pop().expect("a node to pause");
                    self.c.pause(v);
                    paused = Some(v);
                    described.push(format!("SIGSTOP node {v}"));
                }
                Part::Minority => {
                    let (minority, majority) = self.split_minority(live);
                    self.partition(&minority, &majority);
                    described.push(format!("partition {minority:?} from {majority:?}"));
                }
                Part::Slow => {
                    let d = Duration::from_millis(self.rng.u64(10..60));
                    self.slow_links(live, d);
                    described.push(format!("delay links by {d:?}"));
                }
                Part::IsolateLeader => {
                    self.c.proxy().isolate(leader);
                    described.push(format!("isolate the leader {leader}"));
                }
            }
        }
        self.c
            .log(&format!("nemesis: at once: {}", described.join(", ")));
        self.hold("operations under combined faults").await;
        self.c.proxy().heal();
        if let Some(v) = paused {
            self.c.resume(v);
        }
        if let Some(v) = killed {
            self.c.restart(v).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linearizability::{Op, Outcome};

    fn op(invoke: u64, complete: u64, outcome: Outcome) -> Operation {
        Operation {
            client: 1,
            key: "k".into(),
            op: Op::Get,
            invoke,
            complete,
            outcome,
        }
    }

    #[test]
    fn availability_splits_operations_by_fault_windows() {
        let mut log = FaultLog::default();
        log.push("kill-leader", 10, 20);
        log.push("bridge", 40, 50);
        log.push("kill-leader", 60, 70);
        let history = [
            op(0, 5, Outcome::Read(None)),     // healed, ok
            op(5, 12, Outcome::Indeterminate), // overlaps the first fault
            op(12, 15, Outcome::Read(None)),   // inside it, ok
            op(25, 30, Outcome::Failed),       // healed, not ok
            op(45, 55, Outcome::Applied),      // inside the bridge, ok
            op(71, 80, Outcome::NotApplied),   // healed, ok
        ];
        let a = log.availability(&history);
        assert_eq!(
            a,
            Availability {
                faulted: 3,
                faulted_ok: 2,
                healed: 3,
                healed_ok: 2,
            }
        );
        assert_eq!(
            log.counts().into_iter().collect::<Vec<_>>(),
            vec![("bridge", 1), ("kill-leader", 2)]
        );
        assert_eq!(
            a.to_string(),
            "66.7% ok during faults (3 ops), 66.7% ok healed (3 ops)"
        );
    }

    #[test]
    fn every_nemesis_has_a_distinct_name() {
        let names: std::collections::BTreeSet<&str> =
            Nemesis::ALL.iter().map(|n| n.name()).collect();
        assert_eq!(names.len(), Nemesis::ALL.len());
    }
}
