//! Everything a seed decides before the run starts: cluster shape, raft
//! configuration knobs, fault rates and client load. Printed with every
//! failure, so that a report says what kind of run broke, not only its seed.

use raft_core::{Config, ReadOnlyOption};

use super::rng::{Rng, splitmix64};

/// The options of one simulated run.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    /// Voters at bootstrap (ids `1..=size`).
    pub size: u64,
    /// Ids `size+1..=size+spare` may be added by membership changes (an id
    /// is never reused once removed, as in etcd).
    pub spare: u64,
    /// The index of the bootstrap snapshot that carries the initial
    /// membership: 1, or 0 (`MemStorage::new_with_conf_state`) in runs
    /// without spare ids. A node that joins later starts with an empty log
    /// and must catch up by snapshot: from an index-0 bootstrap it would
    /// replay the log from index 1 and apply every membership change to an
    /// empty membership (raft-rs's examples bootstrap at index 1 for the
    /// same reason).
    pub bootstrap_index: u64,

    // ---- raft configuration ----
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    pub pre_vote: bool,
    pub check_quorum: bool,
    pub read_only: ReadOnlyOption,
    pub max_size_per_msg: u64,
    pub max_committed_size_per_ready: u64,
    pub max_uncommitted_size: u64,
    pub max_inflight_msgs: usize,
    pub max_inflight_bytes: u64,
    pub step_down_on_removal: bool,

    // ---- time ----
    /// Simulation rounds per raft tick: message delays and disk latency are
    /// counted in rounds, so a message can take a fraction of a tick.
    pub rounds_per_tick: u64,
    /// Messages take `[0, max_delay]` rounds.
    pub max_delay: u64,
    /// Chance that a message leaves its link's order (may overtake and be
    /// overtaken); the others are delivered in order per link, as over TCP.
    pub reorder_rate: f64,
    /// Chance that a message is held back much longer: up to three
    /// election timeouts (a stale message arriving in a later term).
    pub long_delay: f64,
    /// Chance that a node misses a tick (clock skew between nodes).
    pub tick_skip: f64,
    /// Rounds of the fault phase.
    pub fault_rounds: u64,

    // ---- faults (per message or per round) ----
    pub drop_rate: f64,
    pub dup_rate: f64,
    /// Chance per round that a partition starts (when none is active).
    pub partition_rate: f64,
    /// Chance per round that an active partition heals.
    pub heal_rate: f64,
    /// Chance per round that a node crashes.
    pub crash_rate: f64,
    /// Chance per round that a crashed node restarts.
    pub restart_rate: f64,
    /// Chance that a node crashes right after taking a Ready, before
    /// persisting it (the window the two-step Ready handling opens).
    pub crash_after_take: f64,
    /// Chance that the sender learns of a dropped message
    /// (`report_unreachable`).
    pub report_unreachable: f64,
    /// Chance that a delivered snapshot is still reported as failed.
    pub snap_fail: f64,
    /// Chance per round that a random node's storage starts (or stops)
    /// answering `snapshot()` with `SnapshotTemporarilyUnavailable`, as a
    /// store still building a snapshot does.
    pub snap_unavailable: f64,

    // ---- storage ----
    /// Chance that a Ready's `messages()` are sent before its entries and
    /// hard state are persisted (Raft thesis §10.2.1), instead of after.
    pub early_send: f64,
    /// A taken Ready is persisted `[0, disk_delay]` rounds later; a crash in
    /// between loses it.
    pub disk_delay: u64,

    // ---- application ----
    /// Applied entries between two snapshots of the state machine.
    pub snapshot_interval: u64,
    /// After a snapshot the log is compacted up to `[0, compact_keep]`
    /// entries before it (0 keeps none: lagging followers need MsgSnap).
    pub compact_keep: u64,
    /// Chance that the application persists its state machine (with its
    /// applied index) after applying a Ready.
    pub checkpoint_rate: f64,

    // ---- clients (chance per round) ----
    pub propose_rate: f64,
    /// Proposals come in bursts of `[1, propose_burst]` (to fill pipelines
    /// and hit the inflight and uncommitted-size limits).
    pub propose_burst: u64,
    pub read_rate: f64,
    pub conf_change_rate: f64,
    pub transfer_rate: f64,
    pub campaign_rate: f64,
    /// Largest proposal payload in bytes.
    pub max_payload: u64,
}

