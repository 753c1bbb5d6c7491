//! raft-core: a sans-IO implementation of the Raft consensus algorithm,
//! mirroring the design of etcd's raft library.
#![deny(missing_docs)]

pub mod error;
pub mod log_unstable;
pub mod raft_log;
pub mod storage;
pub mod types;

pub use error::{Error, Result, StorageError};
pub use log_unstable::Unstable;
pub use raft_log::{NO_LIMIT, RaftLog};
pub use storage::{MemStorage, RaftState, Storage, StorageResult};
pub use types::*;
