//! Crash consistency: a damaged last record is cut and recovery yields
//! exactly the records before it; damage to any earlier record is reported
//! as corruption with its segment and offset; a failure at any I/O
//! operation, followed by a power cut that tears unsynced sectors, loses
//! nothing that was synced.

mod common;

use common::{History, Model, Rng, batch, frames};
use raft_core::{HardState, SnapshotMetadata};
use wal::file::{Crash, Faults, FaultyDir, MemDir};
use wal::{DiskDir, Options, SegmentDir, Wal, WalError};

const SEG: u64 = 2048;

fn opts() -> Options {
    Options {
        segment_size: SEG,
        max_spare_segments: 2,
        preallocate_in_background: false,
    }
}

/// A log of 25 sync groups over three or four segments, the last group a
/// single entries record.
struct Layout {
    before_last: Model,
    /// Segment names, oldest first.
    segments: Vec<String>,
    /// `(segment, start, end)` of every record, in log order.
    records: Vec<(usize, usize, usize)>,
}

fn build<D: SegmentDir>(dir: D, files: impl Fn(&str) -> Vec<u8>) -> Layout {
    let (mut w, _) = Wal::open_in(dir.clone(), opts()).unwrap();
    let mut m = Model::default();
    let mut rng = Rng(7);
    for round in 0..24u64 {
        let ents = batch(
            m.last_index() + 1,
            rng.range(1, 4),
            1,
            rng.range(20, 200) as usize,
        );
        w.append(&ents).unwrap();
        m.append(&ents);
        if round % 3 == 0 {
            m.hard_state = HardState {
                term: 1,
                vote: 1,
                commit: m.last_index(),
            };
            w.save_hard_state(&m.hard_state).unwrap();
        }
        w.sync().unwrap();
    }
    let before_last = m.clone();
    w.append(&batch(m.last_index() + 1, 3, 1, 100)).unwrap();
    w.sync().unwrap();
    drop(w);
    let mut segments: Vec<String> = dir
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".wal"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "{segments:?}");
    let mut records = Vec::new();
    for (k, name) in segments.iter().enumerate() {
        for (s, e) in frames(&files(name)) {
            records.push((k, s, e));
        }
    }
    Layout {
        before_last,
        segments,
        records,
    }
}

fn mem_layout() -> (MemDir, Layout) {
    let dir = MemDir::new();
    let d = dir.clone();
    let layout = build(dir.clone(), move |n| d.contents(n).unwrap());
    (dir, layout)
}

/// A fresh copy of `pristine` with the last segment's content replaced.
fn damaged(pristine: &MemDir, last: &str, contents: Vec<u8>) -> MemDir {
    let dir = pristine.crash(Crash::KeepUnsynced);
    dir.set_contents(last, contents);
    dir
}

/// Opens `dir`, expects the state before the last record, checks the torn
/// tail reported (if `torn_at` is given), and that the log goes on.
#[track_caller]
fn expect_cut<D: SegmentDir>(dir: D, l: &Layout, torn_at: Option<usize>, go_on: bool) {
    let (mut w, r) = Wal::open_in(dir.clone(), opts()).unwrap();
    common::assert_recovered(&r, &l.before_last);
    if let Some(at) = torn_at {
        let torn = r
            .report
            .torn_tail
            .as_ref()
            .expect("a torn tail is reported");
        assert_eq!(torn.offset as usize, at);
        assert!(torn.segment.ends_with(l.segments.last().unwrap().as_str()));
    }
    if go_on {
        let mut m = l.before_last.clone();
        let ents = batch(m.last_index() + 1, 2, 2, 50);
        w.append(&ents).unwrap();
        m.append(&ents);
        w.sync().unwrap();
        drop(w);
        let (_w, r) = Wal::open_in(dir, opts()).unwrap();
        common::assert_recovered(&r, &m);
        assert!(r.report.torn_tail.is_none());
    }
}

#[test]
fn truncating_the_last_record_at_every_offset() {
    let (pristine, l) = mem_layout();
    let last = l.segments.last().unwrap();
    let contents = pristine.contents(last).unwrap();
    let &(_, start, end) = l.records.last().unwrap();
    for k in start..end {
        let dir = damaged(&pristine, last, contents[..k].to_vec());
        let torn = (k >= start + 8).then_some(start);
        expect_cut(dir, &l, torn, k % 17 == 0);
    }
}

