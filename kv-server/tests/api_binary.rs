//! The binary protocol end to end, and the HTTP/binary split of one client port.

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{Server, bounded};
use futures_util::{SinkExt, StreamExt};
use kv_server::api::{
    Condition, Consistency, ErrorKind, Health, Limits, ListItem, ListRequest, ListResponse,
    Request, Response,
};
use kv_server::binary::{self, ClientCodec, PREAMBLE, RequestFrame, ResponseFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

type Conn = Framed<TcpStream, ClientCodec>;

fn put(key: &str, value: &str) -> Request {
    Request::Put {
        key: key.into(),
        value: Bytes::from(value.to_owned()),
        condition: None,
    }
}

fn get(key: &str) -> Request {
    Request::Get {
        key: key.into(),
        consistency: Consistency::Linearizable,
    }
}

async fn call(conn: &mut Conn, id: u64, request: Request) -> ResponseFrame {
    conn.send(RequestFrame { id, request }).await.unwrap();
    let resp = conn.next().await.expect("connection closed").unwrap();
    assert_eq!(resp.id, id);
    resp
}

async fn kind(conn: &mut Conn, id: u64, request: Request) -> ErrorKind {
    call(conn, id, request).await.result.unwrap_err().kind
}

#[tokio::test]
async fn every_operation() {
    bounded(async {
        let s = Server::start().await;
        let mut c = binary::connect(s.addr).await.unwrap();
        assert_eq!(
            call(&mut c, 1, put("a", "1")).await.result,
            Ok(Response::Done)
        );
        assert_eq!(
            call(&mut c, 2, get("a")).await.result,
            Ok(Response::Value(Bytes::from_static(b"1")))
        );
        assert_eq!(kind(&mut c, 3, get("zz")).await, ErrorKind::NotFound);
        let cas = |prev: &str| Request::Put {
            key: "a".into(),
            value: Bytes::from_static(b"2"),
            condition: Some(Condition::PrevValue(Bytes::from(prev.to_owned()))),
        };
        assert_eq!(
            kind(&mut c, 4, cas("0")).await,
            ErrorKind::PreconditionFailed
        );
        assert_eq!(call(&mut c, 5, cas("1")).await.result, Ok(Response::Done));
        let batch = Request::Batch {
            items: vec![
                ("b".into(), Bytes::from_static(b"x")),
                ("c".into(), Bytes::new()),
            ],
        };
        assert_eq!(call(&mut c, 6, batch).await.result, Ok(Response::Done));
        let list = Request::List(ListRequest {
            prefix: String::new(),
            after: Some("a".into()),
            limit: None,
            values: true,
            consistency: Consistency::Serializable,
        });
        assert_eq!(
            call(&mut c, 7, list).await.result,
            Ok(Response::List(ListResponse {
                items: vec![
                    ListItem {
                        key: "b".into(),
                        value: Some(Bytes::from_static(b"x"))
                    },
                    ListItem {
                        key: "c".into(),
                        value: Some(Bytes::new())
                    },
                ],
                more: false,
            }))
        );
        assert_eq!(
            call(&mut c, 8, Request::Delete { key: "c".into() })
                .await
                .result,
            Ok(Response::Done)
        );
        assert_eq!(
            kind(&mut c, 9, Request::Delete { key: "c".into() }).await,
            ErrorKind::NotFound
        );
        let add = Request::AddNode {
            id: 2,
            addr: "127.0.0.1:2".into(),
            learner: true,
        };
        assert_eq!(call(&mut c, 10, add).await.result, Ok(Response::Done));
        assert_eq!(
            call(&mut c, 11, Request::PromoteNode { id: 2 })
                .await
                .result,
            Ok(Response::Done)
        );
        assert_eq!(
            call(&mut c, 12, Request::TransferLeader { to: 2 })
                .await
                .result,
            Ok(Response::Done)
        );
        let Ok(Response::Members(members)) = call(&mut c, 13, Request::Members).await.result else {
            panic!("members");
        };
        assert_eq!(members.len(), 2);
        assert!(members[1].leader && members[1].voter);
        assert_eq!(
            call(&mut c, 14, Request::RemoveNode { id: 2 }).await.result,
            Ok(Response::Done)
        );
        assert_eq!(
            call(&mut c, 15, Request::Health).await.result,
            Ok(Response::Health(Health { leader: 2 }))
        );
        assert!(matches!(
            call(&mut c, 16, Request::State).await.result,
            Ok(Response::State(_))
        ));
        let Ok(Response::Stats(stats)) = call(&mut c, 17, Request::Stats).await.result else {
            panic!("stats");
        };
        serde_json::from_str::<serde_json::Value>(&stats).unwrap();
        let Ok(Response::Metrics(text)) = call(&mut c, 18, Request::Metrics).await.result else {
            panic!("metrics");
        };
        assert!(
            text.contains("kv_binary_requests_total{op=\"cas\",outcome=\"precondition_failed\"} 1")
        );
        assert!(text.contains("kv_client_connections{protocol=\"binary\"} 1"));
        // Validation is the same as over HTTP.
        assert_eq!(kind(&mut c, 19, put("", "v")).await, ErrorKind::BadRequest);
        assert_eq!(
            kind(&mut c, 20, put(&"k".repeat(4097), "v")).await,
            ErrorKind::PayloadTooLarge
        );
        drop(c);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn pipelined_requests_complete_out_of_order() {
    bounded(async {
        let s = Server::start().await;
        let mut c = binary::connect(s.addr).await.unwrap();
        let hold = s.backend.hold("slow");
        c.feed(RequestFrame {
            id: 1,
            request: put("slow", "s"),
        })
        .await
        .unwrap();
        c.feed(RequestFrame {
            id: 2,
            request: put("fast", "f"),
        })
        .await
        .unwrap();
        c.send(RequestFrame {
            id: 3,
            request: get("fast"),
        })
        .await
        .unwrap();
        hold.wait_blocked(1).await;
        // Requests 2 and 3 overtake request 1, which is parked in the backend.
        let mut ids = vec![
            c.next().await.unwrap().unwrap().id,
            c.next().await.unwrap().unwrap().id,
        ];
        ids.sort();
        assert_eq!(ids, [2, 3]);
        assert!(s.backend.get("slow").is_none());
        hold.release();
        let last = c.next().await.unwrap().unwrap();
        assert_eq!((last.id, last.result), (1, Ok(Response::Done)));
        assert_eq!(s.backend.get("slow").unwrap(), "s");
        // Many requests in flight at once, all answered.
        for id in 100..300 {
            c.feed(RequestFrame {
                id,
                request: put(&format!("k{id}"), "v"),
            })
            .await
            .unwrap();
        }
        c.flush().await.unwrap();
        let mut seen = Vec::new();
        for _ in 100..300 {
            let r = c.next().await.unwrap().unwrap();
            assert_eq!(r.result, Ok(Response::Done));
            seen.push(r.id);
        }
        seen.sort();
        assert_eq!(seen, (100..300).collect::<Vec<_>>());
        drop(c);
        s.stop().await;
    })
    .await;
}

/// Writes raw frame bytes after the preamble.
async fn raw_conn(s: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream.write_all(PREAMBLE).await.unwrap();
    stream
}

#[tokio::test]
async fn garbage_closes_only_its_connection() {
    bounded(async {
        let s = Server::start().await;
        let mut good = binary::connect(s.addr).await.unwrap();
        assert_eq!(
            call(&mut good, 1, put("k", "v")).await.result,
            Ok(Response::Done)
        );

        // A frame whose payload is not even an id: the server closes this connection.
        let mut bad = raw_conn(&s).await;
        let mut frame = BytesMut::new();
        frame.put_u32(11);
        frame.extend_from_slice(&[0xff; 11]);
        bad.write_all(&frame).await.unwrap();
        let mut rest = Vec::new();
        let n = bad.read_to_end(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0, "no response for a frame without an id");

        // A frame with an id but a garbage body: an error for that id, and the connection
        // stays usable.
        let mut odd = raw_conn(&s).await;
        let mut frame = BytesMut::new();
        frame.put_u32(4);
        frame.extend_from_slice(&[7, 0xee, 0xee, 0xee]);
        odd.write_all(&frame).await.unwrap();
        let mut odd = Framed::new(odd, ClientCodec::new());
        let r = odd.next().await.unwrap().unwrap();
        assert_eq!(r.id, 7);
        assert_eq!(r.result.unwrap_err().kind, ErrorKind::BadRequest);
        assert_eq!(
            call(&mut odd, 8, get("k")).await.result,
            Ok(Response::Value(Bytes::from_static(b"v")))
        );

        // Other connections, binary and HTTP, are unaffected.
        assert_eq!(
            call(&mut good, 2, get("k")).await.result,
            Ok(Response::Value(Bytes::from_static(b"v")))
        );
        assert_eq!(s.get("/k").await.body, b"v");
        drop((good, odd));
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn oversized_frames_are_refused_by_id() {
    bounded(async {
        let limits = Limits {
            max_key: 100,
            max_value: 1000,
            max_batch_bytes: 1000,
            ..Limits::default()
        };
        let s = Server::start_with(limits, kv_server::client_port::SHUTDOWN_GRACE).await;
        assert!(limits.max_request_frame() < 100_000);
        let mut c = binary::connect(s.addr).await.unwrap();
        // Larger than a frame may be: skipped, refused, connection kept.
        let huge = "x".repeat(200_000);
        assert_eq!(
            kind(&mut c, 1, put("k", &huge)).await,
            ErrorKind::PayloadTooLarge
        );
        // Within the frame limit but over the value limit.
        assert_eq!(
            kind(&mut c, 2, put("k", &"y".repeat(1001))).await,
            ErrorKind::PayloadTooLarge
        );
        assert_eq!(
            call(&mut c, 3, put("k", &"z".repeat(1000))).await.result,
            Ok(Response::Done)
        );
        assert_eq!(s.backend.get("k").unwrap().len(), 1000);
        drop(c);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn http_and_binary_share_the_port() {
    bounded(async {
        let s = Server::start().await;
        // The preamble may arrive in pieces.
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        stream.write_all(&PREAMBLE[..1]).await.unwrap();
        stream.flush().await.unwrap();
        stream.write_all(&PREAMBLE[1..]).await.unwrap();
        let mut c = Framed::new(stream, ClientCodec::new());
        assert_eq!(
            call(&mut c, 1, put("shared", "b")).await.result,
            Ok(Response::Done)
        );
        assert_eq!(s.get("/shared").await.body, b"b");
        assert_eq!(s.put("/shared", b"h").await.status, 204);
        assert_eq!(
            call(&mut c, 2, get("shared")).await.result,
            Ok(Response::Value(Bytes::from_static(b"h")))
        );
        // Something that is neither: HTTP's parser refuses it, and only that connection.
        let replies = common::exchange(s.addr, b"KVB2 nonsense\r\n\r\n").await;
        assert!(replies.is_empty() || replies[0].status == 400);
        // A connection that closes before sending anything.
        drop(TcpStream::connect(s.addr).await.unwrap());
        assert_eq!(call(&mut c, 3, get("shared")).await.id, 3);
        let text = s.get("/metrics").await.text();
        assert!(
            text.contains("kv_client_connections_total{protocol=\"binary\"} 1"),
            "{text}"
        );
        drop(c);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    bounded(async {
        let s = Server::start().await;
        let hold = s.backend.hold("slow");
        // One binary and one HTTP request parked in the backend.
        let mut c = binary::connect(s.addr).await.unwrap();
        c.send(RequestFrame {
            id: 1,
            request: put("slow", "b"),
        })
        .await
        .unwrap();
        let addr = s.addr;
        let http = tokio::spawn(async move { common::http(addr, "GET", "/slow", &[], b"").await });
        hold.wait_blocked(2).await;
        s.shutdown.cancel();
        // New connections are refused once the listener is gone; poll until it is.
        loop {
            match TcpStream::connect(addr).await {
                Err(_) => break,
                Ok(stream) => {
                    drop(stream);
                    tokio::task::yield_now().await;
                }
            }
        }
        hold.release();
        let r = c.next().await.unwrap().unwrap();
        assert_eq!((r.id, r.result), (1, Ok(Response::Done)));
        // The binary connection closes after its last answer.
        assert!(c.next().await.is_none());
        let reply = http.await.unwrap();
        assert!(reply.status == 200 || reply.status == 404, "{reply:?}");
        s.task.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn shutdown_grace_period_is_bounded() {
    bounded(async {
        let s = Server::start_with(Limits::default(), Duration::from_millis(50)).await;
        let _hold = s.backend.hold("stuck");
        let mut c = binary::connect(s.addr).await.unwrap();
        c.send(RequestFrame {
            id: 1,
            request: get("stuck"),
        })
        .await
        .unwrap();
        _hold.wait_blocked(1).await;
        // The request never completes; serve returns anyway once the grace period is over,
        // dropping the connection.
        s.stop().await;
        assert!(matches!(c.next().await, None | Some(Err(_))));
    })
    .await;
}

#[tokio::test]
async fn shutdown_is_bounded_when_a_client_stops_reading() {
    bounded(async {
        let s = Server::start_with(Limits::default(), Duration::from_millis(50)).await;
        let mut c = binary::connect(s.addr).await.unwrap();
        let mib = "v".repeat(1 << 20);
        assert_eq!(
            call(&mut c, 0, put("big", &mib)).await.result,
            Ok(Response::Done)
        );
        // 100 MiB of answers cannot fit in the socket buffers of a client that never reads:
        // the server's write blocks after a few of them, whenever shutdown comes.
        for id in 1..=100 {
            c.feed(RequestFrame {
                id,
                request: get("big"),
            })
            .await
            .unwrap();
        }
        c.flush().await.unwrap();
        let metrics = kv_server::api::Backend::metrics(&s.backend).clone();
        let key = "kv_binary_requests_total{op=\"get\",outcome=\"ok\"}";
        while metrics.counters().get(key).copied().unwrap_or(0) < 1 {
            tokio::task::yield_now().await;
        }
        s.stop().await;
        drop(c);
    })
    .await;
}
