//! kill -9: a child process (this test binary, re-run with an environment
//! variable) appends and syncs in a loop on real files, printing each index
//! it synced; the parent kills it at random moments, reopens the log, and
//! checks that every index reported as synced is there with the right bytes.
//! The child also saves snapshot markers and releases segments, so segment
//! cuts, spare reuse and background preallocation get killed mid-way too.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Rng, payload};
use raft_core::{Entry, HardState, SnapshotMetadata};
use wal::{Options, Wal};

const DIR_VAR: &str = "WAL_KILL9_DIR";

fn opts() -> Options {
    Options {
        segment_size: 64 << 10,
        max_spare_segments: 2,
        preallocate_in_background: true,
    }
}

/// The payload length of entry `index`: 0 to ~2 KiB, some above the size
/// written without copying.
fn len_of(index: u64) -> usize {
    (index.wrapping_mul(2_654_435_761) % 2100) as usize
}

/// The child: appends forever (until killed).
#[test]
fn kill9_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return; // Only runs when the parent starts it.
    };
    let (mut w, r) = Wal::open(&dir, opts()).unwrap();
    let mut rng = Rng(r.entries.len() as u64 ^ w.last_index());
    let mut last = w.last_index();
    loop {
        let n = rng.range(1, 20);
        let ents: Vec<Entry> = (last + 1..=last + n)
            .map(|i| Entry::new(1, i, payload(i, 1, len_of(i))))
            .collect();
        w.append(&ents).unwrap();
        last += n;
        w.save_hard_state(&HardState {
            term: 1,
            vote: 1,
            commit: last,
        })
        .unwrap();
        if rng.range(0, 30) == 0 && last > 200 {
            let index = last - 100;
            w.save_snapshot(&SnapshotMetadata {
                index,
                term: 1,
                ..Default::default()
            })
            .unwrap();
            w.sync().unwrap();
            w.release_to(index).unwrap();
        }
        w.sync().unwrap();
        println!("synced {last}");
    }
}

#[test]
fn killed_writers_lose_nothing_they_synced() {
    let seed = Rng::seed_from_time();
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut rounds = 0;
    let mut max_synced = 0;
    let mut torn = 0;
    while rounds < 60 && started.elapsed() < Duration::from_secs(3) {
        rounds += 1;
        let mut child = Command::new(&exe)
            .args(["--exact", "kill9_child", "--nocapture", "--test-threads=1"])
            .env(DIR_VAR, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Kill after a random number of reported syncs, then a random
        // further moment: mid-append, mid-sync, mid-cut.
        let target = rng.range(1, 80);
        let mut seen = 0;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(i) = line.strip_prefix("synced ") {
                max_synced = max_synced.max(i.parse::<u64>().unwrap());
                seen += 1;
                if seen == target {
                    break;
                }
            }
        }
        assert_eq!(seen, target, "seed {seed}: the child stopped early");
        let spin = rng.range(0, 3000);
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(spin) {
            std::hint::spin_loop();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // It may have synced more after the last line read: count those too.
        for line in lines {
            if let Some(i) = line.unwrap().strip_prefix("synced ") {
                max_synced = max_synced.max(i.parse::<u64>().unwrap());
            }
        }

        let (w, r) =
            Wal::open(&dir, opts()).unwrap_or_else(|e| panic!("seed {seed}, round {rounds}: {e}"));
        assert!(
            w.last_index() >= max_synced,
            "seed {seed}, round {rounds}: synced {max_synced}, recovered up to {}",
            w.last_index()
        );
        assert!(
            r.hard_state.commit >= max_synced,
            "seed {seed}: hard state {:?}",
            r.hard_state
        );
        torn += usize::from(r.report.torn_tail.is_some());
        for (k, e) in r.entries.iter().enumerate() {
            assert_eq!(e.index, r.snapshot.index + 1 + k as u64, "seed {seed}");
            assert_eq!(
                e.data,
                payload(e.index, 1, len_of(e.index)),
                "seed {seed}: entry {}",
                e.index
            );
        }
        drop(w);
    }
    println!("{rounds} rounds, {torn} torn tails cut, last synced index {max_synced}");
    assert!(rounds >= 5, "only {rounds} rounds");
    assert!(max_synced > 0);
}
