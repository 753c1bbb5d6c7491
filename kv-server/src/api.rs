//! The client API vocabulary shared by every front end.
//!
//! [`Request`], [`Response`] and [`ApiError`] are what the HTTP API ([`crate::http`]), the
//! binary protocol ([`crate::binary`]) and `kv-client` speak; a [`Backend`] (the raft node,
//! or [`crate::testing::LocalBackend`]) turns one into the other. The types are plain serde
//! data with no dependency on the server's internals, so a client can use them as they are.
//!
//! Validation of sizes and shapes lives here ([`Request::check`]) so every front end applies
//! the same [`Limits`] with the same messages:
//!
//! - a key is a UTF-8 string of 1..=[`Limits::max_key`] bytes (HTTP keys are counted after
//!   percent-decoding); an empty key is a bad request (400), an oversized one is too large
//!   (413);
//! - a value is at most [`Limits::max_value`] bytes (413);
//! - a batch holds at most [`Limits::max_batch`] keys and [`Limits::max_batch_bytes`] bytes of
//!   keys plus values (413);
//! - a list page holds at most [`Limits::max_list`] items: a larger `limit` is lowered to it
//!   (the answer's `more` says whether anything was left out), and a page with values stops
//!   early once it holds [`Limits::max_list_bytes`] bytes.

use std::fmt;
use std::future::Future;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Consistency {
    /// Linearizable (the default): the node confirms its leadership with a ReadIndex round
    /// (Raft thesis §6.4) and serves the read once it has applied up to the read index.
    #[default]
    Linearizable,
    /// Serializable: this node's local state, possibly stale, never blocked by a lost quorum.
    Serializable,
}

/// The condition of a compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// The key must exist and hold exactly this value (an absent key fails).
    PrevValue(Bytes),
    /// `true`: the key must exist; `false`: the key must be absent.
    PrevExist(bool),
}

/// A list query: keys in order, starting after `after` (exclusive), that begin with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ListRequest {
    /// Only keys that begin with this prefix (empty: all keys).
    pub prefix: String,
    /// Only keys strictly greater than this one: the last key of the previous page.
    pub after: Option<String>,
    /// At most this many items; `None` means [`Limits::max_list`]. [`Request::check`] fills it
    /// in and lowers it to [`Limits::max_list`].
    pub limit: Option<u32>,
    /// Return values too, not only keys.
    pub values: bool,
    /// How the read is served.
    pub consistency: Consistency,
}

/// One request to the store or the cluster: everything the HTTP API offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Read one key: [`Response::Value`], or [`ErrorKind::NotFound`].
    Get {
        /// The key.
        key: String,
        /// How the read is served.
        consistency: Consistency,
    },
    /// Set one key, optionally only if `condition` holds ([`ErrorKind::PreconditionFailed`]
    /// otherwise): [`Response::Done`] once applied.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: Bytes,
        /// Compare-and-set condition, checked when the entry is applied.
        condition: Option<Condition>,
    },
    /// Delete one key: [`Response::Done`], or [`ErrorKind::NotFound`] if it was absent.
    Delete {
        /// The key.
        key: String,
    },
    /// List keys (and values) in order: [`Response::List`].
    List(ListRequest),
    /// Set several keys atomically, as one log entry: [`Response::Done`]. A key given twice
    /// takes the later value.
    Batch {
        /// The pairs, applied in order.
        items: Vec<(String, Bytes)>,
    },
    /// Add node `id` with peer address `addr`, as a voter or a learner: [`Response::Done`] once
    /// the configuration change is applied.
    AddNode {
        /// The new node's id (non-zero).
        id: u64,
        /// Its peer address: `http://host:port` or `host:port`.
        addr: String,
        /// Add it as a learner (a non-voting member) instead of a voter.
        learner: bool,
    },
    /// Promote learner `id` to voter: [`Response::Done`] once applied.
    PromoteNode {
        /// The learner's id.
        id: u64,
    },
    /// Remove node `id`: [`Response::Done`] once applied.
    RemoveNode {
        /// The node's id.
        id: u64,
    },
    /// Transfer leadership to node `to`: [`Response::Done`] once every node sees the new
    /// leader (the node asked has applied the new term's marker, which the new leader
    /// proposes once every member has acknowledged it, or after an election timeout if one
    /// is down); [`ErrorKind::Unavailable`] if the transfer fails.
    TransferLeader {
        /// The node to hand leadership to.
        to: u64,
    },
    /// The cluster's members: [`Response::Members`].
    Members,
    /// Whether this node sees a leader: [`Response::Health`].
    Health,
    /// This node's raft view: [`Response::State`].
    State,
    /// Statistics as a JSON document: [`Response::Stats`].
    Stats,
    /// Metrics in the Prometheus text format: [`Response::Metrics`].
    Metrics,
}

