//! A linearizability run: register clients and unique-key writers working
//! against a [`Cluster`] while [`Nemesis`] faults come and go, then the
//! checks that make it a test.
//!
//! 1. [`LinRun::start`]: the clients ([`register_client`]: random get, put,
//!    compare-and-set and delete on a few keys, unique values) and a few
//!    [`Writers`] of unique keys start on the live nodes, recording a
//!    history; the run waits until they are under way.
//! 2. [`LinRun::inject`] (in [`crate::nemesis`]), as often as the test
//!    likes: each nemesis injects, holds and repairs its fault, and the
//!    [`FaultLog`] records when.
//! 3. [`LinRun::finish`]: after more operations on the healed cluster the
//!    clients stop; every live node must answer a linearizable read of
//!    every key (the reads go into the history, so a write lost by the
//!    cluster shows up as a read the checker cannot place); the nodes must
//!    converge to the same data holding every acknowledged write; and the
//!    history must be linearizable. It prints one summary line: operations,
//!    ok / fail / indeterminate, faults by name, availability during faults
//!    and healed, acknowledged writes, verdict.
//!
//! Should any of that fail (a panic, or [`crate::run_test`]'s time limit),
//! the history and the fault windows are written to
//! `<cluster dir>/<run>.history.txt`, next to the node logs that
//! [`crate::run_test`] keeps.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::cluster::Cluster;
use crate::linearizability::{Op, Recorder, check};
use crate::nemesis::{Availability, FaultLog, Nemesis};
use crate::wait_until;
use crate::workload::{NodeSet, RegisterWorkload, Writers, check_acked, outcome, register_client};

/// Client ids at and above this are the final reads of [`LinRun::finish`]
/// (`FINAL_READER + node id`).
pub const FINAL_READER: u64 = 1_000_000;

/// How a [`LinRun`] works.
#[derive(Clone, Debug)]
pub struct LinOptions {
    /// Concurrent register clients.
    pub clients: u64,
    /// Keys they share.
    pub keys: usize,
    /// Prefix of every key the run writes: empty, or ending with `/`. Runs
    /// on the same cluster need different prefixes, since the checker
    /// assumes every key starts absent.
    pub prefix: String,
    /// Concurrent unique-key writers.
    pub writers: usize,
    /// A fault is held until the clients complete this many more
    /// operations...
    pub hold_ops: usize,
    /// ... and at least this long (operations that fail fast could
    /// otherwise end a fault before any timeout fired) ...
    pub min_hold: Duration,
    /// ... or, when operations are slow (no quorum: each waits for a
    /// timeout), this long.
    pub max_hold: Duration,
    /// A client's timeout per request: above the server's
    /// `--request-timeout-ms`, so a live node's 504 comes first, and this
    /// is how long a client waits on a paused node.
    pub client_timeout: Duration,
    /// The bound of every wait for a leader, a membership change,
    /// convergence or a final read.
    pub wait: Duration,
    /// The run fails if fewer operations than this were ok.
    pub min_ok: usize,
}

impl LinOptions {
    /// Defaults for nodes started with `--request-timeout-ms
    /// server_timeout_ms`: 5 clients on 5 keys, 2 writers, faults held for
    /// 60 operations and 0.5 to 5 s, waits of 30 s.
    pub fn new(server_timeout_ms: u64) -> Self {
        LinOptions {
            clients: 5,
            keys: 5,
            prefix: String::new(),
            writers: 2,
            hold_ops: 60,
            min_hold: Duration::from_millis(500),
            max_hold: Duration::from_secs(5),
            client_timeout: Duration::from_millis(server_timeout_ms + 1_500),
            wait: Duration::from_secs(30),
            min_ok: 100,
        }
    }
}

/// What a finished run saw (several can be added up).
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// Operations in the history (final reads included).
    pub ops: usize,
    /// Definitely answered.
    pub ok: usize,
    /// Certainly without effect.
    pub failed: usize,
    /// Outcome unknown.
    pub indeterminate: usize,
    /// The most operations on one key (what the checker's search grows
    /// with).
    pub max_ops_per_key: usize,
    /// Faults injected, by nemesis name.
    pub faults: BTreeMap<&'static str, usize>,
    /// Register operations ok while faulted and healed.
    pub availability: Availability,
    /// Unique-key writes acknowledged (all found on every node).
    pub acked_writes: usize,
    /// Time spent checking.
    pub check_time: Duration,
}

