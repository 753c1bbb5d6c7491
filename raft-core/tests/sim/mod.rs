//! A deterministic simulation of in-memory raft clusters, after
//! TigerBeetle's VOPR and FoundationDB's simulator: one seed drives every
//! choice (cluster shape, raft options, fault rates, the event schedule),
//! time, network and disk are simulated, a fault phase checked for safety
//! after every step is followed by a liveness phase on a healed cluster, and
//! a failure names the seed that reproduces it.
//!
//! - `rng`: the seeded generator.
//! - `options`: everything a seed decides up front.
//! - `node`: one server (raft node, disk, state machine).
//! - `checker`: the global record the safety checks compare against.
//! - `cluster`: the simulation loop, network, the Ready loop, the
//!   application, the safety checks.
//! - `events`: the fault phase's random events (clients, crashes,
//!   partitions, membership changes).
//! - `liveness`: the liveness phase.

pub mod checker;
#[macro_use]
pub mod cluster;
pub mod events;
pub mod liveness;
pub mod node;
pub mod options;
pub mod rng;

use std::panic::{AssertUnwindSafe, catch_unwind};

pub use cluster::{Sim, Stats};

/// The outcome of one seed.
pub struct Failure {
    pub seed: u64,
    /// The failed check, or the panic message.
    pub reason: String,
    /// The options the seed chose, and the state of every node.
    pub context: String,
}

/// Runs one seed without a trace.
pub fn run_seed(seed: u64) -> Result<Stats, Failure> {
    let mut sim = Sim::new(seed, false);
    let res = catch_unwind(AssertUnwindSafe(|| sim.run()));
    finish(seed, sim, res).0
}

/// Runs one seed with the full trace (events, messages, role changes).
pub fn run_traced(seed: u64) -> (Result<Stats, Failure>, Vec<String>) {
    let mut sim = Sim::new(seed, true);
    let res = catch_unwind(AssertUnwindSafe(|| sim.run()));
    finish(seed, sim, res)
}

fn finish(
    seed: u64,
    mut sim: Sim,
    res: std::thread::Result<Result<(), String>>,
) -> (Result<Stats, Failure>, Vec<String>) {
    let trace = sim.trace.take().unwrap_or_default();
    let reason = match res {
        Ok(Ok(())) => return (Ok(sim.stats), trace),
        Ok(Err(reason)) => reason,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".to_string());
            format!("panic: {msg}")
        }
    };
    // A panic may leave the simulation mid-step; describing it must not
    // panic again.
    let nodes = catch_unwind(AssertUnwindSafe(|| sim.describe()))
        .unwrap_or_else(|_| "(node states unavailable)".to_string());
    let context = format!("round {}; options {:?}\n{nodes}", sim.now, sim.opts);
    (
        Err(Failure {
            seed,
            reason,
            context,
        }),
        trace,
    )
}