/// One item of a list page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListItem {
    /// The key.
    pub key: String,
    /// Its value, when the list asked for values.
    pub value: Option<Bytes>,
}

/// A list page.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ListResponse {
    /// The items in key order.
    pub items: Vec<ListItem>,
    /// Whether more matching keys follow the last item: ask again with `after` set to it.
    pub more: bool,
}

/// One member of the cluster, as `GET /members` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Node id.
    pub id: u64,
    /// Peer URL (`http://host:port`).
    pub peer_url: String,
    /// A voter (`false`: a learner).
    pub voter: bool,
    /// The current leader, as this node sees it.
    pub leader: bool,
}

/// A node's raft role, as `GET /state` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Leader.
    Leader,
    /// Follower.
    Follower,
    /// Candidate.
    Candidate,
    /// Pre-candidate (Raft thesis §9.6, the pre-vote phase).
    PreCandidate,
    /// Learner: a non-voting member.
    Learner,
}

/// This node's view of raft, as `GET /state` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// This node's id.
    pub id: u64,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of; 0 if none.
    pub leader: u64,
    /// Its commit index.
    pub commit: u64,
    /// Its applied index.
    pub applied: u64,
}

/// Whether this node sees a leader, as `GET /health` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The leader this node knows of; 0 if none (then the node is unhealthy).
    pub leader: u64,
}

impl Health {
    /// Whether the node sees a leader.
    pub fn is_healthy(&self) -> bool {
        self.leader != 0
    }
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A write or a membership change is done (HTTP 204).
    Done,
    /// A value (HTTP 200 with the raw value).
    Value(Bytes),
    /// A list page.
    List(ListResponse),
    /// The cluster's members.
    Members(Vec<Member>),
    /// Health.
    Health(Health),
    /// This node's raft view.
    State(NodeState),
    /// Statistics: a JSON document whose shape the node defines. It travels as text because
    /// postcard cannot carry a self-describing value.
    Stats(String),
    /// Metrics in the Prometheus text exposition format.
    Metrics(String),
}

/// What went wrong, which decides the HTTP status and the CLI's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// Malformed input: bad query values, unknown parameters, bad encoding, empty key (400).
    BadRequest,
    /// The key (or route) does not exist (404).
    NotFound,
    /// A compare-and-set condition failed (412).
    PreconditionFailed,
    /// A key, value, batch or frame over the [`Limits`] (413).
    PayloadTooLarge,
    /// The method is not offered on this route (405; HTTP only).
    MethodNotAllowed,
    /// No leader or no quorum: nothing was done, try again, maybe elsewhere (503).
    Unavailable {
        /// The leader this node knows of, if any.
        leader: Option<u64>,
    },
    /// Timed out after proposing: the write may or may not take effect (504).
    Timeout,
    /// A bug or an I/O failure on the server (500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status code for this kind.
    pub fn http_status(&self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::PreconditionFailed => 412,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::Internal => 500,
            ErrorKind::Unavailable { .. } => 503,
            ErrorKind::Timeout => 504,
        }
    }

    /// A short snake_case name, used as a metrics label.
    pub fn name(&self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::PreconditionFailed => "precondition_failed",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Unavailable { .. } => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal",
        }
    }
}

/// A failed request: a kind and a human-readable message (HTTP: `{"error": message}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Details for a human.
    pub message: String,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    /// [`ErrorKind::BadRequest`].
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// [`ErrorKind::PreconditionFailed`].
    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PreconditionFailed, message)
    }

    /// [`ErrorKind::PayloadTooLarge`].
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PayloadTooLarge, message)
    }

    /// [`ErrorKind::Unavailable`] with an optional leader hint.
    pub fn unavailable(leader: Option<u64>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable { leader }, message)
    }

    /// [`ErrorKind::Timeout`].
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }

    /// [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

/// Size limits shared by every front end (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Longest key in bytes (default 4096).
    pub max_key: usize,
    /// Largest value in bytes (default 1 MiB).
    pub max_value: usize,
    /// Most keys in one batch (default 100).
    pub max_batch: usize,
    /// Most bytes of keys plus values in one batch (default 4 MiB). A batch is one log
    /// entry, and entries this size already slow replication for everyone else.
    pub max_batch_bytes: usize,
    /// Most items in one list page (default 1000).
    pub max_list: usize,
    /// A list page with values stops once it holds this many bytes (default 4 MiB); it
    /// always holds at least one item.
    pub max_list_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key: 4096,
            max_value: 1 << 20,
            max_batch: 100,
            max_batch_bytes: 4 << 20,
            max_list: 1000,
            max_list_bytes: 4 << 20,
        }
    }
}

