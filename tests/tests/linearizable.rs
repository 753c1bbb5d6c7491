//! Linearizability under faults: concurrent clients doing random get, put,
//! compare-and-set and delete on a few keys while nemeses strike, then the
//! checks of [`LinRun::finish`] (every node answers, the nodes converge,
//! no acknowledged write is lost, the history is linearizable). See
//! `tests/README.md`.
//!
//! - `lin_kill`, `lin_partition`, `lin_membership`: one nemesis on three
//!   nodes (the leader killed, the leader isolated, membership changes).
//! - `lin_nemesis`: random nemeses on three nodes for `LIN_SECS`.
//! - `lin_soak`: five nodes; cycles through every nemesis in a shuffled
//!   order, one history per cycle (its keys under `cycle-<n>/`), until
//!   `KV_SOAK_SECS` have passed. Unset, it runs one cycle: every nemesis
//!   once, which is what CI runs. `KV_LIN_SECS` is an alias.
//!
//! Each run prints its seed and a summary line. `KV_LIN_SEED` replays a
//! run's choices (their timing still depends on the machine).

use std::time::Duration;

use cluster_tests::cluster::{Cluster, ClusterOptions};
use cluster_tests::lin_run::{LinOptions, LinRun, RunSummary};
use cluster_tests::nemesis::Nemesis;
use cluster_tests::run_test;

/// The nodes' `--request-timeout-ms`.
const SERVER_TIMEOUT_MS: u64 = 1_000;

/// How long `lin_nemesis` injects random faults.
const LIN_SECS: u64 = 10;

fn seed() -> u64 {
    std::env::var("KV_LIN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

/// `KV_SOAK_SECS` (or its alias `KV_LIN_SECS`): how long `lin_soak` keeps
/// starting cycles; `None` for one cycle.
fn soak_secs() -> Option<u64> {
    ["KV_SOAK_SECS", "KV_LIN_SECS"]
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("KV_SOAK_SECS={s:?} is not a number of seconds"))
        })
}

fn options(nodes: usize) -> ClusterOptions {
    ClusterOptions {
        nodes,
        proxy: true,
        request_timeout_ms: SERVER_TIMEOUT_MS,
        // Restarted and new nodes recover from, and catch up through,
        // snapshots.
        snapshot_count: Some(100),
        ..ClusterOptions::default()
    }
}

/// One run on three nodes with these nemeses, in order.
fn run_nemeses(name: &'static str, nemeses: &'static [Nemesis]) {
    run_test(name, Duration::from_secs(240), |dir| async move {
        let seed = seed();
        eprintln!("[{name}] seed {seed}");
        let mut c = Cluster::start(&dir, options(3)).await;
        let mut run = LinRun::start(&mut c, name, seed, LinOptions::new(SERVER_TIMEOUT_MS)).await;
        for &n in nemeses {
            run.inject(n).await;
        }
        run.finish().await;
    });
}

#[test]
fn linearizable_across_a_leader_kill() {
    run_nemeses("lin_kill", &[Nemesis::KillLeader]);
}

#[test]
fn linearizable_across_a_partition() {
    run_nemeses("lin_partition", &[Nemesis::IsolateLeader]);
}

#[test]
fn linearizable_under_membership_changes() {
    // Twice: the second round starts from a cluster whose members were all
    // replaced or added by the first.
    run_nemeses(
        "lin_membership",
        &[Nemesis::Membership, Nemesis::Membership],
    );
}

#[test]
fn linearizable_under_mixed_faults() {
    run_test("lin_nemesis", Duration::from_secs(240), |dir| async move {
        let seed = seed();
        eprintln!("[lin_nemesis] seed {seed}");
        let mut c = Cluster::start(&dir, options(3)).await;
        let mut run = LinRun::start(
            &mut c,
            "lin_nemesis",
            seed,
            LinOptions::new(SERVER_TIMEOUT_MS),
        )
        .await;
        let until = tokio::time::Instant::now() + Duration::from_secs(LIN_SECS);
        while tokio::time::Instant::now() < until {
            run.inject_random(&Nemesis::ALL).await;
        }
        run.finish().await;
    });
}

#[test]
fn soak_cycles_through_every_nemesis() {
    let secs = soak_secs();
    // A cycle takes about a minute in a debug build; the last one starts
    // before the time is up and may take several on a loaded machine.
    let limit = Duration::from_secs(secs.unwrap_or(0) + 600);
    run_test("lin_soak", limit, |dir| async move {
        let seed = seed();
        eprintln!(
            "[lin_soak] seed {seed}, {}",
            match secs {
                Some(s) => format!("cycles for {s} s"),
                None => "one cycle (KV_SOAK_SECS unset)".to_owned(),
            }
        );
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut c = Cluster::start(&dir, options(5)).await;
        let started = tokio::time::Instant::now();
        let deadline = started + Duration::from_secs(secs.unwrap_or(0));
        let mut total = RunSummary::default();
        let mut cycles = 0;
        loop {
            cycles += 1;
            let mut order = Nemesis::ALL;
            rng.shuffle(&mut order);
            let opts = LinOptions {
                prefix: format!("cycle-{cycles}/"),
                ..LinOptions::new(SERVER_TIMEOUT_MS)
            };
            let name = format!("lin_soak cycle {cycles}");
            let mut run = LinRun::start(&mut c, &name, rng.u64(..), opts).await;
            for n in order {
                run.inject(n).await;
            }
            total.add(&run.finish().await);
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        eprintln!(
            "[lin_soak] seed {seed}: {cycles} cycle(s) in {:.0?}, nodes now {:?}; total: {total}",
            started.elapsed(),
            c.live()
        );
    });
}
