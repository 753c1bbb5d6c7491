//! The library's routing to the leader, against real `kv-server` processes on loopback (see
//! [`common`] for how they are run).

mod common;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use kv_client::{Client, ClientOptions, Role};

use common::*;

/// Options with a deadline generous for a loaded machine, checking for a new leader after
/// `recheck`.
fn opts(recheck: Duration) -> ClientOptions {
    ClientOptions {
        leader_recheck: recheck,
        ..ClientOptions::default()
    }
}

/// The leader every node agrees on, once they do: its id and endpoint.
async fn agreed_leader(c: &Cluster, ids: &[u64]) -> (u64, String) {
    let deadline = Instant::now() + STARTUP;
    loop {
        let mut leaders = Vec::new();
        for id in ids {
            let ep = c.node(*id).endpoint();
            let single = Client::connect([ep.as_str()], ClientOptions::default()).await;
            if let Ok(s) = async { single?.state().await }.await {
                leaders.push(s.leader);
            }
        }
        let first = leaders.first().copied().unwrap_or(0);
        if leaders.len() == ids.len() && first != 0 && leaders.iter().all(|l| *l == first) {
            return (first, c.node(first).endpoint());
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not agree on a leader"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn calls_go_to_the_leader_and_follow_it_after_a_transfer() {
    let c = Cluster::start(3);
    let (leader, leader_ep) = agreed_leader(&c, &[1, 2, 3]).await;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    // The leader last: a client in order would connect to the first follower.
    let endpoints = [
        c.node(followers[0]).endpoint(),
        c.node(followers[1]).endpoint(),
        leader_ep.clone(),
    ];

    let routed = Client::connect(&endpoints, opts(Duration::ZERO))
        .await
        .unwrap();
    routed.put("k", "1").await.unwrap();
    assert_eq!(routed.connected_to().unwrap().to_string(), leader_ep);
    let state = routed.state().await.unwrap();
    assert_eq!((state.id, state.role), (leader, Role::Leader));
    assert_eq!(routed.find_leader().await.unwrap().to_string(), leader_ep);

    // Without routing: the first endpoint, and correct all the same.
    let in_order = Client::connect(
        &endpoints,
        ClientOptions {
            prefer_leader: false,
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap();
    in_order.put("k", "2").await.unwrap();
    assert_eq!(in_order.get("k").await.unwrap().unwrap(), "2");
    assert_eq!(in_order.connected_to().unwrap().to_string(), endpoints[0]);

    // A client that will not check again for an hour.
    let lazy = Client::connect(&endpoints, opts(Duration::from_secs(3600)))
        .await
        .unwrap();
    lazy.put("k", "3").await.unwrap();
    assert_eq!(lazy.connected_to().unwrap().to_string(), leader_ep);

    // The transfer answers once every node sees the new leader.
    let target = followers[1];
    let target_ep = c.node(target).endpoint();
    routed.transfer_leader(target).await.unwrap();

    // The routed client checks before each call: a burst of pipelined writes, the first of
    // which moves the connection while the others are in flight on the old one, all succeed
    // and end up on the new leader.
    let puts = (0..50).map(|i| routed.put(format!("burst/{i}"), "v"));
    for r in join_all(puts).await {
        r.unwrap();
    }
    assert_eq!(routed.connected_to().unwrap().to_string(), target_ep);
    let state = routed.state().await.unwrap();
    assert_eq!((state.id, state.role), (target, Role::Leader));
    let page = routed
        .list(kv_client::ListRequest {
            prefix: "burst/".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 50);

    // The lazy client is not due yet: it stays on the old leader, now a follower, which
    // forwards its calls.
    lazy.put("k", "4").await.unwrap();
    assert_eq!(lazy.get("k").await.unwrap().unwrap(), "4");
    assert_eq!(lazy.connected_to().unwrap().to_string(), leader_ep);

    // With a short interval a client moves too, once its check is due: polled, not slept.
    let soon = Client::connect(&endpoints, opts(Duration::from_millis(50)))
        .await
        .unwrap();
    soon.put("k", "5").await.unwrap();
    assert_eq!(soon.connected_to().unwrap().to_string(), target_ep);
    routed.transfer_leader(leader).await.unwrap();
    let deadline = Instant::now() + STARTUP;
    while soon.connected_to().map(ToString::to_string) != Some(leader_ep.clone()) {
        assert!(Instant::now() < deadline, "the client never moved back");
        soon.put("k", "6").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(soon.get("k").await.unwrap().unwrap(), "6");

    // Without routing, still the first endpoint.
    in_order.put("k", "7").await.unwrap();
    assert_eq!(in_order.connected_to().unwrap().to_string(), endpoints[0]);
}
