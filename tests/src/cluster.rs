//! A cluster of real `kv-server` processes on loopback.
//!
//! Each node gets a client port and a peer port (see [`crate::ports`]), a
//! data directory `<dir>/node-<id>/` and a log `<dir>/node-<id>.log` that
//! collects its stdout and stderr across restarts, with a harness line at
//! every start, kill and signal. With [`ClusterOptions::proxy`] the nodes'
//! `--cluster` URLs name a [`Proxy`] listener per node and each node
//! listens for real on `--listen-peer`.
//!
//! Dropping the cluster kills (SIGKILL) and reaps every process it started,
//! also when a test panics. As a second line of defence, should the test
//! process itself die, each child is started with
//! `PR_SET_PDEATHSIG = SIGKILL`. Linux sends that signal when the *thread*
//! that spawned the child exits, so nodes must be started from a thread
//! that outlives the cluster: [`crate::run_test`] uses a current-thread
//! runtime, so that thread is the test's own.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kv_server::api::{NodeState, Role};

use crate::binary::kv_server_bin;
use crate::client::Client;
use crate::ports::free_addr;
use crate::proxy::Proxy;
use crate::wait_until;

/// A node id.
pub type NodeId = u64;

/// How long a started node may take to answer on its client port.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a node may take to exit after SIGTERM (kv-server's own grace
/// period for in-flight requests is 10 s).
const TERM_TIMEOUT: Duration = Duration::from_secs(20);

/// How a cluster is started.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of nodes (ids `1..=nodes`).
    pub nodes: usize,
    /// Put a [`Proxy`] between the peers.
    pub proxy: bool,
    /// `--tick-ms`.
    pub tick_ms: u64,
    /// `--election-tick`.
    pub election_tick: usize,
    /// `--heartbeat-tick`.
    pub heartbeat_tick: usize,
    /// `--request-timeout-ms`.
    pub request_timeout_ms: u64,
    /// `--snapshot-count`, if not the default.
    pub snapshot_count: Option<u64>,
    /// More flags for every node.
    pub extra_args: Vec<String>,
}

impl Default for ClusterOptions {
    /// Three nodes, no proxy, a 20 ms tick, elections after 10 ticks, a
    /// heartbeat every tick, requests timing out after 3 s.
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            proxy: false,
            tick_ms: 20,
            election_tick: 10,
            heartbeat_tick: 1,
            request_timeout_ms: 3_000,
            snapshot_count: None,
            extra_args: Vec::new(),
        }
    }
}

/// One node of the cluster, running or not.
struct NodeProc {
    client: SocketAddr,
    /// The URL peers dial (the proxy's listener when there is one).
    peer_url: String,
    data_dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    paused: bool,
    removed: bool,
    starts: u32,
}

/// A running cluster. See the [module docs](self).
pub struct Cluster {
    dir: PathBuf,
    opts: ClusterOptions,
    nodes: BTreeMap<NodeId, NodeProc>,
    proxy: Option<Proxy>,
    started: Instant,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if crate::test_failing() {
            self.record_exits();
            self.record_stats();
        }
        for (&id, node) in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                // SIGKILL also ends a stopped process.
                let _ = child.kill();
                let _ = child.wait();
                note(
                    &node.log,
                    &format!("node {id} killed: the cluster was dropped"),
                );
            }
        }
    }
}

/// `GET /stats` with blocking I/O (for drop code, which cannot await),
/// bounded by `timeout` per step.
fn stats_blocking(addr: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET /stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    Ok(raw
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or(raw))
}

/// Appends a harness line to a node's log.
fn note(log: &Path, line: &str) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(log) {
        let _ = writeln!(f, "=== harness: {line}");
    }
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) on our own child's pid; the child is not yet reaped
    // (we hold its `Child` and have not waited on it), so the pid is ours.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

