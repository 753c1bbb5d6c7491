//! Drivers for the comparison bench: the `wal` crate and raft-engine 0.4,
//! each appending the same batches of entries and syncing once per batch.

use std::path::Path;

use raft_engine::{Config, Engine, LogBatch, MessageExt, ReadableSize};
use raft_proto::eraftpb;

/// raft-engine stores protobuf entries; this names raft-rs's `Entry`.
#[derive(Clone)]
pub struct RaftEntries;

impl MessageExt for RaftEntries {
    type Entry = eraftpb::Entry;

    fn index(e: &eraftpb::Entry) -> u64 {
        e.index
    }
}

/// The `wal` side is wal's own bench support (payloads, the log runner,
/// timing helpers), shared rather than copied.
#[path = "../../../wal/benches/support/mod.rs"]
pub mod support;

pub use support::{RELEASE_EVERY, WalRunner, payload};

pub struct EngineDriver {
    engine: Engine,
    batch: Vec<eraftpb::Entry>,
    log_batch: LogBatch,
    next: u64,
    since_release: usize,
    size: usize,
}

impl EngineDriver {
    /// raft-engine with its default configuration, or with batch compression
    /// (lz4 of batches over 8 KiB by default) turned off.
    pub fn new(dir: &Path, size: usize, batch: usize, compression: bool) -> EngineDriver {
        let mut cfg = Config {
            dir: dir.to_str().unwrap().to_owned(),
            ..Default::default()
        };
        if !compression {
            cfg.batch_compression_threshold = ReadableSize(0);
        }
        let engine = Engine::open(cfg).unwrap();
        let ents = (0..batch as u64)
            .map(|i| {
                let mut e = eraftpb::Entry::new();
                e.term = 1;
                e.set_data(payload(size, i + 7));
                e
            })
            .collect();
        EngineDriver {
            engine,
            batch: ents,
            log_batch: LogBatch::with_capacity(batch),
            next: 1,
            since_release: 0,
            size,
        }
    }

    pub fn op(&mut self) {
        for (k, e) in self.batch.iter_mut().enumerate() {
            e.index = self.next + k as u64;
        }
        self.log_batch
            .add_entries::<RaftEntries>(1, &self.batch)
            .unwrap();
        self.engine.write(&mut self.log_batch, true).unwrap();
        self.next += self.batch.len() as u64;
        self.since_release += self.batch.len() * self.size;
        if self.since_release >= RELEASE_EVERY {
            self.engine.compact_to(1, self.next - 1);
            self.engine.purge_expired_files().unwrap();
            self.since_release = 0;
        }
    }
}
