//! Three-node clusters of real processes: replication, forwarding,
//! membership changes and leader transfer.

use std::time::Duration;

use cluster_tests::client::{Client, ClientError, Response};
use cluster_tests::cluster::{Cluster, ClusterOptions, NodeId};
use cluster_tests::linearizability::Cond;
use cluster_tests::workload::{Writers, check_acked};
use cluster_tests::{run_test, wait_until};

const ELECTION: Duration = Duration::from_secs(10);
const CONVERGE: Duration = Duration::from_secs(20);

fn expect_status(what: &str, r: Result<Response, ClientError>, status: u16) -> Response {
    let r = r.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(r.status, status, "{what}: {r}");
    r
}

fn follower(c: &Cluster, leader: NodeId) -> NodeId {
    c.live()
        .into_iter()
        .find(|&id| id != leader)
        .expect("a follower")
}

#[test]
fn writes_on_any_node_are_read_on_every_node() {
    run_test("replication", Duration::from_secs(90), |dir| async move {
        let c = Cluster::start(&dir, ClusterOptions::default()).await;
        let leader = c.wait_for_leader(ELECTION).await;
        let f = follower(&c, leader);

        // /members and /health agree with /state about the leader.
        for id in c.ids() {
            let members = c.client(id).members().await.expect("members");
            let ids: Vec<NodeId> = members.iter().map(|m| m.id).collect();
            assert_eq!(ids, vec![1, 2, 3], "members on node {id}");
            let leaders: Vec<NodeId> = members.iter().filter(|m| m.leader).map(|m| m.id).collect();
            assert_eq!(
                leaders,
                vec![leader],
                "leader flags on node {id}: {members:?}"
            );
            assert!(
                members
                    .iter()
                    .all(|m| m.voter && m.peer_url == c.peer_url(m.id))
            );
            let h = c.client(id).health().await.expect("health");
            assert_eq!(h.status, 200, "{h}");
            let body: serde_json::Value = h.json().expect("health JSON");
            assert_eq!(body["leader"], leader, "{body}");
        }

        // A write on node 1 (leader or not) is read on all three, both
        // linearizably and, once applied there, from local state.
        expect_status("PUT k1 on node 1", c.client(1).put("k1", "v1").await, 204);
        for id in c.ids() {
            let r = expect_status("GET k1", c.client(id).get("k1").await, 200);
            assert_eq!(r.text(), "v1", "node {id}");
            wait_until("k1 applied locally", CONVERGE, || async {
                match c.client(id).get_serializable("k1").await {
                    Ok(r) if r.status == 200 && r.text() == "v1" => Ok(()),
                    other => Err(format!("node {id}: {other:?}")),
                }
            })
            .await;
        }

        // A write sent to a follower is forwarded, and answered once applied.
        expect_status(
            "PUT k2 on a follower",
            c.client(f).put("k2", "v2").await,
            204,
        );
        let r = expect_status(
            "GET k2 on the leader",
            c.client(leader).get("k2").await,
            200,
        );
        assert_eq!(r.text(), "v2");

        // Compare-and-set and delete through the follower.
        let fc = c.client(f);
        expect_status(
            "CAS with a wrong prev_value",
            fc.cas("k2", "v3", &Cond::PrevValue("nope".into())).await,
            412,
        );
        expect_status(
            "CAS with the right prev_value",
            fc.cas("k2", "v3", &Cond::PrevValue("v2".into())).await,
            204,
        );
        expect_status(
            "CAS prev_exist=false on a present key",
            fc.cas("k2", "v4", &Cond::PrevExist(false)).await,
            412,
        );
        expect_status(
            "CAS prev_exist=false on an absent key",
            fc.cas("k3", "v4", &Cond::PrevExist(false)).await,
            204,
        );
        let r = expect_status("GET k2", c.client(leader).get("k2").await, 200);
        assert_eq!(r.text(), "v3");
        expect_status("DELETE k2", fc.delete("k2").await, 204);
        expect_status("DELETE k2 again", fc.delete("k2").await, 404);
        expect_status("GET deleted k2", c.client(leader).get("k2").await, 404);

        // The raftexample routes at the root share the namespace.
        expect_status(
            "PUT /root-key",
            fc.request("PUT", "/root-key", b"r").await,
            204,
        );
        let r = expect_status(
            "GET /keys/root-key",
            c.client(leader).get("root-key").await,
            200,
        );
        assert_eq!(r.text(), "r");

        c.wait_converged(CONVERGE).await;
        let data = c.assert_same_data().await;
        let expected: Vec<(&str, &str)> = vec![("k1", "v1"), ("k3", "v4"), ("root-key", "r")];
        let got: Vec<(&str, &str)> = data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, expected);
    });
}

