//! Wires a node together: the peer transport, the node thread and the
//! client port, and the [`Backend`] that turns client requests into node
//! events.

use std::sync::{Arc, mpsc};
use std::time::Duration;

use raft_core::{Message, NodeId, StateRole};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::api::{
    ApiError, Backend, Consistency, Health, Limits, Member, NodeState, Request, Response, Role,
};
use crate::config::Flags;
use crate::metrics::Metrics;
use crate::node::{Event, MemberChange, Node, NodeConfig, NodeStatus, PeerSink};
use crate::transport::{Transport, TransportConfig, TransportEvent};

impl PeerSink for Arc<Transport> {
    fn send(&self, msgs: Vec<Message>) {
        if !msgs.is_empty() {
            Transport::send(self, msgs);
        }
    }

    fn add_peer(&self, id: NodeId, url: &str) {
        if let Err(e) = Transport::add_peer(self, id, url) {
            error!(id, url, error = %e, "cannot add peer");
        }
    }

    fn remove_peer(&self, id: NodeId) {
        Transport::remove_peer(self, id);
    }
}

/// The [`Backend`] of a running node: requests become [`Event`]s on the
/// node's channel, answered through a oneshot.
#[derive(Clone)]
pub struct NodeBackend {
    events: mpsc::Sender<Event>,
    metrics: Metrics,
    transport: Arc<Transport>,
    /// A write from arrival to its answer.
    answer: crate::metrics::Histogram,
}

impl NodeBackend {
    /// Sends the event `make` builds and waits for its answer.
    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Event,
    ) -> Result<T, ApiError> {
        let gone = || ApiError::unavailable(None, "server is shutting down");
        let (tx, rx) = oneshot::channel();
        self.events.send(make(tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<Response, ApiError>>) -> Event,
    ) -> Result<Response, ApiError> {
        self.request(make).await?
    }

    async fn status(&self) -> Result<NodeStatus, ApiError> {
        self.request(Event::Status).await
    }
}

fn role(st: &NodeStatus) -> Role {
    if st.learner {
        return Role::Learner;
    }
    match st.role {
        StateRole::Leader => Role::Leader,
        StateRole::Follower => Role::Follower,
        StateRole::Candidate => Role::Candidate,
        StateRole::PreCandidate => Role::PreCandidate,
    }
}

fn stats_json(st: &NodeStatus, transport: &Transport, metrics: &Metrics) -> String {
    let progress: Vec<_> = st
        .progress
        .iter()
        .map(|(id, matched, next, state)| {
            serde_json::json!({"id": id, "match": matched, "next": next, "state": state})
        })
        .collect();
    serde_json::json!({
        "id": st.id,
        "raft": {
            "role": role(st),
            "term": st.term,
            "leader": st.leader,
            "commit": st.commit,
            "applied": st.applied,
            "progress": progress,
        },
        "wal": {
            "segments": st.wal.segments,
            "bytes": st.wal.bytes,
            "first_index": st.wal.first_index,
            "last_index": st.wal.last_index,
            "syncs": st.wal.syncs,
            "bytes_synced": st.wal.bytes_synced,
        },
        "snapshot": { "index": st.snapshot_index },
        "store": { "keys": st.keys },
        "transport": transport.stats(),
        "requests": metrics.counters(),
    })
    .to_string()
}

