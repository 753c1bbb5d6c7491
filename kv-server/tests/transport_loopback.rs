//! Transports talking to each other over loopback (`127.0.0.1:0`).
//!
//! Every test is bounded by [`LIMIT`]; none sleeps for a fixed time: waits are
//! on channels, or poll a condition.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kv_server::transport::{Transport, TransportConfig, TransportEvent};
use raft_core::{Entry, Message, MessageType, NodeId, Snapshot, SnapshotMetadata};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(60);
const CLUSTER: u64 = 0x5eed;

struct Node {
    transport: Arc<Transport>,
    inbound: mpsc::Receiver<Message>,
    events: mpsc::UnboundedReceiver<TransportEvent>,
    shutdown: CancellationToken,
}

impl Node {
    fn start(cfg: TransportConfig, listener: TcpListener, inbound_capacity: usize) -> Node {
        let (inbound_tx, inbound) = mpsc::channel(inbound_capacity);
        let (events_tx, events) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let transport =
            Transport::start(cfg, listener, inbound_tx, events_tx, shutdown.clone()).unwrap();
        Node {
            transport: Arc::new(transport),
            inbound,
            events,
            shutdown,
        }
    }

    async fn recv(&mut self) -> Message {
        self.inbound.recv().await.expect("inbound channel closed")
    }

