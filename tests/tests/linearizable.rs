//! Short linearizability runs: concurrent clients doing random get, put,
//! compare-and-set and delete on a few keys while the cluster suffers a
//! fault, then the recorded history is checked.
//!
//! Each run prints its seed, the operation counts and the verdict. To
//! replay a run's client choices and faults, set `KV_LIN_SEED` (their
//! timing still depends on the machine). `KV_LIN_SECS` sets the length of
//! the mixed-faults run (default 10 s), for a soak outside CI.

use std::time::Duration;

use cluster_tests::cluster::{Cluster, ClusterOptions};
use cluster_tests::linearizability::{Recorder, check};
use cluster_tests::proxy::Fault;
use cluster_tests::workload::{NodeSet, RegisterWorkload, register_client};
use cluster_tests::{run_test, wait_until};

const ELECTION: Duration = Duration::from_secs(10);
const CLIENTS: u64 = 5;
const KEYS: usize = 5;
const RUN: Duration = Duration::from_secs(5);

/// `KV_LIN_SECS`: the length of a soak run of the mixed faults (0: none).
fn soak_secs() -> u64 {
    std::env::var("KV_LIN_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
}

fn seed() -> u64 {
    std::env::var("KV_LIN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

/// The clients of a run: the nodes they use (the test updates them when
/// membership changes), their tasks, and when they stop.
struct Clients {
    nodes: NodeSet,
    tasks: Vec<tokio::task::JoinHandle<usize>>,
    until: tokio::time::Instant,
}

/// Starts the clients on every node; they stop on their own after `run`.
/// `server_timeout_ms` is the nodes' `--request-timeout-ms`.
fn start_clients(
    c: &Cluster,
    recorder: &Recorder,
    seed: u64,
    run: Duration,
    server_timeout_ms: u64,
) -> Clients {
    let until = tokio::time::Instant::now() + run;
    let workload = RegisterWorkload {
        keys: (0..KEYS).map(|k| format!("lin-{k}")).collect(),
        until,
        // Above the server's timeout, so that a live node answers 504
        // first; a paused node answers nothing, and this is how long a
        // client waits for it.
        request_timeout: Duration::from_millis(server_timeout_ms + 1_500),
    };
    let nodes = NodeSet::new(c.live().iter().map(|&id| c.client(id)).collect());
    let tasks = (0..CLIENTS)
        .map(|client| {
            tokio::spawn(register_client(
                client,
                nodes.clone(),
                workload.clone(),
                recorder.clone(),
                seed ^ client.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ))
        })
        .collect();
    Clients {
        nodes,
        tasks,
        until,
    }
}

/// Waits until the history holds `n` more operations, or the clients
/// stopped (so that a fault started near the end of a run does not wait
/// for operations that will never come).
async fn ops_grow(recorder: &Recorder, clients: &Clients, n: usize, what: &str) {
    let target = recorder.len() + n;
    wait_until(what, Duration::from_secs(20), || async {
        let len = recorder.len();
        if len >= target || tokio::time::Instant::now() >= clients.until {
            Ok(())
        } else {
            Err(format!("{len} of {target} operations"))
        }
    })
    .await;
}

/// Joins the clients, checks the history, prints the summary, and fails on
/// anything but "linearizable".
async fn finish(name: &str, seed: u64, c: &Cluster, recorder: &Recorder, clients: Clients) {
    for t in clients.tasks {
        t.await.expect("a register client panicked");
    }
    c.wait_converged(Duration::from_secs(30)).await;
    c.assert_same_data().await;
    let history = recorder.history();
    let started = std::time::Instant::now();
    let report = check(&history);
    eprintln!(
        "[{name}] seed {seed}: {} ops: {} ok, {} fail, {} indeterminate; verdict: {} (checked in {:.1?})",
        report.ops,
        report.ok,
        report.failed,
        report.indeterminate,
        report.verdict(),
        started.elapsed()
    );
    if !report.is_linearizable() {
        let path = c.dir().join("history.txt");
        let text: String = history.iter().map(|o| format!("{o}\n")).collect();
        std::fs::write(&path, text).expect("writing the history");
        panic!(
            "[{name}] seed {seed}: {report}\nhistory written to {}",
            path.display()
        );
    }
    assert!(
        report.ok > 100,
        "too few operations succeeded to say anything: {report}"
    );
}

#[test]
fn linearizable_across_a_leader_kill() {
    run_test("lin_kill", Duration::from_secs(120), |dir| async move {
        let seed = seed();
        eprintln!("[lin_kill] seed {seed}");
        let opts = ClusterOptions {
            request_timeout_ms: 2_000,
            ..ClusterOptions::default()
        };
        let mut c = Cluster::start(&dir, opts).await;
        let leader = c.wait_for_leader(ELECTION).await;
        let recorder = Recorder::new();
        let clients = start_clients(&c, &recorder, seed, RUN, 2_000);

        ops_grow(&recorder, &clients, 100, "operations before the kill").await;
        c.kill(leader);
        c.wait_for_leader(ELECTION).await;
        c.restart(leader).await;
        finish("lin_kill", seed, &c, &recorder, clients).await;
    });
}

#[test]
fn linearizable_across_a_partition() {
    run_test(
        "lin_partition",
        Duration::from_secs(120),
        |dir| async move {
            let seed = seed();
            eprintln!("[lin_partition] seed {seed}");
            let opts = ClusterOptions {
                proxy: true,
                request_timeout_ms: 1_000,
                ..ClusterOptions::default()
            };
            let c = Cluster::start(&dir, opts).await;
            let leader = c.wait_for_leader(ELECTION).await;
            let recorder = Recorder::new();
            let clients = start_clients(&c, &recorder, seed, RUN, 1_000);

            ops_grow(&recorder, &clients, 100, "operations before the partition").await;
            c.proxy().isolate(leader);
            c.log(&format!("isolated node {leader}"));
            let majority: Vec<u64> = c.live().into_iter().filter(|&id| id != leader).collect();
            c.wait_for_leader_among(&majority, ELECTION).await;
            ops_grow(&recorder, &clients, 100, "operations during the partition").await;
            c.proxy().heal();
            c.log("healed");
            finish("lin_partition", seed, &c, &recorder, clients).await;
        },
    );
}

/// One fault of the nemesis, held until the clients have done `HOLD` more
/// operations, then repaired.
async fn nemesis_step(
    c: &mut Cluster,
    rng: &mut fastrand::Rng,
    recorder: &Recorder,
    clients: &Clients,
) {
    const HOLD: usize = 60;
    let live = c.live();
    let leader = c.wait_for_leader(ELECTION).await;
    let others: Vec<u64> = live.iter().copied().filter(|&id| id != leader).collect();
    let follower = others[rng.usize(0..others.len())];
    match rng.u8(0..9) {
        0 => {
            c.log(&format!("nemesis: isolate the leader {leader}"));
            c.proxy().isolate(leader);
            c.wait_for_leader_among(&others, ELECTION).await;
            ops_grow(
                recorder,
                clients,
                HOLD,
                "operations with the leader isolated",
            )
            .await;
            c.proxy().heal();
        }
        1 => {
            let victim = live[rng.usize(0..live.len())];
            c.log(&format!("nemesis: kill -9 node {victim}"));
            c.kill(victim);
            ops_grow(recorder, clients, HOLD, "operations with a node dead").await;
            c.restart(victim).await;
        }
        2 => {
            c.log(&format!("nemesis: SIGSTOP the leader {leader}"));
            c.pause(leader);
            c.wait_for_leader_among(&others, ELECTION).await;
            ops_grow(recorder, clients, HOLD, "operations with the leader paused").await;
            c.resume(leader);
        }
        3 => {
            c.log(&format!(
                "nemesis: the leader {leader} can receive but not send"
            ));
            for &o in &others {
                c.proxy().partition_one_way(leader, o);
            }
            c.wait_for_leader_among(&others, ELECTION).await;
            ops_grow(recorder, clients, HOLD, "operations with the leader mute").await;
            c.proxy().heal();
        }
        4 => {
            let d = Duration::from_millis(rng.u64(10..60));
            c.log(&format!("nemesis: delay every link by {d:?}"));
            for &a in &live {
                for &b in &live {
                    if a != b {
                        c.proxy().set(a, b, Fault::Delay(d));
                    }
                }
            }
            ops_grow(recorder, clients, HOLD, "operations with slow links").await;
            c.proxy().heal();
        }
        5 => {
            c.log("nemesis: kill -9 every node");
            for &id in &live {
                c.kill(id);
            }
            for &id in &live {
                c.restart(id).await;
            }
            c.wait_for_leader(ELECTION).await;
            ops_grow(
                recorder,
                clients,
                HOLD,
                "operations after the whole cluster restarted",
            )
            .await;
        }
        6 => {
            c.log(&format!("nemesis: transfer leadership to {follower}"));
            let r = c
                .client(leader)
                .transfer_leader(follower)
                .await
                .map(|r| r.to_string());
            // A transfer may fail under load (503); it must not break anything.
            c.log(&format!("nemesis: transfer answered {r:?}"));
            ops_grow(recorder, clients, HOLD, "operations after a transfer").await;
        }
        7 => {
            c.log(&format!(
                "nemesis: replace follower {follower} with a new node"
            ));
            c.remove_node(leader, follower).await;
            c.kill(follower);
            let rest: Vec<u64> = c.live();
            let leader = c.wait_for_leader_among(&rest, ELECTION).await;
            let new = c.add_node(leader).await;
            c.log(&format!("nemesis: node {new} replaced node {follower}"));
            clients
                .nodes
                .set(c.live().iter().map(|&id| c.client(id)).collect());
            c.log(&format!("nemesis: clients now use nodes {:?}", c.live()));
            ops_grow(recorder, clients, HOLD, "operations after a replacement").await;
        }
        _ => {
            c.log(&format!(
                "nemesis: partition follower {follower} from the leader {leader}"
            ));
            c.proxy().partition(leader, follower);
            ops_grow(
                recorder,
                clients,
                HOLD,
                "operations with a follower cut off",
            )
            .await;
            c.proxy().heal();
        }
    }
    c.log("nemesis: repaired");
}

#[test]
fn linearizable_under_mixed_faults() {
    run_test(
        "lin_nemesis",
        Duration::from_secs(150 + soak_secs()),
        |dir| async move {
            let seed = seed();
            eprintln!("[lin_nemesis] seed {seed}");
            let mut rng = fastrand::Rng::with_seed(seed);
            let opts = ClusterOptions {
                proxy: true,
                request_timeout_ms: 1_000,
                snapshot_count: Some(100),
                ..ClusterOptions::default()
            };
            let mut c = Cluster::start(&dir, opts).await;
            c.wait_for_leader(ELECTION).await;
            let recorder = Recorder::new();
            let run = Duration::from_secs(match soak_secs() {
                0 => 10,
                n => n,
            });
            let clients = start_clients(&c, &recorder, seed, run, 1_000);
            ops_grow(&recorder, &clients, 50, "operations before the first fault").await;
            // Leave the last seconds fault-free, so the run ends healed.
            while tokio::time::Instant::now() + Duration::from_secs(3) < clients.until {
                nemesis_step(&mut c, &mut rng, &recorder, &clients).await;
            }
            finish("lin_nemesis", seed, &c, &recorder, clients).await;
        },
    );
}
