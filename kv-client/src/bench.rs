//! The load generator behind `kv-client bench`.
//!
//! [`run`] starts [`BenchConfig::clients`] workers, each a loop of one request at a time:
//! a read of a random key with probability [`BenchConfig::read_ratio`], else a write of a
//! [`BenchConfig::value_size`]-byte value to a random key, keys drawn uniformly from
//! [`BenchConfig::keyspace`] keys named `<key_prefix><n:08>`. It stops after a duration or
//! an op count and reports throughput, errors and an HdrHistogram of latencies.
//!
//! Over [`Protocol::Binary`] the workers share [`BenchConfig::connections`] pipelined
//! [`Client`] connections (each worker's requests go out on the one it is assigned); over
//! [`Protocol::Http`] every worker has its own keep-alive HTTP/1.1 connection, since HTTP/1.1
//! answers one request at a time per connection. All connections are open before the clock
//! starts, and [`BenchConfig::routing`] places them the same way for both protocols:
//!
//! - [`Routing::Leader`] (the default) finds the raft leader once before the start, as
//!   [`Client::find_leader`] does, and opens every connection to it: binary [`Client`]s with
//!   [`ClientOptions::prefer_leader`], the leader first in their endpoint lists, and every
//!   HTTP connection. This is how a leader-aware client (TiKV's, or [`Client`] by default)
//!   loads a cluster.
//! - [`Routing::Spread`] spreads the connections over the endpoints round-robin, without
//!   leader routing, as a client unaware of the leader (etcd's) does: followers then forward
//!   writes and linearizable reads to the leader.
//!
//! After a connection failure, a binary [`Client`] fails over as it always does; an HTTP
//! worker moves on to the next endpoint of its list.
//!
//! Decisions:
//! - A read of an absent key (404) counts as a success: it did the full read path. Run a
//!   write workload first to fill the key space.
//! - Only successful operations are timed and counted in the throughput; failures are
//!   counted by kind.
//! - Over the binary protocol a request goes through [`Client::call`], so it follows the
//!   client's retry policy (a 503 is retried within [`BenchConfig::timeout`]); over HTTP a
//!   failed request is counted and the worker goes on, reconnecting if its connection
//!   failed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use kv_server::api::{Consistency, ErrorKind, Request};
use serde_json::json;

use crate::client::{Client, ClientOptions, Endpoint, Error};
use crate::http1::HttpConn;

/// Which protocol the workers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `KVB1`, pipelined.
    Binary,
    /// HTTP/1.1 with keep-alive, one request at a time per connection.
    Http,
}

impl Protocol {
    /// `binary` or `http`.
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Binary => "binary",
            Protocol::Http => "http",
        }
    }
}

/// Where the connections go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// All to the leader, found once before the start.
    Leader,
    /// Round-robin over the endpoints.
    Spread,
}

