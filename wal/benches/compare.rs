//! The log against its physical baseline, interleaved: short rounds of each
//! in turn (order rotated every round), so that a drift in the disk's speed
//! (it is shared) hits both alike. Prints a markdown table of medians and
//! the ratios the targets are stated in, then the recovery time of a 1 GiB
//! log.
//!
//! `cargo bench -p wal --bench compare` (set `WAL_BENCH_ROUNDS`, default 10,
//! and `WAL_BENCH_ROUND_MS`, default 300, to trade time for precision;
//! `WAL_BENCH_ONLY=append`, `recovery` or `cuts` to run one part, and
//! `WAL_BENCH_CONFIGS=4096x16,100x1,2048x256` to run those sizes x batches
//! only).

mod support;

use std::time::Duration;

use support::*;
use wal::{Options, WriteMethod};

fn main() {
    // Under `cargo test --benches` (or `--bench` with `--test`), do nothing.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let only = std::env::var("WAL_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "append" {
        append_sync();
    }
    if only != "append" && only != "cuts" {
        recovery();
    }
    if only.is_empty() || only == "cuts" {
        cuts();
    }
}

/// Latency of append + sync of 256 x 4 KiB across segment cuts, by how the
/// next segment file is obtained.
fn cuts() {
    println!();
    println!(
        "| 256 x 4 KiB per sync, 64 MiB segments, 6 cuts | syncs/s | p50 op | p99 op | max op |"
    );
    println!("|---|---:|---:|---:|---:|");
    let variants = [
        (
            "released segments recycled (release every 32 MiB)",
            Options::default(),
            true,
        ),
        (
            "no release: next file preallocated in the background",
            Options::default(),
            false,
        ),
        (
            "no release, no background: file written at cut time",
            Options {
                preallocate_in_background: false,
                max_spare_segments: 0,
                ..Options::default()
            },
            false,
        ),
    ];
    for (name, opts, release) in variants {
        let tmp = bench_dir();
        let mut w = WalRunner::with(
            &tmp.path().join("wal"),
            4096,
            256,
            WriteMethod::Pwrite,
            opts,
            release,
        );
        // Past the first segment, so that every variant is in its steady state.
        for _ in 0..80 {
            w.op();
        }
        let mut lat = Vec::new();
        let start = std::time::Instant::now();
        for _ in 0..(6 * 64) {
            let t = std::time::Instant::now();
            w.op();
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let secs = start.elapsed().as_secs_f64();
        let n = lat.len();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms |",
            n as f64 / secs,
            lat[n / 2],
            lat[n * 99 / 100],
            lat[n - 1]
        );
    }
}

fn append_sync() {
    let rounds = env_or("WAL_BENCH_ROUNDS", 10) as usize;
    let round = Duration::from_millis(env_or("WAL_BENCH_ROUND_MS", 300));
    println!("rounds {rounds} x {round:?} per variant, interleaved\n");
    println!("| entry | batch | variant | syncs/s | entries/s | MB/s | vs baseline |");
    println!("|---|---|---|---:|---:|---:|---:|");
    // `WAL_BENCH_CONFIGS=4096x16,100x1` runs those (size x batch), in that
    // order, sizes outside SIZES included.
    let configs: Vec<(usize, usize)> = match std::env::var("WAL_BENCH_CONFIGS") {
        Ok(list) if !list.is_empty() => list
            .split(',')
            .map(|c| {
                let parsed = c
                    .split_once('x')
                    .and_then(|(s, b)| Some((s.parse().ok()?, b.parse().ok()?)));
                parsed.unwrap_or_else(|| panic!("WAL_BENCH_CONFIGS: {c:?} is not SIZExBATCH"))
            })
            .collect(),
        _ => SIZES
            .iter()
            .flat_map(|&s| BATCHES.iter().map(move |&b| (s, b)))
            .collect(),
    };
    for (size, batch) in configs {
        let tmp = bench_dir();
        let mut base = Baseline::new(tmp.path(), size * batch);
        let mut pw = WalRunner::new(&tmp.path().join("pwrite"), size, batch, WriteMethod::Pwrite);
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
    println!();
}

fn recovery() {
    println!(
        "| recovery of | entries | log bytes | wall (median of 3) | GB/s wall | CPU time | GB/s of CPU |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (size, batch) in [(4096usize, 64usize), (100, 16)] {
        let tmp = bench_dir();
        let dir = tmp.path().join("wal");
        build_log(&dir, 1 << 30, size, batch);
        let (mut walls, mut cpus) = (Vec::new(), Vec::new());
        let (mut bytes, mut n) = (0, 0);
        for _ in 0..3 {
            let (t, c, b, e) = time_recovery(&dir);
            walls.push(t.as_secs_f64());
            cpus.push(c.as_secs_f64());
            (bytes, n) = (b, e);
        }
        let (t, c) = (median(walls), median(cpus));
        println!(
            "| 1 GiB of {size} B entries, {batch} per record | {n} | {bytes} | {t:.3} s | {:.2} | {c:.3} s | {:.2} |",
            bytes as f64 / t / 1e9,
            bytes as f64 / c / 1e9
        );
    }
}
