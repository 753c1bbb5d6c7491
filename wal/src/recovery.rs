//! Recovery: replays every segment in order and tells a torn tail from
//! corruption.
//!
//! # What is replayed
//!
//! The first segment's header gives the hard state, the snapshot marker and
//! the index the log continues from (entries before it were released); each
//! later header must agree with what the replay reached. Then records apply
//! in order: a hard state replaces the last one; a snapshot marker drops the
//! entries it covers (or all of them, if the writer found its log conflicts
//! with the snapshot); an entries record at index `i` replaces the suffix
//! from `i` (Raft thesis §3.5: a follower's conflicting suffix is
//! overwritten by the leader's entries).
//!
//! # Torn tail or corruption
//!
//! A record is *damaged* if it is badly framed, its chained CRC does not
//! verify, or (with a valid CRC) it cannot be decoded or applied.
//!
//! - In any segment but the last, a damaged record is corruption: a segment
//!   is synced before the next one is created, so none of it can be torn.
//!   The same goes for a damaged or inconsistent segment header anywhere:
//!   headers are synced before the segment gets its name.
//! - In the last segment, a record that verifies but cannot be decoded or
//!   applied is corruption too (a torn write does not produce a valid CRC).
//! - Otherwise the damaged record in the last segment may be the torn end of
//!   the last, unfinished sync. Recovery then looks past it for the record
//!   that followed it: the first aligned offset holding a record that
//!   verifies when chained from the damaged record's stored CRC, or from the
//!   CRC its bytes compute to (one of them is right whether the damage hit
//!   the payload, the CRC or the length); only records whose structure is
//!   plausible for their kind are checked, so random bytes in a reused
//!   region cost no CRC. From there it follows the chain.
//!   If the chain reaches a record with the sync-boundary flag, the damaged
//!   record had been synced before that record was written: it is
//!   corruption, reported with its segment and offset. If the chain ends
//!   first, the damage lies within the last sync group and is a torn tail:
//!   it is cut off and reported.
//!
//! Corruption in the last sync group looks exactly like a torn write and is
//! cut as one; no log format can tell them apart.

use raft_core::{Entry, HardState, SnapshotMetadata};

use crate::file::{SegmentDir, SegmentFile};
use crate::record::{self, Arena, Frame, Record};
use crate::segment::{self, SegmentInfo};
use crate::{TermRuns, TornTail, WalError};

/// The log state built by replaying records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Replay {
    pub hard_state: HardState,
    pub snapshot: SnapshotMetadata,
    /// The entries from `offset` on.
    pub entries: Vec<Entry>,
    /// The index of `entries[0]`, or of the next entry if there is none.
    /// Entries in `(snapshot.index, offset)` lie in released segments; a
    /// later snapshot marker must cover them.
    pub offset: u64,
    /// The terms of `entries`.
    pub terms: TermRuns,
}

impl Replay {
    fn from_header(h: &record::SegmentHeader) -> Replay {
        Replay {
            hard_state: (&h.hard_state).into(),
            snapshot: h.snapshot.clone().into(),
            entries: Vec::new(),
            offset: h.first_index,
            terms: TermRuns::default(),
        }
    }

    /// The index of the last entry (`offset - 1` if there is none).
    pub(crate) fn last_index(&self) -> u64 {
        self.offset + self.entries.len() as u64 - 1
    }

    /// Checks that entries may be appended from index `i` and drops the
    /// suffix they replace.
    fn make_room(&mut self, i: u64) -> Result<(), String> {
        if i <= self.snapshot.index {
            return Err(format!(
                "entries from {i} at or below the snapshot index {}",
                self.snapshot.index
            ));
        }
        if i > self.last_index() + 1 {
            return Err(format!(
                "entries from {i} leave a gap after the last index {}",
                self.last_index()
            ));
        }
        if i < self.offset {
            // Overwrites entries of released segments: all of the known
            // suffix goes too.
            self.entries.clear();
            self.terms.clear();
            self.offset = i;
        } else {
            self.entries.truncate((i - self.offset) as usize);
            self.terms.truncate_from(i);
        }
        Ok(())
    }

    #[cfg(test)]
    fn append(&mut self, ents: Vec<Entry>) -> Result<(), String> {
        self.make_room(ents[0].index)?;
        for e in &ents {
            self.terms.push(e.index, e.term);
        }
        self.entries.extend(ents);
        Ok(())
    }

