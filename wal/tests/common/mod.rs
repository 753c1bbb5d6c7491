//! Helpers shared by the integration tests: deterministic entry payloads, a
//! naive model of the log, and a small seeded generator.
#![allow(dead_code)]

use bytes::Bytes;
use raft_core::{Entry, HardState, SnapshotMetadata};
use wal::Recovered;

/// SplitMix64: one seed drives every random choice of a test.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }

    /// A seed from the clock, for tests that print it.
    pub fn seed_from_time() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }
}

/// The payload of entry `(index, term)`: `len` bytes that depend on both.
pub fn payload(index: u64, term: u64, len: usize) -> Bytes {
    let mut seed = index.wrapping_mul(0x1000_0000_01B3) ^ term.rotate_left(32);
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

pub fn entry(index: u64, term: u64, len: usize) -> Entry {
    Entry::new(term, index, payload(index, term, len))
}

/// `n` entries from `first`, all of `term` and `len` bytes.
pub fn batch(first: u64, n: u64, term: u64, len: usize) -> Vec<Entry> {
    (first..first + n).map(|i| entry(i, term, len)).collect()
}

/// The log as the tests expect it: no segments, no bytes, just semantics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub hard_state: HardState,
    pub snapshot: SnapshotMetadata,
    /// Entries `(snapshot.index, last]`.
    pub entries: Vec<Entry>,
}

impl Model {
    pub fn last_index(&self) -> u64 {
        self.snapshot.index + self.entries.len() as u64
    }

    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.snapshot.index {
            Some(self.snapshot.term)
        } else if index > self.snapshot.index && index <= self.last_index() {
            Some(self.entries[(index - self.snapshot.index - 1) as usize].term)
        } else {
            None
        }
    }

    pub fn append(&mut self, ents: &[Entry]) {
        let i = ents[0].index;
        assert!(i > self.snapshot.index && i <= self.last_index() + 1);
        self.entries
            .truncate((i - self.snapshot.index - 1) as usize);
        self.entries.extend_from_slice(ents);
    }

    pub fn save_snapshot(&mut self, meta: &SnapshotMetadata) {
        if self.term(meta.index) == Some(meta.term) {
            let drop = (meta.index - self.snapshot.index) as usize;
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
        }
        self.snapshot = meta.clone();
    }

    pub fn from_recovered(r: &Recovered) -> Model {
        Model {
            hard_state: r.hard_state,
            snapshot: r.snapshot.clone(),
            entries: r.entries.clone(),
        }
    }
}

/// Checks that `r` holds exactly `m`.
#[track_caller]
pub fn assert_recovered(r: &Recovered, m: &Model) {
    assert_eq!(r.hard_state, m.hard_state, "hard state");
    assert_eq!(r.snapshot, m.snapshot, "snapshot marker");
    assert_eq!(r.entries.len(), m.entries.len(), "entry count");
    for (got, want) in r.entries.iter().zip(&m.entries) {
        assert_eq!(got, want, "entry {}", want.index);
    }
}

/// The states a log went through since its last durable point, to check a
/// recovery after a crash: it must give back one of them, or one of them
/// followed by part of the append that came next (an append split over
/// segments is written as several records).
pub struct History {
    /// `states[0]` is durable; `states[k + 1]` follows `states[k]` by `ops[k]`.
    states: Vec<Model>,
    /// The entries of the op from `states[k]`, if it was an append.
    ops: Vec<Option<Vec<Entry>>>,
}

impl History {
    pub fn new(durable: Model) -> History {
        History {
            states: vec![durable],
            ops: Vec::new(),
        }
    }

    /// Records an op (its entries if it appended) and the state after it.
    pub fn push(&mut self, appended: Option<&[Entry]>, after: Model) {
        self.ops.push(appended.map(|e| e.to_vec()));
        self.states.push(after);
    }

    /// The last state is durable.
    pub fn synced(&mut self) {
        let last = self.states.pop().expect("never empty");
        self.states = vec![last];
        self.ops.clear();
    }

    pub fn current(&self) -> &Model {
        self.states.last().expect("never empty")
    }

    /// Which state `r` is, or why it is none of them.
    pub fn check(&self, r: &Recovered) -> Result<(), String> {
        let got = Model::from_recovered(r);
        for (k, state) in self.states.iter().enumerate().rev() {
            if *state == got {
                return Ok(());
            }
            if let Some(Some(ents)) = self.ops.get(k) {
                for j in 1..ents.len() {
                    let mut partial = state.clone();
                    partial.append(&ents[..j]);
                    if partial == got {
                        return Ok(());
                    }
                }
            }
        }
        Err(format!(
            "recovered state (hs {:?}, snap {}, entries {}..={}) is none of the {} states since the last sync (first: snap {} last {}; current: snap {} last {})",
            got.hard_state,
            got.snapshot.index,
            got.snapshot.index + 1,
            got.last_index(),
            self.states.len(),
            self.states[0].snapshot.index,
            self.states[0].last_index(),
            self.current().snapshot.index,
            self.current().last_index(),
        ))
    }
}

/// The `[start, end)` of each record of a segment, walking the framing as
/// `wal::record` documents it: u32 length, u32 crc, covered bytes, padding
/// to 8, a zero length at the end.
pub fn frames(buf: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 8 <= buf.len() {
        let len = u32::from_le_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        let end = (off + 8 + len + 7) & !7;
        out.push((off, end));
        off = end;
    }
    out
}
