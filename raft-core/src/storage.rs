//! The [`Storage`] trait through which raft reads what the application has
//! persisted, and [`MemStorage`], an in-memory implementation.

use crate::error::StorageError;
use crate::types::{ConfState, Entry, HardState, Snapshot};

/// The state raft restarts from: the persisted hard state and membership.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftState {
    /// The persisted hard state.
    pub hard_state: HardState,
    /// The membership as of the last applied configuration change (or the
    /// snapshot's, if none applied since).
    pub conf_state: ConfState,
}

/// The result type of [`Storage`] methods.
pub type StorageResult<T> = std::result::Result<T, StorageError>;

/// What raft reads from the application's stable storage.
///
/// The log in storage is the contiguous range of entries
/// `[first_index(), last_index()]`, preceded by a snapshot (or the empty
/// snapshot at index 0) whose index is `first_index() - 1` and whose term
/// `term(first_index() - 1)` returns.
///
/// raft never writes to storage: the application appends the entries and
/// hard state of each Ready to its stable storage, and this trait reads them
/// back. If any method returns an error, the raft node becomes inoperable
/// and refuses to take part in elections; the application is responsible
/// for cleanup and recovery.
pub trait Storage {
    /// The saved hard state and conf state, called once when raft starts.
    ///
    /// # Errors
    /// Any failure of the underlying store.
    fn initial_state(&self) -> StorageResult<RaftState>;

    /// The entries in `[lo, hi)`, limited to `max_size` bytes counted by
    /// [`Entry::size`] (but at least one entry if any is in range).
    ///
    /// # Errors
    /// [`StorageError::Compacted`] if `lo <= ` the snapshot index,
    /// [`StorageError::Unavailable`] if `hi > last_index() + 1`.
    fn entries(&self, lo: u64, hi: u64, max_size: u64) -> StorageResult<Vec<Entry>>;

    /// The term of the entry at `index`, which must be in
    /// `[first_index() - 1, last_index()]`.
    ///
    /// # Errors
    /// [`StorageError::Compacted`] below that range,
    /// [`StorageError::Unavailable`] above it.
    fn term(&self, index: u64) -> StorageResult<u64>;

    /// The index of the first entry still available (the snapshot index + 1).
    ///
    /// # Errors
    /// Any failure of the underlying store.
    fn first_index(&self) -> StorageResult<u64>;

    /// The index of the last entry in storage (the snapshot index if none).
    ///
    /// # Errors
    /// Any failure of the underlying store.
    fn last_index(&self) -> StorageResult<u64>;

    /// The most recent snapshot. `request_index` is the lowest index the
    /// snapshot must cover, `to` the node it is meant for.
    ///
    /// # Errors
    /// [`StorageError::SnapshotTemporarilyUnavailable`] if a snapshot is being
    /// built; raft will ask again later.
    fn snapshot(&self, request_index: u64, to: u64) -> StorageResult<Snapshot>;
}
