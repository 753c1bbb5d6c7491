//! The real `kv-client` binary against real `kv-server` processes on loopback (see
//! [`common`] for how they are run).

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use serde_json::Value;

use common::*;

/// What one `kv-client` run did.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Out {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    #[track_caller]
    fn ok(self) -> Out {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        self
    }

    #[track_caller]
    fn code(self, code: i32) -> Out {
        assert_eq!(self.code, code, "expected exit code {code}: {self:?}");
        self
    }
}

/// Runs `kv-client` with `args`, feeding `stdin`, with `env` set, for at most [`RUN_LIMIT`].
fn run_with(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kv-client"));
    cmd.args(args)
        .env_remove("KV_ENDPOINTS")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawning kv-client");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let status = wait_bounded(&mut child, RUN_LIMIT)
        .unwrap_or_else(|| panic!("kv-client {args:?} ran over {RUN_LIMIT:?}"));
    Out {
        code: status.code().unwrap_or(-1),
        stdout: out_reader.join().expect("stdout reader"),
        stderr: String::from_utf8_lossy(&err_reader.join().expect("stderr reader")).into_owned(),
    }
}

fn kv(endpoints: &str, args: &[&str]) -> Out {
    let mut all = vec!["--endpoints", endpoints];
    all.extend_from_slice(args);
    run_with(&all, None, &[])
}

fn kv_stdin(endpoints: &str, args: &[&str], stdin: &[u8]) -> Out {
    let mut all = vec!["--endpoints", endpoints];
    all.extend_from_slice(args);
    run_with(&all, Some(stdin), &[])
}

/// `status --json` rows of the running nodes.
fn status_rows(c: &Cluster) -> Vec<Value> {
    kv(&c.endpoints(), &["--json", "status"])
        .json()
        .as_array()
        .expect("status --json is an array")
        .clone()
}

/// The leader every node agrees on, once they do.
fn agreed_leader(c: &Cluster) -> u64 {
    let mut leader = 0;
    wait_for("the nodes to agree on a leader", STARTUP, || {
        let rows = status_rows(c);
        let leaders: Vec<u64> = rows
            .iter()
            .map(|r| r["leader"].as_u64().unwrap_or(0))
            .collect();
        leader = leaders[0];
        leader != 0 && leaders.iter().all(|l| *l == leader)
    });
    leader
}

// ---------------------------------------------------------------------------------------
// Single node.

#[test]
fn put_get_del_and_their_exit_codes() {
    let c = Cluster::start(1);
    let ep = c.endpoints();
    let out = kv(&ep, &["put", "greeting", "hello world"]).ok();
    assert_eq!(out.stdout(), "OK\n");
    // The raw value, no newline added.
    assert_eq!(kv(&ep, &["get", "greeting"]).ok().stdout, b"hello world");
    let out = kv(&ep, &["get", "greeting", "--consistency", "serializable"]).ok();
    assert_eq!(out.stdout, b"hello world");
    let out = kv(&ep, &["get", "absent"]).code(1);
    assert!(out.stdout.is_empty());
    assert!(out.stderr.contains("key not found: \"absent\""), "{out:?}");
    // Keys may contain slashes and spaces.
    kv(&ep, &["put", "dir/a key", "v"]).ok();
    assert_eq!(kv(&ep, &["get", "dir/a key"]).ok().stdout, b"v");
    kv(&ep, &["del", "greeting"]).ok();
    let out = kv(&ep, &["del", "greeting"]).code(1);
    assert!(out.stderr.contains("key not found"), "{out:?}");
    kv(&ep, &["get", "greeting"]).code(1);
}

#[test]
fn put_reads_the_value_from_stdin() {
    let c = Cluster::start(1);
    let ep = c.endpoints();
    let value = b"line one\nline two\n\x00\xff binary";
    kv_stdin(&ep, &["put", "blob", "-"], value).ok();
    assert_eq!(kv(&ep, &["get", "blob"]).ok().stdout, value);
    // Not UTF-8: JSON carries it as base64.
    let json = kv(&ep, &["--json", "get", "blob"]).ok().json();
    assert_eq!(json["key"], "blob");
    assert!(json.get("value").is_none());
    assert_eq!(json["value_base64"], "bGluZSBvbmUKbGluZSB0d28KAP8gYmluYXJ5");
    // cas takes its new value from stdin too.
    kv_stdin(
        &ep,
        &["cas", "blob", "-", "--prev-exist", "true"],
        b"replaced",
    )
    .ok();
    assert_eq!(kv(&ep, &["get", "blob"]).ok().stdout, b"replaced");
    // An empty stdin is an empty value.
    kv_stdin(&ep, &["put", "empty", "-"], b"").ok();
    assert_eq!(kv(&ep, &["get", "empty"]).ok().stdout, b"");
}