    fn apply_snapshot(&mut self, meta: SnapshotMetadata, keep_suffix: bool) -> Result<(), String> {
        if meta.index < self.snapshot.index {
            return Err(format!(
                "snapshot marker {} goes back from {}",
                meta.index, self.snapshot.index
            ));
        }
        if !keep_suffix {
            self.entries.clear();
            self.terms.clear();
            self.offset = meta.index + 1;
        } else if meta.index >= self.offset {
            if meta.index > self.last_index() {
                return Err(format!(
                    "snapshot marker {} keeps a suffix past the last index {}",
                    meta.index,
                    self.last_index()
                ));
            }
            let k = (meta.index - self.offset) as usize;
            if self.entries[k].term != meta.term {
                return Err(format!(
                    "snapshot marker ({}, {}) keeps a suffix after an entry of term {}",
                    meta.index, meta.term, self.entries[k].term
                ));
            }
            self.entries.drain(..=k);
            if self.entries.is_empty() {
                self.terms.clear();
            } else {
                self.terms.drop_through(meta.index);
            }
            self.offset = meta.index + 1;
        }
        self.snapshot = meta;
        Ok(())
    }

    fn apply(&mut self, rec: Record) -> Result<u64, String> {
        match rec {
            Record::Header => Err("segment header in the middle of a segment".into()),
            Record::HardState(hs) => {
                self.hard_state = hs;
                Ok(0)
            }
            Record::Snapshot(meta, keep) => self.apply_snapshot(meta, keep).map(|_| 0),
            Record::Entries(rec) => {
                self.make_room(rec.first_index)?;
                rec.decode_into(&mut self.entries, &mut self.terms)?;
                Ok(rec.last_index())
            }
        }
    }
}

/// What the scan of one segment found.
struct SegmentScan {
    /// The end of the valid records.
    end: u64,
    /// The chain value after the last valid record.
    crc: u32,
    max_index: u64,
    /// `(offset, reason)` of a torn tail that was cut (last segment only).
    torn: Option<(u64, String)>,
}

/// A problem found in a segment.
enum Problem {
    /// Damage at an offset of this segment, and what it is.
    At(u64, String),
    /// This segment's header (which verified) continues a chain that ended
    /// elsewhere than where the previous segment's records end.
    ChainBreak { claimed_end: u64, claimed_crc: u32 },
}

/// Where the previous segment ended: its chain value and end offset.
#[derive(Clone, Copy)]
struct Prev {
    crc: u32,
    end: u64,
}

fn scan_segment(
    buf: &[u8],
    seq: u64,
    first_index: u64,
    prev: Option<Prev>,
    is_last: bool,
    replay: &mut Option<Replay>,
    arena: &mut Arena,
) -> Result<SegmentScan, Problem> {
    let salt = record::salt(seq);
    let bad_header = |r: String| Problem::At(0, format!("bad segment header: {r}"));
    let Frame::Record(raw) = record::frame_at(buf, 0) else {
        return Err(bad_header("no header record".into()));
    };
    let header = record::decode_header(&raw).map_err(bad_header)?;
    if !raw.verifies(header.prev_crc, salt) {
        return Err(bad_header("crc mismatch".into()));
    }
    if header.seq != seq || header.first_index != first_index {
        return Err(bad_header(format!(
            "it names segment {} from index {}, the file name says {seq} from {first_index}",
            header.seq, header.first_index
        )));
    }
    if let Some(p) = prev {
        if header.prev_crc != p.crc || header.prev_end != p.end {
            return Err(Problem::ChainBreak {
                claimed_end: header.prev_end,
                claimed_crc: header.prev_crc,
            });
        }
    }
    match replay {
        None => {
            if header.first_index <= header.snapshot.index {
                return Err(bad_header("first index at or below its snapshot".into()));
            }
            *replay = Some(Replay::from_header(&header));
        }
        Some(r) => {
            let hs: HardState = (&header.hard_state).into();
            let snap: SnapshotMetadata = header.snapshot.clone().into();
            if hs != r.hard_state || snap != r.snapshot || header.first_index != r.last_index() + 1
            {
                return Err(bad_header(
                    "its state differs from the replay of the segments before it".into(),
                ));
            }
        }
    }
    let replay = replay.as_mut().expect("set above");

    let mut off = raw.next;
    let mut crc = raw.crc;
    let mut max_index = 0;
    loop {
        let damage = match record::frame_at(buf, off) {
            Frame::End => break,
            Frame::Bad(reason) => reason.to_string(),
            Frame::Record(r) if !r.verifies(crc, salt) => "crc mismatch".to_string(),
            Frame::Record(r) => {
                let applied = record::decode(&r, arena).and_then(|rec| replay.apply(rec));
                match applied {
                    Ok(last) => max_index = max_index.max(last),
                    Err(reason) => return Err(Problem::At(off as u64, reason)),
                }
                crc = r.crc;
                off = r.next;
                continue;
            }
        };
        if !is_last || damage_is_corruption(buf, off, crc, salt) {
            return Err(Problem::At(off as u64, damage));
        }
        return Ok(SegmentScan {
            end: off as u64,
            crc,
            max_index,
            torn: Some((off as u64, damage)),
        });
    }
    Ok(SegmentScan {
        end: off as u64,
        crc,
        max_index,
        torn: None,
    })
}

