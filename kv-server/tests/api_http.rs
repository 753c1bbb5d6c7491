//! The HTTP API end to end: a real TCP socket, the client port, and a `LocalBackend`.

mod common;

use common::{Server, bounded, exchange, http};
use kv_server::api::{ApiError, Limits};
use serde_json::json;

#[tokio::test]
async fn raftexample_curl_session() {
    bounded(async {
        let s = Server::start().await;
        // curl -L http://127.0.0.1:12380/my-key -XPUT -d bar
        let r = s.put("/my-key", b"bar").await;
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty());
        // curl -L http://127.0.0.1:12380/my-key
        let r = s.get("/my-key").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"bar");
        assert_eq!(s.put("/my-key", b"hello").await.status, 204);
        assert_eq!(s.get("/my-key").await.body, b"hello");
        s.get("/absent").await.assert_error(404);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn root_and_keys_share_one_namespace() {
    bounded(async {
        let s = Server::start().await;
        assert_eq!(s.put("/keys/a", b"1").await.status, 204);
        assert_eq!(s.get("/a").await.body, b"1");
        assert_eq!(s.put("/b", b"2").await.status, 204);
        assert_eq!(s.get("/keys/b").await.body, b"2");
        assert_eq!(s.backend.get("b").unwrap(), "2");
        assert_eq!(s.request("DELETE", "/keys/b", b"").await.status, 204);
        s.get("/b").await.assert_error(404);
        s.request("DELETE", "/keys/b", b"").await.assert_error(404);
        // A key that looks like a node id is still a key for PUT and GET.
        assert_eq!(s.put("/123", b"n").await.status, 204);
        assert_eq!(s.get("/keys/123").await.body, b"n");
        // The reserved word itself is a key under /keys/.
        assert_eq!(s.put("/keys/keys", b"k").await.status, 204);
        assert_eq!(s.backend.get("keys").unwrap(), "k");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn percent_encoded_keys() {
    bounded(async {
        let s = Server::start().await;
        assert_eq!(s.put("/keys/a%2Fb/c", b"x").await.status, 204);
        assert_eq!(s.backend.get("a/b/c").unwrap(), "x");
        assert_eq!(s.get("/a/b/c").await.body, b"x");
        assert_eq!(s.get("/a%2Fb%2Fc").await.body, b"x");
        assert_eq!(s.put("/dir/sub/leaf", b"y").await.status, 204);
        assert_eq!(s.backend.get("dir/sub/leaf").unwrap(), "y");
        // The reserved-segment test looks at the raw path.
        assert_eq!(s.put("/keys%2Fz", b"z").await.status, 204);
        assert_eq!(s.backend.get("keys/z").unwrap(), "z");
        assert_eq!(s.put("/%6Beys", b"w").await.status, 204);
        assert_eq!(s.backend.get("keys").unwrap(), "w");
        // UTF-8, spaces, and a literal plus.
        assert_eq!(s.put("/caf%C3%A9%20au+lait", b"c").await.status, 204);
        assert_eq!(s.backend.get("café au+lait").unwrap(), "c");
        // A leading slash after the route prefix belongs to the key.
        assert_eq!(s.put("/keys//lead", b"l").await.status, 204);
        assert_eq!(s.backend.get("/lead").unwrap(), "l");
        s.put("/bad%zz", b"").await.assert_error(400);
        s.put("/keys/bad%2", b"").await.assert_error(400);
        s.get("/bad%ff").await.assert_error(400);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn key_and_value_limits() {
    bounded(async {
        let s = Server::start().await;
        let max_key = "k".repeat(4096);
        assert_eq!(s.put(&format!("/{max_key}"), b"v").await.status, 204);
        s.put(&format!("/{max_key}k"), b"v").await.assert_error(413);
        // Length counts after decoding: 4096 bytes written as 12288 characters.
        let encoded = "%41".repeat(4096);
        assert_eq!(s.put(&format!("/keys/{encoded}"), b"v").await.status, 204);
        assert!(s.backend.get(&"A".repeat(4096)).is_some());
        s.put(&format!("/keys/{encoded}%41"), b"v").await.assert_error(413);
        // Empty keys.
        s.put("/", b"v").await.assert_error(400);
        s.get("/").await.assert_error(400);
        // Values: 1 MiB is fine, one byte more is not.
        let mib = vec![7u8; 1 << 20];
        assert_eq!(s.put("/big", &mib).await.status, 204);
        assert_eq!(s.get("/big").await.body.len(), 1 << 20);
        let mut over = mib.clone();
        over.push(0);
        s.put("/big", &over).await.assert_error(413);
        s.put("/keys/big", &vec![0u8; 3 << 20]).await.assert_error(413);
        assert_eq!(s.backend.get("big").unwrap().len(), 1 << 20);
        // Far past the limit: refused from the declared length, without reading the body.
        let r = http(
            s.addr,
            "PUT",
            "/big",
            &[("Expect", "100-continue")],
            b"",
        )
        .await;
        assert_eq!(r.status, 204, "an empty body is within the limit");
        let huge = format!(
            "PUT /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            1u64 << 40
        );
        let replies = exchange(s.addr, huge.as_bytes()).await;
        replies[0].assert_error(413);
        // An empty value is a value.
        assert_eq!(s.put("/empty", b"").await.status, 204);
        let r = s.get("/empty").await;
        assert_eq!((r.status, r.body.len()), (200, 0));
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn compare_and_set() {
    bounded(async {
        let s = Server::start().await;
        assert_eq!(s.put("/keys/c?prev_exist=false", b"v1").await.status, 204);
        s.put("/keys/c?prev_exist=false", b"v2")
            .await
            .assert_error(412);
        s.put("/keys/c?prev_value=nope", b"v2")
            .await
            .assert_error(412);
        assert_eq!(s.put("/keys/c?prev_value=v1", b"v2").await.status, 204);
        assert_eq!(s.put("/keys/c?prev_exist=true", b"v3").await.status, 204);
        assert_eq!(s.get("/c").await.body, b"v3");
        // An absent key fails prev_value and prev_exist=true.
        s.put("/keys/none?prev_value=", b"x")
            .await
            .assert_error(412);
        s.put("/keys/none?prev_exist=true", b"x")
            .await
            .assert_error(412);
        assert!(s.backend.get("none").is_none());
        // Encoded condition values, and CAS at the root.
        assert_eq!(s.put("/sp", b"a b/c").await.status, 204);
        assert_eq!(s.put("/sp?prev_value=a+b%2Fc", b"new").await.status, 204);
        assert_eq!(
            s.put("/keys/c?prev_value=v3&prev_exist=true", b"v4")
                .await
                .status,
            204
        );
        s.put("/keys/c?prev_value=v4&prev_exist=false", b"x")
            .await
            .assert_error(400);
        s.put("/keys/c?prev_exist=maybe", b"x")
            .await
            .assert_error(400);
        s.put("/keys/c?prev_exist=true&prev_exist=true", b"x")
            .await
            .assert_error(400);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn rkv_post_with_val() {
    bounded(async {
        let s = Server::start().await;
        assert_eq!(
            s.request("POST", "/keys/r?val=hello+world", b"")
                .await
                .status,
            204
        );
        assert_eq!(s.backend.get("r").unwrap(), "hello world");
        assert_eq!(s.request("POST", "/keys/r", b"body").await.status, 204);
        assert_eq!(s.backend.get("r").unwrap(), "body");
        s.request("POST", "/keys/r?val=a", b"b")
            .await
            .assert_error(400);
        s.request("POST", "/keys/r?value=a", b"")
            .await
            .assert_error(400);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn list_keys_exact_json_and_paging() {
    bounded(async {
        let s = Server::start().await;
        for k in ["b", "a", "app/1", "app/2", "app/3", "c"] {
            assert_eq!(s.put(&format!("/keys/{k}"), k.as_bytes()).await.status, 204);
        }
        let r = s.get("/keys").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.text(),
            r#"{"keys":["a","app/1","app/2","app/3","b","c"],"more":false}"#
        );
        assert_eq!(s.get("/keys/").await.text(), r.text());
        assert_eq!(
            s.get("/keys?prefix=app%2F&limit=2").await.text(),
            r#"{"keys":["app/1","app/2"],"more":true}"#
        );
        assert_eq!(
            s.get("/keys?prefix=app/&limit=2&after=app/2").await.text(),
            r#"{"keys":["app/3"],"more":false}"#
        );
        assert_eq!(
            s.get("/keys?after=b").await.text(),
            r#"{"keys":["c"],"more":false}"#
        );
        assert_eq!(
            s.get("/keys?prefix=zzz").await.text(),
            r#"{"keys":[],"more":false}"#
        );
        assert_eq!(
            s.get("/keys?prefix=app&values=true&limit=1&consistency=serializable")
                .await
                .text(),
            r#"{"items":[{"key":"app/1","value":"app/1"}],"more":true}"#
        );
        // A value that is not UTF-8 comes back base64-encoded.
        assert_eq!(s.put("/keys/zbin", &[0xff, 0xfe]).await.status, 204);
        assert_eq!(
            s.get("/keys?prefix=zbin&values=true").await.json(),
            json!({"items": [{"key": "zbin", "value_base64": "//4="}], "more": false})
        );
        // Page through everything two at a time.
        let mut after: Option<String> = None;
        let mut seen = Vec::new();
        loop {
            let path = match &after {
                Some(a) => format!("/keys?limit=2&after={a}"),
                None => "/keys?limit=2".to_owned(),
            };
            let page = s.get(&path).await.json();
            let keys: Vec<String> = page["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_owned())
                .collect();
            after = keys.last().cloned();
            seen.extend(keys);
            if !page["more"].as_bool().unwrap() {
                break;
            }
        }
        assert_eq!(seen, ["a", "app/1", "app/2", "app/3", "b", "c", "zbin"]);
        for bad in [
            "/keys?limit=0",
            "/keys?limit=abc",
            "/keys?limit=-1",
            "/keys?values=yes",
            "/keys?consistency=eventual",
            "/keys?sort=desc",
            "/keys?prefix=a&prefix=b",
        ] {
            s.get(bad).await.assert_error(400);
        }
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn list_limit_is_capped_by_the_server() {
    bounded(async {
        let limits = Limits {
            max_list: 3,
            ..Limits::default()
        };
        let s = Server::start_with(limits, kv_server::client_port::SHUTDOWN_GRACE).await;
        for i in 0..5 {
            assert_eq!(s.put(&format!("/k{i}"), b"").await.status, 204);
        }
        assert_eq!(
            s.get("/keys?limit=1000").await.text(),
            r#"{"keys":["k0","k1","k2"],"more":true}"#
        );
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn batch_writes() {
    bounded(async {
        let s = Server::start().await;
        let r = s
            .request("POST", "/keys", br#"{"x":"1","y":"2","z":""}"#)
            .await;
        assert_eq!(r.status, 204);
        assert_eq!(s.backend.get("y").unwrap(), "2");
        assert_eq!(s.backend.len(), 3);
        assert_eq!(s.request("POST", "/keys", b"{}").await.status, 204);
        let body = |n: usize| {
            let map: serde_json::Map<String, serde_json::Value> =
                (0..n).map(|i| (format!("b{i}"), json!("v"))).collect();
            serde_json::to_vec(&map).unwrap()
        };
        assert_eq!(s.request("POST", "/keys", &body(100)).await.status, 204);
        s.request("POST", "/keys", &body(101))
            .await
            .assert_error(413);
        assert!(s.backend.get("b100").is_none());
        for bad in [
            &b"[1,2]"[..],
            b"\"str\"",
            br#"{"a":1}"#,
            br#"{"a":null}"#,
            br#"{"a":{"b":"c"}}"#,
            b"{not json",
            b"",
        ] {
            s.request("POST", "/keys", bad).await.assert_error(400);
        }
        s.request("POST", "/keys", br#"{"":"v"}"#)
            .await
            .assert_error(400);
        s.request("POST", "/keys?atomic=true", b"{}")
            .await
            .assert_error(400);
        // One oversized value fails the whole batch.
        let big = format!(r#"{{"ok":"v","big":"{}"}}"#, "x".repeat((1 << 20) + 1));
        s.request("POST", "/keys", big.as_bytes())
            .await
            .assert_error(413);
        assert!(s.backend.get("ok").is_none());
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn membership_routes() {
    bounded(async {
        let s = Server::start().await;
        let members = s.get("/members").await;
        assert_eq!(
            members.text(),
            r#"{"members":[{"id":1,"peer_url":"http://127.0.0.1:12379","voter":true,"leader":true}]}"#
        );
        assert_eq!(s.get("/servers").await.text(), members.text());
        // rkv style, as a learner, then promoted.
        let r = s
            .request("POST", "/nodes/2?addr=127.0.0.1:22379&learner=true", b"")
            .await;
        assert_eq!(r.status, 204);
        assert_eq!(s.get("/members").await.json()["members"][1]["voter"], json!(false));
        assert_eq!(s.request("POST", "/nodes/2/promote", b"").await.status, 204);
        assert_eq!(s.get("/members").await.json()["members"][1]["voter"], json!(true));
        // raftexample style: POST /{id} with the peer URL as the body adds a voter.
        assert_eq!(
            s.request("POST", "/3", b"http://127.0.0.1:32379\n").await.status,
            204
        );
        let m = s.get("/members").await.json();
        assert_eq!(
            m["members"][2],
            json!({"id": 3, "peer_url": "http://127.0.0.1:32379", "voter": true, "leader": false})
        );
        assert_eq!(s.request("DELETE", "/3", b"").await.status, 204);
        s.request("DELETE", "/3", b"").await.assert_error(404);
        assert_eq!(s.request("DELETE", "/nodes/2", b"").await.status, 204);
        assert_eq!(s.get("/members").await.json()["members"].as_array().unwrap().len(), 1);
        // Peer address from the body on /nodes too.
        assert_eq!(s.request("POST", "/nodes/4", b"127.0.0.1:4").await.status, 204);
        s.request("POST", "/nodes/5", b"").await.assert_error(400);
        s.request("POST", "/nodes/abc?addr=x:1", b"").await.assert_error(400);
        s.request("POST", "/nodes/0?addr=x:1", b"").await.assert_error(400);
        s.request("POST", "/0", b"http://x:1").await.assert_error(400);
        s.request("POST", "/7", b"").await.assert_error(400);
        s.request("POST", "/nodes/6?addr=x:1&learner=maybe", b"")
            .await
            .assert_error(400);
        s.request("POST", "/99999999999999999999", b"http://x:1")
            .await
            .assert_error(400);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn leader_health_state_stats_metrics() {
    bounded(async {
        let s = Server::start().await;
        let r = s.get("/health").await;
        assert_eq!(
            (r.status, r.text()),
            (200, r#"{"health":true,"leader":1}"#.to_owned())
        );
        assert_eq!(
            s.get("/state").await.text(),
            r#"{"id":1,"role":"leader","term":1,"leader":1,"commit":0,"applied":0}"#
        );
        assert_eq!(s.put("/k", b"v").await.status, 204);
        let stats = s.get("/stats").await;
        assert_eq!(stats.status, 200);
        assert_eq!(stats.json()["store"]["keys"], json!(1));

        assert_eq!(
            s.request("POST", "/nodes/2?addr=127.0.0.1:2", b"")
                .await
                .status,
            204
        );
        assert_eq!(s.request("POST", "/leader?to=2", b"").await.status, 204);
        let state = s.get("/state").await.json();
        assert_eq!(
            (state["role"].clone(), state["leader"].clone()),
            (json!("follower"), json!(2))
        );
        s.request("POST", "/leader", b"").await.assert_error(400);
        s.request("POST", "/leader?to=x", b"")
            .await
            .assert_error(400);
        s.request("POST", "/leader?to=9", b"")
            .await
            .assert_error(404);

        let m = s.get("/metrics").await;
        assert_eq!(m.status, 200);
        assert!(m.header("content-type").unwrap().starts_with("text/plain"));
        let text = m.text();
        assert!(
            text.contains("kv_http_requests_total{route=\"put_key\",status=\"204\"} 1"),
            "{text}"
        );
        assert!(text.contains("kv_http_request_duration_seconds_bucket{route=\"state\",le="));
        assert!(text.contains("kv_client_connections_total{protocol=\"http\"}"));
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn unavailable_and_timeouts() {
    bounded(async {
        let s = Server::start().await;
        assert_eq!(s.put("/k", b"v").await.status, 204);
        s.backend.set_leader(0);
        let r = s.get("/health").await;
        r.assert_error(503);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(
            r.json(),
            json!({"error": "no leader", "health": false, "leader": 0})
        );
        for r in [
            s.put("/k", b"w").await,
            s.get("/k").await,
            s.get("/keys").await,
            s.request("POST", "/keys", b"{}").await,
        ] {
            r.assert_error(503);
            assert_eq!(r.header("retry-after"), Some("1"));
        }
        // Serializable reads are served from local state without a leader.
        assert_eq!(s.get("/k?consistency=serializable").await.body, b"v");
        assert_eq!(s.get("/keys?consistency=serializable").await.status, 200);
        s.backend.set_leader(1);
        s.backend
            .inject_error(ApiError::timeout("timed out after proposing"));
        let r = s.put("/k", b"w").await;
        r.assert_error(504);
        assert_eq!(r.json()["error"], json!("timed out after proposing"));
        s.backend.inject_error(ApiError::internal("disk on fire"));
        s.get("/k").await.assert_error(500);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn wrong_methods_and_routes() {
    bounded(async {
        let s = Server::start().await;
        let cases: [(&str, &str, &str); 12] = [
            ("PATCH", "/keys/a", "GET, HEAD, PUT, POST, DELETE"),
            ("PUT", "/keys", "GET, HEAD, POST"),
            ("DELETE", "/keys/", "GET, HEAD, POST"),
            ("DELETE", "/some-key", "GET, HEAD, PUT"),
            ("POST", "/some-key", "GET, HEAD, PUT"),
            ("PATCH", "/12", "GET, HEAD, PUT, POST, DELETE"),
            ("GET", "/nodes/1", "POST, DELETE"),
            ("GET", "/nodes/1/promote", "POST"),
            ("GET", "/leader", "POST"),
            ("POST", "/health", "GET, HEAD"),
            ("DELETE", "/members", "GET, HEAD"),
            ("PUT", "/metrics", "GET, HEAD"),
        ];
        for (method, path, allow) in cases {
            let r = s.request(method, path, b"").await;
            r.assert_error(405);
            assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        }
        for path in [
            "/health/x",
            "/nodes",
            "/nodes/1/demote",
            "/stats/",
            "/leader/1",
        ] {
            s.get(path).await.assert_error(404);
        }
        // Unknown parameters anywhere are 400s.
        for path in ["/k?x=1", "/keys/k?x=1", "/health?verbose=1", "/members?x"] {
            s.get(path).await.assert_error(400);
        }
        s.request("DELETE", "/keys/k?force=true", b"")
            .await
            .assert_error(400);
        // HEAD is accepted wherever GET is.
        assert_eq!(s.request("HEAD", "/health", b"").await.status, 200);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn keep_alive_and_pipelined_http() {
    bounded(async {
        let s = Server::start().await;
        let raw = b"PUT /p HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nv1\
GET /p HTTP/1.1\r\nHost: t\r\n\r\n\
GET /keys HTTP/1.1\r\nHost: t\r\n\r\n\
DELETE /keys/nope HTTP/1.1\r\nHost: t\r\n\r\n\
GET /p HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        let replies = exchange(s.addr, raw).await;
        let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [204, 200, 200, 404, 200]);
        assert_eq!(replies[1].body, b"v1");
        assert_eq!(replies[2].text(), r#"{"keys":["p"],"more":false}"#);
        replies[3].assert_error(404);
        // A modestly oversized body is drained, so the connection survives the 413.
        let mut raw = format!(
            "PUT /q HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            (1 << 20) + 10
        )
        .into_bytes();
        raw.extend(vec![b'x'; (1 << 20) + 10]);
        raw.extend_from_slice(b"GET /p HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let replies = exchange(s.addr, &raw).await;
        replies[0].assert_error(413);
        assert_eq!(replies[1].body, b"v1");
        s.stop().await;
    })
    .await;
}
