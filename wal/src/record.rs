//! The on-disk format of a segment: a sequence of records, the first of
//! which is the segment header.
//!
//! # Record
//!
//! | offset    | size    | field                                                    |
//! |-----------|---------|----------------------------------------------------------|
//! | 0         | 4       | `length`: u32 LE, bytes covered by the CRC (`1 + payload`); 0 ends the log |
//! | 4         | 4       | `crc`: u32 LE, CRC-32 (IEEE) of the covered bytes, chained (below) |
//! | 8         | 1       | `type`: low 7 bits the kind, high bit [`SYNC_BOUNDARY`]  |
//! | 9         | `length - 1` | payload, [postcard]-encoded (table below)           |
//! | 8+`length`| 0..=7   | zero padding to a multiple of 8                          |
//!
//! Records start at multiples of 8. After the last record of a segment
//! comes a zero `length` (the writer appends 8 zero bytes after every
//! write, and a fresh segment is zero-filled), or the end of the file.
//!
//! **CRC chain.** `crc = CRC-32(type ‖ payload)` computed from the initial
//! value `prev ^ salt(seq)`, where `prev` is the `crc` of the record before
//! (across segments: the first record of segment *n* + 1 continues from the
//! last record of segment *n*, whose value its header also stores) and
//! `salt(seq)` is a function of the segment's sequence number. The chain
//! means a record is valid only where the writer put it, after the record it
//! was written after: a stale record left in a reused region does not
//! verify. The salt makes the records of a recycled segment fail even when
//! read after their own stale predecessor, so a recovery that looks past a
//! damaged record (see `recovery`) never mistakes an old segment's records
//! for new ones.
//!
//! The chain continues across segments rather than restarting in each: a
//! segment from another log, a stale copy restored from a backup, or a
//! segment renamed out of order breaks it at the header and is reported.
//! Restarting per segment would leave each segment valid on its own and
//! such mix-ups undetected. Because the header stores the value it
//! continues from, a segment can still be verified after the ones before it
//! were released.
//!
//! **Sync boundary.** The writer sets the high bit of `type` on the first
//! record it appends after a successful sync. Everything before such a
//! record was durable before it was written, so a damaged record followed
//! (down the chain) by a flagged one cannot be a torn write: it is
//! corruption. A damaged record followed by unflagged records only is the
//! torn tail of the last, unfinished sync.
//!
//! # Payloads
//!
//! | kind | name       | payload (postcard)                                                                 |
//! |------|------------|------------------------------------------------------------------------------------|
//! | 1    | header     | `magic: [u8; 8] = "KVWALSEG"`, `version: u32 = 1`, `seq: u64`, `first_index: u64`, `prev_crc: u32`, `prev_end: u64`, `hard_state`, `snapshot` |
//! | 2    | entries    | `first_index: u64`, `entries: [ { term: u64, kind: u8, data: bytes } ]` (indexes `first_index..`) |
//! | 3    | hard state | `term: u64`, `vote: u64`, `commit: u64`                                           |
//! | 4    | snapshot   | `index: u64`, `term: u64`, `conf_state`, `keep_suffix: bool`                       |
//!
//! with `hard_state` as kind 3, `snapshot` = `index, term, conf_state`, and
//! `conf_state` = `voters, learners, voters_outgoing, learners_next: [u64]`,
//! `auto_leave: bool`. Entry kinds: 0 normal, 1 conf change, 2 conf change v2.
//! Integers are postcard varints (LEB128), `u8` and `bool` one byte,
//! sequences and `bytes` a varint length then the items.
//!
//! The header repeats the hard state and snapshot marker current when the
//! segment was cut, so that removing older segments loses no state;
//! `prev_crc`/`prev_end` name the chain value and end offset of the previous
//! segment, checked when that segment is still there. `keep_suffix` records
//! the writer's decision (see [`crate::Wal::save_snapshot`]): whether the
//! entries after the snapshot index survive it.
//!
//! [postcard]: https://docs.rs/postcard

use std::io::IoSlice;

use bytes::{Bytes, BytesMut};
use raft_core::{ConfState, Entry, EntryType, HardState, SnapshotMetadata};
use serde::{Deserialize, Serialize};

/// Bytes before the covered part of a record: `length` and `crc`.
pub(crate) const FRAME_HEADER: usize = 8;

/// The high bit of the type byte: first record after a successful sync.
pub const SYNC_BOUNDARY: u8 = 0x80;

