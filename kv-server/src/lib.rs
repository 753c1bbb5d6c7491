//! kv-server library: the node loop, peer transport, client API and state machine.

pub mod api;
pub mod binary;
pub mod client_port;
pub mod config;
pub mod http;
pub mod metrics;
pub mod node;
pub mod server;
pub mod state_machine;
pub mod storage;
pub mod testing;
pub mod transport;
