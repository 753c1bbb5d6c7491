//! `kv-client`: the command-line client of the kv store, and its load generator.
//!
//! Flags are parsed here; [`cli`] runs the commands and [`output`] prints them. Exit codes:
//! 0 ok, 1 not found or condition failed, 2 usage (clap's own errors included), 3 unavailable,
//! timed out or indeterminate.

mod cli;
mod output;

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use kv_client::DEFAULT_ENDPOINT;

/// The command-line client of the kv store: reads, writes, membership, status and a
/// benchmark, over the KVB1 binary protocol.
///
/// Exit codes: 0 ok, 1 not found or condition failed, 2 usage, 3 unavailable or timed out.
#[derive(Parser, Debug)]
#[command(name = "kv-client", version, about, long_about = None)]
struct Cli {
    /// Comma-separated client endpoints (`http://host:port` or `host:port`), tried in order
    /// with failover.
    #[arg(
        long,
        global = true,
        env = "KV_ENDPOINTS",
        default_value = DEFAULT_ENDPOINT,
        value_name = "URLS",
        overrides_with = "endpoints"
    )]
    endpoints: String,

    /// Print JSON for scripts (errors too, on stdout).
    #[arg(long, global = true)]
    json: bool,

    /// Deadline of one request, retries and failover included (e.g. 500ms, 5s, 1m).
    #[arg(long, global = true, default_value = "10s", value_parser = kv_client::parse_duration, value_name = "D")]
    timeout: Duration,

    #[command(subcommand)]
    command: Command,
}

/// How a read is served.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ConsistencyArg {
    /// Confirmed with the leader: sees every write acknowledged before it began.
    #[default]
    Linearizable,
    /// This node's local state: faster, possibly stale.
    Serializable,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the value of KEY (raw bytes, no newline added).
    Get {
        /// The key.
        key: String,
        /// How the read is served.
        #[arg(long, value_enum, default_value_t)]
        consistency: ConsistencyArg,
    },
    /// Set KEY to VALUE (`-` reads the value from stdin).
    Put {
        /// The key.
        key: String,
        /// The value, or `-` for stdin.
        value: OsString,
    },
    /// Delete KEY (exit 1 if it is absent).
    Del {
        /// The key.
        key: String,
    },
    /// Compare-and-set: set KEY to NEW only if the condition holds (exit 1 if not).
    #[command(group(ArgGroup::new("condition").required(true).args(["prev_value", "prev_exist"])))]
    Cas {
        /// The key.
        key: String,
        /// The new value, or `-` for stdin.
        new: OsString,
        /// The value KEY must hold now.
        #[arg(long)]
        prev_value: Option<OsString>,
        /// Whether KEY must exist now (true) or be absent (false).
        #[arg(long, value_name = "true|false")]
        prev_exist: Option<bool>,
    },
    /// List keys in order (one page; `--after` the last key for the next).
    List {
        /// Only keys beginning with this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many keys (the server caps a page at 1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Only keys after this one (exclusive).
        #[arg(long)]
        after: Option<String>,
        /// Print values too (`key<TAB>value`, escaped).
        #[arg(long)]
        values: bool,
        /// How the read is served.
        #[arg(long, value_enum, default_value_t)]
        consistency: ConsistencyArg,
    },
    /// Set several keys atomically from a JSON object of strings, in FILE or on stdin.
    Batch {
        /// The file, or `-` (the default) for stdin.
        #[arg(default_value = "-")]
        file: String,
    },
    /// List the cluster's members.
    Members,
    /// Add node ID, whose peer address is ADDR (host:port), to the cluster.
    AddNode {
        /// The new node's id.
        id: u64,
        /// Its peer address: `host:port` or `http://host:port`.
        addr: String,
        /// Add it as a learner (non-voting); promote it later with promote-node.
        #[arg(long)]
        learner: bool,
    },
    /// Promote learner ID to a voter.
    PromoteNode {
        /// The learner's id.
        id: u64,
    },
    /// Remove node ID from the cluster.
    RemoveNode {
        /// The node's id.
        id: u64,
    },
    /// Hand leadership to node ID.
    TransferLeader {
        /// The node to become leader.
        id: u64,
    },
    /// Show every endpoint's raft state as a table (exit 3 if one cannot be reached).
    Status,
    /// Check that every endpoint sees a leader (exit 3 if one does not).
    Health,
    /// Generate load and measure throughput and latency.
    Bench(BenchArgs),
}

/// Which protocol `bench` speaks.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ProtocolArg {
    /// KVB1, pipelined over shared connections.
    Binary,
    /// HTTP/1.1 keep-alive, one connection per client.
    Http,
}

/// Where `bench` opens its connections.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum RoutingArg {
    /// All to the raft leader, found before the start (as a leader-aware client does).
    Leader,
    /// Round-robin over the endpoints; followers forward to the leader.
    Spread,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Binary protocol: connections the clients share (default: one per endpoint).
    #[arg(long)]
    connections: Option<usize>,
    /// How long to run (default 10s unless --ops is given).
    #[arg(long, value_parser = kv_client::parse_duration, conflicts_with = "ops", value_name = "D")]
    duration: Option<Duration>,
    /// Stop after this many operations in total.
    #[arg(long)]
    ops: Option<u64>,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keyspace: u64,
    /// Bytes per written value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Fraction of operations that are reads (0 to 1).
    #[arg(long, default_value_t = 0.5)]
    read_ratio: f64,
    /// How reads are served.
    #[arg(long, value_enum, default_value_t)]
    consistency: ConsistencyArg,
    /// The protocol.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Binary)]
    protocol: ProtocolArg,
    /// Where the connections go, for both protocols alike.
    #[arg(long, value_enum, default_value_t = RoutingArg::Leader)]
    routing: RoutingArg,
    /// Prefix of the keys written and read.
    #[arg(long, default_value = "bench/")]
    key_prefix: String,
    /// Seed of the random key and operation choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread for every command, bench included. A command is one request or a handful;
    // the load generator's work per operation is small, and on one thread the requests of
    // all its workers queue up together between two polls of a connection's writer, so
    // pipelining batches them (measured: no difference for HTTP, more batching for KVB1).
    // On a machine shared with the servers, their cores are better left to them.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    ExitCode::from(runtime.block_on(cli::run(cli)))
}
