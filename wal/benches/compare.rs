//! The log against its physical baseline, interleaved: short rounds of each
//! in turn (order rotated every round), so that a drift in the disk's speed
//! (it is shared) hits both alike. Prints a markdown table of medians and
//! the ratios the targets are stated in, then the recovery time of a 1 GiB
//! log.
//!
//! Besides the baseline (one prepared buffer per batch), the table has a
//! `floor`: the least a log must do that keeps each entry in its own buffer
//! and checksums it, written the way the log writes (see [`Floor`]). The gap
//! between the floor and the log is the log's own cost.
//!
//! `cargo bench -p wal --bench compare` (set `WAL_BENCH_ROUNDS`, default 10,
//! and `WAL_BENCH_ROUND_MS`, default 300, to trade time for precision;
//! `WAL_BENCH_ONLY=append`, `recovery` or `cuts` to run one part, and
//! `WAL_BENCH_CONFIGS=4096x16,100x1,2048x256` to run those sizes x batches
//! only).

mod support;

use std::fs::{File, OpenOptions};
use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;

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
    // CPU time per sync (user + system, all threads) is far less noisy than
    // the rates on a shared disk: it shows what each variant costs the host.
    println!("| entry | batch | variant | syncs/s | entries/s | MB/s | vs baseline | CPU/sync |");
    println!("|---|---|---|---:|---:|---:|---:|---:|");
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
        let mut floor = Floor::new(tmp.path(), size, batch);
        let mut pw = WalRunner::new(&tmp.path().join("pwrite"), size, batch, WriteMethod::Pwrite);
        let mut mm = WalRunner::new(&tmp.path().join("mmap"), size, batch, WriteMethod::Mmap);
        // Warm up: background preallocation, first cuts and releases.
        let warm = Duration::from_millis(700);
        run_for(warm, || base.op());
        run_for(warm, || floor.op());
        run_for(warm, || pw.op());
        run_for(warm, || mm.op());
        let mut rates: [Vec<f64>; 4] = Default::default();
        let mut cpus: [Vec<f64>; 4] = Default::default();
        for r in 0..rounds {
            for k in 0..4 {
                let v = (k + r) % 4;
                let cpu = cpu_time();
                let (n, t) = match v {
                    0 => run_for(round, || base.op()),
                    1 => run_for(round, || floor.op()),
                    2 => run_for(round, || pw.op()),
                    _ => run_for(round, || mm.op()),
                };
                rates[v].push(n as f64 / t.as_secs_f64());
                cpus[v].push((cpu_time() - cpu).as_secs_f64() / n as f64);
            }
        }
        let meds: Vec<f64> = rates.into_iter().map(median).collect();
        let cpu_meds: Vec<f64> = cpus.into_iter().map(median).collect();
        let label = if size >= 1024 {
            format!("{} KiB", size / 1024)
        } else {
            format!("{size} B")
        };
        let names = [
            "baseline (pwrite+fdatasync)",
            "floor (entries' buffers + CRC)",
            "wal",
            "wal, mmap writes",
        ];
        for (v, name) in names.iter().enumerate() {
            let syncs = meds[v];
            let ratio = if v == 0 {
                "".to_string()
            } else {
                format!("{:.1}%", 100.0 * syncs / meds[0])
            };
            println!(
                "| {label} | {batch} | {name} | {:.0} | {:.0} | {:.1} | {ratio} | {:.1} µs |",
                syncs,
                syncs * batch as f64,
                syncs * (batch * size) as f64 / 1e6,
                cpu_meds[v] * 1e6,
            );
        }
    }
    println!();
}

/// The size of the floor's file, overwritten in sequence like the baseline's.
const FLOOR_FILE: u64 = 256 << 20;

/// The floor of a log that keeps entries in their own buffers and
/// checksums every byte: per batch, a chained CRC over each entry's 4
/// framing bytes and payload, then the same bytes written as the log writes
/// them (payloads over 2 KiB straight from their buffers with `pwritev`,
/// smaller ones copied into one buffer), then `sync_data`; in a
/// preallocated, already-written file, like the baseline. No records, no
/// segments, no bookkeeping.
struct Floor {
    file: File,
    off: u64,
    entries: Vec<Bytes>,
    framing: Vec<u8>,
    staged: Vec<u8>,
    crc: u32,
}

impl Floor {
    fn new(dir: &Path, size: usize, batch: usize) -> Floor {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("floor.dat"))
            .unwrap();
        let chunk = vec![0u8; 1 << 20];
        for i in 0..FLOOR_FILE >> 20 {
            file.write_all_at(&chunk, i << 20).unwrap();
        }
        file.sync_all().unwrap();
        Floor {
            file,
            off: 0,
            entries: (0..batch as u64).map(|i| payload(size, i + 7)).collect(),
            framing: (0..4 * batch).map(|i| i as u8).collect(),
            staged: Vec::with_capacity(batch * (size + 4)),
            crc: 0,
        }
    }

    fn op(&mut self) {
        let pieces = || {
            self.framing
                .chunks(4)
                .zip(&self.entries)
                .flat_map(|(f, e)| [f, &e[..]])
        };
        let total: u64 = pieces().map(|p| p.len() as u64).sum();
        if self.off + total > FLOOR_FILE {
            self.off = 0;
        }
        let mut h = crc32fast::Hasher::new_with_initial(self.crc);
        if self.entries[0].len() <= 2048 {
            self.staged.clear();
            for p in pieces() {
                self.staged.extend_from_slice(p);
            }
            h.update(&self.staged);
            self.file.write_all_at(&self.staged, self.off).unwrap();
        } else {
            for p in pieces() {
                h.update(p);
            }
            let iov: Vec<IoSlice<'_>> = pieces().map(IoSlice::new).collect();
            let mut off = self.off;
            for window in iov.chunks(1024) {
                let want: usize = window.iter().map(|b| b.len()).sum();
                // SAFETY: IoSlice is ABI-compatible with iovec; at most 1024.
                let n = unsafe {
                    libc::pwritev(
                        self.file.as_raw_fd(),
                        window.as_ptr().cast(),
                        window.len() as libc::c_int,
                        off as libc::off_t,
                    )
                };
                assert_eq!(n, want as isize, "short or failed pwritev");
                off += want as u64;
            }
        }
        self.crc = h.finalize();
        self.file.sync_data().unwrap();
        self.off += total;
    }
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
