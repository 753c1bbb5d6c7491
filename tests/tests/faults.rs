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
use cluster_tests::proxy::Fault;
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

#[test]
fn corrupted_peer_frames_are_refused_and_the_cluster_recovers() {
    run_test("corrupt", Duration::from_secs(120), |dir| async move {
        let opts = ClusterOptions {
            proxy: true,
            ..options()
        };
        let c = Cluster::start(&dir, opts).await;
        let leader = c.wait_for_leader(ELECTION).await;
        let writers = Writers::start(3, clients(&c));
        writers.progress(30, "writes before the corruption").await;

        // Everything the leader sends arrives as garbage: its followers
        // refuse it, hear no heartbeat, and elect another leader.
        let followers: Vec<NodeId> = c.live().into_iter().filter(|&id| id != leader).collect();
        for &f in &followers {
            c.proxy().set(leader, f, Fault::Corrupt);
        }
        c.log(&format!("corrupting everything node {leader} sends"));
        c.wait_for_leader_among(&followers, ELECTION).await;
        writers
            .progress(50, "writes while the old leader's frames are garbage")
            .await;
        c.proxy().heal();
        c.log("healed");
        writers.progress(30, "writes after healing").await;
        let acked = writers.stop().await;
        check_acked(&c, &acked, CONVERGE).await;

        for &f in &followers {
            let corrupted = c.proxy().stats(leader, f).corrupted;
            let stats = c.client(f).stats().await.expect("stats");
            let errors = stats["transport"]["protocol_errors"].as_u64().unwrap_or(0);
            assert!(
                corrupted > 0 && errors > 0,
                "node {f}: {corrupted} frames corrupted, {errors} protocol errors"
            );
        }
    });
}

#[test]
fn garbage_on_a_peer_port_is_refused() {
    use futures_util::{SinkExt, StreamExt};
    use kv_server::transport::codec::{ConnKind, Frame, FrameCodec, Hello, HelloReply};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    run_test("peer_garbage", Duration::from_secs(60), |dir| async move {
        let c = Cluster::start(&dir, options()).await;
        c.wait_for_leader(ELECTION).await;
        let victim = 1;
        let peer = c.peer_url(victim).trim_start_matches("http://").to_owned();

        // Random bytes, a huge length prefix, and a frame that decodes to
        // nothing: each closes only its own connection.
        for junk in [
            (0..512).map(|_| fastrand::u8(..)).collect::<Vec<u8>>(),
            vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
            vec![0, 0, 0, 3, 0x7f, 0x7f, 0x7f],
        ] {
            let mut s = TcpStream::connect(&peer).await.expect("connect");
            s.write_all(&junk).await.expect("write");
            let mut f = tokio_util::codec::Framed::new(s, FrameCodec::default());
            let end = tokio::time::timeout(Duration::from_secs(10), f.next()).await;
            assert!(
                matches!(end, Ok(None | Some(Err(_)))),
                "node {victim} answered garbage with {end:?}"
            );
        }
        // A hello from another cluster is refused with a reason.
        let s = TcpStream::connect(&peer).await.expect("connect");
        let mut f = tokio_util::codec::Framed::new(s, FrameCodec::default());
        f.send(Frame::Hello(Hello::new(12345, 2, victim, ConnKind::Stream)))
            .await
            .expect("send hello");
        let reply = tokio::time::timeout(Duration::from_secs(10), f.next()).await;
        assert!(
            matches!(
                reply,
                Ok(Some(Ok(Frame::HelloReply(HelloReply::Refuse { .. }))))
            ),
            "a hello from another cluster got {reply:?}"
        );

        let stats = c.client(victim).stats().await.expect("stats");
        let t = &stats["transport"];
        assert!(t["protocol_errors"].as_u64().unwrap_or(0) >= 2, "{t}");
        assert!(t["refused_handshakes"].as_u64().unwrap_or(0) >= 1, "{t}");
        // The node is unharmed and the cluster works.
        c.wait_for_leader(ELECTION).await;
        let r = c
            .client(victim)
            .put("after-garbage", "ok")
            .await
            .expect("put");
        assert_eq!(r.status, 204, "{r}");
        c.wait_converged(CONVERGE).await;
        c.assert_same_data().await;
    });
}

