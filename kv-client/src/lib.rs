//! The client of the kv store: the library the `kv-client` command is built on.
//!
//! [`Client`] speaks the `KVB1` binary protocol of `kv-server`'s client port (see
//! [`kv_server::binary`]): many concurrent calls are pipelined over one connection, which goes
//! to the raft leader when the client can find it among the endpoints, and calls fail over
//! between endpoints with a retry policy that never repeats a write that may have been
//! applied (see [`client`]). [`bench`](mod@bench) is the load generator behind `kv-client bench`,
//! over the binary protocol or HTTP/1.1.
//!
//! ```no_run
//! use kv_client::{Client, ClientOptions, Condition};
//!
//! # async fn demo() -> Result<(), kv_client::Error> {
//! let endpoints = ["http://127.0.0.1:12380", "http://127.0.0.1:22380"];
//! let client = Client::connect(endpoints, ClientOptions::default()).await?;
//!
//! client.put("config/mode", "fast").await?;
//! let changed = client
//!     .cas("config/mode", "safe", Condition::PrevValue("fast".into()))
//!     .await?;
//! assert!(changed);
//!
//! // Calls from many tasks share the connection; their requests are pipelined.
//! let gets: Vec<_> = (0..100)
//!     .map(|_| {
//!         let client = client.clone();
//!         tokio::spawn(async move { client.get("config/mode").await })
//!     })
//!     .collect();
//! for get in gets {
//!     assert_eq!(get.await.unwrap()?.as_deref(), Some(&b"safe"[..]));
//! }
//! # Ok(()) }
//! ```
//!
//! Errors are [`Error`]s; [`Error::exit_code`] is what the CLI exits with.

#![deny(missing_docs)]

pub mod bench;
pub mod client;
mod duration;
mod http1;

pub use client::{Client, ClientOptions, DEFAULT_ENDPOINT, Endpoint, Error};
pub use duration::parse_duration;
/// The request and response types of the API, shared with the server.
pub use kv_server::api;
pub use kv_server::api::{
    Condition, Consistency, Health, ListItem, ListRequest, ListResponse, Member, NodeState, Role,
};