impl Cluster {
    /// Starts `opts.nodes` nodes under `dir` and waits until each answers
    /// on its client port (not for a leader: see
    /// [`Cluster::wait_for_leader`]).
    ///
    /// # Panics
    /// If a node cannot be started or does not come up in time.
    pub async fn start(dir: &Path, opts: ClusterOptions) -> Cluster {
        assert!(opts.nodes >= 1, "a cluster needs a node");
        let proxy = opts.proxy.then(Proxy::new);
        let mut listen = BTreeMap::new();
        let mut urls = Vec::new();
        for id in 1..=opts.nodes as NodeId {
            let peer = free_addr();
            let advertised = match &proxy {
                Some(p) => p.add_node(id, peer).await.expect("proxy listener"),
                None => peer,
            };
            listen.insert(id, peer);
            urls.push(url(advertised));
        }
        let mut cluster = Cluster {
            dir: dir.to_owned(),
            opts,
            nodes: BTreeMap::new(),
            proxy,
            started: Instant::now(),
        };
        let cluster_arg = urls.join(",");
        for (&id, &peer) in &listen {
            cluster.define(id, peer, urls[id as usize - 1].clone(), &cluster_arg, false);
        }
        let ids: Vec<NodeId> = cluster.nodes.keys().copied().collect();
        for &id in &ids {
            cluster.spawn(id);
        }
        for &id in &ids {
            cluster.wait_started(id).await;
        }
        cluster.log(&format!(
            "started {} nodes{}",
            ids.len(),
            if cluster.proxy.is_some() {
                " behind the proxy"
            } else {
                ""
            }
        ));
        cluster
    }

    /// Records a node's flags (without starting it).
    fn define(
        &mut self,
        id: NodeId,
        listen_peer: SocketAddr,
        peer_url: String,
        cluster: &str,
        join: bool,
    ) {
        let client = free_addr();
        let data_dir = self.dir.join(format!("node-{id}"));
        let o = &self.opts;
        let mut args: Vec<String> = vec![
            "--id".into(),
            id.to_string(),
            "--cluster".into(),
            cluster.to_owned(),
            "--listen-peer".into(),
            listen_peer.to_string(),
            "--client-host".into(),
            client.ip().to_string(),
            "--port".into(),
            client.port().to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--tick-ms".into(),
            o.tick_ms.to_string(),
            "--election-tick".into(),
            o.election_tick.to_string(),
            "--heartbeat-tick".into(),
            o.heartbeat_tick.to_string(),
            "--request-timeout-ms".into(),
            o.request_timeout_ms.to_string(),
        ];
        if let Some(n) = o.snapshot_count {
            args.extend(["--snapshot-count".into(), n.to_string()]);
        }
        if join {
            args.push("--join".into());
        }
        args.extend(o.extra_args.iter().cloned());
        self.nodes.insert(
            id,
            NodeProc {
                client,
                peer_url,
                log: self.dir.join(format!("node-{id}.log")),
                data_dir,
                args,
                child: None,
                paused: false,
                removed: false,
                starts: 0,
            },
        );
    }

