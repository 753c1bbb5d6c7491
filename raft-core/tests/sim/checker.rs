//! The global record every safety check compares against: what was ever
//! seen on any node (leaders, persisted entries, committed and applied
//! entries, configurations, reads). A check fails with a message; the
//! caller adds the seed and the trace.

use std::collections::btree_map::Entry as MapEntry;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use raft_core::{ConfState, Entry, MemStorage, RaftLog, Storage};

use super::node::digest;

/// An entry as first applied by some node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    pub term: u64,
    pub digest: u64,
    /// The state machine hash after applying it.
    pub hash: u64,
}

/// A read request in flight.
#[derive(Clone, Copy, Debug)]
pub struct ReadReq {
    pub node: u64,
    pub incarnation: u64,
    /// The highest index any node knew committed when the read was issued:
    /// every write acknowledged before then is at or below it, so a
    /// linearizable read must be served at an index at least this high.
    pub required: u64,
    pub issued_round: u64,
}

#[derive(Default)]
pub struct Checker {
    /// Every (term, leader) ever seen: at most one leader per term (Raft
    /// thesis §3.6.3, election safety).
    pub leaders: BTreeMap<u64, u64>,
    /// (index, term) -> (digest, term at index - 1) of every entry ever
    /// persisted. With the previous term pinned, equal (index, term) implies
    /// equal logs up to index by induction (log matching).
    pub entries: BTreeMap<(u64, u64), (u64, u64)>,
    /// index -> term of every entry any node ever knew committed.
    pub committed: BTreeMap<u64, u64>,
    /// The highest index any node ever knew committed.
    pub max_commit: u64,
    /// index -> entry as first applied: no two nodes apply different entries
    /// at one index (state machine safety).
    pub applied: BTreeMap<u64, Applied>,
    /// index -> result of applying the configuration change there: every
    /// node must get the same.
    pub conf_results: BTreeMap<u64, Result<ConfState, String>>,
    /// index -> membership after each effective configuration change; 0 is
    /// the bootstrap membership.
    pub configs: BTreeMap<u64, ConfState>,
    /// (id, index): `id` left the membership at `index`.
    pub removals: Vec<(u64, u64)>,
    /// Ids that were removed: never proposed again.
    pub retired: BTreeSet<u64>,
    pub reads: BTreeMap<Bytes, ReadReq>,
    /// The first index at which a liveness-phase proposal was applied.
    pub first_marker: Option<u64>,
}

/// Every id that is a member (voter, learner, outgoing voter) of `cs`.
pub fn members(cs: &ConfState) -> BTreeSet<u64> {
    cs.voters
        .iter()
        .chain(&cs.learners)
        .chain(&cs.voters_outgoing)
        .chain(&cs.learners_next)
        .copied()
        .collect()
}

impl Checker {
    /// Records that `id` leads `term`.
    pub fn leader(&mut self, term: u64, id: u64) -> Result<bool, String> {
        match self.leaders.entry(term) {
            MapEntry::Occupied(o) if *o.get() != id => Err(format!(
                "election safety: nodes {} and {id} are both leaders of term {term}",
                o.get()
            )),
            MapEntry::Occupied(_) => Ok(false),
            MapEntry::Vacant(v) => {
                v.insert(id);
                Ok(true)
            }
        }
    }

    /// Log matching, checked on what a node just persisted: an entry with a
    /// given (index, term) always has the same payload and the same term
    /// before it.
    pub fn persisted(&mut self, id: u64, disk: &MemStorage, ents: &[Entry]) -> Result<(), String> {
        let first = disk.first_index().expect("MemStorage never fails");
        for e in ents.iter().filter(|e| e.index >= first) {
            let prev = disk
                .term(e.index - 1)
                .map_err(|err| format!("node {id}: no term before persisted {}: {err}", e.index))?;
            let d = digest(e);
            match self.entries.entry((e.index, e.term)) {
                MapEntry::Occupied(o) if *o.get() != (d, prev) => {
                    return Err(format!(
                        "log matching: node {id} persisted entry {}/{} (digest {d:x}, previous \
                         term {prev}), but it was seen before with (digest {:x}, previous term {})",
                        e.index,
                        e.term,
                        o.get().0,
                        o.get().1
                    ));
                }
                MapEntry::Occupied(_) => {}
                MapEntry::Vacant(v) => {
                    v.insert((d, prev));
                }
            }
        }
        Ok(())
    }

    /// Records the entries in `(from, to]` as committed on node `id`; two
    /// different entries must never be committed at one index.
    pub fn committed<S: Storage>(
        &mut self,
        id: u64,
        log: &RaftLog<S>,
        from: u64,
        to: u64,
    ) -> Result<(), String> {
        // Below the first index the entries are in the node's snapshot: the
        // snapshot's own (index, term) is checked, the rest was checked on
        // the node that built it.
        let lo = (from + 1).max(log.first_index() - 1);
        for i in lo..=to {
            let t = log
                .term(i)
                .map_err(|e| format!("node {id}: committed {i} but its term is unknown: {e}"))?;
            match self.committed.entry(i) {
                MapEntry::Occupied(o) if *o.get() != t => {
                    return Err(format!(
                        "commit safety: node {id} committed {i}/{t}, but {i}/{} was committed \
                         before",
                        o.get()
                    ));
                }
                MapEntry::Occupied(_) => {}
                MapEntry::Vacant(v) => {
                    v.insert(t);
                }
            }
        }
        self.max_commit = self.max_commit.max(to);
        Ok(())
    }

    /// Leader completeness (Raft thesis §3.6.3): a new leader's log holds
    /// every entry ever known committed, except those folded into its
    /// snapshot.
    pub fn leader_complete<S: Storage>(
        &self,
        id: u64,
        term: u64,
        log: &RaftLog<S>,
    ) -> Result<(), String> {
        let from = log.first_index() - 1;
        for (&i, &t) in self.committed.range(from..) {
            match log.term(i) {
                Ok(lt) if lt == t => {}
                other => {
                    return Err(format!(
                        "leader completeness: node {id}, leader of term {term}, lacks committed \
                         entry {i}/{t} (its log [{from}, {}] has {other:?} there)",
                        log.last_index()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The membership as of the latest effective configuration change.
    pub fn latest_config(&self) -> &ConfState {
        self.configs
            .values()
            .next_back()
            .expect("the bootstrap membership is recorded")
    }
}
