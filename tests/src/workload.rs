//! Client workloads: random register clients that record a history for
//! [`crate::linearizability`], and writers of unique keys that remember
//! what was acknowledged ([`Writers`]).
//!
//! Each client issues one request at a time: get, put, compare-and-set or
//! delete on a small set of keys, every written value unique
//! (`c<client>-<seq>`). A client sticks to one node and moves on to the next
//! when that node refuses or cannot be reached.
//!
//! How answers become outcomes (the server's contract, which the checker
//! then holds it to):
//!
//! | answer | write outcome | read outcome |
//! |---|---|---|
//! | 204 | `Applied` | - |
//! | 200 / 404 on a get | - | `Read` |
//! | 412 on a CAS, 404 on a delete | `NotApplied` | - |
//! | 503, or no connection | `Failed`: refused before it was proposed | nothing observed |
//! | 504, 500, connection lost, client timeout | `Indeterminate` | nothing observed |
//!
//! Any other answer (400, 405, 413, ...) is a bug in the test or the
//! server, and panics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::{Client, ClientError, Response};
use crate::linearizability::{Cond, Op, Outcome, Recorder};

/// What a register client does.
#[derive(Clone, Debug)]
pub struct RegisterWorkload {
    /// The keys.
    pub keys: Vec<String>,
    /// Stop issuing requests once this is set (the request in flight is
    /// finished and recorded first).
    pub stop: Arc<AtomicBool>,
    /// The client's request timeout; it should exceed the server's
    /// `--request-timeout-ms`, so that the server's 504 usually comes first.
    pub request_timeout: Duration,
}

/// The nodes clients may use: shared by the clients and the test, which
/// replaces it when membership changes.
#[derive(Clone, Debug, Default)]
pub struct NodeSet(Arc<Mutex<Vec<Client>>>);

impl NodeSet {
    /// A set of these nodes.
    pub fn new(nodes: Vec<Client>) -> Self {
        NodeSet(Arc::new(Mutex::new(nodes)))
    }

    /// Replaces the nodes.
    ///
    /// # Panics
    /// If the lock is poisoned, or `nodes` is empty.
    pub fn set(&self, nodes: Vec<Client>) {
        assert!(!nodes.is_empty(), "a node set needs a node");
        *self.0.lock().expect("node set lock") = nodes;
    }

    /// The number of nodes.
    ///
    /// # Panics
    /// If the lock is poisoned.
    pub fn len(&self) -> usize {
        self.0.lock().expect("node set lock").len()
    }

    /// Whether the set is empty (never, once built with a node).
    ///
    /// # Panics
    /// If the lock is poisoned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th node, modulo the number of nodes.
    ///
    /// # Panics
    /// If the lock is poisoned.
    pub fn get(&self, i: usize) -> Client {
        let nodes = self.0.lock().expect("node set lock");
        nodes[i % nodes.len()].clone()
    }
}