    fn node(&self, id: NodeId) -> &NodeProc {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: NodeId) -> &mut NodeProc {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Prints a harness event with the time since the cluster started, and
    /// appends it to `<dir>/harness.log`.
    pub fn log(&self, msg: &str) {
        let line = format!("[+{:8.3}s] {msg}", self.started.elapsed().as_secs_f64());
        let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
        eprintln!("harness {name} {line}");
        note(&self.dir.join("harness.log"), &line);
    }

    fn spawn(&mut self, id: NodeId) {
        let bin = kv_server_bin();
        let node = self.node_mut(id);
        assert!(node.child.is_none(), "node {id} is already running");
        node.starts += 1;
        note(
            &node.log,
            &format!(
                "start #{} of node {id}: {} {}",
                node.starts,
                bin.display(),
                node.args.join(" ")
            ),
        );
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("opening the node log");
        let mut cmd = Command::new(bin);
        cmd.args(&node.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .env(
                "RUST_LOG",
                std::env::var("KV_SERVER_LOG").unwrap_or_else(|_| "info".into()),
            );
        // SAFETY: prctl is async-signal-safe and touches no memory of the
        // parent; see the module docs for why the signal is tied to this
        // thread.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        node.child = Some(child);
        node.paused = false;
    }

    /// Waits until node `id` answers on its client port.
    async fn wait_started(&mut self, id: NodeId) {
        let deadline = Instant::now() + START_TIMEOUT;
        let client = self.client(id).with_timeout(Duration::from_secs(2));
        loop {
            if client.health().await.is_ok() {
                return;
            }
            let node = self.node_mut(id);
            let child = node.child.as_mut().expect("started");
            if let Ok(Some(status)) = child.try_wait() {
                node.child = None;
                crate::print_log_tails(&self.dir, 30);
                panic!("node {id} exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not answer on its client port within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(crate::POLL).await;
        }
    }

    /// Reports every node the harness believes running that has in fact
    /// exited: a crash, or a signal from outside the test (a shared
    /// machine's `pkill kv-server` ends every test's nodes at once; the
    /// node's log then ends with "shutting down").
    fn record_exits(&mut self) {
        for (&id, node) in &mut self.nodes {
            let Some(child) = node.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                let line = format!("node {id} exited on its own, not by the harness: {status}");
                eprintln!("{line}");
                note(&node.log, &line);
            }
        }
    }

    /// Saves every running, unpaused node's `/stats` (raft progress,
    /// transport counters) to `<dir>/node-<id>.stats.json` and prints each
    /// node's raft section: the state of a failed test, for its report.
    fn record_stats(&self) {
        for (&id, node) in &self.nodes {
            if node.child.is_none() || node.paused {
                continue;
            }
            match stats_blocking(node.client, Duration::from_secs(2)) {
                Ok(body) => {
                    let _ = std::fs::write(self.dir.join(format!("node-{id}.stats.json")), &body);
                    let raft = serde_json::from_str::<serde_json::Value>(&body)
                        .map(|v| v["raft"].to_string())
                        .unwrap_or(body);
                    eprintln!("node {id} at failure: {raft}");
                }
                Err(e) => eprintln!("node {id} at failure: /stats failed: {e}"),
            }
        }
    }

    /// The temporary directory of the cluster.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every node id the harness started (removed and stopped ones too).
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// The nodes that are running, not paused and not removed: those that
    /// should take part in the cluster.
    pub fn live(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.child.is_some() && !n.paused && !n.removed)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Whether node `id`'s process is running (paused counts as running).
    pub fn is_running(&self, id: NodeId) -> bool {
        self.node(id).child.is_some()
    }

    /// A client of node `id`.
    pub fn client(&self, id: NodeId) -> Client {
        Client::new(self.node(id).client)
    }

    /// Whether the cluster was started with a proxy.
    pub fn has_proxy(&self) -> bool {
        self.proxy.is_some()
    }

    /// The proxy.
    ///
    /// # Panics
    /// If the cluster was started without one.
    pub fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("the cluster has no proxy")
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: NodeId) -> &Path {
        &self.node(id).data_dir
    }

    /// Node `id`'s log file.
    pub fn log_path(&self, id: NodeId) -> &Path {
        &self.node(id).log
    }

    /// The URL peers use for node `id`.
    pub fn peer_url(&self, id: NodeId) -> &str {
        &self.node(id).peer_url
    }

    /// Kills node `id` with SIGKILL and reaps it.
    ///
    /// # Panics
    /// If it is not running.
    pub fn kill(&mut self, id: NodeId) {
        let node = self.node_mut(id);
        let mut child = node
            .child
            .take()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        signal(&child, libc::SIGKILL);
        let status = child.wait().expect("reaping a killed node");
        node.paused = false;
        note(&node.log, &format!("node {id} killed (SIGKILL): {status}"));
        self.log(&format!("killed node {id} (SIGKILL)"));
    }

    /// Starts node `id` again with the same flags and data directory, and
    /// waits until it answers on its client port.
    ///
    /// # Panics
    /// If it is running, or does not come up.
    pub async fn restart(&mut self, id: NodeId) {
        self.spawn(id);
        self.wait_started(id).await;
        self.log(&format!("restarted node {id}"));
    }

    /// Stops node `id` with SIGTERM (resuming it first if paused) and waits
    /// for it to exit.
    ///
    /// # Panics
    /// If it is not running, or does not exit within 20 s (it is then
    /// killed).
    pub async fn terminate(&mut self, id: NodeId) -> ExitStatus {
        let node = self.node_mut(id);
        let mut child = node
            .child
            .take()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        if node.paused {
            signal(&child, libc::SIGCONT);
            node.paused = false;
        }
        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + TERM_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for a node") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("node {id} did not exit within {TERM_TIMEOUT:?} of SIGTERM");
            }
            tokio::time::sleep(crate::POLL).await;
        };
        let log = node.log.clone();
        note(&log, &format!("node {id} exited after SIGTERM: {status}"));
        self.log(&format!("terminated node {id}: {status}"));
        status
    }

    /// Stops node `id` with SIGSTOP: it keeps its sockets but does nothing.
    ///
    /// # Panics
    /// If it is not running.
    pub fn pause(&mut self, id: NodeId) {
        let node = self.node_mut(id);
        signal(node.child.as_ref().expect("running"), libc::SIGSTOP);
        node.paused = true;
        note(&node.log.clone(), &format!("node {id} paused (SIGSTOP)"));
        self.log(&format!("paused node {id}"));
    }