fn u32_at(buf: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(buf[off..off + 4].try_into().expect("4 bytes"))
}

/// Decides whether the damaged record at `p` (the chain value before it is
/// `prev`) is corruption, i.e. a sync-boundary record follows it down the
/// chain (see the module docs).
fn damage_is_corruption(buf: &[u8], mut p: usize, mut prev: u32, salt: u32) -> bool {
    loop {
        if p + record::FRAME_HEADER > buf.len() {
            return false;
        }
        let stored = u32_at(buf, p + 4);
        let computed = match record::frame_at(buf, p) {
            Frame::Record(r) => record::chain_crc(prev, salt, r.covered),
            _ => stored,
        };
        let mut q = p + 8;
        let mut found = None;
        while q + record::FRAME_HEADER <= buf.len() {
            if let Frame::Record(r) = record::frame_at(buf, q) {
                if record::plausible(&r) && (r.verifies(stored, salt) || r.verifies(computed, salt))
                {
                    found = Some(r);
                    break;
                }
            }
            q += 8;
        }
        let Some(mut r) = found else {
            return false;
        };
        loop {
            if r.is_boundary() {
                return true;
            }
            match record::frame_at(buf, r.next) {
                Frame::End => return false,
                Frame::Record(n) if n.verifies(r.crc, salt) => r = n,
                _ => {
                    // Damaged again: judge from there.
                    p = r.next;
                    prev = r.crc;
                    break;
                }
            }
        }
    }
}

/// The state of the directory after recovery.
pub(crate) struct Recovery<F> {
    /// Every segment but the last, in order.
    pub sealed: Vec<SegmentInfo>,
    /// The last segment, its open file, the end of its valid records and the
    /// chain value there.
    pub active: (SegmentInfo, F, u64, u32),
    pub torn: Option<TornTail>,
    pub replay: Replay,
    /// Bytes of valid records replayed.
    pub bytes: u64,
}

/// What the directory holds besides segments.
pub(crate) struct Listing {
    /// `(seq, first_index, name)`, sorted by `seq`.
    pub segments: Vec<(u64, u64, String)>,
    /// `(id, name)` of the spares.
    pub spares: Vec<(u64, String)>,
    /// Leftovers of interrupted creations (`*.tmp`).
    pub temps: Vec<String>,
}

pub(crate) fn list<D: SegmentDir>(dir: &D) -> Result<Listing, WalError> {
    let mut l = Listing {
        segments: Vec::new(),
        spares: Vec::new(),
        temps: Vec::new(),
    };
    for name in dir.list()? {
        if let Some((seq, first)) = segment::parse_segment_name(&name) {
            l.segments.push((seq, first, name));
        } else if let Some(id) = segment::parse_spare_name(&name) {
            l.spares.push((id, name));
        } else if name.ends_with(".tmp") {
            l.temps.push(name);
        }
    }
    l.segments.sort();
    l.spares.sort();
    for w in l.segments.windows(2) {
        if w[1].0 == w[0].0 {
            return Err(WalError::Corrupt {
                segment: dir.describe(&w[1].2),
                offset: 0,
                reason: format!("two segments with sequence number {}", w[0].0),
            });
        }
        if w[1].0 != w[0].0 + 1 {
            return Err(WalError::MissingSegment {
                expected: w[0].0 + 1,
                found: dir.describe(&w[1].2),
            });
        }
    }
    Ok(l)
}

