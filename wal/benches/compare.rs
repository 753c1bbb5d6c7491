//! The log against its physical baseline, interleaved: short rounds of each
//! in turn (order rotated every round), so that a drift in the disk's speed
//! (it is shared) hits both alike. Prints a markdown table of medians and
//! the ratios the targets are stated in, then the recovery time of a 1 GiB
//! log.
//!
//! `cargo bench -p wal --bench compare` (set `WAL_BENCH_ROUNDS`, default 10,
//! and `WAL_BENCH_ROUND_MS`, default 300, to trade time for precision;
//! `WAL_BENCH_ONLY=append` or `recovery` to run one half).

mod support;

use std::time::Duration;

use support::*;
use wal::WriteMethod;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    // Under `cargo test --benches` (or `--bench` with `--test`), do nothing.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let only = std::env::var("WAL_BENCH_ONLY").unwrap_or_default();
    if only != "recovery" {
        append_sync();
    }
    if only != "append" {
        recovery();
    }
}

fn append_sync() {
    let rounds = env_or("WAL_BENCH_ROUNDS", 10) as usize;
    let round = Duration::from_millis(env_or("WAL_BENCH_ROUND_MS", 300));
    println!("rounds {rounds} x {round:?} per variant, interleaved\n");
    println!("| entry | batch | variant | syncs/s | entries/s | MB/s | vs baseline |");
    println!("|---|---|---|---:|---:|---:|---:|");
    for size in SIZES {
        for batch in BATCHES {
            let tmp = bench_dir();
            let mut base = Baseline::new(tmp.path(), size * batch);
            let mut pw =
                WalRunner::new(&tmp.path().join("pwrite"), size, batch, WriteMethod::Pwrite);
            let mut mm = WalRunner::new(&tmp.path().join("mmap"), size, batch, WriteMethod::Mmap);
            // Warm up: background preallocation, first cuts and releases.
            let warm = Duration::from_millis(700);
            run_for(warm, || base.op());
            run_for(warm, || pw.op());
            run_for(warm, || mm.op());
            let mut rates: [Vec<f64>; 3] = Default::default();
            for r in 0..rounds {
                for k in 0..3 {
                    let v = (k + r) % 3;
                    let (n, t) = match v {
                        0 => run_for(round, || base.op()),
                        1 => run_for(round, || pw.op()),
                        _ => run_for(round, || mm.op()),
                    };
                    rates[v].push(n as f64 / t.as_secs_f64());
                }
            }
            let meds: Vec<f64> = rates.into_iter().map(median).collect();
            let label = if size >= 1024 {
                format!("{} KiB", size / 1024)
            } else {
                format!("{size} B")
            };
            for (v, name) in ["baseline (pwrite+fdatasync)", "wal", "wal, mmap writes"]
                .iter()
                .enumerate()
            {
                let syncs = meds[v];
                let ratio = if v == 0 {
                    "".to_string()
                } else {
                    format!("{:.1}%", 100.0 * syncs / meds[0])
                };
                println!(
                    "| {label} | {batch} | {name} | {:.0} | {:.0} | {:.1} | {ratio} |",
                    syncs,
                    syncs * batch as f64,
                    syncs * (batch * size) as f64 / 1e6,
                );
            }
        }
    }
    println!();
}

fn recovery() {
    println!("| recovery of | entries | log bytes | time (median of 3) | GB/s |");
    println!("|---|---:|---:|---:|---:|");
    for (size, batch) in [(4096usize, 64usize), (100, 16)] {
        let tmp = bench_dir();
        let dir = tmp.path().join("wal");
        build_log(&dir, 1 << 30, size, batch);
        let mut times = Vec::new();
        let (mut bytes, mut n) = (0, 0);
        for _ in 0..3 {
            let (t, b, e) = time_recovery(&dir);
            times.push(t.as_secs_f64());
            (bytes, n) = (b, e);
        }
        let t = median(times);
        println!(
            "| 1 GiB of {size} B entries, {batch} per record | {n} | {bytes} | {:.3} s | {:.2} |",
            t,
            bytes as f64 / t / 1e9
        );
    }
}