    /// Resumes node `id` with SIGCONT.
    ///
    /// # Panics
    /// If it is not running.
    pub fn resume(&mut self, id: NodeId) {
        let node = self.node_mut(id);
        signal(node.child.as_ref().expect("running"), libc::SIGCONT);
        node.paused = false;
        note(&node.log.clone(), &format!("node {id} resumed (SIGCONT)"));
        self.log(&format!("resumed node {id}"));
    }

    /// The `/state` of every live node.
    pub async fn states(&self) -> BTreeMap<NodeId, Result<NodeState, String>> {
        self.states_of(&self.live()).await
    }

    /// The `/state` of the given nodes.
    pub async fn states_of(&self, ids: &[NodeId]) -> BTreeMap<NodeId, Result<NodeState, String>> {
        let mut out = BTreeMap::new();
        for &id in ids {
            let c = self.client(id).with_timeout(Duration::from_secs(2));
            out.insert(id, c.state().await);
        }
        out
    }

    /// The leader the nodes `ids` agree on, if they do: the same leader,
    /// itself one of them and reporting the leader role, in the same term.
    async fn agreed_leader(
        &self,
        ids: &[NodeId],
    ) -> Result<(NodeId, BTreeMap<NodeId, NodeState>), String> {
        let states = self.states_of(ids).await;
        let mut ok = BTreeMap::new();
        for (id, s) in states {
            ok.insert(id, s?);
        }
        let describe = || format!("{ok:?}");
        let leader = ok.values().next().map(|s| s.leader).unwrap_or(0);
        if leader == 0 || ok.values().any(|s| s.leader != leader) {
            return Err(format!("no agreed leader: {}", describe()));
        }
        match ok.get(&leader) {
            Some(s) if s.role == Role::Leader => {}
            _ => {
                return Err(format!(
                    "leader {leader} is not a live leader: {}",
                    describe()
                ));
            }
        }
        let term = ok[&leader].term;
        if ok.values().any(|s| s.term != term) {
            return Err(format!("terms differ: {}", describe()));
        }
        Ok((leader, ok))
    }