/// Replays the segments of `listing` (at least one).
pub(crate) fn recover<D: SegmentDir>(
    dir: &D,
    segments: &[(u64, u64, String)],
) -> Result<Recovery<D::File>, WalError> {
    assert!(!segments.is_empty());
    let mut replay = None;
    let mut arena = Arena::new();
    let mut prev: Option<Prev> = None;
    let mut sealed = Vec::new();
    let mut bytes = 0;
    for (k, (seq, first, name)) in segments.iter().enumerate() {
        let is_last = k + 1 == segments.len();
        let file = dir.open(name)?;
        let buf = file.read_all()?;
        // Records start at multiples of 8 and segment sizes are multiples of
        // 8; a file cut short elsewhere is used up to its last multiple of 8.
        let usable = buf.len() & !7;
        let scan = match scan_segment(
            &buf[..usable],
            *seq,
            *first,
            prev,
            is_last,
            &mut replay,
            &mut arena,
        ) {
            Ok(scan) => scan,
            Err(Problem::At(offset, reason)) => {
                return Err(WalError::Corrupt {
                    segment: dir.describe(name),
                    offset,
                    reason,
                });
            }
            Err(Problem::ChainBreak {
                claimed_end,
                claimed_crc,
            }) => {
                let p = prev.expect("only checked against a previous segment");
                return Err(if claimed_end != p.end {
                    // The header verified, so the previous segment's records
                    // stop where they should not (a damaged length reads as
                    // the end) or go on past where they stopped.
                    WalError::Corrupt {
                        segment: dir.describe(&segments[k - 1].2),
                        offset: claimed_end.min(p.end),
                        reason: format!(
                            "its records end at {}, the next segment continues from {claimed_end}",
                            p.end
                        ),
                    }
                } else {
                    WalError::Corrupt {
                        segment: dir.describe(name),
                        offset: 0,
                        reason: format!(
                            "bad segment header: it continues a chain at {claimed_crc:#010x}, the previous segment ends at {:#010x}",
                            p.crc
                        ),
                    }
                });
            }
        };
        drop(buf);
        bytes += scan.end;
        let info = SegmentInfo {
            seq: *seq,
            first_index: *first,
            name: name.clone(),
            len: usable as u64,
            max_index: scan.max_index,
        };
        prev = Some(Prev {
            crc: scan.crc,
            end: scan.end,
        });
        if is_last {
            let replay = replay.expect("the first segment set it");
            if replay.offset > replay.snapshot.index + 1 {
                return Err(WalError::MissingEntries {
                    snapshot_index: replay.snapshot.index,
                    first_index: replay.offset,
                });
            }
            let torn = scan.torn.map(|(offset, reason)| TornTail {
                segment: dir.describe(name),
                offset,
                reason,
            });
            return Ok(Recovery {
                sealed,
                active: (info, file, scan.end, scan.crc),
                torn,
                replay,
                bytes,
            });
        }
        sealed.push(info);
    }
    unreachable!("the loop returns at the last segment")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ents(from: u64, to: u64, term: u64) -> Vec<Entry> {
        (from..=to)
            .map(|i| Entry::new(term, i, Bytes::from(vec![i as u8])))
            .collect()
    }

    fn replay_from(first: u64, snap: u64) -> Replay {
        Replay {
            snapshot: SnapshotMetadata {
                index: snap,
                term: 1,
                ..Default::default()
            },
            offset: first,
            ..Default::default()
        }
    }

    #[test]
    fn append_overwrites_suffix_and_rejects_gaps() {
        let mut r = replay_from(1, 0);
        r.append(ents(1, 10, 1)).unwrap();
        r.append(ents(6, 8, 2)).unwrap();
        assert_eq!(r.last_index(), 8);
        assert_eq!(r.entries[5].term, 2);
        assert!(r.append(ents(10, 11, 2)).is_err());
        r.append(ents(9, 9, 2)).unwrap();
        assert_eq!(r.entries.len(), 9);
    }

    #[test]
    fn snapshot_keeps_or_drops_the_suffix() {
        let mut r = replay_from(1, 0);
        r.append(ents(1, 10, 1)).unwrap();
        let meta = |index, term| SnapshotMetadata {
            index,
            term,
            ..Default::default()
        };
        r.apply_snapshot(meta(4, 1), true).unwrap();
        assert_eq!((r.offset, r.entries.len()), (5, 6));
        assert!(r.clone().apply_snapshot(meta(6, 2), true).is_err());
        assert!(r.clone().apply_snapshot(meta(3, 1), true).is_err());
        r.apply_snapshot(meta(20, 3), false).unwrap();
        assert_eq!((r.offset, r.entries.len(), r.last_index()), (21, 0, 20));
        assert!(r.append(ents(20, 21, 3)).is_err());
        r.append(ents(21, 22, 3)).unwrap();
    }

    #[test]
    fn random_bytes_after_damage_are_a_torn_tail() {
        // A recycled segment's old payloads can be random bytes; scanning
        // them for the record after a damaged one must not find one. (It
        // used to spend a CRC over megabytes on each random position that
        // looked like a frame: 2 s per 64 MiB in a release build; with the
        // structural check first, about 40 ms. Printed, not asserted.)
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut buf: Vec<u8> = (0..(16usize << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        buf[..8].copy_from_slice(&[40, 0, 0, 0, 1, 2, 3, 4]);
        let t = std::time::Instant::now();
        assert!(!damage_is_corruption(&buf, 0, 7, 9));
        eprintln!("scan of 16 MiB of random bytes: {:?}", t.elapsed());
    }

    #[test]
    fn released_prefix_is_unknown_until_covered() {
        // The first surviving segment starts at 200 with an older marker.
        let mut r = replay_from(200, 100);
        r.apply_snapshot(
            SnapshotMetadata {
                index: 150,
                term: 1,
                ..Default::default()
            },
            true,
        )
        .unwrap();
        assert_eq!(r.offset, 200);
        r.append(ents(160, 170, 2)).unwrap();
        assert_eq!((r.offset, r.last_index()), (160, 170));
    }
}