#[test]
fn a_joining_node_catches_up_through_a_snapshot() {
    run_test(
        "join_snapshot",
        Duration::from_secs(120),
        |dir| async move {
            let opts = ClusterOptions {
                snapshot_count: Some(50),
                ..ClusterOptions::default()
            };
            let mut c = Cluster::start(&dir, opts).await;
            let leader = c.wait_for_leader(ELECTION).await;

            // 300 keys from 8 concurrent writers, spread over the nodes.
            let mut writers = Vec::new();
            for w in 0..8u64 {
                let clients: Vec<Client> = c.ids().iter().map(|&id| c.client(id)).collect();
                writers.push(tokio::spawn(async move {
                    for i in (w..300).step_by(8) {
                        let node = &clients[i as usize % clients.len()];
                        let key = format!("key-{i:03}");
                        let r = node.put(&key, &format!("value-{i}")).await;
                        let r = r.unwrap_or_else(|e| panic!("PUT {key}: {e}"));
                        assert_eq!(r.status, 204, "PUT {key}: {r}");
                    }
                }));
            }
            for w in writers {
                w.await.expect("writer");
            }

            let new = c.add_node(leader).await;
            assert_eq!(new, 4);
            c.wait_converged(CONVERGE).await;
            let data = c.assert_same_data().await;
            assert_eq!(data.len(), 300);
            for i in 0..300 {
                assert_eq!(data[&format!("key-{i:03}")], format!("value-{i}"));
            }

            // The leader had compacted its log (every 50 entries, keeping 25),
            // so node 4 can only have caught up from a snapshot.
            let stats = c.client(new).stats().await.expect("stats of node 4");
            let received: u64 = stats["transport"]["peers"]
                .as_object()
                .expect("peers")
                .values()
                .map(|p| p["snapshots_received"].as_u64().unwrap_or(0))
                .sum();
            assert!(received >= 1, "node 4 received no snapshot: {stats}");

            // It serves linearizable reads and takes writes, as a full member.
            let r = expect_status("GET on node 4", c.client(new).get("key-123").await, 200);
            assert_eq!(r.text(), "value-123");
            expect_status(
                "PUT on node 4",
                c.client(new).put("after-join", "x").await,
                204,
            );
            let members = c.client(new).members().await.expect("members");
            assert_eq!(
                members.iter().map(|m| m.id).collect::<Vec<_>>(),
                vec![1, 2, 3, 4]
            );
            assert!(members.iter().all(|m| m.voter));
            c.wait_converged(CONVERGE).await;
            c.assert_same_data().await;
        },
    );
}

#[test]
fn a_removed_node_leaves_and_the_cluster_keeps_working() {
    run_test("remove_node", Duration::from_secs(90), |dir| async move {
        let mut c = Cluster::start(&dir, ClusterOptions::default()).await;
        let leader = c.wait_for_leader(ELECTION).await;
        let gone = follower(&c, leader);
        expect_status("PUT before", c.client(leader).put("before", "1").await, 204);

        c.remove_node(leader, gone).await;
        for id in c.live() {
            wait_until("the removed node to leave /members", CONVERGE, || async {
                let m = c.client(id).members().await?;
                if m.iter().any(|m| m.id == gone) {
                    Err(format!("node {id} still lists node {gone}: {m:?}"))
                } else {
                    Ok(())
                }
            })
            .await;
        }
        // Two voters left; both needed for a quorum, and it works.
        c.kill(gone);
        let remaining = c.live();
        assert_eq!(remaining.len(), 2);
        for &id in &remaining {
            expect_status(
                "PUT after removal",
                c.client(id).put(&format!("after-{id}"), "2").await,
                204,
            );
        }
        c.wait_converged(CONVERGE).await;
        let data = c.assert_same_data().await;
        assert_eq!(data.len(), 3, "{data:?}");
    });
}

/// Asserts, right after a leader transfer's 204, that every node already
/// follows `target`: the 204 comes once the node asked has applied the new
/// term's marker, which the new leader proposes once every member has
/// acknowledged it.
async fn all_follow(c: &Cluster, target: NodeId) {
    for id in c.live() {
        let state = c.client(id).state().await.expect("a node's state");
        assert_eq!(state.leader, target, "node {id}'s view right after the 204");
    }
}

