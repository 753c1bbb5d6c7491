//! Test support: [`LocalBackend`], a [`Backend`] that executes requests directly against a
//! [`StateMachine`], with no raft, so the HTTP and binary front ends (and clients built on
//! them) can be tested end to end without a node.
//!
//! It also fakes a membership list, a leader (set it to 0 to see every front end answer
//! "unavailable"), injected errors, and holds that park requests for a key until released,
//! to test pipelining and graceful shutdown without sleeping.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::api::{
    ApiError, Backend, Consistency, Health, Limits, Member, NodeState, Request, Response, Role,
};
use crate::metrics::Metrics;
use crate::state_machine::StateMachine;

/// A backend with no raft: one node that applies every write at once.
#[derive(Clone, Debug)]
pub struct LocalBackend {
    inner: Arc<Inner>,
    metrics: Metrics,
}

#[derive(Debug)]
struct Inner {
    limits: Limits,
    store: Mutex<Store>,
    cluster: Mutex<Cluster>,
    injected: Mutex<VecDeque<ApiError>>,
    holds: Mutex<HashMap<String, Arc<HoldState>>>,
}

#[derive(Debug, Default)]
struct Store {
    sm: StateMachine,
    /// Count of applied writes, shown as commit and applied index.
    applied: u64,
}

#[derive(Debug)]
struct Cluster {
    id: u64,
    leader: u64,
    /// id -> (peer url, voter)
    members: BTreeMap<u64, (String, bool)>,
}

#[derive(Debug)]
struct HoldState {
    released: watch::Sender<bool>,
    blocked: watch::Sender<usize>,
}

/// Parks every request for one key until [`Hold::release`] (or until dropped).
#[derive(Debug)]
pub struct Hold {
    state: Arc<HoldState>,
    key: String,
    backend: LocalBackend,
}

impl Hold {
    /// Waits until `n` requests are parked on this hold.
    pub async fn wait_blocked(&self, n: usize) {
        let mut rx = self.state.blocked.subscribe();
        // The sender lives in `self.state`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|&b| b >= n).await;
    }

    /// Lets the parked requests (and any later ones for the key) proceed.
    pub fn release(self) {
        // Dropping does the work.
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.backend.lock_holds().remove(&self.key);
        self.state.released.send_replace(true);
    }
}

impl Default for LocalBackend {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl LocalBackend {
    /// A single-node cluster (node 1 at `http://127.0.0.1:12379`, leading) with an empty map,
    /// answering lists within `limits`.
    pub fn new(limits: Limits) -> Self {
        let members = BTreeMap::from([(1, ("http://127.0.0.1:12379".to_owned(), true))]);
        LocalBackend {
            inner: Arc::new(Inner {
                limits,
                store: Mutex::new(Store::default()),
                cluster: Mutex::new(Cluster {
                    id: 1,
                    leader: 1,
                    members,
                }),
                injected: Mutex::new(VecDeque::new()),
                holds: Mutex::new(HashMap::new()),
            }),
            metrics: Metrics::new(),
        }
    }

    /// Sets the leader this node sees; 0 means none: writes and linearizable reads then fail
    /// with [`crate::api::ErrorKind::Unavailable`] and health reports no leader.
    pub fn set_leader(&self, leader: u64) {
        lock(&self.inner.cluster).leader = leader;
    }

    /// Makes the next call fail with `err` (calls fail in the order errors are injected).
    pub fn inject_error(&self, err: ApiError) {
        lock(&self.inner.injected).push_back(err);
    }

    /// Parks every `Get`, `Put` or `Delete` of `key` until the returned hold is released.
    pub fn hold(&self, key: &str) -> Hold {
        let state = Arc::new(HoldState {
            released: watch::Sender::new(false),
            blocked: watch::Sender::new(0),
        });
        self.lock_holds().insert(key.to_owned(), state.clone());
        Hold {
            state,
            key: key.to_owned(),
            backend: self.clone(),
        }
    }

    /// The value of `key` in the map, read directly.
    pub fn get(&self, key: &str) -> Option<bytes::Bytes> {
        lock(&self.inner.store).sm.get(key).cloned()
    }

    /// Number of keys in the map.
    pub fn len(&self) -> usize {
        lock(&self.inner.store).sm.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock_holds(&self) -> MutexGuard<'_, HashMap<String, Arc<HoldState>>> {
        lock(&self.inner.holds)
    }

    async fn wait_if_held(&self, req: &Request) {
        let key = match req {
            Request::Get { key, .. } | Request::Put { key, .. } | Request::Delete { key } => key,
            _ => return,
        };
        let Some(state) = self.lock_holds().get(key).cloned() else {
            return;
        };
        let mut released = state.released.subscribe();
        state.blocked.send_modify(|n| *n += 1);
        let _ = released.wait_for(|&r| r).await;
    }