#[test]
fn cas_checks_its_condition() {
    let c = Cluster::start(1);
    let ep = c.endpoints();
    // prev-exist=false on an absent key creates it; a second time fails.
    kv(&ep, &["cas", "lock", "owner-1", "--prev-exist", "false"]).ok();
    let out = kv(&ep, &["cas", "lock", "owner-2", "--prev-exist", "false"]).code(1);
    assert!(out.stderr.contains("already exists"), "{out:?}");
    // prev-value must match exactly.
    let out = kv(&ep, &["cas", "lock", "owner-2", "--prev-value", "owner-9"]).code(1);
    assert!(out.stderr.contains("condition failed"), "{out:?}");
    assert_eq!(kv(&ep, &["get", "lock"]).ok().stdout, b"owner-1");
    kv(&ep, &["cas", "lock", "owner-2", "--prev-value", "owner-1"]).ok();
    assert_eq!(kv(&ep, &["get", "lock"]).ok().stdout, b"owner-2");
    // An absent key fails prev-value and prev-exist=true.
    kv(&ep, &["cas", "nothing", "x", "--prev-value", "y"]).code(1);
    let out = kv(&ep, &["cas", "nothing", "x", "--prev-exist", "true"]).code(1);
    assert!(out.stderr.contains("does not exist"), "{out:?}");
    let out = kv(
        &ep,
        &["--json", "cas", "nothing", "x", "--prev-exist", "true"],
    )
    .code(1);
    assert_eq!(out.json()["kind"], "precondition_failed");
    // No condition, or both: usage.
    kv(&ep, &["cas", "lock", "x"]).code(2);
    kv(
        &ep,
        &[
            "cas",
            "lock",
            "x",
            "--prev-value",
            "a",
            "--prev-exist",
            "true",
        ],
    )
    .code(2);
    kv(&ep, &["cas", "lock", "x", "--prev-exist", "maybe"]).code(2);
}

#[test]
fn list_with_prefix_limit_after_and_values() {
    let c = Cluster::start(1);
    let ep = c.endpoints();
    for (k, v) in [
        ("app/a", "1"),
        ("app/b", "2"),
        ("app/c", "3"),
        ("other", "x"),
    ] {
        kv(&ep, &["put", k, v]).ok();
    }
    let out = kv(&ep, &["list"]).ok();
    assert_eq!(out.stdout(), "app/a\napp/b\napp/c\nother\n");
    let out = kv(&ep, &["list", "--prefix", "app/", "--limit", "2"]).ok();
    assert_eq!(out.stdout(), "app/a\napp/b\n");
    assert!(out.stderr.contains("--after \"app/b\""), "{out:?}");
    let out = kv(
        &ep,
        &["list", "--prefix", "app/", "--after", "app/b", "--values"],
    )
    .ok();
    assert_eq!(out.stdout(), "app/c\t3\n");
    let json = kv(&ep, &["--json", "list", "--prefix", "app/", "--limit", "2"])
        .ok()
        .json();
    assert_eq!(
        json,
        serde_json::json!({"keys": ["app/a", "app/b"], "more": true})
    );
    let json = kv(&ep, &["--json", "list", "--prefix", "o", "--values"])
        .ok()
        .json();
    assert_eq!(
        json,
        serde_json::json!({"items": [{"key": "other", "value": "x"}], "more": false})
    );
    let json = kv(&ep, &["--json", "list", "--prefix", "zzz"]).ok().json();
    assert_eq!(json, serde_json::json!({"keys": [], "more": false}));
    let out = kv(&ep, &["list", "--consistency", "serializable"]).ok();
    assert_eq!(out.stdout().lines().count(), 4);
    kv(&ep, &["list", "--limit", "0"]).code(2);
}