#[test]
fn truncating_the_last_record_at_every_offset_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("wal");
    let read = |n: &str| std::fs::read(path.join(n)).unwrap();
    let l = build(DiskDir::open(&path).unwrap(), read);
    let last = l.segments.last().unwrap().clone();
    let pristine: Vec<(String, Vec<u8>)> =
        l.segments.iter().map(|n| (n.clone(), read(n))).collect();
    let &(_, start, end) = l.records.last().unwrap();
    // Every offset of the framing, then every 8th: each reopen of a torn
    // log costs several fsyncs. The in-memory test covers every offset.
    let offsets = (start..end).filter(|k| k - start < 24 || k % 8 == 3 || end - k <= 8);
    for k in offsets {
        for e in std::fs::read_dir(&path).unwrap() {
            let e = e.unwrap();
            if e.file_name() != "LOCK" {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        for (n, c) in &pristine {
            std::fs::write(path.join(n), c).unwrap();
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path.join(&last))
            .unwrap();
        f.set_len(k as u64).unwrap();
        drop(f);
        let torn = (k >= start + 8).then_some(start);
        expect_cut(DiskDir::open(&path).unwrap(), &l, torn, k % 29 == 0);
    }
}

#[test]
fn zeroing_the_tail_of_the_last_record() {
    let (pristine, l) = mem_layout();
    let last = l.segments.last().unwrap();
    let contents = pristine.contents(last).unwrap();
    let &(_, start, end) = l.records.last().unwrap();
    for k in start..end {
        let mut c = contents.clone();
        c[k..end].fill(0);
        // Zeroing from the length field on leaves a clean end of log.
        let torn = (k >= start + 4).then_some(start);
        expect_cut(damaged(&pristine, last, c), &l, torn, k % 17 == 0);
    }
}

#[test]
fn garbling_the_tail_of_the_last_record() {
    let (pristine, l) = mem_layout();
    let last = l.segments.last().unwrap();
    let contents = pristine.contents(last).unwrap();
    let &(_, start, end) = l.records.last().unwrap();
    let mut rng = Rng(11);
    for k in start..end {
        let mut c = contents.clone();
        // Garbage over the rest of the record and some of the free space.
        let stop = (end + 64).min(c.len());
        for b in &mut c[k..stop] {
            *b = rng.next() as u8;
        }
        let torn = (k >= start + 4).then_some(start);
        expect_cut(damaged(&pristine, last, c), &l, torn, k % 17 == 0);
    }
}

#[test]
fn a_flipped_bit_in_an_earlier_record_is_corruption_at_its_offset() {
    let (pristine, l) = mem_layout();
    let mut rng = Rng(3);
    let mut checked = 0;
    // Every record but the last (the last sync group), in every segment.
    for &(seg, start, end) in &l.records[..l.records.len() - 1] {
        let name = &l.segments[seg];
        let contents = pristine.contents(name).unwrap();
        // Every byte of the framing and the first payload bytes, then a
        // sample of the rest.
        let mut offsets: Vec<usize> = (start..(start + 16).min(end)).collect();
        for _ in 0..6 {
            offsets.push(rng.range(start as u64, end as u64) as usize);
        }
        for off in offsets {
            let mut c = contents.clone();
            c[off] ^= 1 << rng.range(0, 8);
            let dir = pristine.crash(Crash::KeepUnsynced);
            dir.set_contents(name, c);
            match Wal::open_in(dir, opts()) {
                Err(WalError::Corrupt {
                    segment, offset, ..
                }) => {
                    assert_eq!(segment, *name, "byte {off}");
                    assert_eq!(
                        offset as usize, start,
                        "byte {off} of the record at {start} of {name}"
                    );
                }
                Err(e) => panic!("byte {off} of {name}: {e}"),
                Ok((_, r)) => panic!(
                    "byte {off} of the record at {start} of {name}: opened, {:?}",
                    r.report
                ),
            }
            checked += 1;
        }
    }
    assert!(checked > 500, "{checked}");
}

#[test]
fn damage_within_the_last_sync_group_is_cut_as_a_torn_tail() {
    // Three records written with one sync: damage to the first cannot be
    // told from a torn write of the group, so it is cut, and reported.
    let dir = MemDir::new();
    let (mut w, _) = Wal::open_in(dir.clone(), opts()).unwrap();
    let mut m = Model::default();
    let ents = batch(1, 5, 1, 40);
    w.append(&ents).unwrap();
    m.append(&ents);
    w.sync().unwrap();
    w.append(&batch(6, 1, 1, 40)).unwrap();
    w.save_hard_state(&HardState {
        term: 1,
        vote: 1,
        commit: 6,
    })
    .unwrap();
    w.append(&batch(7, 1, 1, 40)).unwrap();
    w.sync().unwrap();
    drop(w);
    let name = dir
        .list()
        .unwrap()
        .into_iter()
        .find(|n| n.ends_with(".wal"))
        .unwrap();
    let mut c = dir.contents(&name).unwrap();
    let f = frames(&c);
    let (start, _) = f[f.len() - 3];
    c[start + 12] ^= 0x40;
    dir.set_contents(&name, c);
    let (_, r) = Wal::open_in(dir, opts()).unwrap();
    common::assert_recovered(&r, &m);
    assert_eq!(r.report.torn_tail.unwrap().offset as usize, start);
}

#[test]
fn a_damaged_header_is_corruption() {
    let (pristine, l) = mem_layout();
    for name in &l.segments {
        let mut c = pristine.contents(name).unwrap();
        c[20] ^= 0x08;
        let dir = pristine.crash(Crash::KeepUnsynced);
        dir.set_contents(name, c);
        match Wal::open_in(dir, opts()) {
            Err(WalError::Corrupt {
                segment, offset: 0, ..
            }) => assert_eq!(segment, *name),
            other => panic!("{name}: {:?}", other.map(|(_, r)| r.report)),
        }
    }
    // A segment renamed into another's place breaks the chain.
    let dir = pristine.crash(Crash::KeepUnsynced);
    let c = dir.contents(&l.segments[0]).unwrap();
    dir.set_contents(&l.segments[1], c);
    assert!(matches!(
        Wal::open_in(dir, opts()),
        Err(WalError::Corrupt { offset: 0, .. })
    ));
}

/// A workload for the fault tests; every op is recorded in `h`.
fn workload<D: SegmentDir>(w: &mut Wal<D>, h: &mut History, rng: &mut Rng) -> Result<(), WalError> {
    for _ in 0..40 {
        let mut m = h.current().clone();
        match rng.range(0, 10) {
            0..=5 => {
                let back = rng.range(0, 3).min(m.last_index() - m.snapshot.index);
                let first = m.last_index() + 1 - back;
                let term = m.term(first - 1).unwrap_or(1) + u64::from(back > 0);
                // Some payloads over 2 KiB: written from their own buffers.
                let n = rng.range(1, 6);
                let len = rng.range(0, 900) as usize;
                let len = if first % 4 == 0 { 2049 + len / 3 } else { len };
                let ents = batch(first, n, term, len);
                m.append(&ents);
                h.push(Some(&ents), m);
                w.append(&ents)?;
            }
            6 => {
                m.hard_state.commit = m.last_index();
                m.hard_state.term += 1;
                h.push(None, m.clone());
                w.save_hard_state(&m.hard_state)?;
            }
            7 => {
                let index = m.snapshot.index + rng.range(0, 2 + m.entries.len() as u64);
                let term = m.term(index).unwrap_or(1);
                let meta = SnapshotMetadata {
                    index,
                    term,
                    ..Default::default()
                };
                m.save_snapshot(&meta);
                h.push(None, m);
                w.save_snapshot(&meta)?;
            }
            8 => {
                w.release_to(rng.range(0, 1 + m.last_index()))?;
            }
            _ => {
                w.sync()?;
                h.synced();
            }
        }
    }
    w.sync()?;
    h.synced();
    Ok(())
}

#[test]
fn a_failure_at_any_operation_then_a_power_cut_loses_nothing_synced() {
    // Count the operations of a clean run, then fail each one in turn.
    let count = {
        let faults = Faults::new();
        let (mut w, _) =
            Wal::open_in(FaultyDir::new(MemDir::new(), faults.clone()), opts()).unwrap();
        let mut h = History::new(Model::default());
        let start = faults.ops();
        workload(&mut w, &mut h, &mut Rng(5)).unwrap();
        faults.ops() - start
    };
    assert!(count > 50, "{count}");
    for n in 0..count {
        let mem = MemDir::new();
        let faults = Faults::new();
        let (mut w, _) = Wal::open_in(FaultyDir::new(mem.clone(), faults.clone()), opts()).unwrap();
        faults.fail_at(faults.ops() + n, n % 2 == 0);
        let mut h = History::new(Model::default());
        let result = workload(&mut w, &mut h, &mut Rng(5));
        assert!(faults.failed(), "op {n} of {count} was not reached");
        assert!(result.is_err(), "op {n}: the failure was not reported");
        for crash in [Crash::Tear(n), Crash::LoseUnsynced, Crash::KeepUnsynced] {
            let after = mem.crash(crash);
            let (_w, r) = Wal::open_in(after, opts())
                .unwrap_or_else(|e| panic!("op {n}, {crash:?}: reopening failed: {e}"));
            h.check(&r)
                .unwrap_or_else(|e| panic!("op {n}, {crash:?}: {e}"));
        }
        drop(w);
    }
}
