//! raft-core: a sans-IO implementation of the Raft consensus algorithm,
//! mirroring the design of etcd's raft library.
//!
//! raft-core does no I/O, reads no clock, starts no thread and draws no
//! randomness of its own: the application feeds a [`RawNode`] ticks,
//! messages from peers and proposals, and handles the [`Ready`] batches it
//! produces: entries and hard state to persist, messages to send, committed
//! entries to apply. The same inputs (and [`Config::seed`]) always produce
//! the same outputs, which makes it testable by deterministic simulation.
//!
//! # The log: persisted, committed, applied
//!
//! A node's log ([`raft_log::RaftLog`]) is the entries its application has
//! persisted (read through the [`Storage`] trait) followed by the entries not
//! yet persisted ([`log_unstable::Unstable`]). Three indexes move
//! independently: an entry may be committed (replicated on a quorum) before
//! this node has persisted it, and applied only after both.
//!
//! # The Ready loop
//!
//! ```
//! use raft_core::{Config, MemStorage, RawNode, ConfState, StateRole};
//!
//! // A single-node cluster: its storage starts with the membership.
//! let storage = MemStorage::new_with_conf_state(ConfState::with_voters(vec![1]));
//! let mut node = RawNode::new(&Config::new(1), storage).unwrap();
//! node.campaign().unwrap();
//!
//! let mut applied = Vec::new();
//! let mut proposed = false;
//! for _ in 0..10 {
//!     if node.raft().state() == StateRole::Leader && !proposed {
//!         node.propose(&b"hello"[..]).unwrap();
//!         proposed = true;
//!     }
//!     if !node.has_ready() {
//!         node.tick();
//!         continue;
//!     }
//!     let mut rd = node.ready();
//!     // 1. Messages in `messages()` may go out at once (none: single node).
//!     assert!(rd.messages().is_empty());
//!     // 2. Persist the snapshot, entries and hard state (sync if must_sync).
//!     let store = node.store_mut();
//!     if let Some(snap) = rd.snapshot() {
//!         store.apply_snapshot(snap.clone()).unwrap();
//!     }
//!     store.append(rd.entries()).unwrap();
//!     if let Some(hs) = rd.hard_state() {
//!         store.set_hard_state(*hs);
//!     }
//!     // 3. Now `persisted_messages()` may be sent.
//!     // 4. Apply committed entries.
//!     for entry in rd.take_committed_entries() {
//!         if !entry.data.is_empty() {
//!             applied.push(entry.data);
//!         }
//!     }
//!     // 5. Tell raft the Ready was handled.
//!     node.advance(rd);
//! }
//! assert_eq!(applied, vec![&b"hello"[..]]);
//! ```
//!
//! A multi-node cluster works the same way, with the application carrying
//! messages between nodes: see `examples/three_nodes.rs`.
//!
//! # Features
//!
//! Pre-vote and check-quorum (on by default), leader stickiness, proposal
//! forwarding, flow control (Probe/Replicate/Snapshot progress, inflight
//! limits by count and bytes), snapshots and log compaction, membership
//! changes (single and joint consensus, learners), linearizable reads
//! (ReadIndex, safe or lease-based) and leader transfer.
//!
//! With the default `serde` feature every message and log type derives
//! `Serialize` and `Deserialize`.
#![deny(missing_docs)]

pub mod confchange;
pub mod config;
pub mod error;
pub mod log_unstable;
pub mod quorum;
pub mod raft;
pub mod raft_log;
pub mod raw_node;
pub mod read_only;
pub mod status;
pub mod storage;
#[cfg(test)]
mod testutil;
pub mod tracker;
pub mod types;

pub use config::Config;
pub use error::{Error, Result, StorageError};
pub use log_unstable::Unstable;
pub use raft::Raft;
pub use raft_log::{NO_LIMIT, RaftLog};
pub use raw_node::{RawNode, Ready, SnapshotStatus};
pub use read_only::ReadOnlyOption;
pub use status::Status;
pub use storage::{MemStorage, RaftState, Storage, StorageResult};
pub use types::*;
