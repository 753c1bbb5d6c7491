//! Free loopback ports for nodes that bind them themselves.
//!
//! Judgement call: the usual trick, bind `127.0.0.1:0`, take the port and
//! release it, hands out a port from the kernel's ephemeral range, and any
//! outgoing connection made before the node binds it (the peers' redials,
//! the test's own HTTP requests: thousands per test) may be given the same
//! port as its local end, so the node's bind fails. That window reopens on
//! every restart of a node, which must reuse its ports. So ports are drawn
//! at random *below* the ephemeral range, where the kernel never picks on
//! its own, each one checked by binding it, and never handed out twice by
//! this process. Ports the harness itself keeps bound (the proxies') do
//! come from `127.0.0.1:0`.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Mutex;

/// Ports handed out by this process.
static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// The lowest port of the kernel's ephemeral range (Linux: the first field
/// of `/proc/sys/net/ipv4/ip_local_port_range`; 32768 if unreadable).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// A loopback address whose port is free now and was not handed out before
/// by this process.
///
/// # Panics
/// If no free port is found in 10,000 tries.
pub fn free_addr() -> SocketAddr {
    // Stay clear of the well-known kv-server defaults (12379, 12380).
    let (lo, hi) = (20_000u16, ephemeral_low().max(20_100));
    let mut taken = TAKEN.lock().expect("ports lock");
    let taken = taken.get_or_insert_with(HashSet::new);
    for _ in 0..10_000 {
        let port = fastrand::u16(lo..hi);
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            taken.insert(port);
            return SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        }
    }
    panic!("no free loopback port found in {lo}..{hi}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let addrs: Vec<SocketAddr> = (0..50).map(|_| free_addr()).collect();
        let unique: HashSet<_> = addrs.iter().collect();
        assert_eq!(unique.len(), addrs.len());
        for a in &addrs {
            assert!(a.port() < ephemeral_low().max(20_100));
            TcpListener::bind(a).expect("still free");
        }
    }
}