#[test]
fn batch_from_a_file_and_from_stdin() {
    let c = Cluster::start(1);
    let ep = c.endpoints();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.json");
    std::fs::write(&file, r#"{"b/1": "one", "b/2": "two"}"#).unwrap();
    kv(&ep, &["batch", file.to_str().unwrap()]).ok();
    assert_eq!(kv(&ep, &["get", "b/2"]).ok().stdout, b"two");
    kv_stdin(&ep, &["batch", "-"], br#"{"b/3": "three"}"#).ok();
    // Without an argument, stdin too.
    kv_stdin(&ep, &["batch"], br#"{"b/4": "four"}"#).ok();
    let out = kv(&ep, &["list", "--prefix", "b/"]).ok();
    assert_eq!(out.stdout(), "b/1\nb/2\nb/3\nb/4\n");
    // Not an object of strings, or no such file: usage errors, nothing written.
    let out = kv_stdin(&ep, &["batch"], br#"["b/5"]"#).code(2);
    assert!(out.stderr.contains("JSON object"), "{out:?}");
    kv_stdin(&ep, &["batch"], br#"{"b/5": 5}"#).code(2);
    let out = kv(&ep, &["batch", "/nonexistent/batch.json"]).code(2);
    assert!(out.stderr.contains("/nonexistent/batch.json"), "{out:?}");
    kv(&ep, &["get", "b/5"]).code(1);
    // Over the server's limit of 100 keys: refused (413 is a usage error).
    let big: serde_json::Map<String, Value> = (0..101)
        .map(|i| (format!("k{i}"), Value::from("v")))
        .collect();
    let out = kv_stdin(&ep, &["batch"], Value::Object(big).to_string().as_bytes()).code(2);
    assert!(out.stderr.contains("limit"), "{out:?}");
}

#[test]
fn json_output_for_scripts() {
    let c = Cluster::start(1);
    let ep = c.endpoints();
    assert_eq!(
        kv(&ep, &["--json", "put", "k", "v"]).ok().json(),
        serde_json::json!({"ok": true})
    );
    assert_eq!(
        kv(&ep, &["--json", "get", "k"]).ok().json(),
        serde_json::json!({"key": "k", "value": "v"})
    );
    let err = kv(&ep, &["--json", "get", "nope"]).code(1).json();
    assert_eq!(err["kind"], "not_found");
    assert!(err["error"].as_str().unwrap().contains("nope"));
    let members = kv(&ep, &["--json", "members"]).ok().json();
    let list = members["members"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], 1);
    assert_eq!(list[0]["voter"], true);
    assert_eq!(list[0]["leader"], true);
    let status = kv(&ep, &["--json", "status"]).ok().json();
    let row = &status[0];
    assert_eq!(row["endpoint"], ep.as_str());
    assert_eq!(row["id"], 1);
    assert_eq!(row["role"], "leader");
    assert_eq!(row["leader"], 1);
    assert!(row["term"].as_u64().unwrap() >= 1);
    assert!(row["applied"].as_u64().unwrap() >= 1);
    let health = kv(&ep, &["--json", "health"]).ok().json();
    assert_eq!(health[0]["health"], true);
    assert_eq!(health[0]["leader"], 1);
    // Global flags may also follow the command.
    assert_eq!(kv(&ep, &["get", "k", "--json"]).ok().json()["value"], "v");
}

#[test]
fn members_status_and_health_as_text() {
    let c = Cluster::start(1);
    let ep = c.endpoints();
    let out = kv(&ep, &["members"]).ok().stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("ID"), "{out}");
    assert!(
        lines[1].starts_with('1') && lines[1].contains("voter"),
        "{out}"
    );
    let out = kv(&ep, &["status"]).ok().stdout();
    let lines: Vec<&str> = out.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ENDPOINT", "ID", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..3], [ep.as_str(), "1", "leader"]);
    let out = kv(&ep, &["health"]).ok().stdout();
    assert_eq!(out, format!("{ep} is healthy: leader 1\n"));
}

#[test]
fn usage_errors_exit_2() {
    let c = Cluster::start(1);
    let ep = c.endpoints();
    for args in [
        &[][..],
        &["frobnicate"],
        &["get"],
        &["put", "k"],
        &["--no-such-flag", "get", "k"],
        &["--timeout", "5parsecs", "get", "k"],
        &["add-node", "x", "127.0.0.1:1"],
        &["bench", "--read-ratio", "2"],
        &["bench", "--duration", "1s", "--ops", "5"],
    ] {
        let out = kv(&ep, args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
    for endpoints in ["https://127.0.0.1:1", "127.0.0.1", "http://h:1/path", ""] {
        let out = run_with(&["--endpoints", endpoints, "get", "k"], None, &[]);
        assert_eq!(out.code, 2, "{endpoints:?}: {out:?}");
        assert!(out.stderr.contains("endpoint"), "{out:?}");
    }
    // The server's refusals of bad input are usage errors too.
    let out = kv(&ep, &["get", ""]).code(2);
    assert!(out.stderr.contains("empty key"), "{out:?}");
    let long = "k".repeat(5000);
    let out = kv(&ep, &["put", &long, "v"]).code(2);
    assert!(out.stderr.contains("exceeds the limit"), "{out:?}");
    kv(&ep, &["transfer-leader", "0"]).code(2);
    // Help is not an error.
    let out = run_with(&["--help"], None, &[]).ok();
    assert!(out.stdout().contains("transfer-leader"));
}

#[test]
fn no_reachable_endpoint_exits_3() {
    let dead = format!("{},{}", dead_endpoint(), dead_endpoint());
    let out = kv(&dead, &["get", "k"]).code(3);
    assert!(out.stderr.contains("no endpoint reachable"), "{out:?}");
    assert!(out.stderr.contains("refused"), "{out:?}");
    let out = kv(&dead, &["put", "k", "v"]).code(3);
    assert!(out.stderr.contains("no endpoint reachable"), "{out:?}");
    let out = kv(&dead, &["--json", "members"]).code(3);
    assert_eq!(out.json()["kind"], "unavailable");
    let out = kv(&dead, &["status"]).code(3);
    assert_eq!(out.stdout().lines().count(), 3, "{out:?}");
    kv(&dead, &["health"]).code(3);
    let out = kv(&dead, &["bench", "--ops", "10"]).code(3);
    assert!(out.stderr.contains("refused"), "{out:?}");
}

#[test]
fn endpoints_come_from_kv_endpoints() {
    let c = Cluster::start(1);
    let ep = c.endpoints();
    run_with(&["put", "env", "yes"], None, &[("KV_ENDPOINTS", &ep)]).ok();
    let out = run_with(&["get", "env"], None, &[("KV_ENDPOINTS", &ep)]).ok();
    assert_eq!(out.stdout, b"yes");
    // The flag wins over the variable.
    let out = run_with(
        &["--endpoints", &ep, "get", "env"],
        None,
        &[("KV_ENDPOINTS", &dead_endpoint())],
    )
    .ok();
    assert_eq!(out.stdout, b"yes");
}

#[test]
fn bench_over_both_protocols() {
    let c = Cluster::start(1);
    let ep = c.endpoints();
    for protocol in ["binary", "http"] {
        let report = kv(
            &ep,
            &[
                "--json",
                "bench",
                "--protocol",
                protocol,
                "--ops",
                "300",
                "--clients",
                "4",
                "--keyspace",
                "50",
                "--value-size",
                "64",
                "--read-ratio",
                "0.5",
            ],
        )
        .ok()
        .json();
        assert_eq!(report["protocol"], protocol);
        assert_eq!(report["ops"], 300, "{report}");
        assert_eq!(report["errors"], 0, "{report}");
        assert_eq!(
            report["reads"].as_u64().unwrap() + report["writes"].as_u64().unwrap(),
            300
        );
        let lat = &report["latency_us"];
        for q in ["p50", "p90", "p99", "p99.9", "max"] {
            assert!(lat[q].as_u64().unwrap() > 0, "{q}: {report}");
        }
        assert!(lat["p50"].as_u64() <= lat["max"].as_u64());
        assert!(report["throughput_ops_per_s"].as_f64().unwrap() > 0.0);
    }
    // The writes landed under the prefix.
    let json = kv(&ep, &["--json", "list", "--prefix", "bench/"])
        .ok()
        .json();
    assert!(!json["keys"].as_array().unwrap().is_empty());
    // Text report, serializable reads, a duration.
    let out = kv(
        &ep,
        &[
            "bench",
            "--duration",
            "300ms",
            "--clients",
            "2",
            "--read-ratio",
            "1",
            "--consistency",
            "serializable",
        ],
    )
    .ok();
    let text = out.stdout();
    for needle in ["throughput", "p99.9", "errors      0", "binary"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

// ---------------------------------------------------------------------------------------
// Three nodes.

#[test]
fn fails_over_when_the_first_endpoint_is_down() {
    let mut c = Cluster::start(3);
    // A dead endpoint first: one refused connect, then the next one.
    let endpoints = format!("{},{}", dead_endpoint(), c.endpoints());
    kv(&endpoints, &["put", "f", "1"]).ok();
    assert_eq!(kv(&endpoints, &["get", "f"]).ok().stdout, b"1");
    // Kill the leader and list its endpoint first.
    let leader = agreed_leader(&c);
    let first = c.node(leader).endpoint();
    c.kill(leader);
    let endpoints = format!("{first},{}", c.endpoints());
    // A read right away: the survivors serve it once they have elected a new leader.
    assert_eq!(kv(&endpoints, &["get", "f"]).ok().stdout, b"1");
    // A write forwarded to the dead leader before the survivors notice would be reported
    // as indeterminate (exit 3), rightly: wait for the new leader first.
    let new_leader = agreed_leader(&c);
    assert_ne!(new_leader, leader);
    kv(&endpoints, &["put", "f", "2"]).ok();
    assert_eq!(kv(&endpoints, &["get", "f"]).ok().stdout, b"2");
    kv(&endpoints, &["cas", "f", "3", "--prev-value", "2"]).ok();
    kv(&endpoints, &["del", "f"]).ok();
    let out = kv(&endpoints, &["--json", "members"]).ok().json();
    assert_eq!(out["members"].as_array().unwrap().len(), 3);
    // status shows the dead node's error and exits 3; so does health.
    let out = kv(&endpoints, &["status"]).code(3);
    let text = out.stdout();
    assert!(text.contains("ERROR") && text.contains("refused"), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
    kv(&endpoints, &["health"]).code(3);
    kv(&c.endpoints(), &["health"]).ok();
}

#[test]
fn writes_via_a_follower_and_status_over_every_endpoint() {
    let c = Cluster::start(3);
    let leader = agreed_leader(&c);
    let rows = status_rows(&c);
    assert_eq!(rows.len(), 3);
    let roles: Vec<&str> = rows.iter().map(|r| r["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "leader").count(),
        1,
        "{rows:?}"
    );
    assert_eq!(
        roles.iter().filter(|r| **r == "follower").count(),
        2,
        "{rows:?}"
    );
    let ids: Vec<u64> = rows.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3]);
    // The text table: a header and one row per endpoint, in order.
    let text = kv(&c.endpoints(), &["status"]).ok().stdout();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for (i, line) in lines[1..].iter().enumerate() {
        assert!(line.starts_with(&c.node(i as u64 + 1).endpoint()), "{text}");
    }
    // Write through a follower only, read through the other follower only.
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let f1 = c.node(followers[0]).endpoint();
    let f2 = c.node(followers[1]).endpoint();
    kv(&f1, &["put", "via-follower", "yes"]).ok();
    assert_eq!(kv(&f2, &["get", "via-follower"]).ok().stdout, b"yes");
    kv_stdin(&f1, &["batch"], br#"{"x": "1", "y": "2"}"#).ok();
    let out = kv(&f2, &["list"]).ok().stdout();
    assert_eq!(out, "via-follower\nx\ny\n");
    kv(&f2, &["cas", "x", "10", "--prev-value", "1"]).ok();
    assert_eq!(kv(&f1, &["get", "x"]).ok().stdout, b"10");
}

#[test]
fn add_and_remove_nodes() {
    let mut c = Cluster::start(3);
    let ep = c.endpoints();
    let out = kv(&ep, &["members"]).ok().stdout();
    assert_eq!(out.lines().count(), 4, "{out}");
    // A voter: add it, then start it with --join.
    let (id, addr) = c.reserve_node();
    kv(&ep, &["add-node", &id.to_string(), &addr]).ok();
    let node = c.spawn(id, true);
    wait_for("node 4 to join", STARTUP, || node.healthy());
    c.nodes.push(Some(node));
    let members = kv(&ep, &["--json", "members"]).ok().json();
    let list = members["members"].as_array().unwrap();
    assert_eq!(list.len(), 4, "{members}");
    assert!(list.iter().any(|m| m["id"] == 4 && m["voter"] == true));
    // The new node serves clients.
    kv(&c.node(4).endpoint(), &["put", "from-4", "hi"]).ok();
    assert_eq!(kv(&ep, &["get", "from-4"]).ok().stdout, b"hi");
    // A learner (never started: a learner does not count for the quorum), promoted, removed.
    let (lid, laddr) = c.reserve_node();
    kv(&ep, &["add-node", &lid.to_string(), &laddr, "--learner"]).ok();
    let members = kv(&ep, &["--json", "members"]).ok().json();
    let learner = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == lid)
        .cloned()
        .expect("the learner is a member");
    assert_eq!(learner["voter"], false);
    let out = kv(&ep, &["members"]).ok().stdout();
    assert!(out.contains("learner"), "{out}");
    kv(&ep, &["remove-node", &lid.to_string()]).ok();
    // Remove node 4 again; removing it twice is a not-found.
    kv(&ep, &["remove-node", "4"]).ok();
    c.kill(4);
    let members = kv(&c.endpoints(), &["--json", "members"]).ok().json();
    let ids: Vec<u64> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    let out = kv(&c.endpoints(), &["remove-node", "4"]).code(1);
    assert!(out.stderr.contains("not a member"), "{out:?}");
    kv(&c.endpoints(), &["put", "after", "removal"]).ok();
}

#[test]
fn transfers_leadership() {
    let c = Cluster::start(3);
    let ep = c.endpoints();
    let leader = agreed_leader(&c);
    let target = if leader == 3 { 2 } else { 3 };
    kv(&ep, &["transfer-leader", &target.to_string()]).ok();
    // The transfer answers once every node sees the new leader.
    for row in status_rows(&c) {
        assert_eq!(row["leader"], target, "{row}");
    }
    // Transferring to the leader itself is a no-op; to a non-member a usage error.
    kv(&ep, &["transfer-leader", &target.to_string()]).ok();
    kv(&ep, &["transfer-leader", "9"]).code(2);
    kv(&ep, &["put", "after-transfer", "ok"]).ok();
}

#[test]
fn bench_routes_to_the_leader_or_spreads() {
    let c = Cluster::start(3);
    let leader = agreed_leader(&c);
    // The leader last, so that routing is what puts the connections there.
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let endpoints = format!(
        "{},{},{}",
        c.node(followers[0]).endpoint(),
        c.node(followers[1]).endpoint(),
        c.node(leader).endpoint()
    );
    for protocol in ["binary", "http"] {
        for routing in ["leader", "spread"] {
            let report = kv(
                &endpoints,
                &[
                    "--json",
                    "bench",
                    "--protocol",
                    protocol,
                    "--routing",
                    routing,
                    "--ops",
                    "200",
                    "--clients",
                    "4",
                    "--read-ratio",
                    "0.5",
                ],
            )
            .ok()
            .json();
            assert_eq!(report["protocol"], protocol);
            assert_eq!(report["routing"], routing);
            assert_eq!(report["ops"], 200, "{report}");
            assert_eq!(report["errors"], 0, "{report}");
            if routing == "leader" {
                assert_eq!(report["leader"], c.node(leader).endpoint().as_str());
            } else {
                assert!(report["leader"].is_null(), "{report}");
            }
        }
    }
    let out = kv(
        &endpoints,
        &[
            "bench",
            "--ops",
            "20",
            "--clients",
            "2",
            "--routing",
            "leader",
        ],
    )
    .ok();
    let text = out.stdout();
    let expected = format!(
        "routing     leader (every connection to {})",
        c.node(leader).endpoint()
    );
    assert!(text.contains(&expected), "{text}");
    kv(&endpoints, &["bench", "--ops", "1", "--routing", "nowhere"]).code(2);
}