/// Runs one register client until `workload.stop` is set, recording every
/// operation in `recorder`. It starts with node `client` of `nodes`
/// (modulo their number), and moves to the next after a refusal, a timeout
/// or a lost answer, pausing for [`crate::POLL`] so that a cluster without
/// a leader is not flooded. Returns the number of operations issued.
///
/// # Panics
/// On an answer the contract above does not allow.
pub async fn register_client(
    client: u64,
    nodes: NodeSet,
    workload: RegisterWorkload,
    recorder: Recorder,
    seed: u64,
) -> usize {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut at = client as usize;
    // The last value this client saw for each key: CAS guesses from it.
    let mut seen: Vec<Option<String>> = vec![None; workload.keys.len()];
    let mut seq = 0u64;
    let mut issued = 0;
    while !workload.stop.load(Ordering::Relaxed) {
        let k = rng.usize(0..workload.keys.len());
        let key = workload.keys[k].as_str();
        seq += 1;
        let value = format!("c{client}-{seq}");
        let op = match rng.u8(0..100) {
            0..40 => Op::Get,
            40..65 => Op::Put(value),
            65..85 => Op::Cas {
                cond: match (&seen[k], rng.u8(0..4)) {
                    (Some(v), 0..3) => Cond::PrevValue(v.clone()),
                    (None, 0..2) => Cond::PrevValue(format!("c{client}-never")),
                    _ => Cond::PrevExist(rng.bool()),
                },
                value,
            },
            _ => Op::Delete,
        };
        let node = nodes.get(at).with_timeout(workload.request_timeout);
        let invoke = recorder.now();
        let answer = match &op {
            Op::Get => node.get(key).await,
            Op::Put(v) => node.put(key, v).await,
            Op::Cas { cond, value } => node.cas(key, value, cond).await,
            Op::Delete => node.delete(key).await,
        };
        let outcome = outcome(&op, &answer);
        match &outcome {
            Outcome::Read(v) => seen[k] = v.clone(),
            Outcome::Applied => {
                seen[k] = match &op {
                    Op::Put(v) | Op::Cas { value: v, .. } => Some(v.clone()),
                    _ => None,
                }
            }
            _ => {}
        }
        // Refused (503, no connection), timed out (504) or answer lost: this
        // node may be down, paused or cut off from the leader.
        let unserved =
            matches!(&answer, Ok(r) if [500, 503, 504].contains(&r.status)) || answer.is_err();
        recorder.record(client, key, op, invoke, outcome);
        issued += 1;
        if unserved {
            // This node cannot serve now: try the next one.
            at = at.wrapping_add(1);
            tokio::time::sleep(crate::POLL).await;
        }
    }
    issued
}

/// The outcome of an operation from its answer (see the module docs).
///
/// # Panics
/// On an answer the contract does not allow.
pub fn outcome(op: &Op, answer: &Result<Response, ClientError>) -> Outcome {
    let r = match answer {
        Err(e) if !e.maybe_sent() => return Outcome::Failed,
        Err(_) => return Outcome::Indeterminate,
        Ok(r) => r,
    };
    match (op, r.status) {
        (Op::Get, 200) => Outcome::Read(Some(r.text())),
        (Op::Get, 404) => Outcome::Read(None),
        (Op::Put(_) | Op::Cas { .. } | Op::Delete, 204) => Outcome::Applied,
        (Op::Cas { .. }, 412) | (Op::Delete, 404) => Outcome::NotApplied,
        (_, 503) => Outcome::Failed,
        (_, 500 | 504) => Outcome::Indeterminate,
        _ => panic!("unexpected answer to {op:?}: {r}"),
    }
}

/// Writers of unique keys (`[prefix]w<writer>-<n>` = `[prefix]v<writer>-<n>`)
/// that remember which writes were acknowledged, for "no acknowledged write
/// is lost" checks. Each writer sticks to one node and moves on to the next
/// after a 503, a 504 or a failed request. A prefix is empty or ends with
/// `/`.
pub struct Writers {
    acked: Arc<Mutex<BTreeMap<String, String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(usize, usize)>>,
}

impl Writers {
    /// Starts `n` writers over `nodes` on the current runtime.
    ///
    /// # Panics
    /// (In the writer tasks, seen by [`Writers::stop`].) On an answer other
    /// than 204, 503 or 504.
    pub fn start(n: usize, nodes: Vec<Client>) -> Writers {
        Writers::start_on("", n, NodeSet::new(nodes))
    }

