//! The commit index computation the leader runs on every append
//! acknowledgement: the largest index acked by a majority of 3, 5 and 7
//! voters (and of both halves of a joint configuration).
//!
//! `cargo bench -p raft-core --bench quorum`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use raft_core::quorum::{JointConfig, MajorityConfig};
use raft_core::tracker::{Progress, ProgressMap};

/// A progress map of `ids` whose matched indexes are not in id order, so
/// that the sort has work to do.
fn progress(ids: &[u64]) -> ProgressMap {
    ids.iter()
        .map(|&id| {
            let mut pr = Progress::new(1, 256, 0);
            pr.matched = (id * 7919) % 1000;
            pr.next = pr.matched + 1;
            (id, pr)
        })
        .collect()
}

fn committed_index(c: &mut Criterion) {
    let mut g = c.benchmark_group("quorum_committed_index");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for n in [3u64, 5, 7] {
        let ids: Vec<u64> = (1..=n).collect();
        let prs = progress(&ids);
        let majority = MajorityConfig::new(ids.iter().copied());
        g.bench_function(BenchmarkId::new("majority", n), |b| {
            b.iter(|| black_box(&majority).committed_index(black_box(&prs)));
        });
        // A joint configuration replacing one voter: both halves count.
        let mut outgoing = ids.clone();
        outgoing[0] = n + 1;
        let all: Vec<u64> = (1..=n + 1).collect();
        let prs = progress(&all);
        let joint = JointConfig::new_joint(
            MajorityConfig::new(ids.iter().copied()),
            MajorityConfig::new(outgoing),
        );
        g.bench_function(BenchmarkId::new("joint", n), |b| {
            b.iter(|| black_box(&joint).committed_index(black_box(&prs)));
        });
    }
    g.finish();
}

criterion_group!(benches, committed_index);
criterion_main!(benches);
