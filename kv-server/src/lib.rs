//! kv-server library: the node loop, peer transport, client API and state machine.
pub mod transport;