    /// Starts `n` writers of keys under `prefix` (empty, or ending with
    /// `/`) over a node set the test may change as membership changes.
    ///
    /// # Panics
    /// If `prefix` is neither empty nor ends with `/`; (in the writer
    /// tasks, seen by [`Writers::stop`]) on an answer other than 204, 503
    /// or 504.
    pub fn start_on(prefix: &str, n: usize, nodes: NodeSet) -> Writers {
        assert!(
            prefix.is_empty() || prefix.ends_with('/'),
            "a writer prefix ends with '/': {prefix:?}"
        );
        let acked = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..n)
            .map(|w| {
                let (acked, stop, nodes) = (acked.clone(), stop.clone(), nodes.clone());
                let prefix = prefix.to_owned();
                tokio::spawn(async move {
                    let (mut ok, mut not_ok) = (0, 0);
                    let mut at = w;
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("{prefix}w{w}-{i:05}");
                        let value = format!("{prefix}v{w}-{i}");
                        i += 1;
                        let node = nodes.get(at).with_timeout(Duration::from_secs(5));
                        match node.put(&key, &value).await {
                            Ok(r) if r.status == 204 => {
                                acked.lock().expect("acked lock").insert(key, value);
                                ok += 1;
                            }
                            Ok(r) if [503, 504].contains(&r.status) => {
                                not_ok += 1;
                                at = at.wrapping_add(1);
                                // A node without a leader answers at once.
                                tokio::time::sleep(crate::POLL).await;
                            }
                            Ok(r) => panic!("PUT {key}: unexpected answer {r}"),
                            Err(_) => {
                                not_ok += 1;
                                at = at.wrapping_add(1);
                                // A dead node refuses at once: don't spin.
                                tokio::time::sleep(crate::POLL).await;
                            }
                        }
                    }
                    (ok, not_ok)
                })
            })
            .collect();
        Writers { acked, stop, tasks }
    }

    /// How many writes were acknowledged so far.
    ///
    /// # Panics
    /// If a writer panicked while holding the lock.
    pub fn acked(&self) -> usize {
        self.acked.lock().expect("acked lock").len()
    }

    /// Waits until `more` writes beyond those acknowledged now are
    /// acknowledged.
    ///
    /// # Panics
    /// If that takes over 20 s.
    pub async fn progress(&self, more: usize, what: &str) {
        let target = self.acked() + more;
        crate::wait_until(what, Duration::from_secs(20), || async {
            let n = self.acked();
            if n >= target {
                Ok(())
            } else {
                Err(format!("{n} of {target} writes acknowledged"))
            }
        })
        .await;
    }

    /// Stops the writers and returns every acknowledged write.
    ///
    /// # Panics
    /// If a writer panicked.
    pub async fn stop(self) -> BTreeMap<String, String> {
        self.stop.store(true, Ordering::Relaxed);
        let (mut ok, mut not_ok) = (0, 0);
        for t in self.tasks {
            let (o, n) = t.await.expect("a writer panicked");
            ok += o;
            not_ok += n;
        }
        eprintln!("writes: {ok} acknowledged, {not_ok} not");
        let acked = self.acked.lock().expect("acked lock");
        acked.clone()
    }
}

/// Checks, on a converged cluster, that every acknowledged write is on
/// every live node, that the nodes agree, and that every key present is
/// one a [`Writers`] wrote with its own value (nothing invented). Returns
/// the data.
///
/// # Panics
/// If any of that fails, or the cluster does not converge in `timeout`.
pub async fn check_acked(
    c: &crate::cluster::Cluster,
    acked: &BTreeMap<String, String>,
    timeout: Duration,
) -> BTreeMap<String, String> {
    c.wait_converged(timeout).await;
    let data = c.assert_same_data().await;
    for (k, v) in acked {
        assert_eq!(data.get(k), Some(v), "acknowledged write {k}={v} lost");
    }
    for (k, v) in &data {
        let (prefix, name) = match k.rsplit_once('/') {
            Some((p, n)) => (&k[..=p.len()], n),
            None => ("", k.as_str()),
        };
        let Some((w, i)) = name.strip_prefix('w').and_then(|r| r.split_once('-')) else {
            continue;
        };
        let i: u64 = i.parse().unwrap_or_else(|_| panic!("odd key {k:?}"));
        assert_eq!(
            *v,
            format!("{prefix}v{w}-{i}"),
            "key {k} holds a value never written to it"
        );
    }
    eprintln!(
        "{} keys on every node, {} acknowledged",
        data.len(),
        acked.len()
    );
    data
}
