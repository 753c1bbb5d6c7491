//! Segment files: their names, what the log knows about each, and the
//! active segment that records are appended to.
//!
//! A segment is `<seq:016x>-<first_index:016x>.wal`: `seq` numbers segments
//! consecutively from 1, `first_index` is the index the log was about to
//! append when the segment was cut (an entry that overwrites a suffix may
//! later land in it with a lower index). Two other kinds of file live in the
//! directory: spares, `<id:016x>.spare`, preallocated (or released) files of
//! the configured size waiting to become the next segment, and `*.tmp`,
//! leftovers of an interrupted creation, removed when the log opens.

use std::io::{self, IoSlice};

use crate::file::SegmentFile;
use crate::record::{self, Kind, Pending, SYNC_BOUNDARY, SegmentHeader};

/// The name of segment `seq` whose first index is `first_index`.
pub(crate) fn segment_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}.wal")
}

/// Parses a segment name into `(seq, first_index)`.
pub(crate) fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, first) = stem.split_once('-')?;
    if seq.len() != 16 || first.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(seq, 16).ok()?,
        u64::from_str_radix(first, 16).ok()?,
    ))
}

/// The name of spare number `id`.
pub(crate) fn spare_name(id: u64) -> String {
    format!("{id:016x}.spare")
}

/// Parses a spare's name into its number.
pub(crate) fn parse_spare_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".spare")?;
    if stem.len() != 16 {
        return None;
    }
    u64::from_str_radix(stem, 16).ok()
}

/// What the log knows of a segment other than its file handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentInfo {
    pub seq: u64,
    pub first_index: u64,
    pub name: String,
    /// The usable length of the file: its length rounded down to 8.
    pub len: u64,
    /// The highest entry index written into the segment (0 if none).
    /// Use: the segment may be released once a durable snapshot covers it.
    pub max_index: u64,
}

/// The segment records are appended to.
pub(crate) struct Active<F> {
    pub info: SegmentInfo,
    pub file: F,
    /// Offset where the next flush writes.
    /// Invariant: `[0, written)` holds the records flushed so far, and a zero
    /// length (or the end of the file) follows them in the file.
    pub written: u64,
    /// `[0, synced)` is durable. Invariant: `synced <= written`.
    pub synced: u64,
}

/// Eight zero bytes: the end-of-log mark written after every flush.
const TRAILER: [u8; 8] = [0; 8];

impl<F: SegmentFile> Active<F> {
    /// Bytes left in the file after what is written and `pending`.
    pub(crate) fn avail(&self, pending: &Pending) -> u64 {
        self.info.len - self.written - pending.len() as u64
    }

    /// Writes `pending` at the end of the segment, followed by the end-of-log
    /// mark if there is room for it, and clears it. Returns the bytes written.
    pub(crate) fn flush(&mut self, pending: &mut Pending) -> io::Result<u64> {
        if pending.is_empty() {
            return Ok(0);
        }
        let n = pending.len() as u64;
        let tail: &[u8] = if self.written + n + TRAILER.len() as u64 <= self.info.len {
            &TRAILER
        } else {
            &[]
        };
        let file = &mut self.file;
        let written = self.written;
        pending.with_slices(tail, |slices| file.write_at(written, slices))?;
        pending.clear();
        self.written += n;
        Ok(n)
    }

    /// Asks the device to start writing back what was flushed from `from`
    /// on, without waiting (a hint: durability still takes [`Self::sync`]).
    pub(crate) fn start_writeback(&mut self, from: u64) {
        self.file.start_writeback(from, self.written - from);
    }

    /// Makes everything flushed durable. Returns the bytes newly durable.
    pub(crate) fn sync(&mut self) -> io::Result<u64> {
        let n = self.written - self.synced;
        self.file.sync()?;
        self.synced = self.written;
        Ok(n)
    }
}

/// Writes `header` as the first record of `file` (the chain continues from
/// `header.prev_crc`) and syncs it. Returns the header record's CRC and end.
pub(crate) fn write_header<F: SegmentFile>(
    file: &mut F,
    header: &SegmentHeader,
) -> io::Result<(u32, u64)> {
    let mut pending = Pending::new();
    let seed = header.prev_crc ^ record::salt(header.seq);
    let (crc, len) = pending.push(Kind::Header as u8 | SYNC_BOUNDARY, seed, header);
    let mut slices = pending.slices();
    if len as u64 + TRAILER.len() as u64 <= file.len() {
        slices.push(IoSlice::new(&TRAILER));
    }
    file.write_at(0, &slices)?;
    file.sync()?;
    Ok((crc, len as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = segment_name(0x1f, 0xabc);
        assert_eq!(n, "000000000000001f-0000000000000abc.wal");
        assert_eq!(parse_segment_name(&n), Some((0x1f, 0xabc)));
        assert_eq!(parse_segment_name("1f-abc.wal"), None);
        assert_eq!(parse_segment_name(&spare_name(3)), None);
        assert_eq!(parse_spare_name(&spare_name(3)), Some(3));
        assert_eq!(parse_spare_name(&n), None);
        assert_eq!(
            parse_segment_name("000000000000001f-0000000000000abc.wal.tmp"),
            None
        );
    }
}