/// Largest peer address accepted by [`Request::AddNode`], in bytes.
pub const MAX_PEER_ADDR: usize = 1024;

/// Extra bytes allowed on top of the payload limits for framing, keys and encoding overhead.
const FRAME_SLACK: usize = 64 << 10;

impl Limits {
    /// The largest binary-protocol request frame these limits allow: the largest single
    /// value or batch, plus slack for the key and the encoding.
    pub fn max_request_frame(&self) -> usize {
        self.max_value.max(self.max_batch_bytes) + self.max_key + FRAME_SLACK
    }

    /// Checks a key: 1..=`max_key` bytes.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadRequest`] for an empty key, [`ErrorKind::PayloadTooLarge`] for a long one.
    pub fn check_key(&self, key: &str) -> Result<(), ApiError> {
        if key.is_empty() {
            return Err(ApiError::bad_request("empty key"));
        }
        if key.len() > self.max_key {
            return Err(ApiError::too_large(format!(
                "key of {} bytes exceeds the limit of {} bytes",
                key.len(),
                self.max_key
            )));
        }
        Ok(())
    }

    /// Checks a value: at most `max_value` bytes.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::PayloadTooLarge`] for a long value.
    pub fn check_value(&self, value: &[u8]) -> Result<(), ApiError> {
        if value.len() > self.max_value {
            return Err(ApiError::too_large(format!(
                "value of {} bytes exceeds the limit of {} bytes",
                value.len(),
                self.max_value
            )));
        }
        Ok(())
    }

    /// Checks a batch: its count, total size, and every key and value.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::PayloadTooLarge`] over a limit; [`ErrorKind::BadRequest`] for an empty key.
    pub fn check_batch(&self, items: &[(String, Bytes)]) -> Result<(), ApiError> {
        if items.len() > self.max_batch {
            return Err(ApiError::too_large(format!(
                "batch of {} keys exceeds the limit of {} keys",
                items.len(),
                self.max_batch
            )));
        }
        let mut total = 0usize;
        for (key, value) in items {
            self.check_key(key)?;
            self.check_value(value)?;
            total += key.len() + value.len();
        }
        if total > self.max_batch_bytes {
            return Err(ApiError::too_large(format!(
                "batch of {total} bytes exceeds the limit of {} bytes",
                self.max_batch_bytes
            )));
        }
        Ok(())
    }
}

impl Request {
    /// Validates the request against `limits` and fills in defaults, so the backend sees only
    /// well-formed requests: a list's `limit` becomes `Some(n)` with `1 <= n <= max_list`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadRequest`] for malformed input (empty key, zero node id, zero list limit,
    /// empty peer address), [`ErrorKind::PayloadTooLarge`] over a size limit.
    pub fn check(self, limits: &Limits) -> Result<Request, ApiError> {
        match &self {
            Request::Get { key, .. } | Request::Delete { key } => limits.check_key(key)?,
            Request::Put {
                key,
                value,
                condition,
            } => {
                limits.check_key(key)?;
                limits.check_value(value)?;
                if let Some(Condition::PrevValue(prev)) = condition {
                    limits.check_value(prev)?;
                }
            }
            Request::List(list) => {
                // A prefix or cursor longer than any key cannot match one; reject it rather
                // than silently answering an empty page.
                if list.prefix.len() > limits.max_key {
                    return Err(ApiError::bad_request(
                        "prefix is longer than the longest key",
                    ));
                }
                if list
                    .after
                    .as_ref()
                    .is_some_and(|a| a.len() > limits.max_key)
                {
                    return Err(ApiError::bad_request(
                        "after is longer than the longest key",
                    ));
                }
                if list.limit == Some(0) {
                    return Err(ApiError::bad_request("limit must be at least 1"));
                }
            }
            Request::Batch { items } => limits.check_batch(items)?,
            Request::AddNode { id, addr, .. } => {
                check_node_id(*id)?;
                if addr.trim().is_empty() {
                    return Err(ApiError::bad_request("empty peer address"));
                }
                if addr.len() > MAX_PEER_ADDR {
                    return Err(ApiError::too_large("peer address too long"));
                }
            }
            Request::PromoteNode { id } | Request::RemoveNode { id } => check_node_id(*id)?,
            Request::TransferLeader { to } => check_node_id(*to)?,
            Request::Members
            | Request::Health
            | Request::State
            | Request::Stats
            | Request::Metrics => {}
        }
        Ok(match self {
            Request::List(mut list) => {
                let max = u32::try_from(limits.max_list).unwrap_or(u32::MAX);
                list.limit = Some(list.limit.map_or(max, |l| l.min(max)));
                Request::List(list)
            }
            other => other,
        })
    }

