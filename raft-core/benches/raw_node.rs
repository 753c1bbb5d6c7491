//! RawNode benchmarks: proposals committed and applied through a 3-node
//! in-memory cluster driven in one thread (by batch size, and by payload
//! size), and the Ready/advance loop of a single node.
//!
//! `cargo bench -p raft-core --bench raw_node`. The comparison with raft-rs
//! driven the same way lives in `bench/raft-compare` (its own workspace).

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use raft_core::{
    ConfState, Config, EntryType, MemStorage, Message, NO_LIMIT, RawNode, StateRole, StorageError,
};

/// Compact every node's storage to its applied index once this many entries
/// are stored (or `COMPACT_BYTES` of payload), so that long runs stay in
/// bounded memory.
const COMPACT_AFTER: u64 = 65_536;
/// See [`COMPACT_AFTER`].
const COMPACT_BYTES: u64 = 64 << 20;

/// A cluster of nodes 1..=n in one thread; node 1 is the leader. The Ready
/// handling is the application's side of the contract: send `messages()`,
/// persist entries and hard state, send `persisted_messages()`, apply,
/// `advance()`.
struct Cluster {
    nodes: Vec<RawNode<MemStorage>>,
    queue: Vec<Message>,
    delivering: Vec<Message>,
    /// Payload bytes applied by the leader (read, so applying is not free).
    applied_bytes: u64,
    /// Entries stored before compacting.
    compact_after: u64,
}

impl Cluster {
    fn new(n: u64, batch_appends: bool) -> Cluster {
        let voters = ConfState::with_voters((1..=n).collect::<Vec<_>>());
        let nodes = (1..=n)
            .map(|id| {
                let cfg = Config {
                    batch_appends,
                    max_committed_size_per_ready: NO_LIMIT,
                    ..Config::new(id)
                };
                let store = MemStorage::new_with_conf_state(voters.clone());
                RawNode::new(&cfg, store).expect("valid config")
            })
            .collect();
        let mut c = Cluster {
            nodes,
            queue: Vec::new(),
            delivering: Vec::new(),
            applied_bytes: 0,
            compact_after: COMPACT_AFTER,
        };
        c.nodes[0].campaign().expect("campaign");
        c.run_until_quiescent();
        assert_eq!(c.nodes[0].raft().state(), StateRole::Leader);
        c
    }

    fn handle_ready(node: &mut RawNode<MemStorage>, out: &mut Vec<Message>) -> u64 {
        let mut rd = node.ready();
        out.append(&mut rd.take_messages());
        let store = node.store_mut();
        if let Some(snap) = rd.take_snapshot() {
            store.apply_snapshot(snap).expect("apply snapshot");
        }
        store.append_owned(rd.take_entries()).expect("append");
        if let Some(hs) = rd.hard_state() {
            store.set_hard_state(*hs);
        }
        out.append(&mut rd.take_persisted_messages());
        let mut applied = 0;
        for e in rd.committed_entries() {
            if e.entry_type == EntryType::Normal {
                applied += black_box(&e.data[..]).len() as u64;
            }
        }
        node.advance(rd);
        applied
    }

    /// Handles Readies and delivers messages until nothing is left.
    fn run_until_quiescent(&mut self) {
        loop {
            let mut busy = false;
            for (i, node) in self.nodes.iter_mut().enumerate() {
                if node.has_ready() {
                    busy = true;
                    let applied = Self::handle_ready(node, &mut self.queue);
                    if i == 0 {
                        self.applied_bytes += applied;
                    }
                }
            }
            if !busy && self.queue.is_empty() {
                break;
            }
            std::mem::swap(&mut self.queue, &mut self.delivering);
            for m in self.delivering.drain(..) {
                let to = (m.to - 1) as usize;
                self.nodes[to].step(m).expect("step");
            }
        }
    }

    fn maybe_compact(&mut self) {
        for node in &mut self.nodes {
            let applied = node.raft().raft_log.applied();
            if applied - node.raft().raft_log.first_index() < self.compact_after {
                continue;
            }
            match node.store_mut().compact(applied) {
                Ok(()) | Err(StorageError::Compacted) => {}
                Err(e) => panic!("compact: {e}"),
            }
        }
    }

    /// One cycle: `batch` proposals of `payload()` on the leader, then run
    /// to quiescence (every node has applied them).
    fn cycle(&mut self, batch: usize, mut payload: impl FnMut() -> Bytes) {
        for _ in 0..batch {
            self.nodes[0].propose(payload()).expect("propose");
        }
        self.run_until_quiescent();
        self.maybe_compact();
    }
}

/// Proposals per second through 3 nodes, 100-byte entries, by proposals per
/// Ready cycle; with etcd's eager appends and with `batch_appends`.
fn cluster_throughput(c: &mut Criterion) {
    let payload = Bytes::from(vec![7u8; 100]);
    let mut g = c.benchmark_group("cluster_3_nodes_100B");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for (mode, batch_appends) in [("eager", false), ("batched", true)] {
        for batch in [1usize, 64, 1024] {
            let mut cluster = Cluster::new(3, batch_appends);
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(BenchmarkId::new(mode, batch), |b| {
                b.iter(|| cluster.cycle(batch, || payload.clone()));
            });
        }
    }
    g.finish();
}

/// One proposal per cycle through 3 nodes (batched appends), by payload
/// size: `shared` proposes clones of one buffer (a refcount each: raft-core's
/// own cost, which does not depend on the size since it never copies a
/// payload); `owned` copies the payload into a fresh buffer per proposal, as
/// an application handed a request would (the copy, allocation and freeing
/// of the payload dominate from a few KiB on).
fn propose_by_size(c: &mut Criterion) {
    let mut g = c.benchmark_group("propose_by_size");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for size in [0usize, 64, 1024, 16 << 10, 256 << 10, 1 << 20] {
        let data = vec![7u8; size];
        let payload = Bytes::from(data.clone());
        g.throughput(Throughput::Bytes(size as u64));
        let mut cluster = Cluster::new(3, true);
        g.bench_function(BenchmarkId::new("shared", size), |b| {
            b.iter(|| cluster.cycle(1, || payload.clone()));
        });
        let mut cluster = Cluster::new(3, true);
        cluster.compact_after = (COMPACT_BYTES / size.max(1) as u64).clamp(1, COMPACT_AFTER);
        g.bench_function(BenchmarkId::new("owned", size), |b| {
            b.iter(|| cluster.cycle(1, || Bytes::copy_from_slice(&data)));
        });
    }
    g.finish();
}

/// The Ready/advance loop of a single-node cluster: propose one 100-byte
/// entry, then handle Readies until it is committed and applied.
fn ready_advance(c: &mut Criterion) {
    let mut g = c.benchmark_group("ready_advance");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let payload = Bytes::from(vec![7u8; 100]);
    let mut cluster = Cluster::new(1, false);
    g.throughput(Throughput::Elements(1));
    g.bench_function("single_node_propose_apply", |b| {
        b.iter(|| cluster.cycle(1, || payload.clone()));
    });
    let idle = Cluster::new(1, false);
    g.bench_function("has_ready_idle", |b| {
        b.iter(|| black_box(idle.nodes[0].has_ready()));
    });
    g.finish();
}

criterion_group!(benches, cluster_throughput, propose_by_size, ready_advance);
criterion_main!(benches);