    fn execute(&self, req: Request) -> Result<Response, ApiError> {
        if let Some(err) = lock(&self.inner.injected).pop_front() {
            return Err(err);
        }
        let leader = lock(&self.inner.cluster).leader;
        let needs_leader = match &req {
            Request::Get { .. } | Request::List(_) => {
                req.read_consistency() == Some(Consistency::Linearizable)
            }
            Request::Members
            | Request::Health
            | Request::State
            | Request::Stats
            | Request::Metrics => false,
            _ => true,
        };
        if needs_leader && leader == 0 {
            return Err(ApiError::unavailable(None, "no leader"));
        }
        let mut store = lock(&self.inner.store);
        if let Some(answer) = store.sm.read(&req, &self.inner.limits) {
            return answer;
        }
        let req = match req.into_command() {
            Ok(cmd) => {
                store.sm.apply(cmd)?;
                store.applied += 1;
                return Ok(Response::Done);
            }
            Err(req) => req,
        };
        let applied = store.applied;
        let (keys, data_bytes) = (store.sm.len(), store.sm.data_bytes());
        drop(store);
        let mut cluster = lock(&self.inner.cluster);
        match req {
            Request::AddNode { id, addr, learner } => {
                if cluster.members.contains_key(&id) {
                    return Err(ApiError::bad_request(format!(
                        "node {id} is already a member"
                    )));
                }
                cluster.members.insert(id, (addr, !learner));
                Ok(Response::Done)
            }
            Request::PromoteNode { id } => match cluster.members.get_mut(&id) {
                Some((_, voter)) => {
                    *voter = true;
                    Ok(Response::Done)
                }
                None => Err(ApiError::not_found(format!("node {id} is not a member"))),
            },
            Request::RemoveNode { id } => match cluster.members.remove(&id) {
                Some(_) => Ok(Response::Done),
                None => Err(ApiError::not_found(format!("node {id} is not a member"))),
            },
            Request::TransferLeader { to } => match cluster.members.get(&to) {
                Some((_, true)) => {
                    cluster.leader = to;
                    Ok(Response::Done)
                }
                Some((_, false)) => Err(ApiError::bad_request(format!("node {to} is a learner"))),
                None => Err(ApiError::not_found(format!("node {to} is not a member"))),
            },
            Request::Members => Ok(Response::Members(
                cluster
                    .members
                    .iter()
                    .map(|(&id, (url, voter))| Member {
                        id,
                        peer_url: url.clone(),
                        voter: *voter,
                        leader: id == cluster.leader,
                    })
                    .collect(),
            )),
            Request::Health => Ok(Response::Health(Health {
                leader: cluster.leader,
            })),
            Request::State => Ok(Response::State(NodeState {
                id: cluster.id,
                role: if cluster.leader == cluster.id {
                    Role::Leader
                } else {
                    Role::Follower
                },
                term: 1,
                leader: cluster.leader,
                commit: applied,
                applied,
            })),
            Request::Stats => Ok(Response::Stats(
                serde_json::json!({
                    "store": {"keys": keys, "data_bytes": data_bytes},
                    "applied": applied,
                    "requests": self.metrics.counters(),
                })
                .to_string(),
            )),
            Request::Metrics => Ok(Response::Metrics(self.metrics.render())),
            Request::Get { .. }
            | Request::List(_)
            | Request::Put { .. }
            | Request::Delete { .. }
            | Request::Batch { .. } => unreachable!("reads and writes are handled above"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Backend for LocalBackend {
    async fn call(&self, req: Request) -> Result<Response, ApiError> {
        self.wait_if_held(&req).await;
        self.execute(req)
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn executes_writes_reads_and_membership() {
        let b = LocalBackend::default();
        let put = Request::Put {
            key: "k".into(),
            value: Bytes::from_static(b"v"),
            condition: None,
        };
        assert_eq!(b.call(put.clone()).await, Ok(Response::Done));
        let get = Request::Get {
            key: "k".into(),
            consistency: Consistency::Linearizable,
        };
        assert_eq!(
            b.call(get.clone()).await,
            Ok(Response::Value(Bytes::from_static(b"v")))
        );
        b.call(Request::AddNode {
            id: 2,
            addr: "127.0.0.1:2".into(),
            learner: true,
        })
        .await
        .unwrap();
        assert!(b.call(Request::TransferLeader { to: 2 }).await.is_err());
        b.call(Request::PromoteNode { id: 2 }).await.unwrap();
        b.call(Request::TransferLeader { to: 2 }).await.unwrap();
        let Ok(Response::State(state)) = b.call(Request::State).await else {
            panic!("state");
        };
        assert_eq!(
            (state.role, state.leader, state.applied),
            (Role::Follower, 2, 1)
        );

        b.set_leader(0);
        assert_eq!(
            b.call(put).await.unwrap_err().kind.http_status(),
            503,
            "writes need a leader"
        );
        let serializable = Request::Get {
            key: "k".into(),
            consistency: Consistency::Serializable,
        };
        assert!(b.call(serializable).await.is_ok());
        b.inject_error(ApiError::timeout("injected"));
        assert_eq!(
            b.call(Request::Health)
                .await
                .unwrap_err()
                .kind
                .http_status(),
            504
        );
        assert_eq!(
            b.call(Request::Health).await,
            Ok(Response::Health(Health { leader: 0 }))
        );
    }

    #[tokio::test]
    async fn hold_parks_until_released() {
        let b = LocalBackend::default();
        let hold = b.hold("slow");
        let b2 = b.clone();
        let task = tokio::spawn(async move {
            b2.call(Request::Put {
                key: "slow".into(),
                value: Bytes::new(),
                condition: None,
            })
            .await
        });
        hold.wait_blocked(1).await;
        assert!(b.get("slow").is_none());
        hold.release();
        assert_eq!(task.await.unwrap(), Ok(Response::Done));
        assert_eq!(b.get("slow"), Some(Bytes::new()));
    }
}