/// The segment header's magic.
pub(crate) const MAGIC: [u8; 8] = *b"KVWALSEG";

/// The format version written into segment headers.
pub(crate) const VERSION: u32 = 1;

/// Entry payloads up to this long are copied into the staging buffer;
/// longer ones are written straight from the entry's buffer, each as its
/// own `iovec` of the `pwritev`. Measured (256 entries per sync, CPU time
/// per sync on tmpfs and ext4): the kernel's cost per extra `iovec` (and
/// the reference count of the shared buffer) outweighs a copy up to about
/// 2 KiB: copying is 15-20% cheaper at 512 B and 1 KiB and 4% at 2 KiB,
/// sharing 3-7% cheaper at 2.5 KiB and 10-15% at 4 KiB.
const COPY_MAX: usize = 2048;

/// Record kinds (the low 7 bits of the type byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Header = 1,
    Entries = 2,
    HardState = 3,
    Snapshot = 4,
}

impl Kind {
    pub(crate) fn from_type_byte(b: u8) -> Option<Kind> {
        match b & !SYNC_BOUNDARY {
            1 => Some(Kind::Header),
            2 => Some(Kind::Entries),
            3 => Some(Kind::HardState),
            4 => Some(Kind::Snapshot),
            _ => None,
        }
    }
}

/// Rounds up to a multiple of 8.
pub(crate) const fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

/// The per-segment salt of the CRC chain. Distinct for distinct sequence
/// numbers below 2^32.
pub(crate) fn salt(seq: u64) -> u32 {
    (seq as u32) ^ ((seq >> 32) as u32).rotate_left(16) ^ 0x5EC7_3A11
}

/// The chained CRC of a record's covered bytes.
pub(crate) fn chain_crc(prev: u32, salt: u32, covered: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(prev ^ salt);
    h.update(covered);
    h.finalize()
}