    /// Waits for `want`, skipping other events.
    async fn wait_event(&mut self, want: TransportEvent) {
        loop {
            let e = self.events.recv().await.expect("event channel closed");
            if e == want {
                return;
            }
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.transport.closed().await;
    }
}

async fn bind() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

fn config(id: NodeId, peers: &[(NodeId, SocketAddr)]) -> TransportConfig {
    let peers = peers
        .iter()
        .map(|(id, a)| (*id, format!("http://{a}")))
        .collect();
    TransportConfig::new(id, CLUSTER, peers)
}

fn msg(t: MessageType, from: NodeId, to: NodeId, index: u64) -> Message {
    let mut m = Message::new(t, from, to);
    m.term = 1;
    m.index = index;
    m
}

/// Polls `cond` until it holds (bounded by the test's [`LIMIT`]).
async fn wait_until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends `m` from `from` until `to` receives a message (the first one that
/// arrives is returned): for links that are coming back up, where messages
/// sent while the peer is down are dropped by design.
async fn send_until_received(from: &Transport, to: &mut Node, m: Message) -> Message {
    loop {
        from.send(vec![m.clone()]);
        if let Ok(got) = tokio::time::timeout(Duration::from_millis(50), to.recv()).await {
            return got;
        }
    }
}

async fn pair() -> (Node, Node, SocketAddr, SocketAddr) {
    let (l1, a1) = bind().await;
    let (l2, a2) = bind().await;
    let n1 = Node::start(config(1, &[(1, a1), (2, a2)]), l1, 1024);
    let n2 = Node::start(config(2, &[(1, a1), (2, a2)]), l2, 1024);
    (n1, n2, a1, a2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_transports_exchange_messages_both_ways() {
    tokio::time::timeout(LIMIT, async {
        let (mut n1, mut n2, _, _) = pair().await;
        // The node loop is a plain thread: send from one.
        let t1 = n1.transport.clone();
        std::thread::spawn(move || {
            let mut app = msg(MessageType::App, 1, 2, 5);
            app.entries = vec![Entry::new(1, 6, &b"x"[..])];
            t1.send(vec![msg(MessageType::Heartbeat, 1, 2, 0), app]);
        })
        .join()
        .unwrap();
        let hb = n2.recv().await;
        assert_eq!(
            (hb.msg_type, hb.from, hb.to),
            (MessageType::Heartbeat, 1, 2)
        );
        let app = n2.recv().await;
        assert_eq!(app.msg_type, MessageType::App);
        assert_eq!(app.entries, vec![Entry::new(1, 6, &b"x"[..])]);

        n2.transport
            .send(vec![msg(MessageType::HeartbeatResp, 2, 1, 0)]);
        let resp = n1.recv().await;
        assert_eq!(
            (resp.msg_type, resp.from, resp.to),
            (MessageType::HeartbeatResp, 2, 1)
        );

        // The sender counts after its write returns, which may be after the
        // receiver got the messages.
        let t1 = n1.transport.clone();
        wait_until(move || t1.stats().peers[&2].msgs_sent == 2).await;
        let s1 = n1.transport.stats();
        assert_eq!(s1.peers[&2].msgs_received, 1);
        assert!(s1.peers[&2].connected);
        assert_eq!(
            s1.peers[&2].addr.as_deref(),
            Some(n2.transport.local_addr().unwrap().to_string().as_str())
        );
        assert_eq!(n2.transport.stats().peers[&1].msgs_received, 2);
        n1.stop().await;
        n2.stop().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_10k_messages_arrives_in_order_in_one_batch() {
    tokio::time::timeout(LIMIT, async {
        const N: u64 = 10_000;
        let (l1, a1) = bind().await;
        let (l2, a2) = bind().await;
        let mut cfg1 = config(1, &[(2, a2)]);
        cfg1.queue_capacity = N as usize;
        let n1 = Node::start(cfg1, l1, 16);
        // Node 2's listener is bound but not served yet: node 1's dial
        // connects and waits for the handshake, so the whole burst queues and
        // goes out as one batch once node 2 answers.
        n1.transport
            .send((0..N).map(|i| msg(MessageType::App, 1, 2, i)));
        let mut n2 = Node::start(config(2, &[(1, a1)]), l2, N as usize);
        for i in 0..N {
            let m = n2.recv().await;
            assert_eq!((m.index, m.from), (i, 1), "out of order");
        }
        let t1 = n1.transport.clone();
        wait_until(move || t1.stats().peers[&2].msgs_sent == N).await;
        let s = n1.transport.stats().peers[&2].clone();
        assert_eq!((s.msgs_sent, s.dropped_sent, s.batches_sent), (N, 0, 1));
        assert_eq!(n2.transport.stats().peers[&1].bytes_received, s.bytes_sent);
        n1.stop().await;
        n2.stop().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_reconnected_and_reported_unreachable_meanwhile() {
    tokio::time::timeout(LIMIT, async {
        let (mut n1, mut n2, a1, a2) = pair().await;
        n1.transport
            .send(vec![msg(MessageType::Heartbeat, 1, 2, 0)]);
        assert_eq!(n2.recv().await.msg_type, MessageType::Heartbeat);

        n2.stop().await;
        // Node 1 notices the closed stream without sending anything.
        n1.wait_event(TransportEvent::Unreachable(2)).await;
        // While node 2 is down, sending never blocks and drops.
        n1.transport
            .send(vec![msg(MessageType::Heartbeat, 1, 2, 1)]);

        let l2 = TcpListener::bind(a2).await.unwrap();
        let mut n2 = Node::start(config(2, &[(1, a1)]), l2, 1024);
        let got =
            send_until_received(&n1.transport, &mut n2, msg(MessageType::Heartbeat, 1, 2, 2)).await;
        assert_eq!((got.from, got.index), (1, 2));
        // And the other way, over node 2's new stream.
        n2.transport
            .send(vec![msg(MessageType::HeartbeatResp, 2, 1, 3)]);
        loop {
            let m = n1.recv().await;
            if m.index == 3 {
                break;
            }
        }
        let s = n1.transport.stats().peers[&2].clone();
        assert!(s.connects >= 2, "{s:?}");
        assert!(s.unreachable_reports >= 1, "{s:?}");
        n1.stop().await;
        n2.stop().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused() {
    tokio::time::timeout(LIMIT, async {
        let (l1, a1) = bind().await;
        let (l3, _) = bind().await;
        let mut n1 = Node::start(config(1, &[]), l1, 16);
        let mut stranger_cfg = config(3, &[(1, a1)]);
        stranger_cfg.cluster_id = CLUSTER + 1;
        let mut stranger = Node::start(stranger_cfg, l3, 16);
        stranger
            .transport
            .send(vec![msg(MessageType::Vote, 3, 1, 0)]);
        // The refusal is a failed dial: the dialer reports the peer.
        stranger.wait_event(TransportEvent::Unreachable(1)).await;
        let s = stranger.transport.stats().peers[&1].clone();
        assert!(s.connect_failures >= 1 && s.connects == 0, "{s:?}");
        assert!(n1.transport.stats().refused_handshakes >= 1);
        assert!(matches!(
            n1.inbound.try_recv(),
            Err(mpsc::error::TryRecvError::Empty)
        ));
        stranger.stop().await;
        n1.stop().await;
    })
    .await
    .expect("test timed out");
}

fn snapshot_message(from: NodeId, to: NodeId, len: usize) -> Message {
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut m = msg(MessageType::Snap, from, to, 0);
    m.snapshot = Some(Box::new(Snapshot {
        data: Bytes::from(data),
        metadata: SnapshotMetadata {
            conf_state: raft_core::ConfState::with_voters(vec![1, 2]),
            index: 42,
            term: 3,
        },
    }));
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mib_snapshot_arrives_intact_and_is_acknowledged() {
    tokio::time::timeout(LIMIT, async {
        let (mut n1, mut n2, _, _) = pair().await;
        let snap = snapshot_message(1, 2, 20 * 1024 * 1024);
        n1.transport.send(vec![snap.clone()]);
        // The stream is not held up by the snapshot's connection.
        n1.transport
            .send(vec![msg(MessageType::Heartbeat, 1, 2, 0)]);
        let mut got_snap = None;
        while got_snap.is_none() {
            let m = n2.recv().await;
            if m.msg_type == MessageType::Snap {
                got_snap = Some(m);
            }
        }
        // 20 MiB is more than a frame may hold: it came in chunks.
        assert_eq!(got_snap.unwrap(), snap);
        n1.wait_event(TransportEvent::SnapshotStatus { to: 2, ok: true })
            .await;
        let s1 = n1.transport.stats().peers[&2].clone();
        assert_eq!((s1.snapshots_sent, s1.snapshots_failed), (1, 0));
        let s2 = n2.transport.stats().peers[&1].clone();
        assert_eq!(s2.snapshots_received, 1);
        assert!(s2.bytes_received > 20 * 1024 * 1024);
        n1.stop().await;
        n2.stop().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_over_the_receivers_limit_fails_and_is_reported() {
    tokio::time::timeout(LIMIT, async {
        let (l1, a1) = bind().await;
        let (l2, a2) = bind().await;
        let mut n1 = Node::start(config(1, &[(2, a2)]), l1, 16);
        let mut cfg2 = config(2, &[(1, a1)]);
        cfg2.max_snapshot_len = 1024;
        let mut n2 = Node::start(cfg2, l2, 16);
        n1.transport.send(vec![snapshot_message(1, 2, 4096)]);
        n1.wait_event(TransportEvent::SnapshotStatus { to: 2, ok: false })
            .await;
        assert_eq!(n1.transport.stats().peers[&2].snapshots_failed, 1);
        assert!(n2.transport.stats().protocol_errors >= 1);
        // The stream is unaffected.
        n1.transport
            .send(vec![msg(MessageType::Heartbeat, 1, 2, 7)]);
        assert_eq!(n2.recv().await.index, 7);
        n1.stop().await;
        n2.stop().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_unknown_or_unreachable_peers_never_blocks() {
    tokio::time::timeout(LIMIT, async {
        // A port nobody listens on (not one freed by `bind`: another test
        // could be given it meanwhile).
        let dead_addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let (l1, _) = bind().await;
        let mut n1 = Node::start(config(1, &[(2, dead_addr)]), l1, 16);
        let t1 = n1.transport.clone();
        const N: u64 = 100_000;
        tokio::task::spawn_blocking(move || {
            for i in 0..N {
                t1.send(vec![
                    msg(MessageType::App, 1, 2, i),
                    msg(MessageType::App, 1, 9, i),
                ]);
            }
            t1.send(vec![snapshot_message(1, 9, 10), snapshot_message(1, 2, 10)]);
        })
        .await
        .unwrap();
        let mut want = vec![
            TransportEvent::Unreachable(2),
            TransportEvent::Unreachable(9),
            TransportEvent::SnapshotStatus { to: 9, ok: false },
            TransportEvent::SnapshotStatus { to: 2, ok: false },
        ];
        while !want.is_empty() {
            let e = n1.events.recv().await.unwrap();
            want.retain(|w| *w != e);
        }
        let s = n1.transport.stats();
        assert_eq!(s.dropped_unknown_peer, N + 1);
        // At most a queue's worth waited for the first dial; all were dropped.
        let t1 = n1.transport.clone();
        wait_until(move || t1.stats().peers[&2].dropped_sent == N).await;
        assert_eq!(s.peers[&2].msgs_sent, 0);
        n1.stop().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_a_stalled_peer_drops_when_the_queue_is_full() {
    tokio::time::timeout(LIMIT, async {
        use futures_util::{SinkExt, StreamExt};
        use kv_server::transport::codec::{Frame, FrameCodec, HelloReply};
        use tokio_util::codec::Framed;

        // A peer that accepts the handshake, then never reads again.
        let (stalled, stalled_addr) = bind().await;
        let hold = tokio::spawn(async move {
            let (s, _) = stalled.accept().await.unwrap();
            let mut f = Framed::new(s, FrameCodec::default());
            let Some(Ok(Frame::Hello(_))) = f.next().await else {
                panic!("expected hello")
            };
            f.send(Frame::HelloReply(HelloReply::Accept)).await.unwrap();
            // Keep the connection open and unread until the test ends.
            let _unread = f;
            std::future::pending::<()>().await
        });
        let (l1, _) = bind().await;
        let mut cfg = config(1, &[(2, stalled_addr)]);
        cfg.queue_capacity = 64;
        let mut n1 = Node::start(cfg, l1, 16);
        let t1 = n1.transport.clone();
        wait_until(move || t1.stats().peers[&2].connected).await;

        let payload = Bytes::from(vec![0xabu8; 64 * 1024]);
        let t1 = n1.transport.clone();
        tokio::task::spawn_blocking(move || {
            for i in 0..10_000 {
                let mut m = msg(MessageType::App, 1, 2, i);
                m.entries = vec![Entry::new(1, i + 1, payload.clone())];
                t1.send(vec![m]);
            }
        })
        .await
        .unwrap();
        n1.wait_event(TransportEvent::Unreachable(2)).await;
        let s = n1.transport.stats().peers[&2].clone();
        assert!(s.dropped_sent > 0, "{s:?}");
        hold.abort();
        n1.stop().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_added_and_removed_at_runtime() {
    tokio::time::timeout(LIMIT, async {
        let (l1, a1) = bind().await;
        let (l2, a2) = bind().await;
        // Node 1 starts knowing nobody; node 2 (a joiner) knows node 1.
        let mut n1 = Node::start(config(1, &[]), l1, 1024);
        let mut n2 = Node::start(config(2, &[(1, a1)]), l2, 1024);
        // Any node of the cluster may dial before it is added.
        n2.transport.send(vec![msg(MessageType::App, 2, 1, 1)]);
        assert_eq!(n1.recv().await.from, 2);

        n1.transport.add_peer(2, &format!("http://{a2}")).unwrap();
        assert_eq!(n1.transport.peers(), BTreeMap::from([(2, a2.to_string())]));
        n1.transport.send(vec![msg(MessageType::AppResp, 1, 2, 1)]);
        assert_eq!(n2.recv().await.from, 1);

        n1.transport.remove_peer(2);
        assert!(n1.transport.peers().is_empty());
        // Node 1 closed node 2's stream: node 2 notices, and its redials are
        // refused.
        n2.wait_event(TransportEvent::Unreachable(1)).await;
        let t1 = n1.transport.clone();
        wait_until(move || t1.stats().refused_handshakes >= 1).await;
        n1.transport.send(vec![msg(MessageType::App, 1, 2, 9)]);
        n2.transport.send(vec![msg(MessageType::App, 2, 1, 9)]);
        assert!(n1.inbound.try_recv().is_err());

        // Added back: both directions work again.
        n1.transport.add_peer(2, &a2.to_string()).unwrap();
        let got =
            send_until_received(&n2.transport, &mut n1, msg(MessageType::App, 2, 1, 10)).await;
        assert_eq!(got.index, 10);
        let got =
            send_until_received(&n1.transport, &mut n2, msg(MessageType::App, 1, 2, 11)).await;
        assert_eq!(got.index, 11);
        assert!(n1.transport.add_peer(3, "no-port").is_err());
        n1.stop().await;
        n2.stop().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_every_task_and_frees_the_port() {
    tokio::time::timeout(LIMIT, async {
        let (mut n1, n2, a1, _) = pair().await;
        n1.transport
            .send(vec![msg(MessageType::Heartbeat, 1, 2, 0)]);
        n2.transport
            .send(vec![msg(MessageType::Heartbeat, 2, 1, 0)]);
        n1.recv().await;
        let t2 = n2.transport.clone();
        n2.stop().await;
        n1.stop().await;
        // Sending after shutdown still never blocks.
        t2.send(vec![msg(MessageType::Heartbeat, 2, 1, 1)]);
        TcpListener::bind(a1).await.expect("port still held");
    })
    .await
    .expect("test timed out");
}