impl RunSummary {
    /// Adds another run's figures (`max_ops_per_key` is the larger).
    pub fn add(&mut self, o: &RunSummary) {
        self.ops += o.ops;
        self.ok += o.ok;
        self.failed += o.failed;
        self.indeterminate += o.indeterminate;
        self.max_ops_per_key = self.max_ops_per_key.max(o.max_ops_per_key);
        for (name, n) in &o.faults {
            *self.faults.entry(name).or_default() += n;
        }
        self.availability.add(&o.availability);
        self.acked_writes += o.acked_writes;
        self.check_time += o.check_time;
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(name, n)| format!("{name} x{n}"))
            .collect();
        write!(
            f,
            "{} ops: {} ok, {} fail, {} indeterminate (at most {} on one key); \
             faults: {}; availability: {}; {} acknowledged writes, none lost; \
             verdict: linearizable (checked in {:.1?})",
            self.ops,
            self.ok,
            self.failed,
            self.indeterminate,
            self.max_ops_per_key,
            if faults.is_empty() {
                "none".to_owned()
            } else {
                faults.join(", ")
            },
            self.availability,
            self.acked_writes,
            self.check_time
        )
    }
}

/// A run in progress. See the [module docs](self).
pub struct LinRun<'a> {
    pub(crate) c: &'a mut Cluster,
    name: String,
    seed: u64,
    pub(crate) opts: LinOptions,
    pub(crate) rng: fastrand::Rng,
    pub(crate) recorder: Recorder,
    pub(crate) faults: FaultLog,
    /// The nodes the clients and writers use; nemeses change it as
    /// membership changes.
    pub(crate) nodes: NodeSet,
    keys: Vec<String>,
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<usize>>,
    writers: Option<Writers>,
    history_file: PathBuf,
    /// The history was written out (or the run passed).
    done: bool,
}

impl Drop for LinRun<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if !self.done && crate::test_failing() {
            self.write_history();
        }
    }
}

