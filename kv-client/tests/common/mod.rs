//! Support shared by the test files: real `kv-server` processes on loopback.
//!
//! The server binary is `$KV_SERVER_BIN` if set, else `kv-server` in the target directory of
//! the test executable, brought up to date once per run with `cargo build -p kv-server`
//! (bounded in time). Servers get ports from the OS and temporary data directories, and are
//! killed when their guard drops. Every wait polls a condition with a deadline.

// Each test file compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a server may take to start and see a leader.
pub const STARTUP: Duration = Duration::from_secs(30);
/// How long one `kv-client` run may take.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);
/// How long building the server may take.
pub const BUILD_LIMIT: Duration = Duration::from_secs(20 * 60);
/// Raft tick for the test servers: fast elections.
pub const TICK_MS: &str = "20";

pub fn server_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("KV_SERVER_BIN") {
            return PathBuf::from(bin);
        }
        // <target>/<profile>/deps/cli-<hash>
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable in <target>/<profile>/deps");
        let bin = profile_dir.join("kv-server");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace)
            .args(["build", "-p", "kv-server"]);
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(other) => {
                cmd.args(["--profile", other]);
            }
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .spawn()
            .expect("running cargo build -p kv-server");
        let status = wait_bounded(&mut child, BUILD_LIMIT)
            .unwrap_or_else(|| panic!("cargo build -p kv-server took over {BUILD_LIMIT:?}"));
        assert!(status.success(), "cargo build -p kv-server failed");
        assert!(bin.exists(), "{} missing after the build", bin.display());
        bin
    })
}

/// Waits for `child` for at most `limit`; kills it and returns `None` past that.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port")
        .port()
}

/// One `kv-server` process, killed on drop.
pub struct Server {
    pub child: Child,
    pub client_port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Whether `GET /health` answers 200 (the node sees a leader).
    pub fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.client_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = "GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp.starts_with("HTTP/1.1 200")
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// A cluster of `kv-server` processes in one temporary directory.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// Peer URLs, node i+1 at index i (including nodes added later).
    pub peers: Vec<String>,
    /// Node i+1 at index i; `None` once killed.
    pub nodes: Vec<Option<Server>>,
}

impl Cluster {
    /// Starts `n` nodes and waits until each sees a leader. Ports are picked by the OS and
    /// released before the servers bind them, so a start is retried if a port was taken.
    pub fn start(n: usize) -> Cluster {
        for attempt in 0.. {
            match Cluster::try_start(n) {
                Ok(c) => return c,
                Err(e) if attempt < 2 => eprintln!("cluster start failed, retrying: {e}"),
                Err(e) => panic!("cluster of {n} did not start: {e}"),
            }
        }
        unreachable!()
    }

    pub fn try_start(n: usize) -> Result<Cluster, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let peers: Vec<String> = (0..n)
            .map(|_| format!("http://127.0.0.1:{}", free_port()))
            .collect();
        let mut cluster = Cluster {
            dir,
            peers,
            nodes: Vec::new(),
        };
        for id in 1..=n as u64 {
            let server = cluster.spawn(id, false);
            cluster.nodes.push(Some(server));
        }
        let deadline = Instant::now() + STARTUP;
        for i in 0..n {
            loop {
                let node = cluster.nodes[i].as_mut().expect("just started");
                if node.healthy() {
                    break;
                }
                if node.exited() {
                    return Err(format!("node {} exited during startup", i + 1));
                }
                if Instant::now() >= deadline {
                    return Err(format!("node {} saw no leader within {STARTUP:?}", i + 1));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(cluster)
    }

    /// Spawns node `id` with the cluster's current peer list.
    pub fn spawn(&self, id: u64, join: bool) -> Server {
        let client_port = free_port();
        let mut cmd = Command::new(server_bin());
        cmd.args(["--id", &id.to_string()])
            .args(["--cluster", &self.peers.join(",")])
            .args(["--port", &client_port.to_string()])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("node-{id}")))
            .args(["--tick-ms", TICK_MS])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if join {
            cmd.arg("--join");
        }
        let child = cmd.spawn().expect("spawning kv-server");
        Server { child, client_port }
    }

    pub fn node(&self, id: u64) -> &Server {
        self.nodes[id as usize - 1]
            .as_ref()
            .expect("node is running")
    }

    /// Every running node's endpoint, comma-separated, in id order.
    pub fn endpoints(&self) -> String {
        self.nodes
            .iter()
            .flatten()
            .map(Server::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn kill(&mut self, id: u64) {
        self.nodes[id as usize - 1] = None;
    }

    /// Adds a peer URL for a new node and returns its id and peer address.
    pub fn reserve_node(&mut self) -> (u64, String) {
        let addr = format!("127.0.0.1:{}", free_port());
        self.peers.push(format!("http://{addr}"));
        (self.peers.len() as u64, addr)
    }
}

/// An endpoint nothing listens on.
pub fn dead_endpoint() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// Polls `cond` every 20 ms until it holds, for at most `limit`.
#[track_caller]
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