    /// A short snake_case name of the operation, used as a metrics label.
    pub fn op_name(&self) -> &'static str {
        match self {
            Request::Get { .. } => "get",
            Request::Put {
                condition: None, ..
            } => "put",
            Request::Put { .. } => "cas",
            Request::Delete { .. } => "delete",
            Request::List(_) => "list",
            Request::Batch { .. } => "batch",
            Request::AddNode { .. } => "add_node",
            Request::PromoteNode { .. } => "promote_node",
            Request::RemoveNode { .. } => "remove_node",
            Request::TransferLeader { .. } => "transfer_leader",
            Request::Members => "members",
            Request::Health => "health",
            Request::State => "state",
            Request::Stats => "stats",
            Request::Metrics => "metrics",
        }
    }

    /// The consistency of a read (`Get` or `List`); `None` for anything else.
    pub fn read_consistency(&self) -> Option<Consistency> {
        match self {
            Request::Get { consistency, .. } => Some(*consistency),
            Request::List(list) => Some(list.consistency),
            _ => None,
        }
    }

    /// The state-machine command of a write (`Put`, `Delete`, `Batch`), or the request back.
    ///
    /// # Errors
    ///
    /// Returns the request unchanged if it is not a write.
    pub fn into_command(self) -> Result<crate::state_machine::Command, Request> {
        use crate::state_machine::Command;
        match self {
            Request::Put {
                key,
                value,
                condition: None,
            } => Ok(Command::Put { key, value }),
            Request::Put {
                key,
                value,
                condition: Some(condition),
            } => Ok(Command::PutIf {
                key,
                value,
                condition,
            }),
            Request::Delete { key } => Ok(Command::Delete { key }),
            Request::Batch { items } => Ok(Command::Batch { items }),
            other => Err(other),
        }
    }
}

fn check_node_id(id: u64) -> Result<(), ApiError> {
    if id == 0 {
        return Err(ApiError::bad_request("node id must be non-zero"));
    }
    Ok(())
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::PreCandidate => "pre-candidate",
            Role::Learner => "learner",
        })
    }
}

/// What the client port calls: the raft node in production, [`crate::testing::LocalBackend`]
/// in tests.
///
/// Requests reach `call` already checked against the port's [`Limits`] (see
/// [`Request::check`]). The backend owns every timeout: the front ends wait for as long as
/// `call` takes, and answer [`ErrorKind::Timeout`] only when the backend says so.
pub trait Backend: Clone + Send + Sync + 'static {
    /// Executes one request.
    fn call(&self, req: Request) -> impl Future<Output = Result<Response, ApiError>> + Send;

    /// The registry the front ends record request counts and latencies into. The backend
    /// renders it (with its own metrics) when it answers [`Request::Metrics`], so `/metrics`
    /// and the binary protocol show the same text.
    fn metrics(&self) -> &Metrics;
}