impl Routing {
    /// `leader` or `spread`.
    pub fn name(&self) -> &'static str {
        match self {
            Routing::Leader => "leader",
            Routing::Spread => "spread",
        }
    }
}

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long.
    After(Duration),
    /// After this many operations, in total over all workers.
    Ops(u64),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The endpoints.
    pub endpoints: Vec<Endpoint>,
    /// The protocol.
    pub protocol: Protocol,
    /// Where the connections go.
    pub routing: Routing,
    /// Concurrent workers, each with one request in flight.
    pub clients: usize,
    /// Binary protocol only: pipelined connections the workers share (at least 1, at most
    /// `clients`).
    pub connections: usize,
    /// When to stop.
    pub stop: Stop,
    /// Distinct keys.
    pub keyspace: u64,
    /// Bytes per written value.
    pub value_size: usize,
    /// Fraction of operations that are reads, in `[0, 1]`.
    pub read_ratio: f64,
    /// Consistency of the reads.
    pub consistency: Consistency,
    /// Per-request deadline.
    pub timeout: Duration,
    /// Prefix of every key.
    pub key_prefix: String,
    /// Seed of the workers' random choices (worker `i` uses `seed + i`).
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            endpoints: vec![Endpoint::parse(crate::DEFAULT_ENDPOINT).expect("valid default")],
            protocol: Protocol::Binary,
            routing: Routing::Leader,
            clients: 16,
            connections: 1,
            stop: Stop::After(Duration::from_secs(10)),
            keyspace: 10_000,
            value_size: 100,
            read_ratio: 0.5,
            consistency: Consistency::Linearizable,
            timeout: Duration::from_secs(10),
            key_prefix: "bench/".into(),
            seed: 1,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The protocol.
    pub protocol: Protocol,
    /// Where the connections went.
    pub routing: Routing,
    /// With [`Routing::Leader`], the leader's endpoint found before the start.
    pub leader: Option<Endpoint>,
    /// Workers.
    pub clients: usize,
    /// Connections open to the servers.
    pub connections: usize,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Successful reads.
    pub reads: u64,
    /// Successful writes.
    pub writes: u64,
    /// Failed operations by [`Error::kind_name`] (HTTP: by the status's kind, `io` for a
    /// connection failure).
    pub errors: BTreeMap<String, u64>,
    /// Latencies of successful operations, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl BenchReport {
    /// Successful operations.
    pub fn ok(&self) -> u64 {
        self.reads + self.writes
    }

    /// Failed operations.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Successful operations per second.
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok() as f64 / secs
        } else {
            0.0
        }
    }

    /// The latency at `quantile` (in `[0, 1]`).
    pub fn latency(&self, quantile: f64) -> Duration {
        Duration::from_micros(self.latency_us.value_at_quantile(quantile))
    }

    /// The report as JSON, latencies in microseconds.
    pub fn to_json(&self, config: &BenchConfig) -> serde_json::Value {
        let h = &self.latency_us;
        json!({
            "protocol": self.protocol.name(),
            "routing": self.routing.name(),
            "leader": self.leader.as_ref().map(|e| e.to_string()),
            "endpoints": config.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            "clients": self.clients,
            "connections": self.connections,
            "keyspace": config.keyspace,
            "value_size": config.value_size,
            "read_ratio": config.read_ratio,
            "consistency": match config.consistency {
                Consistency::Linearizable => "linearizable",
                Consistency::Serializable => "serializable",
            },
            "elapsed_s": self.elapsed.as_secs_f64(),
            "ops": self.ok(),
            "reads": self.reads,
            "writes": self.writes,
            "errors": self.error_count(),
            "errors_by_kind": self.errors,
            "throughput_ops_per_s": self.throughput(),
            "latency_us": {
                "mean": h.mean(),
                "p50": h.value_at_quantile(0.50),
                "p90": h.value_at_quantile(0.90),
                "p99": h.value_at_quantile(0.99),
                "p99.9": h.value_at_quantile(0.999),
                "max": h.max(),
            },
        })
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 100 s at 3 significant digits; larger values are clamped.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// What one worker counted.
struct Tally {
    reads: u64,
    writes: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            reads: 0,
            writes: 0,
            errors: BTreeMap::new(),
        }
    }

    fn ok(&mut self, read: bool, start: Instant, control: &Control) {
        let us = start.elapsed().as_micros().clamp(1, 100_000_000) as u64;
        // One histogram for all workers: a histogram per worker (each ~0.4 MB at these
        // bounds) made recording a cache miss, measured at 7% of the client's CPU time.
        // The lock is uncontended on the client's single thread.
        control
            .latency_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .saturating_record(us);
        if read {
            self.reads += 1;
        } else {
            self.writes += 1;
        }
    }

    fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_owned()).or_default() += 1;
    }
}

/// Shared by the workers: the stop condition, the progress counter and the latencies.
struct Control {
    stop: Stop,
    /// Operations started (for [`Stop::Ops`]).
    issued: AtomicU64,
    start: Instant,
    /// Operations finished, for the caller's progress display.
    done: Arc<AtomicU64>,
    /// Latencies of successful operations, in microseconds.
    latency_us: Mutex<Histogram<u64>>,
}

impl Control {
    /// Whether a worker may start another operation.
    fn next(&self) -> bool {
        match self.stop {
            Stop::After(d) => self.start.elapsed() < d,
            Stop::Ops(n) => self.issued.fetch_add(1, Ordering::Relaxed) < n,
        }
    }
}

/// One operation, chosen by a worker.
struct Op {
    read: bool,
    key: String,
}

struct Workload {
    keyspace: u64,
    read_ratio: f64,
    key_prefix: String,
    value: Bytes,
    consistency: Consistency,
}

impl Workload {
    fn next(&self, rng: &mut fastrand::Rng) -> Op {
        let read = rng.f64() < self.read_ratio;
        let key = format!("{}{:08}", self.key_prefix, rng.u64(0..self.keyspace));
        Op { read, key }
    }
}