impl Options {
    /// Draws every option from `seed`. Each knob gets a share of runs at an
    /// extreme (no faults, many faults, tiny messages, ...) rather than only
    /// middling values: most bugs hide at the edges.
    pub fn from_seed(seed: u64) -> Options {
        let mut sm = seed;
        let mut rng = Rng::new(splitmix64(&mut sm));
        let r = &mut rng;
        let check_quorum = r.chance(0.7);
        let read_only = if check_quorum && r.chance(0.25) {
            ReadOnlyOption::LeaseBased
        } else {
            ReadOnlyOption::Safe
        };
        let max_size_per_msg = [1, 64, 512, 1024 * 1024][r.below(4) as usize];
        let max_inflight_bytes = match r.below(3) {
            0 => 0,
            _ => max_size_per_msg * r.range(1, 8),
        };
        let rounds_per_tick = r.range(1, 4);
        let rate = |r: &mut Rng, hi: f64| {
            // A quarter of the runs without this fault at all.
            if r.chance(0.25) {
                0.0
            } else {
                hi * (r.below(1000) as f64 / 1000.0)
            }
        };
        let spare = r.range(0, 4);
        Options {
            seed,
            size: if r.chance(0.5) { 3 } else { 5 },
            spare,
            bootstrap_index: if spare == 0 && r.chance(0.5) { 0 } else { 1 },
            election_tick: [5, 10, 10, 20][r.below(4) as usize],
            heartbeat_tick: r.range(1, 2) as usize,
            pre_vote: r.chance(0.7),
            check_quorum,
            read_only,
            max_size_per_msg,
            max_committed_size_per_ready: [0, 0, 1, 200][r.below(4) as usize],
            max_uncommitted_size: [0, 0, 0, 300][r.below(4) as usize],
            max_inflight_msgs: [1, 2, 4, 256][r.below(4) as usize],
            max_inflight_bytes,
            step_down_on_removal: r.chance(0.8),
            rounds_per_tick,
            max_delay: r.range(0, 2 * rounds_per_tick),
            reorder_rate: [0.0, 0.1, 0.5, 1.0][r.below(4) as usize],
            long_delay: rate(r, 0.02),
            tick_skip: rate(r, 0.2),
            fault_rounds: r.range(150, 300) * rounds_per_tick.min(2),
            drop_rate: rate(r, 0.15),
            dup_rate: rate(r, 0.1),
            partition_rate: rate(r, 0.02),
            heal_rate: 0.02 + r.below(100) as f64 / 1000.0,
            crash_rate: rate(r, 0.01),
            restart_rate: 0.02 + r.below(300) as f64 / 1000.0,
            crash_after_take: rate(r, 0.01),
            report_unreachable: r.below(1001) as f64 / 1000.0,
            snap_fail: rate(r, 0.3),
            snap_unavailable: rate(r, 0.05),
            early_send: [0.0, 0.5, 1.0][r.below(3) as usize],
            disk_delay: [0, 0, 1, 3][r.below(4) as usize],
            snapshot_interval: r.range(3, 40),
            compact_keep: [0, 0, 2, 10][r.below(4) as usize],
            checkpoint_rate: [0.0, 0.2, 1.0][r.below(3) as usize],
            propose_rate: 0.05 + r.below(500) as f64 / 1000.0,
            propose_burst: [1, 1, 3, 10][r.below(4) as usize],
            read_rate: rate(r, 0.3),
            conf_change_rate: rate(r, 0.1),
            transfer_rate: rate(r, 0.03),
            campaign_rate: rate(r, 0.01),
            max_payload: [0, 16, 100, 400][r.below(4) as usize],
        }
    }

    /// The raft configuration of node `id` in its `incarnation`-th life: a
    /// fresh election-timeout seed per life, so that a restart does not
    /// replay the same timeouts.
    pub fn config(&self, id: u64, incarnation: u64, applied: u64) -> Config {
        let mut sm = self.seed ^ id.rotate_left(32) ^ incarnation.rotate_left(48);
        Config {
            election_tick: self.election_tick,
            heartbeat_tick: self.heartbeat_tick,
            applied,
            max_size_per_msg: self.max_size_per_msg,
            max_committed_size_per_ready: self.max_committed_size_per_ready,
            max_uncommitted_entries_size: self.max_uncommitted_size,
            max_inflight_msgs: self.max_inflight_msgs,
            max_inflight_bytes: self.max_inflight_bytes,
            check_quorum: self.check_quorum,
            pre_vote: self.pre_vote,
            read_only_option: self.read_only,
            step_down_on_removal: self.step_down_on_removal,
            seed: splitmix64(&mut sm),
            ..Config::new(id)
        }
    }
}
