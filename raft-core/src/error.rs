//! Errors returned by raft-core.

/// Errors a [`Storage`](crate::Storage) implementation returns.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The requested index is older than the storage's first index: it was
    /// compacted into a snapshot.
    #[error("requested index is unavailable due to compaction")]
    Compacted,
    /// The requested index is newer than anything the storage holds.
    #[error("requested entry at index is unavailable")]
    Unavailable,
    /// The snapshot being applied is older than the storage's current one.
    #[error("requested index is older than the existing snapshot")]
    SnapshotOutOfDate,
    /// No snapshot is ready right now; raft will ask again later.
    #[error("snapshot is temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
    /// Any other failure of the underlying store.
    #[error("storage error: {0}")]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl PartialEq for StorageError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (StorageError::Other(a), StorageError::Other(b)) => a.to_string() == b.to_string(),
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

/// Errors returned by [`RawNode`](crate::RawNode) and [`Config::validate`](crate::Config::validate).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// A proposal was dropped: no leader is known, forwarding is disabled, a
    /// leader transfer is in progress, the uncommitted log is over its size
    /// limit, or the node is not (or no longer) a member. Retry later.
    #[error("raft proposal dropped")]
    ProposalDropped,
    /// A local-only message (`Hup`, `Beat`, ...) was passed to `step`.
    #[error("raft: cannot step raft local message")]
    StepLocalMsg,
    /// A response message came from a node that is not in the configuration.
    #[error("raft: cannot step as peer not found")]
    StepPeerNotFound,
    /// The configuration is invalid; the string says which setting and why.
    #[error("invalid raft config: {0}")]
    ConfigInvalid(String),
    /// A configuration change could not be applied; the string says why.
    #[error("invalid configuration change: {0}")]
    ConfChangeInvalid(String),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The result type of raft-core.
pub type Result<T> = std::result::Result<T, Error>;