/// Checks a configuration.
///
/// # Errors
///
/// [`Error::InvalidInput`] naming the bad setting.
pub fn check(config: &BenchConfig) -> Result<(), Error> {
    let bad = |m: &str| Err(Error::InvalidInput(m.to_owned()));
    if config.endpoints.is_empty() {
        return bad("no endpoint given");
    }
    if config.clients == 0 {
        return bad("--clients must be at least 1");
    }
    if config.connections == 0 {
        return bad("--connections must be at least 1");
    }
    if config.keyspace == 0 {
        return bad("--keyspace must be at least 1");
    }
    if !(0.0..=1.0).contains(&config.read_ratio) {
        return bad("--read-ratio must be between 0 and 1");
    }
    match config.stop {
        Stop::After(d) if d.is_zero() => bad("--duration must be more than 0"),
        Stop::Ops(0) => bad("--ops must be at least 1"),
        _ => Ok(()),
    }
}

/// Runs the benchmark; `done` counts finished operations as they finish, for a progress
/// display.
///
/// # Errors
///
/// [`Error::InvalidInput`] for a bad configuration, [`Error::Unavailable`] when a connection
/// cannot be opened before the start, or with [`Routing::Leader`] when no endpoint says it
/// is the leader within [`BenchConfig::timeout`]. Failures during the run are counted in the
/// report.
pub async fn run(config: &BenchConfig, done: Arc<AtomicU64>) -> Result<BenchReport, Error> {
    check(config)?;
    let mut value = vec![0u8; config.value_size];
    let mut rng = fastrand::Rng::with_seed(config.seed);
    value.fill_with(|| rng.alphanumeric() as u8);
    let workload = Arc::new(Workload {
        keyspace: config.keyspace,
        read_ratio: config.read_ratio,
        key_prefix: config.key_prefix.clone(),
        value: Bytes::from(value),
        consistency: config.consistency,
    });
    let n = config.endpoints.len();
    let opts = ClientOptions {
        timeout: config.timeout,
        prefer_leader: config.routing == Routing::Leader,
        ..ClientOptions::default()
    };
    let leader = match config.routing {
        Routing::Leader => {
            let finder = Client::new(config.endpoints.clone(), opts.clone())?;
            Some(finder.find_leader().await?)
        }
        Routing::Spread => None,
    };
    // Connection i fails over to the endpoints in order from endpoint i % n; the leader, if
    // routing to it, comes first.
    let rotated = |i: usize| -> Vec<Endpoint> {
        let mut list: Vec<Endpoint> = (0..n)
            .map(|j| config.endpoints[(i + j) % n].clone())
            .collect();
        if let Some(leader) = &leader
            && let Some(at) = list.iter().position(|e| e == leader)
        {
            list[..=at].rotate_right(1);
        }
        list
    };
    let connections = match config.protocol {
        Protocol::Binary => config.connections.min(config.clients),
        Protocol::Http => config.clients,
    };
    let mut binary = Vec::new();
    let mut http = Vec::new();
    for i in 0..connections {
        let endpoints = rotated(i);
        match config.protocol {
            Protocol::Binary => {
                let urls: Vec<String> = endpoints.iter().map(|e| e.to_string()).collect();
                binary.push(Client::connect(urls, opts.clone()).await?);
            }
            Protocol::Http => {
                let conn = HttpConn::connect(endpoints[0].addr())
                    .await
                    .map_err(|e| Error::Unavailable(format!("{}: {e}", endpoints[0])))?;
                http.push((endpoints, conn));
            }
        }
    }
    let control = Arc::new(Control {
        stop: config.stop,
        issued: AtomicU64::new(0),
        start: Instant::now(),
        done,
        latency_us: Mutex::new(histogram()),
    });
    let mut workers = Vec::with_capacity(config.clients);
    let mut http = http.into_iter();
    for w in 0..config.clients {
        let rng = fastrand::Rng::with_seed(config.seed.wrapping_add(w as u64 + 1));
        let control = control.clone();
        let workload = workload.clone();
        workers.push(match config.protocol {
            Protocol::Binary => {
                let client = binary[w % binary.len()].clone();
                tokio::spawn(binary_worker(client, workload, control, rng))
            }
            Protocol::Http => {
                let (endpoints, conn) = http.next().expect("one connection per worker");
                let timeout = config.timeout;
                tokio::spawn(http_worker(
                    endpoints, conn, workload, control, rng, timeout,
                ))
            }
        });
    }
    let mut report = BenchReport {
        protocol: config.protocol,
        routing: config.routing,
        leader,
        clients: config.clients,
        connections,
        elapsed: Duration::ZERO,
        reads: 0,
        writes: 0,
        errors: BTreeMap::new(),
        latency_us: histogram(),
    };
    for worker in workers {
        let tally = worker
            .await
            .map_err(|e| Error::Protocol(format!("a bench worker failed: {e}")))?;
        report.reads += tally.reads;
        report.writes += tally.writes;
        for (kind, count) in tally.errors {
            *report.errors.entry(kind).or_default() += count;
        }
    }
    report.elapsed = control.start.elapsed();
    report.latency_us = control
        .latency_us
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(report)
}

