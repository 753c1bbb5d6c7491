//! raft-core: a sans-IO implementation of the Raft consensus algorithm,
//! mirroring the design of etcd's raft library.
#![deny(missing_docs)]

pub mod confchange;
pub mod error;
pub mod quorum;
pub mod storage;
pub mod tracker;
pub mod types;

pub use error::{Error, Result, StorageError};
pub use storage::{RaftState, Storage, StorageResult};
pub use types::*;
