//! What both bench targets run: the physical baseline and the log, each
//! doing one batch then one durable flush per operation.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_core::{Entry, SnapshotMetadata};
use wal::{DiskDir, Options, Wal, WriteMethod};

/// Entry sizes and batch sizes (entries per sync) measured.
pub const SIZES: [usize; 2] = [100, 4096];
pub const BATCHES: [usize; 3] = [1, 16, 256];

/// A temporary directory on the disk the target directory is on, or under
/// `WAL_BENCH_DIR` if set (e.g. `/dev/shm`, to see the CPU cost alone).
/// (`CARGO_TARGET_TMPDIR` exists for bench targets only; a library that
/// includes this module falls back to the system's temporary directory.)
pub fn bench_dir() -> tempfile::TempDir {
    let dir = std::env::var("WAL_BENCH_DIR").unwrap_or_else(|_| {
        option_env!("CARGO_TARGET_TMPDIR")
            .map(str::to_string)
            .unwrap_or_else(|| std::env::temp_dir().display().to_string())
    });
    tempfile::tempdir_in(dir).unwrap()
}

/// Payload bytes that do not compress or repeat.
pub fn payload(len: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// The design's physical baseline: a preallocated, already-written file,
/// overwritten sequentially with `write_all_at` then `sync_data` per batch.
pub struct Baseline {
    file: File,
    off: u64,
    buf: Vec<u8>,
}

const BASELINE_FILE: u64 = 256 << 20;

impl Baseline {
    pub fn new(dir: &Path, batch_bytes: usize) -> Baseline {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("baseline.dat"))
            .unwrap();
        let chunk = vec![0u8; 1 << 20];
        for i in 0..BASELINE_FILE >> 20 {
            file.write_all_at(&chunk, i << 20).unwrap();
        }
        file.sync_all().unwrap();
        Baseline {
            file,
            off: 0,
            buf: payload(batch_bytes, 42).to_vec(),
        }
    }

    pub fn op(&mut self) {
        if self.off + self.buf.len() as u64 > BASELINE_FILE {
            self.off = 0;
        }
        self.file.write_all_at(&self.buf, self.off).unwrap();
        self.file.sync_data().unwrap();
        self.off += self.buf.len() as u64;
    }
}

/// The log, appending `batch` entries of `size` bytes then syncing, and
/// every 32 MiB marking a snapshot and releasing what it covers (so that
/// segments get recycled as in a server that snapshots).
pub struct WalRunner {
    pub wal: Wal,
    batch: Vec<Entry>,
    next: u64,
    since_release: usize,
    size: usize,
    release_every: usize,
}

/// How often the runners mark a snapshot and release what it covers.
pub const RELEASE_EVERY: usize = 32 << 20;

impl WalRunner {
    pub fn new(dir: &Path, size: usize, batch: usize, method: WriteMethod) -> WalRunner {
        WalRunner::with(dir, size, batch, method, Options::default(), true)
    }

    /// With chosen options; `release: false` never releases (the log grows).
    pub fn with(
        dir: &Path,
        size: usize,
        batch: usize,
        method: WriteMethod,
        opts: Options,
        release: bool,
    ) -> WalRunner {
        let d = DiskDir::with_method(dir, method).unwrap();
        let (wal, _) = Wal::open_in(d, opts).unwrap();
        let release_every = if release { RELEASE_EVERY } else { usize::MAX };
        let batch = (0..batch as u64)
            .map(|i| Entry::new(1, 0, payload(size, i + 7)))
            .collect();
        WalRunner {
            wal,
            batch,
            next: 1,
            since_release: 0,
            size,
            release_every,
        }
    }

    pub fn op(&mut self) {
        for (k, e) in self.batch.iter_mut().enumerate() {
            e.index = self.next + k as u64;
        }
        self.wal.append(&self.batch).unwrap();
        self.next += self.batch.len() as u64;
        self.since_release += self.batch.len() * self.size;
        let release = self.since_release >= self.release_every;
        if release {
            let meta = SnapshotMetadata {
                index: self.next - 1,
                term: 1,
                ..Default::default()
            };
            self.wal.save_snapshot(&meta).unwrap();
        }
        self.wal.sync().unwrap();
        if release {
            self.wal.release_to(self.next - 1).unwrap();
            self.since_release = 0;
        }
    }
}

/// A numeric environment variable, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of `v`.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `op` for about `dur`; returns (ops, elapsed).
pub fn run_for(dur: Duration, mut op: impl FnMut()) -> (u64, Duration) {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < dur {
        op();
        n += 1;
    }
    (n, start.elapsed())
}

/// Writes a log of about `total` bytes of `size`-byte entries, `batch` per
/// record, syncing every 16 MiB. Returns the number of entries.
pub fn build_log(dir: &Path, total: u64, size: usize, batch: usize) -> u64 {
    let opts = Options {
        preallocate_in_background: true,
        ..Options::default()
    };
    let (mut wal, _) = Wal::open(dir, opts).unwrap();
    let mut ents: Vec<Entry> = (0..batch as u64)
        .map(|i| Entry::new(1, 0, payload(size, i + 3)))
        .collect();
    let mut next = 1;
    let mut written = 0u64;
    let mut since_sync = 0;
    while written < total {
        for (k, e) in ents.iter_mut().enumerate() {
            e.index = next + k as u64;
        }
        wal.append(&ents).unwrap();
        next += batch as u64;
        written += (batch * size) as u64;
        since_sync += batch * size;
        if since_sync >= 16 << 20 {
            wal.sync().unwrap();
            since_sync = 0;
        }
    }
    wal.sync().unwrap();
    next - 1
}

/// CPU time (user + system) of this process so far.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(r.ru_utime) + t(r.ru_stime)
}

/// Opens the log in `dir` (no background preallocation) and returns the
/// wall and CPU time it took, the bytes of records replayed and the
/// entries recovered. Dropping them afterwards is not timed.
pub fn time_recovery(dir: &Path) -> (Duration, Duration, u64, usize) {
    let opts = Options {
        preallocate_in_background: false,
        ..Options::default()
    };
    let cpu = cpu_time();
    let start = Instant::now();
    let (wal, rec) = Wal::open(dir, opts).unwrap();
    let took = start.elapsed();
    let cpu = cpu_time() - cpu;
    let n = rec.entries.len();
    let bytes = rec.report.bytes;
    drop(rec);
    drop(wal);
    (took, cpu, bytes, n)
}
