//! `Config::batch_appends`: the leader builds its appends when a Ready is
//! taken. The same entries must reach and be applied by every node as
//! without it, in fewer messages, within `max_size_per_msg` and flow control.

use raft_core::{
    ConfState, Config, Entry, EntryType, MemStorage, Message, MessageType, RawNode, StateRole,
};

struct Cluster {
    nodes: Vec<RawNode<MemStorage>>,
    applied: Vec<Vec<Entry>>,
    /// Every message sent, for inspection.
    sent: Vec<Message>,
}

impl Cluster {
    fn new(configure: impl Fn(&mut Config)) -> Cluster {
        let voters = ConfState::with_voters(vec![1, 2, 3]);
        let nodes = (1..=3)
            .map(|id| {
                let mut cfg = Config::new(id);
                configure(&mut cfg);
                RawNode::new(&cfg, MemStorage::new_with_conf_state(voters.clone())).unwrap()
            })
            .collect();
        let mut c = Cluster {
            nodes,
            applied: vec![Vec::new(); 3],
            sent: Vec::new(),
        };
        c.nodes[0].campaign().unwrap();
        c.stabilize();
        assert_eq!(c.nodes[0].raft().state(), StateRole::Leader);
        c.sent.clear();
        c
    }

    /// Handles every Ready and delivers every message until nothing is left.
    fn stabilize(&mut self) {
        let mut queue: Vec<Message> = Vec::new();
        loop {
            let mut busy = false;
            for (i, node) in self.nodes.iter_mut().enumerate() {
                if !node.has_ready() {
                    continue;
                }
                busy = true;
                let mut rd = node.ready();
                queue.extend(rd.take_messages());
                let store = node.store_mut();
                store.append(rd.entries()).unwrap();
                if let Some(hs) = rd.hard_state() {
                    store.set_hard_state(*hs);
                }
                queue.extend(rd.take_persisted_messages());
                self.applied[i].extend(
                    rd.take_committed_entries()
                        .into_iter()
                        .filter(|e| e.entry_type == EntryType::Normal && !e.data.is_empty()),
                );
                node.advance(rd);
            }
            if !busy && queue.is_empty() {
                return;
            }
            for m in queue.drain(..) {
                self.sent.push(m.clone());
                let to = (m.to - 1) as usize;
                self.nodes[to].step(m).unwrap();
            }
        }
    }

    fn appends(&self) -> impl Iterator<Item = &Message> {
        self.sent.iter().filter(|m| m.msg_type == MessageType::App)
    }
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    let mut p = vec![(i % 251) as u8; len];
    p[..8].copy_from_slice(&(i as u64).to_le_bytes());
    p
}

/// Proposes bursts of different sizes on the leader, running the cluster to
/// quiescence after each; returns the cluster and what was proposed.
fn run_bursts(batch_appends: bool, bursts: &[usize]) -> (Cluster, Vec<Vec<u8>>) {
    let mut c = Cluster::new(|cfg| cfg.batch_appends = batch_appends);
    let mut proposed = Vec::new();
    for &n in bursts {
        for _ in 0..n {
            let p = payload(proposed.len(), 100);
            c.nodes[0].propose(p.clone()).unwrap();
            proposed.push(p);
        }
        c.stabilize();
    }
    (c, proposed)
}

#[test]
fn every_node_applies_the_same_entries_with_or_without_batching() {
    let bursts = [1, 7, 64, 1, 300, 2];
    let (eager, proposed) = run_bursts(false, &bursts);
    let (batched, proposed_too) = run_bursts(true, &bursts);
    assert_eq!(proposed, proposed_too);
    for c in [&eager, &batched] {
        for applied in &c.applied {
            let data: Vec<&[u8]> = applied.iter().map(|e| &e.data[..]).collect();
            let want: Vec<&[u8]> = proposed.iter().map(Vec::as_slice).collect();
            assert_eq!(data, want);
        }
    }
    // The same log, term for term and index for index.
    let ids = |c: &Cluster, i: usize| -> Vec<_> { c.applied[i].iter().map(Entry::id).collect() };
    assert_eq!(ids(&eager, 0), ids(&batched, 0));

    let (n_eager, n_batched) = (eager.appends().count(), batched.appends().count());
    assert!(
        n_batched < n_eager / 4,
        "batched {n_batched} appends, eager {n_eager}"
    );
    // One append with entries per follower and burst.
    let with_entries = batched.appends().filter(|m| !m.entries.is_empty()).count();
    assert_eq!(with_entries, 2 * bursts.len());
}

#[test]
fn batched_appends_respect_max_size_per_msg_and_flow_control() {
    let mut c = Cluster::new(|cfg| {
        cfg.batch_appends = true;
        // Each 100-byte entry counts 116: four fit in one message.
        cfg.max_size_per_msg = 500;
        cfg.max_inflight_msgs = 3;
    });
    let proposed: Vec<Vec<u8>> = (0..50).map(|i| payload(i, 100)).collect();
    for p in &proposed {
        c.nodes[0].propose(p.clone()).unwrap();
    }
    // The first Ready holds as many appends as the inflight window allows.
    let rd = c.nodes[0].ready();
    let firsts: Vec<usize> = rd
        .messages()
        .iter()
        .filter(|m| m.msg_type == MessageType::App)
        .map(|m| m.entries.len())
        .collect();
    assert_eq!(
        firsts,
        vec![4, 4, 4, 4, 4, 4],
        "3 per follower, 4 entries each"
    );
    let mut queue: Vec<Message> = Vec::new();
    let mut rd = rd;
    queue.extend(rd.take_messages());
    c.nodes[0].store_mut().append(rd.entries()).unwrap();
    c.nodes[0].advance(rd);
    for m in queue {
        let to = (m.to - 1) as usize;
        c.sent.push(m.clone());
        c.nodes[to].step(m).unwrap();
    }
    c.stabilize();

    for m in c.appends() {
        let size: u64 = m.entries.iter().map(Entry::size).sum();
        assert!(size <= 500, "append of {size} bytes");
    }
    for applied in &c.applied {
        assert_eq!(applied.len(), proposed.len());
    }
}

#[test]
fn a_leader_that_steps_down_before_the_ready_sends_no_owed_appends() {
    let mut c = Cluster::new(|cfg| cfg.batch_appends = true);
    c.nodes[0].propose(payload(0, 100)).unwrap();
    let term = c.nodes[0].raft().term;
    // A heartbeat of a later term makes the leader a follower.
    let mut hb = Message::new(MessageType::Heartbeat, 2, 1);
    hb.term = term + 1;
    c.nodes[0].step(hb).unwrap();
    assert_eq!(c.nodes[0].raft().state(), StateRole::Follower);
    let rd = c.nodes[0].ready();
    assert!(
        rd.messages().iter().all(|m| m.msg_type != MessageType::App),
        "{:?}",
        rd.messages()
    );
    c.nodes[0].advance(rd);
}
