//! The `wal` crate against raft-engine 0.4 on the same entries, one sync per
//! batch, interleaved in short rounds (order rotated each round) so that a
//! drift in the shared disk's speed hits all alike. Prints a markdown table
//! of medians.
//!
//! `cargo bench` in `bench/wal-peers` (`WAL_BENCH_ROUNDS`, default 10, and
//! `WAL_BENCH_ROUND_MS`, default 300). `WAL_BENCH_DIR=/dev/shm` runs it on
//! memory, where a sync costs next to nothing: what is left is each store's
//! own work per batch, the regime where the disk is fast enough for the
//! stores to be CPU-bound.

use std::time::Duration;

use wal::WriteMethod;
use wal_peers::EngineDriver;
use wal_peers::support::{WalRunner, env_or, median, run_for};

/// Operations per second of `op` run for about `dur`.
fn rate(dur: Duration, op: impl FnMut()) -> f64 {
    let (n, took) = run_for(dur, op);
    n as f64 / took.as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let rounds = env_or("WAL_BENCH_ROUNDS", 10) as usize;
    let round = Duration::from_millis(env_or("WAL_BENCH_ROUND_MS", 300));
    let dir =
        std::env::var("WAL_BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_string());
    println!("rounds {rounds} x {round:?} per variant, interleaved, in {dir}\n");
    println!("| entry | batch | store | syncs/s | entries/s | MB/s | wal vs it |");
    println!("|---|---|---|---:|---:|---:|---:|");
    for (size, batch) in [(100usize, 256usize), (100, 16), (100, 1), (4096, 256)] {
        let tmp = tempfile::tempdir_in(&dir).unwrap();
        let mut w = WalRunner::new(&tmp.path().join("wal"), size, batch, WriteMethod::default());
        let mut e = EngineDriver::new(&tmp.path().join("engine"), size, batch, true);
        let mut en = EngineDriver::new(&tmp.path().join("engine-nolz4"), size, batch, false);
        let warm = Duration::from_millis(700);
        run_for(warm, || w.op());
        run_for(warm, || e.op());
        run_for(warm, || en.op());
        let mut rates: [Vec<f64>; 3] = Default::default();
        for r in 0..rounds {
            for k in 0..3 {
                let v = (k + r) % 3;
                rates[v].push(match v {
                    0 => rate(round, || w.op()),
                    1 => rate(round, || e.op()),
                    _ => rate(round, || en.op()),
                });
            }
        }
        let meds: Vec<f64> = rates.into_iter().map(median).collect();
        let label = if size >= 1024 {
            format!("{} KiB", size / 1024)
        } else {
            format!("{size} B")
        };
        for (v, name) in [
            "wal",
            "raft-engine 0.4 (defaults)",
            "raft-engine 0.4, no compression",
        ]
        .iter()
        .enumerate()
        {
            let ratio = if v == 0 {
                String::new()
            } else {
                format!("{:.2}x", meds[0] / meds[v])
            };
            println!(
                "| {label} | {batch} | {name} | {:.0} | {:.0} | {:.1} | {ratio} |",
                meds[v],
                meds[v] * batch as f64,
                meds[v] * (batch * size) as f64 / 1e6
            );
        }
    }
}