impl<'a> LinRun<'a> {
    /// Waits for a leader, starts the clients and writers on the live
    /// nodes, and waits until they have done some work. `name` names the
    /// run in its output; `seed` drives its clients' and nemeses' choices.
    ///
    /// # Panics
    /// If there is no leader, or no operations complete, within
    /// `opts.wait`.
    pub async fn start(c: &'a mut Cluster, name: &str, seed: u64, opts: LinOptions) -> LinRun<'a> {
        assert!(
            opts.prefix.is_empty() || opts.prefix.ends_with('/'),
            "a key prefix ends with '/': {:?}",
            opts.prefix
        );
        c.wait_for_leader(opts.wait).await;
        let keys: Vec<String> = (0..opts.keys)
            .map(|k| format!("{}lin-{k}", opts.prefix))
            .collect();
        let nodes = NodeSet::new(c.live().iter().map(|&id| c.client(id)).collect());
        let recorder = Recorder::new();
        let stop = Arc::new(AtomicBool::new(false));
        let workload = RegisterWorkload {
            keys: keys.clone(),
            stop: stop.clone(),
            request_timeout: opts.client_timeout,
        };
        let clients = (0..opts.clients)
            .map(|client| {
                tokio::spawn(register_client(
                    client,
                    nodes.clone(),
                    workload.clone(),
                    recorder.clone(),
                    seed ^ client.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                ))
            })
            .collect();
        let writers = Writers::start_on(&opts.prefix, opts.writers, nodes.clone());
        let file: String = name
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
            .collect();
        let history_file = c.dir().join(format!("{file}.history.txt"));
        c.log(&format!("[{name}] seed {seed}: clients started"));
        let run = LinRun {
            c,
            name: name.to_owned(),
            seed,
            rng: fastrand::Rng::with_seed(seed),
            recorder,
            faults: FaultLog::default(),
            nodes,
            keys,
            stop,
            clients,
            writers: Some(writers),
            history_file,
            done: false,
            opts,
        };
        run.grow(50, "operations before the first fault").await;
        run
    }

    /// The cluster.
    pub fn cluster(&mut self) -> &mut Cluster {
        self.c
    }

    /// The run's random numbers (seeded).
    pub fn rng(&mut self) -> &mut fastrand::Rng {
        &mut self.rng
    }

    /// Operations recorded so far.
    pub fn ops(&self) -> usize {
        self.recorder.len()
    }

    /// Injects a random nemesis from `among`.
    ///
    /// # Panics
    /// If `among` is empty; as [`LinRun::inject`].
    pub async fn inject_random(&mut self, among: &[Nemesis]) {
        assert!(!among.is_empty(), "no nemesis to choose from");
        let n = among[self.rng.usize(0..among.len())];
        self.inject(n).await;
    }

    /// Waits until `n` more operations are recorded.
    pub(crate) async fn grow(&self, n: usize, what: &str) {
        let target = self.recorder.len() + n;
        wait_until(what, self.opts.wait, || async {
            let len = self.recorder.len();
            if len >= target {
                Ok(())
            } else {
                Err(format!("{len} of {target} operations"))
            }
        })
        .await;
    }

    /// Heals, stops the clients and checks everything (see the [module
    /// docs](self)); prints and returns the summary.
    ///
    /// # Panics
    /// If a node does not answer, the nodes do not converge or differ, an
    /// acknowledged write is missing, the history is not linearizable, or
    /// fewer than [`LinOptions::min_ok`] operations were ok. The history
    /// is then written out (see the module docs).
    pub async fn finish(mut self) -> RunSummary {
        // The nemeses repair their own faults; this is a second line.
        if self.c.has_proxy() {
            self.c.proxy().heal();
        }
        self.c.wait_for_leader(self.opts.wait).await;
        self.hold("operations on the healed cluster").await;
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.clients) {
            t.await.expect("a register client panicked");
        }
        let acked = self
            .writers
            .take()
            .expect("writers run until finish")
            .stop()
            .await;
        let availability = self.faults.availability(&self.recorder.history());

        self.final_reads().await;
        check_acked(self.c, &acked, self.opts.wait).await;

        let history = self.recorder.history();
        let started = std::time::Instant::now();
        let report = check(&history);
        let check_time = started.elapsed();
        let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
        for op in &history {
            *per_key.entry(&op.key).or_default() += 1;
        }
        if !report.is_linearizable() {
            self.write_history();
            panic!(
                "[{}] seed {}: {report}\nhistory written to {}",
                self.name,
                self.seed,
                self.history_file.display()
            );
        }
        let summary = RunSummary {
            ops: report.ops,
            ok: report.ok,
            failed: report.failed,
            indeterminate: report.indeterminate,
            max_ops_per_key: per_key.values().copied().max().unwrap_or(0),
            faults: self.faults.counts(),
            availability,
            acked_writes: acked.len(),
            check_time,
        };
        eprintln!("[{}] seed {}: {summary}", self.name, self.seed);
        assert!(
            report.ok >= self.opts.min_ok,
            "[{}] too few operations succeeded to say anything: {report}",
            self.name
        );
        self.done = true;
        summary
    }

    /// A linearizable read of every key on every live node, recorded, each
    /// retried until the node answers it.
    async fn final_reads(&self) {
        for id in self.c.live() {
            let node = self.c.client(id).with_timeout(self.opts.client_timeout);
            for key in &self.keys {
                let what = format!("node {id} to answer a read of {key}");
                wait_until(&what, self.opts.wait, || async {
                    let invoke = self.recorder.now();
                    let answer = node.get(key).await;
                    let out = outcome(&Op::Get, &answer);
                    let ok = out.is_ok();
                    self.recorder
                        .record(FINAL_READER + id, key, Op::Get, invoke, out);
                    if ok {
                        Ok(())
                    } else {
                        Err(format!("{answer:?}"))
                    }
                })
                .await;
            }
        }
        self.c.log(&format!(
            "[{}] every live node answered a read of every key",
            self.name
        ));
    }

    /// Writes the history, in invocation order, after the fault windows.
    fn write_history(&mut self) {
        self.done = true;
        let mut history = self.recorder.history();
        history.sort_by_key(|o| o.invoke);
        let secs = |ns: u64| ns as f64 / 1e9;
        let mut text = format!("# {} seed {}\n", self.name, self.seed);
        for w in self.faults.windows() {
            let _ = writeln!(
                text,
                "# fault {} {:.6}s..{:.6}s",
                w.name,
                secs(w.start),
                secs(w.end)
            );
        }
        for op in &history {
            let _ = writeln!(text, "{op}");
        }
        match std::fs::write(&self.history_file, text) {
            Ok(()) => eprintln!(
                "[{}] history ({} operations) written to {}",
                self.name,
                history.len(),
                self.history_file.display()
            ),
            Err(e) => eprintln!(
                "[{}] writing the history to {}: {e}",
                self.name,
                self.history_file.display()
            ),
        }
    }
}
