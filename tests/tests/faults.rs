//! Faults under load: kill -9 of the leader and of the whole cluster,
//! SIGSTOP and SIGTERM of the leader, a follower that falls behind a
//! snapshot, and a network partition through the proxy. After each, every
//! write that was acknowledged must be there, on every node, once they
//! converge.
//!
//! Nodes snapshot every 50 entries here, so recovery after a restart goes
//! through snapshot + WAL, and catching up through snapshots, in every test.

use std::time::Duration;

use cluster_tests::client::Client;
use cluster_tests::cluster::{Cluster, ClusterOptions, NodeId};
use cluster_tests::run_test;
use cluster_tests::workload::{Writers, check_acked};

const ELECTION: Duration = Duration::from_secs(10);
const CONVERGE: Duration = Duration::from_secs(30);

fn options() -> ClusterOptions {
    ClusterOptions {
        request_timeout_ms: 2_000,
        snapshot_count: Some(50),
        ..ClusterOptions::default()
    }
}

fn clients(c: &Cluster) -> Vec<Client> {
    c.ids().iter().map(|&id| c.client(id)).collect()
}

fn snapshots_received(stats: &serde_json::Value) -> u64 {
    stats["transport"]["peers"]
        .as_object()
        .map(|peers| {
            peers
                .values()
                .map(|p| p["snapshots_received"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn leader_killed_during_writes_loses_no_acknowledged_write() {
    run_test("kill_leader", Duration::from_secs(120), |dir| async move {
        let mut c = Cluster::start(&dir, options()).await;
        let leader = c.wait_for_leader(ELECTION).await;
        let writers = Writers::start(4, clients(&c));
        writers.progress(100, "writes before the kill").await;

        c.kill(leader);
        let new_leader = c.wait_for_leader(ELECTION).await;
        assert_ne!(new_leader, leader);
        writers.progress(100, "writes with the leader dead").await;

        c.restart(leader).await;
        writers.progress(50, "writes after the restart").await;
        let acked = writers.stop().await;
        check_acked(&c, &acked, CONVERGE).await;
    });
}

#[test]
fn whole_cluster_killed_loses_no_acknowledged_write() {
    run_test("kill_all", Duration::from_secs(120), |dir| async move {
        let mut c = Cluster::start(&dir, options()).await;
        c.wait_for_leader(ELECTION).await;
        let writers = Writers::start(4, clients(&c));
        writers.progress(150, "writes before the crash").await;
        for id in c.ids() {
            c.kill(id);
        }
        let acked = writers.stop().await;
        for id in c.ids() {
            c.restart(id).await;
        }
        c.wait_for_leader(ELECTION).await;
        let data = check_acked(&c, &acked, CONVERGE).await;
        assert!(data.len() >= acked.len());

        // And the recovered cluster takes writes.
        let writers = Writers::start(2, clients(&c));
        writers.progress(20, "writes after the recovery").await;
        writers.stop().await;
    });
}

#[test]
fn paused_leader_is_replaced_and_rejoins() {
    run_test("pause_leader", Duration::from_secs(120), |dir| async move {
        let mut c = Cluster::start(&dir, options()).await;
        let leader = c.wait_for_leader(ELECTION).await;
        let writers = Writers::start(3, clients(&c));
        writers.progress(50, "writes before the pause").await;

        c.pause(leader);
        let new_leader = c.wait_for_leader(ELECTION).await;
        assert_ne!(new_leader, leader);
        writers.progress(100, "writes with the leader paused").await;

        c.resume(leader);
        // The old leader learns of the new term and follows; it is behind
        // by more than the log the leader kept, so it gets a snapshot.
        c.wait_for_leader(ELECTION).await;
        writers.progress(30, "writes after the resume").await;
        let acked = writers.stop().await;
        check_acked(&c, &acked, CONVERGE).await;
    });
}

#[test]
fn terminated_leader_exits_cleanly_and_rejoins() {
    run_test("term_leader", Duration::from_secs(120), |dir| async move {
        let mut c = Cluster::start(&dir, options()).await;
        let leader = c.wait_for_leader(ELECTION).await;
        let writers = Writers::start(3, clients(&c));
        writers.progress(50, "writes before SIGTERM").await;

        let status = c.terminate(leader).await;
        assert!(status.success(), "exit status after SIGTERM: {status}");
        c.wait_for_leader(ELECTION).await;
        writers.progress(50, "writes with the leader stopped").await;
        c.restart(leader).await;
        writers.progress(30, "writes after the restart").await;
        let acked = writers.stop().await;
        check_acked(&c, &acked, CONVERGE).await;
    });
}

#[test]
fn a_follower_down_for_long_catches_up_through_a_snapshot() {
    run_test(
        "lagging_follower",
        Duration::from_secs(120),
        |dir| async move {
            let mut c = Cluster::start(&dir, options()).await;
            let leader = c.wait_for_leader(ELECTION).await;
            let down: NodeId = c
                .live()
                .into_iter()
                .find(|&id| id != leader)
                .expect("a follower");
            c.kill(down);
            // 200 entries with 50 per snapshot and 25 kept: the leader's log no
            // longer reaches back to where the follower stopped.
            let writers = Writers::start(4, clients(&c));
            writers
                .progress(200, "writes while the follower is down")
                .await;
            let acked = writers.stop().await;
            c.restart(down).await;
            check_acked(&c, &acked, CONVERGE).await;
            let stats = c.client(down).stats().await.expect("stats");
            assert!(
                snapshots_received(&stats) >= 1,
                "node {down} got no snapshot: {stats}"
            );
        },
    );
}

#[test]
fn isolated_leader_is_replaced_and_heals() {
    run_test("partition", Duration::from_secs(120), |dir| async move {
        let opts = ClusterOptions {
            proxy: true,
            request_timeout_ms: 1_500,
            ..options()
        };
        let c = Cluster::start(&dir, opts).await;
        let old = c.wait_for_leader(ELECTION).await;
        let writers = Writers::start(3, clients(&c));
        writers.progress(30, "writes before the partition").await;

        c.proxy().isolate(old);
        c.log(&format!("isolated node {old}"));
        let majority: Vec<NodeId> = c.live().into_iter().filter(|&id| id != old).collect();
        let new = c.wait_for_leader_among(&majority, ELECTION).await;
        writers.progress(100, "writes on the majority side").await;

        // The isolated node cannot commit: a write sent to it is never
        // acknowledged (503 or 504).
        let r = c
            .client(old)
            .with_timeout(Duration::from_secs(5))
            .put("minority-write", "x")
            .await;
        assert!(
            !matches!(&r, Ok(r) if r.status == 204),
            "the isolated node acknowledged a write: {r:?}"
        );
        let dropped = c.proxy().stats(new, old).dropped + c.proxy().stats(old, new).dropped;
        assert!(
            dropped > 0,
            "the proxy dropped nothing between {old} and {new}"
        );

        c.proxy().heal();
        c.log("healed");
        writers.progress(30, "writes after healing").await;
        let acked = writers.stop().await;
        let data = check_acked(&c, &acked, CONVERGE).await;
        // The minority's entry was never committed, and the majority's
        // newer term overwrote it.
        assert_eq!(data.get("minority-write"), None);
    });
}
