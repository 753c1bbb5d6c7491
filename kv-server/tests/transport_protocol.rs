//! A transport facing raw sockets that speak its protocol badly: strangers,
//! garbage and oversized frames, misaddressed messages. Each bad connection is
//! closed; nothing else is disturbed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kv_server::transport::codec::{ConnKind, Frame, FrameCodec, Hello, HelloReply};
use kv_server::transport::{Transport, TransportConfig, TransportEvent};
use raft_core::{Message, MessageType, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(60);
const CLUSTER: u64 = 0xc0ffee;

struct Node {
    transport: Transport,
    inbound: mpsc::Receiver<Message>,
    _events: mpsc::UnboundedReceiver<TransportEvent>,
    addr: SocketAddr,
}

async fn start(id: NodeId, peers: BTreeMap<NodeId, String>) -> Node {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, inbound) = mpsc::channel(64);
    let (etx, events) = mpsc::unbounded_channel();
    let cfg = TransportConfig::new(id, CLUSTER, peers);
    let transport = Transport::start(cfg, listener, tx, etx, CancellationToken::new()).unwrap();
    Node {
        transport,
        inbound,
        _events: events,
        addr,
    }
}

/// Reads until the peer closes the connection (EOF or reset).
async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Connects and completes a handshake as node `from`.
async fn handshaken(addr: SocketAddr, from: NodeId, to: NodeId) -> Framed<TcpStream, FrameCodec> {
    let mut f = Framed::new(
        TcpStream::connect(addr).await.unwrap(),
        FrameCodec::default(),
    );
    f.send(Frame::Hello(Hello::new(
        CLUSTER,
        from,
        to,
        ConnKind::Stream,
    )))
    .await
    .unwrap();
    match f.next().await {
        Some(Ok(Frame::HelloReply(HelloReply::Accept))) => f,
        other => panic!("handshake failed: {other:?}"),
    }
}