#[test]
fn a_follower_that_cannot_hear_the_leader_does_not_depose_it() {
    use kv_server::api::Role;
    run_test("deaf_follower", Duration::from_secs(60), |dir| async move {
        let opts = ClusterOptions {
            proxy: true,
            ..options()
        };
        let c = Cluster::start(&dir, opts).await;
        let leader = c.wait_for_leader(ELECTION).await;
        let term = c.client(leader).state().await.expect("state").term;
        let deaf: NodeId = c
            .live()
            .into_iter()
            .find(|&id| id != leader)
            .expect("a follower");

        // The follower hears nothing from the leader, but everyone hears it.
        c.proxy().partition_one_way(leader, deaf);
        c.log(&format!("node {deaf} no longer hears the leader {leader}"));
        cluster_tests::wait_until("the deaf follower to campaign", ELECTION, || async {
            let s = c.client(deaf).state().await?;
            if matches!(s.role, Role::PreCandidate | Role::Candidate) {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        })
        .await;
        // Pre-vote: the others still hear the leader, so they refuse the
        // campaign, and nobody's term moves.
        let r = c.client(leader).put("while-deaf", "1").await.expect("put");
        assert_eq!(r.status, 204, "{r}");
        for id in c.live().into_iter().filter(|&id| id != deaf) {
            let s = c.client(id).state().await.expect("state");
            assert_eq!((s.leader, s.term), (leader, term), "node {id}: {s:?}");
        }
        c.proxy().heal();
        c.log("healed");
        assert_eq!(c.wait_for_leader(ELECTION).await, leader);
        c.wait_converged(CONVERGE).await;
        let s = c.client(leader).state().await.expect("state");
        assert_eq!(s.term, term, "the term moved: {s:?}");
        c.assert_same_data().await;
    });
}

#[test]
fn a_removed_node_that_comes_back_cannot_disrupt_the_cluster() {
    use kv_server::api::Role;
    run_test(
        "removed_returns",
        Duration::from_secs(60),
        |dir| async move {
            let mut c = Cluster::start(&dir, options()).await;
            let leader = c.wait_for_leader(ELECTION).await;
            let gone: NodeId = c
                .live()
                .into_iter()
                .find(|&id| id != leader)
                .expect("a follower");
            // Down while it is removed, so it never learns of its removal.
            c.kill(gone);
            c.remove_node(leader, gone).await;
            let term = c.client(leader).state().await.expect("state").term;
            c.restart(gone).await;
            cluster_tests::wait_until("the removed node to campaign", ELECTION, || async {
                let s = c.client(gone).state().await?;
                if matches!(s.role, Role::PreCandidate | Role::Candidate) {
                    Ok(())
                } else {
                    Err(format!("{s:?}"))
                }
            })
            .await;
            let r = c
                .client(leader)
                .put("after-return", "1")
                .await
                .expect("put");
            assert_eq!(r.status, 204, "{r}");
            for id in c.live() {
                let s = c.client(id).state().await.expect("state");
                assert_eq!((s.leader, s.term), (leader, term), "node {id}: {s:?}");
            }
            let members = c.client(leader).members().await.expect("members");
            assert!(members.iter().all(|m| m.id != gone), "{members:?}");
        },
    );
}

#[test]
fn repeated_crashes_during_snapshots_lose_nothing() {
    run_test("crash_loop", Duration::from_secs(120), |dir| async move {
        // A snapshot every 20 entries: many kills land during or right
        // after one, and every restart recovers from snapshot + WAL.
        let opts = ClusterOptions {
            snapshot_count: Some(20),
            ..options()
        };
        let mut c = Cluster::start(&dir, opts).await;
        c.wait_for_leader(ELECTION).await;
        let writers = Writers::start(4, clients(&c));
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..10 {
            writers.progress(30, "writes between crashes").await;
            let ids = c.ids();
            let victim = ids[rng.usize(0..ids.len())];
            c.log(&format!("crash round {round}"));
            c.kill(victim);
            writers.progress(30, "writes with a node down").await;
            c.restart(victim).await;
        }
        writers.progress(30, "writes after the last crash").await;
        let acked = writers.stop().await;
        check_acked(&c, &acked, CONVERGE).await;
    });
}
