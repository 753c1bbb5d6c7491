//! Command-line flags (raftexample-compatible) and their validation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use raft_core::NodeId;

use crate::transport::peer_addr;

/// A Raft-replicated key-value server.
///
/// With no flags it starts a working single-node cluster: peers on
/// 127.0.0.1:12379, clients (HTTP and the KVB1 binary protocol) on port
/// 12380, data in ./kv-data/node-1.
#[derive(Parser, Debug, Clone)]
#[command(name = "kv-server", version, about, long_about = None)]
pub struct Flags {
    /// This node's id: node i is the i-th URL of --cluster.
    #[arg(long, default_value_t = 1)]
    pub id: NodeId,

    /// Comma-separated peer URLs of the cluster (`http://host:port` or
    /// `host:port`); node i+1 is the i-th URL.
    #[arg(long, default_value = "http://127.0.0.1:12379")]
    pub cluster: String,

    /// The client port (HTTP/1.1 and the KVB1 binary protocol).
    #[arg(long, default_value_t = 12380)]
    pub port: u16,

    /// The address the client port binds to.
    #[arg(long, default_value = "127.0.0.1")]
    pub client_host: String,

    /// The address the peer port binds to (default: this node's own URL in
    /// --cluster). Set it when peers reach this node through another address
    /// (a proxy, NAT): --cluster then holds the advertised addresses.
    #[arg(long)]
    pub listen_peer: Option<String>,

    /// Join an existing cluster (after `POST /nodes/{id}` or `POST /{id}`
    /// on a member) instead of starting a new one.
    #[arg(long)]
    pub join: bool,

    /// Where the WAL and snapshots live (default `./kv-data/node-<id>`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,

    /// Applied entries between snapshots.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_count: u64,

    /// A name shared by every node of one cluster; peers of another cluster
    /// are refused at the handshake.
    #[arg(long, default_value = "kv-cluster")]
    pub cluster_token: String,

    /// The raft tick interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub tick_ms: u64,

    /// Ticks without a leader before a follower campaigns.
    #[arg(long, default_value_t = 10)]
    pub election_tick: usize,

    /// Ticks between the leader's heartbeats.
    #[arg(long, default_value_t = 1)]
    pub heartbeat_tick: usize,

    /// How long a request waits for its outcome before 504 (writes) or 503
    /// (reads), in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub request_timeout_ms: u64,

    /// The largest value accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_value_size: usize,
}

impl Flags {
    /// The initial cluster: node id -> peer URL.
    ///
    /// # Errors
    /// An empty list, an empty URL, or an `--id` outside it.
    pub fn peers(&self) -> anyhow::Result<BTreeMap<NodeId, String>> {
        let urls: Vec<&str> = self.cluster.split(',').map(str::trim).collect();
        if urls.iter().any(|u| u.is_empty()) {
            anyhow::bail!("--cluster has an empty URL: {:?}", self.cluster);
        }
        for u in &urls {
            peer_addr(u).map_err(|e| anyhow::anyhow!("--cluster: {e}"))?;
        }
        if self.id == 0 || self.id as usize > urls.len() {
            anyhow::bail!(
                "--id {} is not in --cluster ({} URLs; ids are 1..={})",
                self.id,
                urls.len(),
                urls.len()
            );
        }
        Ok(urls
            .iter()
            .enumerate()
            .map(|(i, u)| (i as NodeId + 1, u.to_string()))
            .collect())
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("./kv-data/node-{}", self.id)))
    }

    /// The tick interval.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms.max(1))
    }

    /// The cluster id derived from the token (FNV-1a: stable across builds
    /// and platforms, unlike std's hasher).
    pub fn cluster_id(&self) -> u64 {
        self.cluster_token
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        Flags::try_parse_from(std::iter::once("kv-server").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_are_a_single_node_cluster() {
        let f = flags(&[]);
        assert_eq!(f.id, 1);
        assert_eq!(f.port, 12380);
        let peers = f.peers().unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peer_addr(&peers[&1]).unwrap(), "127.0.0.1:12379");
        assert_eq!(f.data_dir(), PathBuf::from("./kv-data/node-1"));
    }

    #[test]
    fn raftexample_command_lines_parse() {
        let f = flags(&[
            "--id",
            "2",
            "--cluster",
            "http://127.0.0.1:12379,http://127.0.0.1:22379,http://127.0.0.1:32379",
            "--port",
            "22380",
        ]);
        let peers = f.peers().unwrap();
        assert_eq!(peers.len(), 3);
        assert_eq!(peer_addr(&peers[&3]).unwrap(), "127.0.0.1:32379");
        assert_eq!(f.data_dir(), PathBuf::from("./kv-data/node-2"));
        let j = flags(&["--id", "4", "--cluster", "a:1,b:2,c:3,d:4", "--join"]);
        assert!(j.join);
        assert_eq!(j.peers().unwrap()[&4], "d:4");
    }

    #[test]
    fn bad_clusters_are_rejected_with_a_reason() {
        for (args, needle) in [
            (
                vec!["--id", "3", "--cluster", "a:1,b:2"],
                "not in --cluster",
            ),
            (vec!["--id", "0"], "not in --cluster"),
            (vec!["--cluster", "a:1,,b:2"], "empty URL"),
            (vec!["--cluster", "http://nohost"], "no port"),
        ] {
            let err = flags(&args).peers().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn cluster_id_depends_only_on_the_token() {
        assert_eq!(flags(&[]).cluster_id(), flags(&["--id", "1"]).cluster_id());
        assert_ne!(
            flags(&[]).cluster_id(),
            flags(&["--cluster-token", "other"]).cluster_id()
        );
    }
}