/// Node 2 sends node 1 a heartbeat with `index` until it arrives: the proof
/// that a good connection still works.
async fn good_link_works(n1: &mut Node, n2: &Node, index: u64) {
    loop {
        let mut m = Message::new(MessageType::Heartbeat, 2, 1);
        m.index = index;
        n2.transport.send(vec![m]);
        if let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(50), n1.inbound.recv()).await
        {
            assert_eq!(
                (m.from, m.msg_type),
                (2, MessageType::Heartbeat),
                "a bad connection's message was delivered"
            );
            if m.index == index {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_connections_are_closed_and_good_ones_keep_working() {
    tokio::time::timeout(LIMIT, async {
        let mut n1 = start(1, BTreeMap::new()).await;
        let n2 = start(2, BTreeMap::from([(1, n1.addr.to_string())])).await;
        good_link_works(&mut n1, &n2, 0).await;

        // Garbage instead of a hello.
        let mut s = TcpStream::connect(n1.addr).await.unwrap();
        s.write_all(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        assert_closed(&mut s).await;
        good_link_works(&mut n1, &n2, 1).await;

        // Not even a frame: an HTTP request.
        let mut s = TcpStream::connect(n1.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_closed(&mut s).await;

        // An oversized length prefix after a good handshake.
        let mut f = handshaken(n1.addr, 3, 1).await;
        f.get_mut()
            .write_all(&u32::MAX.to_be_bytes())
            .await
            .unwrap();
        assert_closed(f.get_mut()).await;
        good_link_works(&mut n1, &n2, 2).await;

        // A garbage frame after a good handshake.
        let mut f = handshaken(n1.addr, 3, 1).await;
        f.get_mut()
            .write_all(&[0, 0, 0, 3, 0x7f, 0x01, 0x02])
            .await
            .unwrap();
        assert_closed(f.get_mut()).await;

        // A message addressed to another node.
        let mut f = handshaken(n1.addr, 3, 1).await;
        f.send(Frame::Message(Message::new(MessageType::Heartbeat, 3, 9)))
            .await
            .unwrap();
        assert_closed(f.get_mut()).await;

        // A message claiming another sender.
        let mut f = handshaken(n1.addr, 3, 1).await;
        f.send(Frame::Message(Message::new(MessageType::Heartbeat, 2, 1)))
            .await
            .unwrap();
        assert_closed(f.get_mut()).await;

        // A local message type from the network.
        let mut f = handshaken(n1.addr, 3, 1).await;
        f.send(Frame::Message(Message::new(MessageType::Hup, 3, 1)))
            .await
            .unwrap();
        assert_closed(f.get_mut()).await;

        // A snapshot chunk on a stream.
        let mut f = handshaken(n1.addr, 3, 1).await;
        f.send(Frame::SnapshotChunk(bytes::Bytes::from_static(b"x")))
            .await
            .unwrap();
        assert_closed(f.get_mut()).await;

        good_link_works(&mut n1, &n2, 3).await;
        let stats = n1.transport.stats();
        assert_eq!(stats.protocol_errors, 8, "{stats:?}");
        // Node 2's stream was never replaced or dropped.
        assert_eq!(n2.transport.stats().peers[&1].connects, 1);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_are_refused_with_a_reason() {
    tokio::time::timeout(LIMIT, async {
        let mut n1 = start(1, BTreeMap::new()).await;
        let cases = [
            (
                Hello::new(CLUSTER + 1, 3, 1, ConnKind::Stream),
                "cluster id mismatch",
            ),
            (Hello::new(CLUSTER, 3, 4, ConnKind::Stream), "not node 4"),
            (
                Hello::new(CLUSTER, 1, 1, ConnKind::Stream),
                "invalid dialer id",
            ),
            (
                Hello {
                    version: 99,
                    ..Hello::new(CLUSTER, 3, 1, ConnKind::Stream)
                },
                "unsupported protocol version",
            ),
        ];
        for (hello, want) in cases {
            let mut f = Framed::new(
                TcpStream::connect(n1.addr).await.unwrap(),
                FrameCodec::default(),
            );
            f.send(Frame::Hello(hello.clone())).await.unwrap();
            match f.next().await {
                Some(Ok(Frame::HelloReply(HelloReply::Refuse { reason }))) => {
                    assert!(reason.contains(want), "{hello:?}: {reason}")
                }
                other => panic!("{hello:?} not refused: {other:?}"),
            }
            // Whatever the stranger sends next is not read.
            let _ = f
                .send(Frame::Message(Message::new(
                    MessageType::Heartbeat,
                    hello.from,
                    1,
                )))
                .await;
            assert_closed(f.get_mut()).await;
        }
        assert_eq!(n1.transport.stats().refused_handshakes, 4);
        assert_eq!(n1.transport.stats().protocol_errors, 0);
        assert!(n1.inbound.try_recv().is_err());

        // A removed node is refused too.
        n1.transport.remove_peer(3);
        let mut f = Framed::new(
            TcpStream::connect(n1.addr).await.unwrap(),
            FrameCodec::default(),
        );
        f.send(Frame::Hello(Hello::new(CLUSTER, 3, 1, ConnKind::Stream)))
            .await
            .unwrap();
        match f.next().await {
            Some(Ok(Frame::HelloReply(HelloReply::Refuse { reason }))) => {
                assert!(reason.contains("removed"), "{reason}")
            }
            other => panic!("removed node not refused: {other:?}"),
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_stream_from_a_peer_replaces_its_previous_one() {
    tokio::time::timeout(LIMIT, async {
        let n1 = start(1, BTreeMap::new()).await;
        let mut old = handshaken(n1.addr, 3, 1).await;
        let _new = handshaken(n1.addr, 3, 1).await;
        // The old one is closed: the half-open connection a crashed peer
        // leaves behind does not linger.
        assert_closed(old.get_mut()).await;
        assert_eq!(n1.transport.stats().protocol_errors, 0);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_with_too_many_bytes_is_refused() {
    tokio::time::timeout(LIMIT, async {
        let mut n1 = start(1, BTreeMap::new()).await;
        let mut f = Framed::new(
            TcpStream::connect(n1.addr).await.unwrap(),
            FrameCodec::default(),
        );
        f.send(Frame::Hello(Hello::new(CLUSTER, 3, 1, ConnKind::Snapshot)))
            .await
            .unwrap();
        assert!(matches!(
            f.next().await,
            Some(Ok(Frame::HelloReply(HelloReply::Accept)))
        ));
        let mut m = Message::new(MessageType::Snap, 3, 1);
        m.snapshot = Some(Box::default());
        f.send(Frame::SnapshotHeader {
            message: m,
            data_len: 4,
        })
        .await
        .unwrap();
        f.send(Frame::SnapshotChunk(bytes::Bytes::from_static(b"12345")))
            .await
            .unwrap();
        assert_closed(f.get_mut()).await;
        assert_eq!(n1.transport.stats().protocol_errors, 1);
        assert!(n1.inbound.try_recv().is_err());
    })
    .await
    .expect("test timed out");
}
