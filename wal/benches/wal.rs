//! Criterion benches: append + sync of 100 B and 4 KiB entries at 1, 16 and
//! 256 entries per sync, side by side with the physical baseline (a
//! preallocated, written file overwritten with `write_all_at` + `sync_data`
//! per batch) and with the log writing through a memory map; and the
//! recovery time of a 1 GiB log.
//!
//! `cargo bench -p wal --bench wal`. The ratios are better read from the
//! interleaved `--bench compare`, which guards against the disk's drift.

mod support;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use support::*;
use wal::WriteMethod;

fn append_sync(c: &mut Criterion) {
    for size in SIZES {
        for batch in BATCHES {
            let tmp = bench_dir();
            let mut g = c.benchmark_group(format!("append_sync/{size}B/batch{batch}"));
            g.throughput(Throughput::Elements(batch as u64));
            g.warm_up_time(Duration::from_secs(1));
            g.measurement_time(Duration::from_secs(3));
            g.sample_size(20);
            let mut base = Baseline::new(tmp.path(), size * batch);
            g.bench_function("baseline", |b| {
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        base.op();
                    }
                    t.elapsed()
                })
            });
            for (name, method) in [
                ("wal", WriteMethod::Pwrite),
                ("wal_mmap", WriteMethod::Mmap),
            ] {
                let mut w = WalRunner::new(&tmp.path().join(name), size, batch, method);
                g.bench_function(name, |b| {
                    b.iter_custom(|iters| {
                        let t = Instant::now();
                        for _ in 0..iters {
                            w.op();
                        }
                        t.elapsed()
                    })
                });
            }
            g.finish();
        }
    }
}

fn recovery(c: &mut Criterion) {
    for (size, batch) in [(4096usize, 64usize), (100, 16)] {
        let tmp = bench_dir();
        let dir = tmp.path().join("wal");
        build_log(&dir, 1 << 30, size, batch);
        let mut g = c.benchmark_group("recovery");
        g.throughput(Throughput::Bytes(1 << 30));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(10));
        g.bench_function(format!("1GiB_{size}B_entries"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += time_recovery(&dir).0;
                }
                total
            })
        });
        g.finish();
    }
}

criterion_group!(benches, append_sync, recovery);
criterion_main!(benches);