async fn binary_worker(
    client: Client,
    workload: Arc<Workload>,
    control: Arc<Control>,
    mut rng: fastrand::Rng,
) -> Tally {
    let mut tally = Tally::new();
    while control.next() {
        let op = workload.next(&mut rng);
        let request = if op.read {
            Request::Get {
                key: op.key,
                consistency: workload.consistency,
            }
        } else {
            Request::Put {
                key: op.key,
                value: workload.value.clone(),
                condition: None,
            }
        };
        let start = Instant::now();
        match client.call(request).await {
            Ok(_) => tally.ok(op.read, start, &control),
            Err(Error::Server(e)) if op.read && e.kind == ErrorKind::NotFound => {
                tally.ok(true, start, &control)
            }
            Err(e) => tally.error(e.kind_name()),
        }
        control.done.fetch_add(1, Ordering::Relaxed);
    }
    tally
}

async fn http_worker(
    endpoints: Vec<Endpoint>,
    conn: HttpConn,
    workload: Arc<Workload>,
    control: Arc<Control>,
    mut rng: fastrand::Rng,
    timeout: Duration,
) -> Tally {
    let mut tally = Tally::new();
    let mut conn = Some(conn);
    // The endpoint the connection is to; moves on after a connection failure.
    let mut at = 0;
    let query = match workload.consistency {
        Consistency::Linearizable => "",
        Consistency::Serializable => "?consistency=serializable",
    };
    let mut target = String::new();
    while control.next() {
        let op = workload.next(&mut rng);
        target.clear();
        target.push_str("/keys/");
        percent_encode_path(&op.key, &mut target);
        target.push_str(if op.read { query } else { "" });
        let start = Instant::now();
        let c = match conn.take() {
            Some(c) => c,
            None => match HttpConn::connect(endpoints[at].addr()).await {
                Ok(c) => c,
                Err(_) => {
                    tally.error("unavailable");
                    at = (at + 1) % endpoints.len();
                    control.done.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            },
        };
        let mut c = c;
        let (method, body) = if op.read {
            ("GET", &[][..])
        } else {
            ("PUT", &workload.value[..])
        };
        match tokio::time::timeout(timeout, c.request(method, &target, body)).await {
            Ok(Ok(resp)) => {
                match (op.read, resp.status) {
                    (true, 200 | 404) | (false, 204) => tally.ok(op.read, start, &control),
                    (_, status) => tally.error(status_kind(status)),
                }
                conn = Some(c);
            }
            Ok(Err(_)) => {
                tally.error("io");
                at = (at + 1) % endpoints.len();
            }
            Err(_) => tally.error("timeout"),
        }
        control.done.fetch_add(1, Ordering::Relaxed);
    }
    tally
}

/// The error kind name of an HTTP status, as [`ErrorKind::name`] has it.
fn status_kind(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        412 => "precondition_failed",
        413 => "payload_too_large",
        503 => "unavailable",
        504 => "timeout",
        _ => "internal",
    }
}

/// Percent-encodes a key for a path: everything but unreserved characters and `/`.
fn percent_encode_path(key: &str, out: &mut String) {
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_for_paths() {
        let mut out = String::new();
        percent_encode_path("bench/a b%é", &mut out);
        assert_eq!(out, "bench/a%20b%25%C3%A9");
    }

    #[test]
    fn bad_configs_are_refused() {
        let ok = BenchConfig::default();
        assert!(check(&ok).is_ok());
        for bad in [
            BenchConfig {
                clients: 0,
                ..ok.clone()
            },
            BenchConfig {
                read_ratio: 1.5,
                ..ok.clone()
            },
            BenchConfig {
                stop: Stop::Ops(0),
                ..ok.clone()
            },
            BenchConfig {
                keyspace: 0,
                ..ok.clone()
            },
        ] {
            assert!(matches!(check(&bad), Err(Error::InvalidInput(_))));
        }
    }

    #[test]
    fn ops_stop_hands_out_exactly_n() {
        let control = Control {
            stop: Stop::Ops(3),
            issued: AtomicU64::new(0),
            start: Instant::now(),
            done: Arc::default(),
            latency_us: Mutex::new(histogram()),
        };
        let granted = (0..10).filter(|_| control.next()).count();
        assert_eq!(granted, 3);
    }
}