/// Bytes of the postcard varint encoding of `v`.
pub(crate) const fn varint_len(v: u64) -> usize {
    if v == 0 {
        1
    } else {
        (64 - v.leading_zeros() as usize).div_ceil(7)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn entry_kind(t: EntryType) -> u8 {
    match t {
        EntryType::Normal => 0,
        EntryType::ConfChange => 1,
        EntryType::ConfChangeV2 => 2,
    }
}

fn entry_type(kind: u8) -> Option<EntryType> {
    match kind {
        0 => Some(EntryType::Normal),
        1 => Some(EntryType::ConfChange),
        2 => Some(EntryType::ConfChangeV2),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------

/// Borrowed bytes, serialized as postcard `bytes` (length then raw data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawBytes<'a>(pub &'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawBytes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'de [u8]>::deserialize(d).map(RawBytes)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HardStateWire {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

impl From<&HardState> for HardStateWire {
    fn from(h: &HardState) -> Self {
        HardStateWire {
            term: h.term,
            vote: h.vote,
            commit: h.commit,
        }
    }
}

impl From<&HardStateWire> for HardState {
    fn from(h: &HardStateWire) -> Self {
        HardState {
            term: h.term,
            vote: h.vote,
            commit: h.commit,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConfStateWire {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub voters_outgoing: Vec<u64>,
    pub learners_next: Vec<u64>,
    pub auto_leave: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotMetaWire {
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfStateWire,
}

impl From<&SnapshotMetadata> for SnapshotMetaWire {
    fn from(m: &SnapshotMetadata) -> Self {
        let c = &m.conf_state;
        SnapshotMetaWire {
            index: m.index,
            term: m.term,
            conf_state: ConfStateWire {
                voters: c.voters.clone(),
                learners: c.learners.clone(),
                voters_outgoing: c.voters_outgoing.clone(),
                learners_next: c.learners_next.clone(),
                auto_leave: c.auto_leave,
            },
        }
    }
}

impl From<SnapshotMetaWire> for SnapshotMetadata {
    fn from(m: SnapshotMetaWire) -> Self {
        let c = m.conf_state;
        SnapshotMetadata {
            index: m.index,
            term: m.term,
            conf_state: ConfState {
                voters: c.voters,
                learners: c.learners,
                voters_outgoing: c.voters_outgoing,
                learners_next: c.learners_next,
                auto_leave: c.auto_leave,
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SegmentHeader {
    pub magic: [u8; 8],
    pub version: u32,
    pub seq: u64,
    pub first_index: u64,
    /// The chain value of the previous segment's last record (0 for the
    /// first segment ever); this header's CRC continues from it.
    pub prev_crc: u32,
    /// The end offset of the previous segment's records (0 for the first).
    pub prev_end: u64,
    pub hard_state: HardStateWire,
    pub snapshot: SnapshotMetaWire,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotRecord {
    pub meta: SnapshotMetaWire,
    pub keep_suffix: bool,
}

/// The layout of an entry in an entries record, as postcard writes it. The
/// writer and the recovery decoder produce and read this layout directly
/// (tests check both against postcard); this struct states it.
#[cfg(test)]
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EntryWire<'a> {
    pub term: u64,
    pub kind: u8,
    #[serde(borrow)]
    pub data: RawBytes<'a>,
}

/// The payload of an entries record, as postcard writes it.
#[cfg(test)]
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EntriesWire<'a> {
    pub first_index: u64,
    #[serde(borrow)]
    pub entries: Vec<EntryWire<'a>>,
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

enum Piece {
    /// `[start, end)` of the staging buffer.
    Staged(usize, usize),
    /// An entry's payload, written from its own buffer.
    Shared(Bytes),
}

/// Records encoded but not yet written to the file, as a list of pieces so
/// that large entry payloads are written without being copied (`pwritev`).
pub(crate) struct Pending {
    staging: Vec<u8>,
    pieces: Vec<Piece>,
    /// Start of the staging bytes not yet closed into a piece.
    run_start: usize,
    /// Total bytes pending.
    len: usize,
    /// The record being encoded.
    open: Option<OpenRecord>,
}

struct OpenRecord {
    /// Where its frame starts in `staging`.
    start: usize,
    /// The first piece pushed while it was open.
    first_piece: usize,
    /// Bytes covered by its CRC so far.
    covered: usize,
    /// The CRC's initial value (previous CRC xor salt).
    seed: u32,
}

impl Pending {
    pub(crate) fn new() -> Self {
        Pending {
            staging: Vec::with_capacity(64 << 10),
            pieces: Vec::new(),
            run_start: 0,
            len: 0,
            open: None,
        }
    }

    /// Bytes pending.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pending bytes and then `tail`, as slices in file order, handed
    /// to `f`. Without shared pieces (small entries) no vector is built.
    pub(crate) fn with_slices<R>(&self, tail: &[u8], f: impl FnOnce(&[IoSlice<'_>]) -> R) -> R {
        if self.pieces.is_empty() {
            return f(&[IoSlice::new(&self.staging), IoSlice::new(tail)]);
        }
        let mut v = Vec::with_capacity(self.pieces.len() + 2);
        self.push_slices(&mut v);
        v.push(IoSlice::new(tail));
        f(&v)
    }

    /// The pending bytes as slices, in file order.
    pub(crate) fn slices(&self) -> Vec<IoSlice<'_>> {
        let mut v = Vec::with_capacity(self.pieces.len() + 2);
        self.push_slices(&mut v);
        v
    }

    fn push_slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>) {
        debug_assert!(self.open.is_none(), "a record is still open");
        for p in &self.pieces {
            out.push(match p {
                Piece::Staged(s, e) => IoSlice::new(&self.staging[*s..*e]),
                Piece::Shared(b) => IoSlice::new(b),
            });
        }
        if self.staging.len() > self.run_start {
            out.push(IoSlice::new(&self.staging[self.run_start..]));
        }
    }

    pub(crate) fn clear(&mut self) {
        self.staging.clear();
        self.pieces.clear();
        self.run_start = 0;
        self.len = 0;
        self.open = None;
    }

    fn begin(&mut self, type_byte: u8, seed: u32) {
        debug_assert!(self.open.is_none());
        let start = self.staging.len();
        self.staging.extend_from_slice(&[0; FRAME_HEADER]);
        self.staging.push(type_byte);
        self.open = Some(OpenRecord {
            start,
            first_piece: self.pieces.len(),
            covered: 1,
            seed,
        });
        self.len += FRAME_HEADER + 1;
    }

    fn covered(&mut self, n: usize) {
        self.open.as_mut().expect("no open record").covered += n;
        self.len += n;
    }

    fn put(&mut self, bytes: &[u8]) {
        self.staging.extend_from_slice(bytes);
        self.covered(bytes.len());
    }

    fn put_varint(&mut self, v: u64) {
        let at = self.staging.len();
        put_varint(&mut self.staging, v);
        self.covered(self.staging.len() - at);
    }

    fn put_shared(&mut self, data: &Bytes) {
        if self.staging.len() > self.run_start {
            self.pieces
                .push(Piece::Staged(self.run_start, self.staging.len()));
            self.run_start = self.staging.len();
        }
        self.pieces.push(Piece::Shared(data.clone()));
        self.covered(data.len());
    }

    fn put_serialized<T: Serialize>(&mut self, value: &T) {
        let at = self.staging.len();
        let staging = std::mem::take(&mut self.staging);
        self.staging =
            postcard::to_extend(value, staging).expect("postcard into a Vec cannot fail");
        self.covered(self.staging.len() - at);
    }

    /// Closes the open record: computes its CRC over its covered bytes, in
    /// as few contiguous runs as the pieces allow (the SIMD CRC needs long
    /// runs to be fast; feeding it varint by varint cost more than the
    /// encoding), pads it and fills in its length and CRC. Returns the CRC
    /// and the record's length on disk.
    fn finish(&mut self) -> (u32, usize) {
        let rec = self.open.take().expect("no open record");
        let body = rec.start + FRAME_HEADER;
        let mut h = crc32fast::Hasher::new_with_initial(rec.seed);
        for p in &self.pieces[rec.first_piece..] {
            match p {
                // The first may begin with earlier records' bytes.
                Piece::Staged(s, e) => h.update(&self.staging[(*s).max(body)..*e]),
                Piece::Shared(b) => h.update(b),
            }
        }
        h.update(&self.staging[self.run_start.max(body)..]);
        let crc = h.finalize();
        let covered = rec.covered;
        let total = align8((FRAME_HEADER + covered) as u64) as usize;
        let pad = total - FRAME_HEADER - covered;
        self.staging.extend_from_slice(&[0; 7][..pad]);
        self.len += pad;
        let len = u32::try_from(covered).expect("record longer than 4 GiB");
        self.staging[rec.start..rec.start + 4].copy_from_slice(&len.to_le_bytes());
        self.staging[rec.start + 4..rec.start + 8].copy_from_slice(&crc.to_le_bytes());
        (crc, total)
    }

    /// Appends a record with a serde payload; returns (crc, length on disk).
    pub(crate) fn push<T: Serialize>(
        &mut self,
        type_byte: u8,
        seed: u32,
        payload: &T,
    ) -> (u32, usize) {
        self.begin(type_byte, seed);
        self.put_serialized(payload);
        self.finish()
    }

    /// Appends an entries record for `entries` (consecutive indexes from
    /// `entries[0].index`); returns (crc, length on disk).
    pub(crate) fn push_entries(
        &mut self,
        type_byte: u8,
        seed: u32,
        entries: &[Entry],
    ) -> (u32, usize) {
        debug_assert!(!entries.is_empty());
        self.begin(type_byte, seed);
        self.put_varint(entries[0].index);
        self.put_varint(entries.len() as u64);
        for e in entries {
            self.put_varint(e.term);
            self.put(&[entry_kind(e.entry_type)]);
            self.put_varint(e.data.len() as u64);
            if e.data.len() > COPY_MAX {
                self.put_shared(&e.data);
            } else {
                self.put(&e.data);
            }
        }
        self.finish()
    }
}

/// The covered length (type byte + payload) of an entry in an entries record.
pub(crate) fn entry_wire_len(e: &Entry) -> u64 {
    varint_len(e.term) as u64 + 1 + varint_len(e.data.len() as u64) as u64 + e.data.len() as u64
}

/// The length on disk of an entries record holding `count` entries from
/// `first_index` whose [`entry_wire_len`]s sum to `sum`.
pub(crate) fn entries_record_len(first_index: u64, count: u64, sum: u64) -> u64 {
    align8(
        FRAME_HEADER as u64 + 1 + varint_len(first_index) as u64 + varint_len(count) as u64 + sum,
    )
}

/// How many of `entries` fit in one record of at most `avail` bytes.
pub(crate) fn entries_that_fit(entries: &[Entry], avail: u64) -> usize {
    let first = entries[0].index;
    let mut sum = 0;
    for (i, e) in entries.iter().enumerate() {
        sum += entry_wire_len(e);
        if entries_record_len(first, i as u64 + 1, sum) > avail {
            return i;
        }
    }
    entries.len()
}

/// The length on disk of a record with a serde payload.
pub(crate) fn record_len<T: Serialize>(payload: &T) -> u64 {
    let n = postcard::experimental::serialized_size(payload).expect("sizing cannot fail");
    align8((FRAME_HEADER + 1 + n) as u64)
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/// A record as framed on disk; its CRC is not checked yet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawRecord<'a> {
    /// The type byte.
    pub type_byte: u8,
    /// The covered bytes: type byte, then payload.
    pub covered: &'a [u8],
    /// The stored CRC.
    pub crc: u32,
    /// The offset just past the record and its padding.
    pub next: usize,
}

impl RawRecord<'_> {
    pub(crate) fn payload(&self) -> &[u8] {
        &self.covered[1..]
    }

    pub(crate) fn kind(&self) -> Option<Kind> {
        Kind::from_type_byte(self.type_byte)
    }

    pub(crate) fn is_boundary(&self) -> bool {
        self.type_byte & SYNC_BOUNDARY != 0
    }

    pub(crate) fn verifies(&self, prev: u32, salt: u32) -> bool {
        chain_crc(prev, salt, self.covered) == self.crc
    }
}

/// What lies at an offset of a segment.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Frame<'a> {
    /// A zero length, or fewer than 8 zero bytes before the end of the file.
    End,
    /// A well-framed record (CRC unchecked).
    Record(RawRecord<'a>),
    /// Not a record: the reason.
    Bad(&'static str),
}

fn u32_at(buf: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(buf[off..off + 4].try_into().expect("4 bytes"))
}

/// Reads the frame at `off` (a multiple of 8).
pub(crate) fn frame_at(buf: &[u8], off: usize) -> Frame<'_> {
    if off + FRAME_HEADER > buf.len() {
        // Fewer than 8 bytes left: the end, unless a record header was cut.
        return if buf[off.min(buf.len())..].iter().all(|&b| b == 0) {
            Frame::End
        } else {
            Frame::Bad("record header cut short by the end of the file")
        };
    }
    let len = u32_at(buf, off) as usize;
    if len == 0 {
        return Frame::End;
    }
    let end = off + FRAME_HEADER + len;
    let next = align8(end as u64) as usize;
    if next > buf.len() {
        return Frame::Bad("record runs past the end of the segment");
    }
    if buf[end..next].iter().any(|&b| b != 0) {
        return Frame::Bad("nonzero padding");
    }
    Frame::Record(RawRecord {
        type_byte: buf[off + FRAME_HEADER],
        covered: &buf[off + FRAME_HEADER..end],
        crc: u32_at(buf, off + 4),
        next,
    })
}

/// A decoded record.
#[derive(Debug)]
pub(crate) enum Record {
    /// A segment header where none belongs (decoding stops there).
    Header,
    Entries(EntriesRecord),
    HardState(HardState),
    Snapshot(SnapshotMetadata, bool),
}

/// An entries record whose entries are decoded on demand, straight into the
/// caller's vector (recovery of small entries is dominated by per-entry
/// work: no intermediate vector, no second move).
#[derive(Debug)]
pub(crate) struct EntriesRecord {
    pub first_index: u64,
    /// Invariant: at least 1.
    pub count: u64,
    /// The payload, owned (copied out of the segment).
    payload: Bytes,
    /// Where the first entry starts in `payload`.
    pos: usize,
}

/// Reads a postcard varint (LEB128, at most 10 bytes, no overflow).
fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("payload ends inside a varint")?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return Err("varint overflows 64 bits".into());
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

impl EntriesRecord {
    fn parse(payload: Bytes) -> Result<EntriesRecord, String> {
        let mut pos = 0;
        let first_index = get_varint(&payload, &mut pos)?;
        let count = get_varint(&payload, &mut pos)?;
        if first_index == 0 {
            return Err("entries record at index 0".into());
        }
        // Each entry takes at least 3 bytes (term, kind, length).
        if count == 0 || count > (payload.len() - pos) as u64 / 3 {
            return Err(format!("entries record claims {count} entries"));
        }
        if first_index.checked_add(count).is_none() {
            return Err("entry indexes overflow".into());
        }
        Ok(EntriesRecord {
            first_index,
            count,
            payload,
            pos,
        })
    }

    /// The index of the last entry.
    pub(crate) fn last_index(&self) -> u64 {
        self.first_index + self.count - 1
    }

    /// Decodes the entries onto the end of `out`. On error, `out` may hold
    /// some of them.
    pub(crate) fn decode_into(
        &self,
        out: &mut Vec<Entry>,
        terms: &mut crate::TermRuns,
    ) -> Result<(), String> {
        let buf = &self.payload[..];
        let mut pos = self.pos;
        out.reserve(self.count as usize);
        for index in self.first_index..=self.last_index() {
            let term = get_varint(buf, &mut pos)?;
            let kind = *buf.get(pos).ok_or("payload ends inside an entry")?;
            pos += 1;
            let entry_type =
                entry_type(kind).ok_or_else(|| format!("unknown entry kind {kind}"))?;
            let len = get_varint(buf, &mut pos)?;
            if len > (buf.len() - pos) as u64 {
                return Err(format!("entry {index} runs past the end of the payload"));
            }
            let end = pos + len as usize;
            terms.push(index, term);
            out.push(Entry {
                term,
                index,
                entry_type,
                data: self.payload.slice(pos..end),
            });
            pos = end;
        }
        if pos != buf.len() {
            return Err(format!(
                "{} trailing bytes after the entries",
                buf.len() - pos
            ));
        }
        Ok(())
    }
}

fn decode_exact<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, String> {
    match postcard::take_from_bytes::<T>(payload) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(format!("{} trailing bytes after the payload", rest.len())),
        Err(e) => Err(format!("undecodable payload: {e}")),
    }
}

/// Copies entry payloads out of segment maps into shared buffers of about
/// 4 MiB, so that recovered entries neither pin a segment's map (it may be
/// recycled) nor cost an allocation each.
pub(crate) struct Arena {
    buf: BytesMut,
}

const ARENA_CHUNK: usize = 4 << 20;

impl Arena {
    pub(crate) fn new() -> Self {
        Arena {
            buf: BytesMut::new(),
        }
    }

    fn copy(&mut self, data: &[u8]) -> Bytes {
        if self.buf.capacity() - self.buf.len() < data.len() {
            self.buf = BytesMut::with_capacity(ARENA_CHUNK.max(data.len()));
        }
        self.buf.extend_from_slice(data);
        self.buf.split().freeze()
    }
}

/// Whether a record found by scanning (not at offset 0) could be one the
/// writer wrote, judged from its structure alone: a header never follows
/// offset 0, small payloads must decode, and an entries payload must walk
/// exactly to its end. Random bytes in a reused region often look like a
/// frame with a length of megabytes; this spares recovery a CRC over each
/// (measured: 2 s to judge one torn tail in 64 MiB of random bytes).
pub(crate) fn plausible(rec: &RawRecord<'_>) -> bool {
    let payload = rec.payload();
    match rec.kind() {
        None | Some(Kind::Header) => false,
        Some(Kind::HardState) => decode_exact::<HardStateWire>(payload).is_ok(),
        Some(Kind::Snapshot) => decode_exact::<SnapshotRecord>(payload).is_ok(),
        Some(Kind::Entries) => entries_walk(payload).is_ok(),
    }
}

/// Walks an entries payload without decoding it; Ok if it ends exactly.
fn entries_walk(buf: &[u8]) -> Result<(), String> {
    let mut pos = 0;
    let first_index = get_varint(buf, &mut pos)?;
    let count = get_varint(buf, &mut pos)?;
    if first_index == 0 || count == 0 || count > (buf.len() - pos) as u64 / 3 {
        return Err("bad entries header".into());
    }
    for _ in 0..count {
        get_varint(buf, &mut pos)?;
        if entry_type(*buf.get(pos).ok_or("short")?).is_none() {
            return Err("bad kind".into());
        }
        pos += 1;
        let len = get_varint(buf, &mut pos)?;
        if len > (buf.len() - pos) as u64 {
            return Err("entry runs past the end".into());
        }
        pos += len as usize;
    }
    if pos == buf.len() {
        Ok(())
    } else {
        Err("trailing bytes".into())
    }
}

/// Decodes a record whose CRC verified.
pub(crate) fn decode(rec: &RawRecord<'_>, arena: &mut Arena) -> Result<Record, String> {
    let payload = rec.payload();
    match rec.kind() {
        None => Err(format!("unknown record type {:#04x}", rec.type_byte)),
        Some(Kind::Header) => Ok(Record::Header),
        Some(Kind::HardState) => {
            decode_exact::<HardStateWire>(payload).map(|h| Record::HardState((&h).into()))
        }
        Some(Kind::Snapshot) => decode_exact::<SnapshotRecord>(payload)
            .map(|s| Record::Snapshot(s.meta.into(), s.keep_suffix)),
        Some(Kind::Entries) => EntriesRecord::parse(arena.copy(payload)).map(Record::Entries),
    }
}

/// Decodes a header record's payload without checking its CRC (the CRC's
/// seed is inside it).
pub(crate) fn decode_header(rec: &RawRecord<'_>) -> Result<SegmentHeader, String> {
    if rec.kind() != Some(Kind::Header) {
        return Err(format!(
            "first record has type {:#04x}, not a header",
            rec.type_byte
        ));
    }
    let h = decode_exact::<SegmentHeader>(rec.payload())?;
    if h.magic != MAGIC {
        return Err("bad magic".into());
    }
    if h.version != VERSION {
        return Err(format!("unsupported version {}", h.version));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(first: u64, sizes: &[usize]) -> Vec<Entry> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Entry {
                term: 3 + i as u64 / 2,
                index: first + i as u64,
                entry_type: [
                    EntryType::Normal,
                    EntryType::ConfChange,
                    EntryType::ConfChangeV2,
                ][i % 3],
                data: Bytes::from((0..n).map(|b| (b * 7 + i) as u8).collect::<Vec<_>>()),
            })
            .collect()
    }

    fn bytes_of(p: &Pending) -> Vec<u8> {
        p.slices().iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn varint_len_matches_postcard() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
            assert_eq!(
                varint_len(v),
                postcard::to_allocvec(&v).unwrap().len(),
                "{v}"
            );
        }
    }

    #[test]
    fn entries_payload_is_postcard() {
        // Small payloads are copied, large ones shared: both must produce the
        // bytes postcard produces for the wire struct.
        let ents = entries(1000, &[0, 5, 3000, COPY_MAX, COPY_MAX + 1, 4096, 130]);
        let mut p = Pending::new();
        let (crc, len) = p.push_entries(Kind::Entries as u8, 77, &ents);
        let shared = p.pieces.iter().filter(|p| matches!(p, Piece::Shared(_)));
        assert_eq!(shared.count(), 3);
        let bytes = bytes_of(&p);
        assert_eq!(bytes.len(), len);
        assert_eq!(len % 8, 0);
        let expected = postcard_entries(1000, &ents);
        let Frame::Record(rec) = frame_at(&bytes, 0) else {
            panic!("not a record")
        };
        assert_eq!(rec.payload(), &expected[..]);
        assert_eq!(rec.crc, crc);
        assert!(rec.verifies(77 ^ salt(9), salt(9)));
        let sum: u64 = ents.iter().map(entry_wire_len).sum();
        assert_eq!(entries_record_len(1000, ents.len() as u64, sum), len as u64);
        let Record::Entries(back) = decode(&rec, &mut Arena::new()).unwrap() else {
            panic!("not entries")
        };
        let mut out = Vec::new();
        back.decode_into(&mut out, &mut Default::default()).unwrap();
        assert_eq!(out, ents);
        // The decoder reads what postcard writes.
        let mut arena = Arena::new();
        let parsed = EntriesRecord::parse(arena.copy(&expected)).unwrap();
        let mut out2 = Vec::new();
        parsed
            .decode_into(&mut out2, &mut Default::default())
            .unwrap();
        assert_eq!(out2, ents);
    }

    /// An entries payload as postcard writes it from the wire types.
    fn postcard_entries(first_index: u64, ents: &[Entry]) -> Vec<u8> {
        let wire = EntriesWire {
            first_index,
            entries: ents
                .iter()
                .map(|e| EntryWire {
                    term: e.term,
                    kind: entry_kind(e.entry_type),
                    data: RawBytes(&e.data),
                })
                .collect(),
        };
        postcard::to_allocvec(&wire).unwrap()
    }

    #[test]
    fn entries_decoder_rejects_bad_payloads() {
        let good = postcard_entries(5, &entries(5, &[3, 4]));
        let run = |p: &[u8]| -> Result<Vec<Entry>, String> {
            let rec = EntriesRecord::parse(Bytes::copy_from_slice(p))?;
            let mut out = Vec::new();
            rec.decode_into(&mut out, &mut Default::default())
                .map(|_| out)
        };
        assert_eq!(run(&good).unwrap().len(), 2);
        for cut in 0..good.len() {
            assert!(run(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(run(&long).is_err());
        let mut bad_kind = good.clone();
        bad_kind[3] = 9; // first entry: term, then kind
        assert!(run(&bad_kind).is_err());
        assert!(run(&[0, 1, 1, 0, 0]).is_err()); // index 0
        assert!(run(&[1, 0x7f, 1, 0, 0]).is_err()); // too many entries
        assert!(get_varint(&[0xff; 11], &mut 0).is_err());
        assert!(
            get_varint(
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                &mut 0
            )
            .is_err()
        );
        assert_eq!(
            get_varint(
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                &mut 0
            ),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn records_sharing_a_buffer_chain_their_crcs() {
        // Small and large entries, and small records, in one pending buffer:
        // each record's CRC covers exactly its own bytes.
        let mut p = Pending::new();
        let salt = salt(3);
        let mut prev = 99;
        let mut crcs = Vec::new();
        let mut next = 1;
        for (k, sizes) in [&[10usize, 3000][..], &[5], &[2100, 2100, 3], &[1], &[5000]]
            .iter()
            .enumerate()
        {
            let ents = entries(next, sizes);
            next += sizes.len() as u64;
            let (crc, _) = p.push_entries(Kind::Entries as u8, prev ^ salt, &ents);
            crcs.push(crc);
            prev = crc;
            if k % 2 == 0 {
                let (crc, _) = p.push(
                    Kind::HardState as u8,
                    prev ^ salt,
                    &HardStateWire::default(),
                );
                crcs.push(crc);
                prev = crc;
            }
        }
        let bytes = bytes_of(&p);
        let mut off = 0;
        let mut prev = 99;
        for want in crcs {
            let Frame::Record(r) = frame_at(&bytes, off) else {
                panic!("no record at {off}")
            };
            assert_eq!(r.crc, want);
            assert!(r.verifies(prev, salt), "record at {off}");
            prev = r.crc;
            off = r.next;
        }
        assert_eq!(off, bytes.len());
    }

    #[test]
    fn fitting_is_exact() {
        let ents = entries(1, &[100; 40]);
        for avail in [0u64, 8, 100, 130, 500, 1000, 5000] {
            let n = entries_that_fit(&ents, avail);
            let mut p = Pending::new();
            if n > 0 {
                p.push_entries(2, 0, &ents[..n]);
                assert!(p.len() as u64 <= avail);
            }
            if n < ents.len() {
                let mut q = Pending::new();
                q.push_entries(2, 0, &ents[..n + 1]);
                assert!(q.len() as u64 > avail);
            }
        }
    }

    #[test]
    fn small_records_round_trip_and_size() {
        let hs = HardStateWire {
            term: 5,
            vote: 2,
            commit: 300,
        };
        let mut p = Pending::new();
        let (crc, len) = p.push(Kind::HardState as u8 | SYNC_BOUNDARY, 1, &hs);
        assert_eq!(len as u64, record_len(&hs));
        let bytes = bytes_of(&p);
        let Frame::Record(rec) = frame_at(&bytes, 0) else {
            panic!()
        };
        assert!(rec.is_boundary());
        assert_eq!(rec.crc, crc);
        match decode(&rec, &mut Arena::new()).unwrap() {
            Record::HardState(h) => assert_eq!(HardStateWire::from(&h), hs),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn framing_rejects_damage() {
        let mut p = Pending::new();
        p.push(Kind::HardState as u8, 0, &HardStateWire::default());
        let mut bytes = bytes_of(&p);
        bytes.extend_from_slice(&[0; 8]);
        assert!(matches!(frame_at(&bytes, 16), Frame::End));
        assert!(matches!(frame_at(&bytes, 20), Frame::End));
        assert!(matches!(frame_at(&bytes[..12], 8), Frame::Bad(_)));
        let mut bad = bytes.clone();
        bad[15] = 1; // padding
        assert!(matches!(frame_at(&bad, 0), Frame::Bad(_)));
        let mut bad = bytes.clone();
        bad[0] = 200; // length past the end
        assert!(matches!(frame_at(&bad, 0), Frame::Bad(_)));
        let mut bad = bytes;
        bad[10] ^= 1;
        let Frame::Record(rec) = frame_at(&bad, 0) else {
            panic!()
        };
        assert!(!rec.verifies(0, 0));
    }
}