impl Backend for NodeBackend {
    async fn call(&self, req: Request) -> Result<Response, ApiError> {
        match req {
            Request::Get { consistency, .. }
            | Request::List(crate::api::ListRequest { consistency, .. }) => {
                if consistency == Consistency::Serializable {
                    self.ask(|tx| Event::LocalRead(req, tx)).await
                } else {
                    self.ask(|tx| Event::Read(req, tx)).await
                }
            }
            Request::Put { .. } | Request::Delete { .. } | Request::Batch { .. } => {
                let cmd = req
                    .into_command()
                    .map_err(|_| ApiError::internal("not a write"))?;
                let started = std::time::Instant::now();
                let result = self.ask(|tx| Event::Propose(cmd, tx)).await;
                self.answer.observe(started.elapsed());
                result
            }
            Request::AddNode { id, addr, learner } => {
                let url = if addr.contains("://") {
                    addr
                } else {
                    format!("http://{addr}")
                };
                self.ask(|tx| Event::ConfChange(MemberChange::Add { id, url, learner }, tx))
                    .await
            }
            Request::PromoteNode { id } => {
                self.ask(|tx| Event::ConfChange(MemberChange::Promote(id), tx))
                    .await
            }
            Request::RemoveNode { id } => {
                self.ask(|tx| Event::ConfChange(MemberChange::Remove(id), tx))
                    .await
            }
            Request::TransferLeader { to } => self.ask(|tx| Event::TransferLeader(to, tx)).await,
            Request::Members => {
                let st = self.status().await?;
                Ok(Response::Members(
                    st.members
                        .iter()
                        .map(|m| Member {
                            id: m.id,
                            peer_url: m.peer_url.clone(),
                            voter: m.voter,
                            leader: m.id == st.leader,
                        })
                        .collect(),
                ))
            }
            Request::Health => {
                let st = self.status().await?;
                Ok(Response::Health(Health { leader: st.leader }))
            }
            Request::State => {
                let st = self.status().await?;
                Ok(Response::State(NodeState {
                    id: st.id,
                    role: role(&st),
                    term: st.term,
                    leader: st.leader,
                    commit: st.commit,
                    applied: st.applied,
                }))
            }
            Request::Stats => {
                let st = self.status().await?;
                Ok(Response::Stats(stats_json(
                    &st,
                    &self.transport,
                    &self.metrics,
                )))
            }
            Request::Metrics => Ok(Response::Metrics(self.metrics.render())),
        }
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// Runs a node until `shutdown` is cancelled: the caller owns the listeners
/// (so tests can bind port 0) and the shutdown signal.
///
/// # Errors
/// A bad configuration, a data directory that cannot be recovered, or a
/// node that stopped on a WAL failure.
pub async fn run(
    flags: Flags,
    peer_listener: TcpListener,
    client_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let peers = flags.peers()?;
    let id = flags.id;
    let metrics = Metrics::new();
    let limits = Limits {
        max_value: flags.max_value_size,
        ..Limits::default()
    };
    let (events_tx, events_rx) = mpsc::channel::<Event>();
    let (inbound_tx, mut inbound_rx) = tokio::sync::mpsc::channel::<Message>(8192);
    let (transport_tx, mut transport_rx) = tokio::sync::mpsc::unbounded_channel();
    let transport_shutdown = CancellationToken::new();
    let transport = Arc::new(Transport::start(
        TransportConfig::new(id, flags.cluster_id(), Default::default()),
        peer_listener,
        inbound_tx,
        transport_tx,
        transport_shutdown.clone(),
    )?);

    // Bridge the transport's async channels to the node's thread.
    let tx = events_tx.clone();
    tokio::spawn(async move {
        while let Some(m) = inbound_rx.recv().await {
            if tx.send(Event::Raft(m)).is_err() {
                break;
            }
        }
    });
    let tx = events_tx.clone();
    tokio::spawn(async move {
        while let Some(ev) = transport_rx.recv().await {
            let ev = match ev {
                TransportEvent::Unreachable(id) => Event::Unreachable(id),
                TransportEvent::SnapshotStatus { to, ok } => Event::SnapshotStatus(to, ok),
            };
            if tx.send(ev).is_err() {
                break;
            }
        }
    });

    let cfg = NodeConfig {
        id,
        peers,
        join: flags.join,
        data_dir: flags.data_dir(),
        snapshot_count: flags.snapshot_count.max(1),
        catch_up_entries: (flags.snapshot_count / 2).min(5000),
        tick: flags.tick(),
        election_tick: flags.election_tick,
        heartbeat_tick: flags.heartbeat_tick,
        request_timeout: Duration::from_millis(flags.request_timeout_ms),
    };
    let node =
        tokio::task::block_in_place(|| Node::open(cfg, transport.clone(), &metrics, limits))?;
    let node_thread = std::thread::Builder::new()
        .name(format!("raft-node-{id}"))
        .spawn(move || node.run(events_rx))?;

    let backend = NodeBackend {
        events: events_tx.clone(),
        answer: metrics.histogram(
            "kv_write_to_answer_seconds",
            "Time from a write's arrival to its answer (the whole write path).",
        ),
        metrics,
        transport: transport.clone(),
    };
    info!(id, "serving clients");
    crate::client_port::serve(client_listener, backend, limits, shutdown.clone()).await;

    // Clients are done: stop the node (it syncs), then the transport.
    let _ = events_tx.send(Event::Shutdown);
    let result = tokio::task::spawn_blocking(move || node_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the node thread panicked"))?;
    transport_shutdown.cancel();
    transport.closed().await;
    result
}