/// Standard base64 with padding (RFC 4648 §4): how list responses carry
/// values that are not UTF-8 (`value_base64`).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        // RFC 4648 §10.
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), output);
        }
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    fn put(key: &str, value: &[u8]) -> Request {
        Request::Put {
            key: key.into(),
            value: Bytes::copy_from_slice(value),
            condition: None,
        }
    }

    #[test]
    fn key_limits() {
        let limits = Limits::default();
        assert_eq!(
            put("", b"v").check(&limits).unwrap_err().kind,
            ErrorKind::BadRequest
        );
        assert!(put(&"k".repeat(4096), b"v").check(&limits).is_ok());
        assert_eq!(
            put(&"k".repeat(4097), b"v")
                .check(&limits)
                .unwrap_err()
                .kind,
            ErrorKind::PayloadTooLarge
        );
        // Bytes, not characters: 2049 two-byte characters are 4098 bytes.
        assert_eq!(
            put(&"é".repeat(2049), b"v")
                .check(&limits)
                .unwrap_err()
                .kind,
            ErrorKind::PayloadTooLarge
        );
    }

    #[test]
    fn value_limits() {
        let limits = Limits {
            max_value: 8,
            ..Limits::default()
        };
        assert!(put("k", b"").check(&limits).is_ok());
        assert!(put("k", b"12345678").check(&limits).is_ok());
        let err = put("k", b"123456789").check(&limits).unwrap_err();
        assert_eq!(err.kind, ErrorKind::PayloadTooLarge);
        assert_eq!(err.kind.http_status(), 413);
    }

    #[test]
    fn batch_limits() {
        let limits = Limits {
            max_batch: 3,
            max_batch_bytes: 10,
            ..Limits::default()
        };
        let batch = |n: usize, v: &str| Request::Batch {
            items: (0..n)
                .map(|i| (format!("k{i}"), Bytes::from(v.to_owned())))
                .collect(),
        };
        assert!(batch(0, "").check(&limits).is_ok());
        assert!(batch(3, "a").check(&limits).is_ok());
        assert_eq!(
            batch(4, "").check(&limits).unwrap_err().kind,
            ErrorKind::PayloadTooLarge
        );
        // 3 * (2 + 2) = 12 bytes > 10.
        assert_eq!(
            batch(3, "ab").check(&limits).unwrap_err().kind,
            ErrorKind::PayloadTooLarge
        );
        let empty_key = Request::Batch {
            items: vec![(String::new(), Bytes::new())],
        };
        assert_eq!(
            empty_key.check(&limits).unwrap_err().kind,
            ErrorKind::BadRequest
        );
    }

    #[test]
    fn list_limit_is_filled_in_and_clamped() {
        let limits = Limits {
            max_list: 10,
            ..Limits::default()
        };
        let list = |limit| {
            Request::List(ListRequest {
                limit,
                ..ListRequest::default()
            })
        };
        let limit_of = |r: Request| match r {
            Request::List(l) => l.limit,
            _ => unreachable!(),
        };
        assert_eq!(limit_of(list(None).check(&limits).unwrap()), Some(10));
        assert_eq!(limit_of(list(Some(3)).check(&limits).unwrap()), Some(3));
        assert_eq!(limit_of(list(Some(99)).check(&limits).unwrap()), Some(10));
        assert_eq!(
            list(Some(0)).check(&limits).unwrap_err().kind,
            ErrorKind::BadRequest
        );
    }

    #[test]
    fn node_ids_must_be_non_zero() {
        let limits = Limits::default();
        for req in [
            Request::RemoveNode { id: 0 },
            Request::PromoteNode { id: 0 },
            Request::TransferLeader { to: 0 },
            Request::AddNode {
                id: 0,
                addr: "127.0.0.1:1".into(),
                learner: false,
            },
            Request::AddNode {
                id: 2,
                addr: " ".into(),
                learner: false,
            },
        ] {
            assert_eq!(req.check(&limits).unwrap_err().kind, ErrorKind::BadRequest);
        }
    }

    #[test]
    fn status_codes() {
        let cases = [
            (ErrorKind::BadRequest, 400),
            (ErrorKind::NotFound, 404),
            (ErrorKind::MethodNotAllowed, 405),
            (ErrorKind::PreconditionFailed, 412),
            (ErrorKind::PayloadTooLarge, 413),
            (ErrorKind::Internal, 500),
            (ErrorKind::Unavailable { leader: Some(2) }, 503),
            (ErrorKind::Timeout, 504),
        ];
        for (kind, status) in cases {
            assert_eq!(kind.http_status(), status, "{kind:?}");
        }
    }

    #[test]
    fn postcard_round_trip() {
        let reqs = vec![
            put("a/b", b"\x00\xff"),
            Request::Put {
                key: "k".into(),
                value: Bytes::from_static(b"v"),
                condition: Some(Condition::PrevValue(Bytes::from_static(b"old"))),
            },
            Request::List(ListRequest {
                prefix: "p".into(),
                after: Some("p1".into()),
                limit: Some(7),
                values: true,
                consistency: Consistency::Serializable,
            }),
            Request::AddNode {
                id: 4,
                addr: "http://127.0.0.1:4".into(),
                learner: true,
            },
        ];
        for req in reqs {
            let bytes = postcard::to_allocvec(&req).unwrap();
            assert_eq!(postcard::from_bytes::<Request>(&bytes).unwrap(), req);
        }
        let resp: Result<Response, ApiError> = Err(ApiError::unavailable(Some(3), "no quorum"));
        let bytes = postcard::to_allocvec(&resp).unwrap();
        assert_eq!(
            postcard::from_bytes::<Result<Response, ApiError>>(&bytes).unwrap(),
            resp
        );
    }

    #[test]
    fn role_names() {
        assert_eq!(
            serde_json::to_string(&Role::PreCandidate).unwrap(),
            "\"pre-candidate\""
        );
        assert_eq!(Role::PreCandidate.to_string(), "pre-candidate");
    }
}