    /// Waits until every live node agrees on one live leader, and returns
    /// it.
    ///
    /// # Panics
    /// If that does not happen within `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> NodeId {
        self.wait_for_leader_among(&self.live(), timeout).await
    }

    /// Waits until the nodes `ids` agree on a leader among them (the side
    /// of a partition that holds a quorum, say), and returns it.
    ///
    /// # Panics
    /// If that does not happen within `timeout`.
    pub async fn wait_for_leader_among(&self, ids: &[NodeId], timeout: Duration) -> NodeId {
        let (leader, _) = wait_until(
            &format!("a leader agreed by nodes {ids:?}"),
            timeout,
            || self.agreed_leader(ids),
        )
        .await;
        self.log(&format!("nodes {ids:?} agree that node {leader} leads"));
        leader
    }

    /// Waits until every live node agrees on the leader and has applied
    /// everything the leader committed; returns the applied index.
    ///
    /// # Panics
    /// If that does not happen within `timeout`.
    pub async fn wait_converged(&self, timeout: Duration) -> u64 {
        let applied = wait_until("the live nodes to converge", timeout, || async {
            let (leader, states) = self.agreed_leader(&self.live()).await?;
            let commit = states[&leader].commit;
            if states
                .values()
                .all(|s| s.applied == commit && s.commit == commit)
            {
                Ok(commit)
            } else {
                Err(format!("not all applied {commit}: {states:?}"))
            }
        })
        .await;
        self.log(&format!("converged at applied index {applied}"));
        applied
    }

    /// Every key and value on node `id`, from its local state.
    ///
    /// # Panics
    /// If the listing fails.
    pub async fn dump(&self, id: NodeId) -> BTreeMap<String, String> {
        self.client(id)
            .dump()
            .await
            .unwrap_or_else(|e| panic!("dumping node {id}: {e}"))
    }

    /// Checks that every live node holds the same data (call after
    /// [`Cluster::wait_converged`]) and returns it.
    ///
    /// # Panics
    /// If two nodes differ: the first differing key is named.
    pub async fn assert_same_data(&self) -> BTreeMap<String, String> {
        let live = self.live();
        let first = *live.first().expect("a live node");
        let reference = self.dump(first).await;
        for &id in &live[1..] {
            let other = self.dump(id).await;
            if other != reference {
                let diff = reference
                    .iter()
                    .find(|(k, v)| other.get(*k) != Some(*v))
                    .map(|(k, v)| {
                        format!(
                            "{k:?}: node {first} has {v:?}, node {id} has {:?}",
                            other.get(k)
                        )
                    })
                    .or_else(|| {
                        other
                            .keys()
                            .find(|k| !reference.contains_key(*k))
                            .map(|k| format!("{k:?} only on node {id}"))
                    })
                    .unwrap_or_default();
                panic!(
                    "nodes {first} and {id} differ ({} vs {} keys): {diff}",
                    reference.len(),
                    other.len()
                );
            }
        }
        reference
    }

    /// Adds a node: `POST /nodes/{id}?addr=` on node `via`, then starts it
    /// with `--join` and a `--cluster` list whose `id`-th URL is its own.
    /// Returns its id (one more than the largest so far).
    ///
    /// # Panics
    /// If the addition is not answered 204, or the node does not come up.
    pub async fn add_node(&mut self, via: NodeId) -> NodeId {
        let id = self.prepare_node().await;
        let advertised = self.peer_url(id).trim_start_matches("http://").to_owned();
        let r = self
            .client(via)
            .add_node(id, &advertised)
            .await
            .unwrap_or_else(|e| panic!("POST /nodes/{id} on node {via}: {e}"));
        assert_eq!(r.status, 204, "POST /nodes/{id} on node {via}: {r}");
        self.log(&format!("node {id} added to the cluster via node {via}"));
        self.start_node(id).await;
        id
    }

    /// Defines a new node, without starting it or telling the cluster: a
    /// fresh id (one more than the largest so far), fresh ports, an empty
    /// data directory, a proxy listener if there is a proxy, and the flags
    /// of a joiner (`--join`, and a `--cluster` list whose `id`-th URL is
    /// its own). Returns its id; [`Cluster::peer_url`] is the URL to add it
    /// with, [`Cluster::start_node`] starts it.
    ///
    /// # Panics
    /// If the proxy cannot listen for it.
    pub async fn prepare_node(&mut self) -> NodeId {
        let id = self.nodes.keys().max().copied().unwrap_or(0) + 1;
        let listen_peer = free_addr();
        let advertised = match &self.proxy {
            Some(p) => p.add_node(id, listen_peer).await.expect("proxy listener"),
            None => listen_peer,
        };
        // Ids are dense (1..=id), so this list's id-th URL is the new node's.
        let mut urls: Vec<String> = self.nodes.values().map(|n| n.peer_url.clone()).collect();
        urls.push(url(advertised));
        let cluster = urls.join(",");
        self.define(id, listen_peer, url(advertised), &cluster, true);
        id
    }

    /// Starts node `id` for the first time (see [`Cluster::prepare_node`])
    /// and waits until it answers on its client port.
    ///
    /// # Panics
    /// If it is running, or does not come up.
    pub async fn start_node(&mut self, id: NodeId) {
        self.spawn(id);
        self.wait_started(id).await;
        self.log(&format!("node {id} started with --join"));
    }

    /// Leaves node `id` out of [`Cluster::live`] from now on: the test has
    /// removed it from the cluster (or is about to), and its process, if
    /// still running, is no longer part of it.
    pub fn set_removed(&mut self, id: NodeId) {
        self.node_mut(id).removed = true;
    }

    /// Removes node `id` with `DELETE /nodes/{id}` on node `via`, and from
    /// then on leaves it out of [`Cluster::live`] (its process keeps running
    /// until killed).
    ///
    /// # Panics
    /// If the removal is not answered 204.
    pub async fn remove_node(&mut self, via: NodeId, id: NodeId) {
        let r = self
            .client(via)
            .remove_node(id)
            .await
            .unwrap_or_else(|e| panic!("DELETE /nodes/{id} on node {via}: {e}"));
        assert_eq!(r.status, 204, "DELETE /nodes/{id} on node {via}: {r}");
        self.node_mut(id).removed = true;
        self.log(&format!("node {id} removed via node {via}"));
    }

    /// Deletes the data directory of node `id`, which must be stopped; its
    /// log stays. For nodes removed from the cluster, whose data nothing
    /// reads again: a long soak adds and removes hundreds of nodes, each
    /// with 128 MiB of preallocated WAL.
    ///
    /// # Panics
    /// If the node is running, or the directory cannot be removed.
    pub fn discard_data(&mut self, id: NodeId) {
        let node = self.node(id);
        assert!(node.child.is_none(), "node {id} is running");
        match std::fs::remove_dir_all(&node.data_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing {}: {e}", node.data_dir.display()),
        }
        note(&node.log, &format!("node {id}'s data directory deleted"));
    }

    /// The log of node `id` as text.
    pub fn read_log(&self, id: NodeId) -> String {
        std::fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }
}
