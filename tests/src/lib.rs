//! Cluster-level tests of kv-server: real `kv-server` processes on loopback,
//! started, killed, paused and restarted by the tests; a fault-injecting
//! TCP proxy between peers; and a linearizability checker for the client
//! histories they record.
//!
//! # Harness
//!
//! - [`run_test`] runs one test body on a current-thread tokio runtime with
//!   a time limit and a fresh temporary directory. When the body panics or
//!   times out, the directory (node logs and data) is kept and its path and
//!   the tail of every node log are printed; otherwise it is removed.
//! - [`cluster::Cluster`] starts N nodes with free ports and their own data
//!   directories under that directory, each node's stderr going to
//!   `node-<id>.log`; it kills every process it started when dropped (on
//!   panic too). Node operations: `kill` (SIGKILL), `restart` (same data
//!   directory), `pause`/`resume` (SIGSTOP/SIGCONT), `terminate` (SIGTERM,
//!   graceful), `add_node` (`POST /nodes/{id}` then `--join`),
//!   `remove_node`; waits: `wait_for_leader`, `wait_converged`.
//! - [`client::Client`]: a small HTTP/1.1 client over a raw tokio
//!   `TcpStream` for the API of DESIGN.md, telling "not sent" apart from
//!   "sent, answer lost" (what a history needs to know).
//! - [`proxy::Proxy`]: one listener per node in front of its peer port;
//!   per directed link it delivers, delays, drops or cuts.
//! - [`linearizability`]: the Wing-Gong/Lowe checker, key by key.
//! - [`workload`]: concurrent random register clients that record a
//!   history, and writers of unique keys that remember what was
//!   acknowledged.
//! - [`nemesis`]: the faults of the linearizability runs (kills, pauses,
//!   partitions, membership changes, combinations) and when each was
//!   active; [`lin_run::LinRun`]: clients, nemeses and the final checks
//!   (every node answers, convergence, no acknowledged write lost, a
//!   linearizable history) with a one-line summary.
//!
//! # Timings
//!
//! Nodes run with a 20 ms tick and a 10-tick election timeout by default,
//! so an election takes well under a second. Every wait is a poll of a
//! condition with a bound, never a fixed sleep.

#![deny(missing_docs)]

pub mod binary;
pub mod client;
pub mod cluster;
pub mod lin_run;
pub mod linearizability;
pub mod nemesis;
pub mod ports;
pub mod proxy;
pub mod workload;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often wait helpers poll.
pub const POLL: Duration = Duration::from_millis(20);

/// Runs a test body on a fresh current-thread runtime, within `limit`, with
/// a new temporary directory for its nodes.
///
/// A current-thread runtime means child processes are spawned from the
/// test's own thread, which lives as long as the test (see
/// [`cluster`] on `PR_SET_PDEATHSIG`).
///
/// # Panics
/// If the body panics (the panic goes on) or does not finish within
/// `limit`. Either way the temporary directory is kept and its path and
/// the tail of each node log are printed.
pub fn run_test<F, Fut>(name: &str, limit: Duration, body: F)
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = TestDir::new(name);
    let path = dir.path().to_owned();
    let started = Instant::now();
    eprintln!("[{name}] temporary directory {}", path.display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime");
    let mut fut = Box::pin(body(path.clone()));
    let result = rt.block_on(async { tokio::time::timeout(limit, &mut fut).await });
    if result.is_err() {
        // Whatever the body holds (a cluster) is dropped next: tell it the
        // test failed, so that it records its state first.
        FAILING.with(|f| f.set(true));
    }
    {
        let _ctx = rt.enter();
        drop(fut);
    }
    // Stop the proxies and clients the body spawned before judging.
    drop(rt);
    FAILING.with(|f| f.set(false));
    match result {
        Ok(()) => {
            eprintln!("[{name}] passed in {:.1?}", started.elapsed());
            dir.pass();
        }
        Err(_) => panic!(
            "[{name}] timed out after {limit:?}; logs and data kept in {}",
            path.display()
        ),
    }
}