#[test]
fn leadership_moves_where_it_is_sent() {
    run_test("transfer", Duration::from_secs(90), |dir| async move {
        let mut c = Cluster::start(&dir, ClusterOptions::default()).await;
        let leader = c.wait_for_leader(ELECTION).await;
        let target = follower(&c, leader);

        // Asked of the leader.
        expect_status(
            "POST /leader on the leader",
            c.client(leader).transfer_leader(target).await,
            204,
        );
        all_follow(&c, target).await;

        // Asked of a follower (the old leader), for the third node: forwarded
        // to the leader.
        let third = c
            .live()
            .into_iter()
            .find(|&id| id != target && id != leader)
            .expect("a third node");
        expect_status(
            "POST /leader on a follower",
            c.client(leader).transfer_leader(third).await,
            204,
        );
        all_follow(&c, third).await;

        // Transferring to the current leader is a no-op; to a non-member, a 400.
        expect_status(
            "POST /leader to the leader",
            c.client(third).transfer_leader(third).await,
            204,
        );
        expect_status(
            "POST /leader to a stranger",
            c.client(third).transfer_leader(9).await,
            400,
        );

        // To a node that is down: the transfer fails with a 503, and the
        // leader takes writes again.
        c.kill(leader);
        expect_status(
            "POST /leader to a dead node",
            c.client(third).transfer_leader(leader).await,
            503,
        );
        assert_eq!(c.wait_for_leader(ELECTION).await, third);
        expect_status(
            "PUT after a failed transfer",
            c.client(third).put("k0", "v0").await,
            204,
        );
        c.restart(leader).await;

        expect_status(
            "PUT after transfers",
            c.client(leader).put("k", "v").await,
            204,
        );
        c.wait_converged(CONVERGE).await;
        c.assert_same_data().await;
    });
}

#[test]
fn membership_changes_under_load_lose_no_acknowledged_write() {
    run_test(
        "membership_load",
        Duration::from_secs(120),
        |dir| async move {
            let opts = ClusterOptions {
                snapshot_count: Some(50),
                request_timeout_ms: 2_000,
                ..ClusterOptions::default()
            };
            let mut c = Cluster::start(&dir, opts).await;
            let leader = c.wait_for_leader(ELECTION).await;
            let nodes: Vec<Client> = c.ids().iter().map(|&id| c.client(id)).collect();
            let writers = Writers::start(4, nodes);
            writers.progress(50, "writes before the changes").await;

            let new = c.add_node(leader).await;
            c.wait_converged(CONVERGE).await;
            writers.progress(50, "writes with four nodes").await;

            // The leader removes itself; the other three carry on.
            let leader = c.wait_for_leader(ELECTION).await;
            c.remove_node(leader, leader).await;
            let rest = c.live();
            assert!(rest.contains(&new) && !rest.contains(&leader));
            let next = c.wait_for_leader_among(&rest, ELECTION).await;
            assert_ne!(next, leader);
            writers.progress(50, "writes after the leader left").await;
            let acked = writers.stop().await;
            c.kill(leader);
            check_acked(&c, &acked, CONVERGE).await;
            for &id in &rest {
                let members: Vec<NodeId> = c
                    .client(id)
                    .members()
                    .await
                    .expect("members")
                    .iter()
                    .map(|m| m.id)
                    .collect();
                assert_eq!(members, rest, "members as node {id} sees them");
            }
        },
    );
}

#[test]
fn large_values_replicate_and_travel_in_snapshots() {
    run_test("large_values", Duration::from_secs(120), |dir| async move {
        // Snapshots of ~16 MiB are taken on the node's loop: in a debug
        // build that can stall it for longer than the default 200 ms
        // election timeout of these tests, so give elections 1 s here.
        let opts = ClusterOptions {
            snapshot_count: Some(10),
            election_tick: 50,
            ..ClusterOptions::default()
        };
        let mut c = Cluster::start(&dir, opts).await;
        let leader = c.wait_for_leader(ELECTION).await;
        // 24 values of 700 KiB, ~16 MiB in all: raft messages near their
        // size limit, and a snapshot of many 1 MiB chunks for the joiner.
        let value = |i: usize| -> String {
            let c = char::from(b'a' + (i % 26) as u8);
            std::iter::repeat_n(c, 700 * 1024).collect()
        };
        for i in 0..24 {
            let node = c.client(c.ids()[i % 3]);
            let key = format!("big-{i:02}");
            // Should an election still happen, a forwarded proposal may be
            // dropped (504) or refused (503): putting the same value again
            // is harmless.
            let mut tries = 0;
            loop {
                tries += 1;
                let r = node.put(&key, &value(i)).await.expect("PUT");
                match r.status {
                    204 => break,
                    503 | 504 if tries < 5 => c.log(&format!("PUT {key}: {r}; again")),
                    _ => panic!("PUT {key}: {r}"),
                }
            }
        }
        let new = c.add_node(leader).await;
        c.wait_converged(CONVERGE).await;
        let data = c.assert_same_data().await;
        assert_eq!(data.len(), 24);
        for i in 0..24 {
            assert!(
                data[&format!("big-{i:02}")] == value(i),
                "big-{i:02} differs"
            );
        }
        let r = expect_status("GET on node 4", c.client(new).get("big-07").await, 200);
        assert_eq!(r.body.len(), 700 * 1024);
    });
}