thread_local! {
    /// Set by [`run_test`] while it drops the body of a test that timed out.
    static FAILING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the test running on this thread is failing: it panicked, or
/// [`run_test`] is dropping it after a timeout. Drop code uses it to record
/// diagnostics only when they will be read.
pub fn test_failing() -> bool {
    std::thread::panicking() || FAILING.with(|f| f.get())
}

/// A temporary directory removed only once [`TestDir::pass`] says the test
/// passed; on failure it is kept, and the tail of its node logs printed.
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    name: String,
}

impl TestDir {
    /// A new directory under the system's temporary directory.
    ///
    /// # Panics
    /// If it cannot be created.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("kv-{name}-"))
            .tempdir()
            .expect("creating a temporary directory");
        TestDir {
            dir: Some(dir),
            name: name.to_owned(),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("not yet passed").path()
    }

    /// The test passed: remove the directory.
    pub fn pass(mut self) {
        if let Some(d) = self.dir.take() {
            let _ = d.close();
        }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let path = dir.keep();
        eprintln!(
            "[{}] FAILED: logs and data kept in {}",
            self.name,
            path.display()
        );
        print_log_tails(&path, 40);
    }
}

/// Prints the last `lines` lines of every `*.log` file in `dir`.
pub fn print_log_tails(dir: &Path, lines: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        eprintln!(
            "----- last {} lines of {} -----",
            lines.min(all.len()),
            log.display()
        );
        for l in &all[all.len().saturating_sub(lines)..] {
            eprintln!("{l}");
        }
    }
}

/// Polls `probe` every [`POLL`] until it returns `Ok`, for at most
/// `timeout`. `Err` carries a description of what was last seen, for the
/// panic message.
///
/// # Panics
/// If `timeout` passes first: "timed out waiting for {what}; last: {err}".
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match tokio::time::timeout_at(deadline, probe()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(e)) => e,
            Err(_) => "the probe itself did not finish".to_owned(),
        };
        if tokio::time::Instant::now() + POLL >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `body` under [`run_test`] and returns the directory it was
    /// given and whether `run_test` panicked.
    fn run_and_see<Fut: Future<Output = ()>>(
        limit: Duration,
        body: impl FnOnce(PathBuf) -> Fut + std::panic::UnwindSafe,
    ) -> (PathBuf, bool) {
        // Per thread: the tests of this module run in parallel, and the
        // body runs on the calling thread (a current-thread runtime).
        thread_local! {
            static SEEN: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
        }
        let outcome = std::panic::catch_unwind(|| {
            run_test("harness_self_test", limit, |dir| {
                SEEN.with(|s| *s.borrow_mut() = Some(dir.clone()));
                body(dir)
            })
        });
        let dir = SEEN.with(|s| s.borrow_mut().take()).expect("the body ran");
        (dir, outcome.is_err())
    }

    #[test]
    fn a_passing_test_removes_its_directory() {
        let (dir, panicked) = run_and_see(Duration::from_secs(10), |dir| async move {
            std::fs::write(dir.join("node-1.log"), "fine\n").unwrap();
        });
        assert!(!panicked);
        assert!(!dir.exists());
    }

    #[test]
    fn failing_and_timed_out_tests_keep_their_directory() {
        let (dir, panicked) = run_and_see(Duration::from_secs(10), |dir| async move {
            std::fs::write(dir.join("node-1.log"), "about to fail\n").unwrap();
            panic!("deliberate failure");
        });
        assert!(panicked);
        assert!(dir.join("node-1.log").is_file());
        std::fs::remove_dir_all(&dir).unwrap();

        let (dir, panicked) = run_and_see(Duration::from_millis(50), |dir| async move {
            std::fs::write(dir.join("node-1.log"), "about to hang\n").unwrap();
            std::future::pending::<()>().await;
        });
        assert!(panicked);
        assert!(dir.join("node-1.log").is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
