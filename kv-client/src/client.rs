//! [`Client`]: the `KVB1` binary protocol with pipelining, failover and a retry policy.
//!
//! # Connections
//!
//! A client keeps one connection open, to one endpoint at a time. Every call made through it,
//! from any number of tasks, is written to that connection at once (pipelining) under a fresh
//! request id; a reader task hands each response to its caller by id, so answers may arrive
//! in any order. A writer task drains every queued request before it flushes, so requests
//! made together leave in one write, and the server answers in kind.
//!
//! # Failover and retries
//!
//! Each call has one deadline, [`ClientOptions::timeout`] from its start, retries included.
//! Whether a failed attempt is retried depends on what is known about it:
//!
//! | what happened | reads and queries | writes |
//! |---|---|---|
//! | connecting failed, or the connection died before the request was written | next endpoint | next endpoint |
//! | the server answered 503 [`ErrorKind::Unavailable`] (nothing was done) | next endpoint, after a backoff | next endpoint, after a backoff |
//! | the connection died after the request was written, or while it was | next endpoint | [`Error::Indeterminate`] |
//! | the server answered 504 [`ErrorKind::Timeout`] (proposed, outcome unknown) | next endpoint | [`Error::Indeterminate`] |
//! | no answer before the deadline | [`Error::Timeout`] | [`Error::Indeterminate`] |
//! | any other answer (not found, condition failed, bad request, ...) | returned | returned |
//!
//! Reads and queries ([`Request::Get`], [`Request::List`], [`Request::Members`],
//! [`Request::Health`], [`Request::State`], [`Request::Stats`], [`Request::Metrics`]) change
//! nothing, so running one twice is harmless. A write is sent again only when it provably
//! never reached a server: retrying a put whose first attempt was applied could overwrite a
//! later write of another client, and retrying a compare-and-set could report a failure for
//! a change that in fact succeeded. Every other write (the admin ones included) is reported
//! as indeterminate instead, and the caller decides.
//!
//! Endpoints are tried in order starting from the one that last worked; a call backs off
//! (from [`ClientOptions::backoff`], doubling up to [`ClientOptions::max_backoff`]) only after
//! a whole round of endpoints has failed, so a dead first endpoint costs one refused connect.
//! If no endpoint accepts a connection in a round, the call fails at once with
//! [`Error::Unavailable`] rather than waiting out its deadline: a refused connection is a
//! definite answer, and a CLI user wants to hear it now.
//!
//! # Routing to the leader
//!
//! Any node accepts every request and forwards writes and linearizable reads to the raft
//! leader, so a client is correct whichever node it talks to. Talking to the leader itself is
//! cheaper: a follower adds a forwarding hop, and a write it received is answered only once
//! the commit has reached it too (measured on a 3-node cluster: about 1.5x the write
//! throughput, 1.3x the linearizable reads). So with [`ClientOptions::prefer_leader`] (the
//! default) and more than one endpoint, the client looks for the leader whenever it opens a
//! connection, as TiKV's client does (etcd's client does not):
//!
//! - It asks the endpoints in order, from the one it would connect to first, for their
//!   [`Request::State`], waiting for each answer at most 1 s (and for all of them at most
//!   half of what is left of the call's deadline). Answers teach it each endpoint's node id
//!   and whom that node takes for the leader; once it knows which endpoint has the leader's
//!   id, it asks that one next. The first endpoint whose node says it is the leader gets the
//!   connection; the connections opened to ask the others are closed.
//! - If none does (an election is in progress, say), the connection goes to the first
//!   endpoint that accepted one, exactly as without `prefer_leader`.
//! - After a call's connection failed, the endpoint that failed is not picked as the leader
//!   by the reconnect (it is tried last, as without `prefer_leader`): a call never retries on
//!   the endpoint that just failed it while another one accepts connections.
//! - The leader found is trusted for [`ClientOptions::leader_recheck`] (5 s). The first call
//!   after that asks the connected node, over the same connection, whether it still leads;
//!   if it names another leader, the client opens a connection to that node's endpoint and
//!   sends later calls there. Calls already on the old connection are answered on it; the
//!   old connection closes once the last of them is done. A check that cannot find the
//!   leader leaves the connection where it is. It runs in the call that finds it due, the
//!   other calls meanwhile going on over the current connection, and takes at most half of
//!   that call's deadline, and at most 1 s.
//!
//! The failover and retry rules above hold unchanged: routing only decides which endpoint a
//! new connection goes to, never whether a request is sent again. A wrong or stale answer
//! (two nodes claiming to lead during a partition, say) costs speed, not correctness: the
//! node reached forwards to whichever leader it knows, or answers 503 and the call fails over.
//!
//! Judgement call: the leader hint of a 503 ([`ErrorKind::Unavailable`]'s `leader`) is not
//! used directly; the reconnect that follows the 503 finds the leader by asking, which also
//! covers the endpoints whose node id the client has not learnt yet.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use kv_server::api::{
    ApiError, Condition, Consistency, ErrorKind, Health, ListRequest, ListResponse, Member,
    NodeState, Request, Response, Role,
};
use kv_server::binary::{ClientCodec, PREAMBLE, RequestFrame, ResponseFrame};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

/// The default client port of a local `kv-server`.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:12380";

/// Most requests the writer task encodes before it flushes: bounds one write while still
/// coalescing a burst of pipelined calls.
const MAX_WRITE_BATCH: usize = 256;

/// A server's client port: `http://host:port` or `host:port` (the binary protocol shares the
/// port with HTTP, so the `http://` form of the HTTP API works as it is).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `host:port`, as given.
    addr: String,
}

impl Endpoint {
    /// Parses `http://host:port`, `host:port` or `[v6]:port`; a trailing `/` is allowed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for another scheme (there is no TLS), a path, or a missing or
    /// bad port.
    pub fn parse(s: &str) -> Result<Endpoint, Error> {
        let bad = |why: &str| Error::InvalidInput(format!("bad endpoint {s:?}: {why}"));
        let trimmed = s.trim();
        let rest = match trimmed.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "scheme {scheme}:// is not supported (use http://host:port or host:port)"
                )));
            }
            None => trimmed,
        };
        let addr = rest.strip_suffix('/').unwrap_or(rest);
        if addr.contains('/') {
            return Err(bad("an endpoint is host:port, without a path"));
        }
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Err(bad("missing :port"));
        };
        if host.is_empty() || host == "[]" {
            return Err(bad("missing host"));
        }
        match port.parse::<u16>() {
            Ok(p) if p != 0 => {}
            _ => return Err(bad(&format!("bad port {port:?}"))),
        }
        Ok(Endpoint {
            addr: addr.to_owned(),
        })
    }

    /// Parses a comma-separated list of endpoints.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty list or a bad endpoint.
    pub fn parse_list(s: &str) -> Result<Vec<Endpoint>, Error> {
        let endpoints: Vec<Endpoint> = s
            .split(',')
            .filter(|e| !e.trim().is_empty())
            .map(Endpoint::parse)
            .collect::<Result<_, _>>()?;
        if endpoints.is_empty() {
            return Err(Error::InvalidInput(format!("no endpoint in {s:?}")));
        }
        Ok(endpoints)
    }

    /// `host:port`, what a TCP connect takes.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.addr)
    }
}

impl std::str::FromStr for Endpoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Endpoint, Error> {
        Endpoint::parse(s)
    }
}

/// Why a call failed. [`Error::exit_code`] maps each to the CLI's exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The server refused the request: not found, condition failed, bad request, too large,
    /// or an internal error. Never [`ErrorKind::Unavailable`] or [`ErrorKind::Timeout`]:
    /// those become the variants below.
    #[error("{}", .0.message)]
    Server(ApiError),
    /// Nothing was done: no endpoint accepted a connection, or none had a leader before the
    /// deadline. Safe to try again later.
    #[error("{0}")]
    Unavailable(String),
    /// A read or query got no answer before the deadline. It changed nothing.
    #[error("{0}")]
    Timeout(String),
    /// A write reached a server but its outcome is unknown: it may or may not take effect.
    #[error("{0}")]
    Indeterminate(String),
    /// Input refused before anything was sent (a bad endpoint, say).
    #[error("{0}")]
    InvalidInput(String),
    /// The server answered something this client cannot use: a bug or a version mismatch.
    #[error("{0}")]
    Protocol(String),
}

impl Error {
    /// The server's error kind, for [`Error::Server`].
    pub fn api_kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Server(e) => Some(e.kind),
            _ => None,
        }
    }

    /// A short snake_case name: the server's kind name for [`Error::Server`], else
    /// `unavailable`, `timeout`, `indeterminate`, `invalid_input` or `protocol`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Error::Server(e) => e.kind.name(),
            Error::Unavailable(_) => "unavailable",
            Error::Timeout(_) => "timeout",
            Error::Indeterminate(_) => "indeterminate",
            Error::InvalidInput(_) => "invalid_input",
            Error::Protocol(_) => "protocol",
        }
    }

    /// The CLI's exit code: 1 not found or condition failed, 2 bad input (usage), 3
    /// unavailable, timed out or indeterminate. A server's internal error and a protocol
    /// error are 3 too: the request did not get done, and the cause is not the input.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Server(e) => match e.kind {
                ErrorKind::NotFound | ErrorKind::PreconditionFailed => 1,
                ErrorKind::BadRequest
                | ErrorKind::PayloadTooLarge
                | ErrorKind::MethodNotAllowed => 2,
                ErrorKind::Unavailable { .. } | ErrorKind::Timeout | ErrorKind::Internal => 3,
            },
            Error::InvalidInput(_) => 2,
            Error::Unavailable(_)
            | Error::Timeout(_)
            | Error::Indeterminate(_)
            | Error::Protocol(_) => 3,
        }
    }
}

/// Tuning of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The deadline of one call, retries included (default 10 s: longer than the server's
    /// own request timeout of 5 s, so that a write the server gives up on is reported with the
    /// server's answer).
    pub timeout: Duration,
    /// The longest wait for one TCP connection (default 2 s), so that an endpoint that drops
    /// packets does not use up the whole deadline.
    pub connect_timeout: Duration,
    /// The first pause after a round of endpoints failed (default 50 ms).
    pub backoff: Duration,
    /// The longest pause between rounds (default 1 s: about an election).
    pub max_backoff: Duration,
    /// Whether connections go to the raft leader when one can be found among several
    /// endpoints (default true); else to the first endpoint that accepts, in the order given.
    /// A routing optimization only: see the [module docs](self#routing-to-the-leader).
    pub prefer_leader: bool,
    /// How long a leader found is trusted before a call checks again (default 5 s). Zero
    /// checks before every call.
    pub leader_recheck: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            prefer_leader: true,
            leader_recheck: Duration::from_secs(5),
        }
    }
}

/// A client of a kv cluster over the `KVB1` binary protocol.
///
/// Cheap to clone; clones share the connection. Calls may be made concurrently from many
/// tasks: they are pipelined over the one connection. See the [module docs](self) for
/// failover, retries and routing to the leader.
///
/// ```no_run
/// # async fn demo() -> Result<(), kv_client::Error> {
/// use kv_client::{Client, ClientOptions};
///
/// let client = Client::connect(["http://127.0.0.1:12380"], ClientOptions::default()).await?;
/// client.put("greeting", "hello").await?;
/// assert_eq!(client.get("greeting").await?.as_deref(), Some(&b"hello"[..]));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.endpoints)
            .field("opts", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

struct Inner {
    // Invariant: not empty.
    endpoints: Vec<Endpoint>,
    opts: ClientOptions,
    /// The connection calls use; `None` once it failed or was abandoned.
    current: Mutex<Option<Arc<Conn>>>,
    /// Held while (re)connecting, so that concurrent calls share one new connection.
    connecting: tokio::sync::Mutex<()>,
    /// The endpoint tried first by the next connect: the one after the last abandoned one.
    preferred: AtomicUsize,
    /// What leader discovery has learnt (see the module docs).
    routing: Mutex<Routing>,
}

/// What leader discovery knows.
struct Routing {
    /// The node id each endpoint reported in its latest [`Request::State`] answer, indexed
    /// like [`Inner::endpoints`]; 0 when not known yet.
    ids: Vec<u64>,
    /// When discovery last ran; `None` before the first.
    discovered: Option<Instant>,
    /// The endpoint whose connection a call just abandoned: the next discovery does not
    /// pick it as the leader, so the call's retry goes elsewhere as it would without leader
    /// routing. Cleared whenever a connection is installed.
    avoid: Option<usize>,
}

/// The outcome of one round of leader discovery.
#[derive(Default)]
struct Discovery {
    /// A connection to the endpoint whose node says it is the leader.
    leader: Option<Arc<Conn>>,
    /// A live connection to the first endpoint, in the plain order asked, that accepted one:
    /// where a client without leader routing would be connected.
    first_open: Option<Arc<Conn>>,
    /// Why endpoints could not be connected to (or dropped the connection).
    failures: Vec<String>,
    /// What the endpoints that answered said, for an error message.
    answers: Vec<String>,
}

/// The longest wait for one endpoint's [`Request::State`] answer during discovery.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

impl Client {
    /// Parses `endpoints` and connects: to the leader's endpoint if
    /// [`ClientOptions::prefer_leader`] finds it, else to the first one that accepts a
    /// connection.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty list or a bad endpoint; [`Error::Unavailable`]
    /// when no endpoint accepts a connection.
    pub async fn connect<I, S>(endpoints: I, opts: ClientOptions) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let endpoints = endpoints
            .into_iter()
            .map(|e| Endpoint::parse(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let client = Client::new(endpoints, opts)?;
        let deadline = Instant::now() + client.inner.opts.timeout;
        client
            .inner
            .conn(deadline)
            .await
            .map_err(|reasons| Error::Unavailable(client.inner.unreachable(&reasons)))?;
        Ok(client)
    }

    /// A client of `endpoints` that connects on its first call.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty list.
    pub fn new(endpoints: Vec<Endpoint>, opts: ClientOptions) -> Result<Client, Error> {
        if endpoints.is_empty() {
            return Err(Error::InvalidInput("no endpoint given".into()));
        }
        let n = endpoints.len();
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints,
                opts,
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                preferred: AtomicUsize::new(0),
                routing: Mutex::new(Routing {
                    ids: vec![0; n],
                    discovered: None,
                    avoid: None,
                }),
            }),
        })
    }

    /// The endpoints, in the order given.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.inner.endpoints
    }

    /// The endpoint of the open connection, if one is open.
    pub fn connected_to(&self) -> Option<&Endpoint> {
        let conn = self.inner.current()?;
        Some(&self.inner.endpoints[conn.endpoint])
    }

    /// Finds the endpoint whose node is the raft leader, by asking the endpoints as a
    /// connection does (see the [module docs](self#routing-to-the-leader)), again after a
    /// backoff while none says it leads. With [`ClientOptions::prefer_leader`], later calls
    /// go to the endpoint found; without, the client's connection stays where it is.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when no endpoint accepts a connection, or when none says it is
    /// the leader before the deadline ([`ClientOptions::timeout`]).
    pub async fn find_leader(&self) -> Result<Endpoint, Error> {
        self.inner.find_leader().await
    }

    /// Sends one request, with failover and retries (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// [`Error::Server`] for a refusal (not found, condition failed, bad request, ...),
    /// [`Error::Unavailable`], [`Error::Timeout`] or [`Error::Indeterminate`] as the module
    /// docs explain.
    pub async fn call(&self, request: Request) -> Result<Response, Error> {
        self.inner.call(request).await
    }

    /// Reads `key` (linearizable): `None` if it is absent.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn get(&self, key: impl Into<String>) -> Result<Option<Bytes>, Error> {
        self.get_with(key, Consistency::Linearizable).await
    }

    /// Reads `key` with the given consistency: `None` if it is absent.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn get_with(
        &self,
        key: impl Into<String>,
        consistency: Consistency,
    ) -> Result<Option<Bytes>, Error> {
        let request = Request::Get {
            key: key.into(),
            consistency,
        };
        match self.call(request).await {
            Ok(Response::Value(v)) => Ok(Some(v)),
            Err(Error::Server(e)) if e.kind == ErrorKind::NotFound => Ok(None),
            Ok(other) => Err(unexpected("get", &other)),
            Err(e) => Err(e),
        }
    }

    /// Sets `key` to `value`, once the write is applied.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn put(&self, key: impl Into<String>, value: impl Into<Bytes>) -> Result<(), Error> {
        let request = Request::Put {
            key: key.into(),
            value: value.into(),
            condition: None,
        };
        self.done("put", request).await
    }

    /// Sets `key` to `value` if `condition` holds: `Ok(false)` if it did not (nothing
    /// changed).
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn cas(
        &self,
        key: impl Into<String>,
        value: impl Into<Bytes>,
        condition: Condition,
    ) -> Result<bool, Error> {
        let request = Request::Put {
            key: key.into(),
            value: value.into(),
            condition: Some(condition),
        };
        match self.done("cas", request).await {
            Ok(()) => Ok(true),
            Err(Error::Server(e)) if e.kind == ErrorKind::PreconditionFailed => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes `key`: `Ok(false)` if it was absent.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn delete(&self, key: impl Into<String>) -> Result<bool, Error> {
        match self
            .done("delete", Request::Delete { key: key.into() })
            .await
        {
            Ok(()) => Ok(true),
            Err(Error::Server(e)) if e.kind == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One page of keys (and values) in order; ask again with `after` set to the last key
    /// while [`ListResponse::more`] is set.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn list(&self, request: ListRequest) -> Result<ListResponse, Error> {
        match self.call(Request::List(request)).await? {
            Response::List(page) => Ok(page),
            other => Err(unexpected("list", &other)),
        }
    }

    /// Sets every pair atomically, as one log entry; a key given twice takes the later value.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn batch(&self, items: Vec<(String, Bytes)>) -> Result<(), Error> {
        self.done("batch", Request::Batch { items }).await
    }

    /// The cluster's members.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn members(&self) -> Result<Vec<Member>, Error> {
        match self.call(Request::Members).await? {
            Response::Members(m) => Ok(m),
            other => Err(unexpected("members", &other)),
        }
    }

    /// Adds node `id` with peer address `addr` (`host:port` or `http://host:port`), as a voter
    /// or a learner, once the change is applied.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn add_node(
        &self,
        id: u64,
        addr: impl Into<String>,
        learner: bool,
    ) -> Result<(), Error> {
        let request = Request::AddNode {
            id,
            addr: addr.into(),
            learner,
        };
        self.done("add-node", request).await
    }

    /// Promotes learner `id` to voter, once the change is applied.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn promote_node(&self, id: u64) -> Result<(), Error> {
        self.done("promote-node", Request::PromoteNode { id }).await
    }

    /// Removes node `id`, once the change is applied.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn remove_node(&self, id: u64) -> Result<(), Error> {
        self.done("remove-node", Request::RemoveNode { id }).await
    }

    /// Hands leadership to node `to`, once every node sees it as the leader.
    ///
    /// # Errors
    ///
    /// As [`Client::call`]; [`Error::Unavailable`] if the transfer did not complete before
    /// the deadline.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), Error> {
        self.done("transfer-leader", Request::TransferLeader { to })
            .await
    }

    /// The raft view of the node this client is connected to (see
    /// [`Client::connected_to`]).
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn state(&self) -> Result<NodeState, Error> {
        match self.call(Request::State).await? {
            Response::State(s) => Ok(s),
            other => Err(unexpected("state", &other)),
        }
    }

    /// Whether the node this client is connected to sees a leader.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn health(&self) -> Result<Health, Error> {
        match self.call(Request::Health).await? {
            Response::Health(h) => Ok(h),
            other => Err(unexpected("health", &other)),
        }
    }

    async fn done(&self, op: &str, request: Request) -> Result<(), Error> {
        match self.call(request).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(op, &other)),
        }
    }
}

fn unexpected(op: &str, response: &Response) -> Error {
    let what = match response {
        Response::Done => "done",
        Response::Value(_) => "a value",
        Response::List(_) => "a list",
        Response::Members(_) => "members",
        Response::Health(_) => "health",
        Response::State(_) => "a state",
        Response::Stats(_) => "stats",
        Response::Metrics(_) => "metrics",
    };
    Error::Protocol(format!("the server answered {op} with {what}"))
}

/// Whether sending `request` twice is harmless: it changes nothing.
fn changes_nothing(request: &Request) -> bool {
    matches!(
        request,
        Request::Get { .. }
            | Request::List(_)
            | Request::Members
            | Request::Health
            | Request::State
            | Request::Stats
            | Request::Metrics
    )
}

/// The outcome of one attempt on one connection.
enum Attempt {
    Answer(Result<Response, ApiError>),
    /// The request never left: the connection was already closed.
    NotSent(String),
    /// The connection died after the request was written (or while it was being written).
    Lost(String),
    /// The deadline passed before an answer.
    TimedOut,
}

impl Inner {
    fn current(&self) -> Option<Arc<Conn>> {
        lock(&self.current)
            .as_ref()
            .filter(|c| c.is_alive())
            .cloned()
    }

    /// Whether connections are routed to the leader: asked for, and there is a choice.
    fn routes_to_leader(&self) -> bool {
        self.opts.prefer_leader && self.endpoints.len() > 1
    }

    /// The longest wait for one discovery answer.
    fn probe_timeout(&self) -> Duration {
        self.opts.timeout.min(PROBE_TIMEOUT)
    }

    /// Makes `conn` the connection calls use. The one it replaces, if any, closes once the
    /// calls holding it are done.
    fn install(&self, conn: &Arc<Conn>) {
        self.preferred.store(conn.endpoint, Ordering::Relaxed);
        lock(&self.routing).avoid = None;
        *lock(&self.current) = Some(conn.clone());
    }

    /// The open connection, or a new one: to the leader if routing finds it, else to the
    /// first endpoint that accepts, starting from the preferred one. `Err` lists why each
    /// endpoint failed.
    async fn conn(&self, deadline: Instant) -> Result<Arc<Conn>, String> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let n = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let conn = if self.routes_to_leader() {
            let avoid = lock(&self.routing).avoid;
            // Half of the time left at most goes to waiting for answers, so that an endpoint
            // which accepts but does not answer leaves the call time to be served.
            let now = Instant::now();
            let answers_by = now + deadline.saturating_duration_since(now) / 2;
            let found = self
                .discover(start, None, avoid, 0, answers_by, deadline)
                .await;
            lock(&self.routing).discovered = Some(Instant::now());
            match found {
                Discovery {
                    leader: Some(conn), ..
                }
                | Discovery {
                    first_open: Some(conn),
                    ..
                } => conn,
                Discovery { failures, .. } => return Err(failures.join("; ")),
            }
        } else {
            self.connect_in_order(start, deadline).await?
        };
        self.install(&conn);
        Ok(conn)
    }

    /// A connection to the first endpoint that accepts one, starting from `start`.
    async fn connect_in_order(&self, start: usize, deadline: Instant) -> Result<Arc<Conn>, String> {
        let n = self.endpoints.len();
        let mut failures = Vec::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let endpoint = &self.endpoints[idx];
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                failures.push(format!("{endpoint}: not tried before the deadline"));
                continue;
            }
            match Conn::open(idx, endpoint, remaining.min(self.opts.connect_timeout)).await {
                Ok(conn) => return Ok(conn),
                Err(e) => failures.push(format!("{endpoint}: {e}")),
            }
        }
        Err(failures.join("; "))
    }

    /// One round of leader discovery: asks the endpoints for their state in order from
    /// `start`, leaving out `skip` (already asked), until one says it is the leader. `hint`
    /// is the leader's node id if known (else 0): an endpoint known to have that id is asked
    /// before the others. `avoid` is never picked as the leader; being last in the order (it
    /// is the endpoint before `start`), it is only connected to if no other endpoint
    /// accepted. Each connect takes at most [`ClientOptions::connect_timeout`], within
    /// `deadline`; each answer at most [`Inner::probe_timeout`], within `answers_by`.
    async fn discover(
        &self,
        start: usize,
        skip: Option<usize>,
        avoid: Option<usize>,
        mut hint: u64,
        answers_by: Instant,
        deadline: Instant,
    ) -> Discovery {
        let n = self.endpoints.len();
        let rank = |idx: usize| (idx + n - start) % n;
        let mut order: Vec<usize> = (0..n)
            .map(|i| (start + i) % n)
            .filter(|i| Some(*i) != skip)
            .collect();
        let mut out = Discovery::default();
        let mut first_rank = usize::MAX;
        while !order.is_empty() {
            let hinted = (hint != 0)
                .then(|| {
                    let ids = &lock(&self.routing).ids;
                    order
                        .iter()
                        .position(|i| ids[*i] == hint && Some(*i) != avoid)
                })
                .flatten();
            let idx = order.remove(hinted.unwrap_or(0));
            let endpoint = &self.endpoints[idx];
            if Some(idx) == avoid && out.first_open.is_some() {
                continue;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                out.failures
                    .push(format!("{endpoint}: not tried before the deadline"));
                continue;
            }
            let conn =
                match Conn::open(idx, endpoint, remaining.min(self.opts.connect_timeout)).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        out.failures.push(format!("{endpoint}: {e}"));
                        continue;
                    }
                };
            if Some(idx) != avoid {
                let answer_by = (Instant::now() + self.probe_timeout()).min(answers_by);
                match conn.call(Request::State, answer_by).await {
                    Attempt::Answer(Ok(Response::State(s))) => {
                        lock(&self.routing).ids[idx] = s.id;
                        if s.role == Role::Leader {
                            out.leader = Some(conn);
                            return out;
                        }
                        out.answers.push(match s.leader {
                            0 => format!("{endpoint}: node {} knows no leader", s.id),
                            l => format!("{endpoint}: node {} follows node {l}", s.id),
                        });
                        if s.leader != 0 {
                            hint = s.leader;
                        }
                    }
                    Attempt::Answer(Ok(_)) => {
                        out.answers
                            .push(format!("{endpoint}: answered state with something else"));
                    }
                    Attempt::Answer(Err(e)) => {
                        out.answers.push(format!("{endpoint}: {}", e.message));
                    }
                    Attempt::NotSent(why) | Attempt::Lost(why) => {
                        out.failures.push(why);
                        continue;
                    }
                    Attempt::TimedOut => {
                        out.answers
                            .push(format!("{endpoint}: no state before the deadline"));
                    }
                }
            }
            // A connection that failed during the probe is not worth keeping.
            if conn.is_alive() && rank(idx) < first_rank {
                first_rank = rank(idx);
                out.first_open = Some(conn);
            }
        }
        out
    }

    /// Whether the leader found last is due for a check.
    fn recheck_due(&self) -> bool {
        self.routes_to_leader()
            && lock(&self.routing)
                .discovered
                .is_some_and(|at| at.elapsed() >= self.opts.leader_recheck)
    }

    /// Checks that the current connection still goes to the leader, and moves it to the
    /// leader named by its node if not (see the module docs). Best effort, within half of
    /// what is left before `deadline` and at most [`PROBE_TIMEOUT`]: the call goes on over
    /// whatever connection is current afterwards. Skipped if another task is connecting or
    /// checking: that task moves the connection for everybody.
    async fn recheck(&self, deadline: Instant) {
        let Ok(_connecting) = self.connecting.try_lock() else {
            return;
        };
        if !self.recheck_due() {
            return;
        }
        lock(&self.routing).discovered = Some(Instant::now());
        // Without a connection, the call's connect discovers anyway.
        let Some(current) = self.current() else {
            return;
        };
        let now = Instant::now();
        let budget = (deadline.saturating_duration_since(now) / 2).min(PROBE_TIMEOUT);
        let check_by = now + budget;
        let leader = match current.call(Request::State, check_by).await {
            Attempt::Answer(Ok(Response::State(s))) => {
                lock(&self.routing).ids[current.endpoint] = s.id;
                if s.role == Role::Leader {
                    return;
                }
                s.leader
            }
            // Whatever is wrong with the connection, the call finds out and fails over.
            _ => return,
        };
        if leader == 0 {
            // An election: no better place to go yet. Checked again after the interval.
            return;
        }
        let n = self.endpoints.len();
        let found = self
            .discover(
                (current.endpoint + 1) % n,
                Some(current.endpoint),
                None,
                leader,
                check_by,
                check_by,
            )
            .await;
        if let Some(conn) = found.leader {
            self.install(&conn);
        }
    }

    /// See [`Client::find_leader`].
    async fn find_leader(&self) -> Result<Endpoint, Error> {
        let deadline = Instant::now() + self.opts.timeout;
        let mut backoff = self.opts.backoff;
        loop {
            let found = {
                let _connecting = self.connecting.lock().await;
                let n = self.endpoints.len();
                let start = self.preferred.load(Ordering::Relaxed) % n;
                let found = self
                    .discover(start, None, None, 0, deadline, deadline)
                    .await;
                if let Some(conn) = &found.leader
                    && self.opts.prefer_leader
                {
                    lock(&self.routing).discovered = Some(Instant::now());
                    self.install(conn);
                }
                found
            };
            if let Some(conn) = found.leader {
                return Ok(self.endpoints[conn.endpoint].clone());
            }
            if found.first_open.is_none() {
                return Err(Error::Unavailable(
                    self.unreachable(&found.failures.join("; ")),
                ));
            }
            if Instant::now() + backoff >= deadline {
                let mut said = found.answers;
                said.extend(found.failures);
                return Err(Error::Unavailable(format!(
                    "no endpoint said it is the leader within {:?}: {}",
                    self.opts.timeout,
                    said.join("; ")
                )));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.opts.max_backoff);
        }
    }

    /// The message for a round of failed connects.
    fn unreachable(&self, reasons: &str) -> String {
        if self.endpoints.len() == 1 {
            format!("cannot connect to {reasons}")
        } else {
            format!("no endpoint reachable: {reasons}")
        }
    }

    /// Stops using `conn` (if it is still the current one): the next call connects to the
    /// endpoint after it.
    fn abandon(&self, conn: &Arc<Conn>) {
        let mut current = lock(&self.current);
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *current = None;
            self.preferred.store(
                (conn.endpoint + 1) % self.endpoints.len(),
                Ordering::Relaxed,
            );
            lock(&self.routing).avoid = Some(conn.endpoint);
        }
    }

    async fn call(&self, request: Request) -> Result<Response, Error> {
        let op = request.op_name();
        let retry_lost = changes_nothing(&request);
        let deadline = Instant::now() + self.opts.timeout;
        let mut backoff = self.opts.backoff;
        // Why the latest attempt failed, for the final message.
        let mut last = String::new();
        // Whether the latest failure was a server's 503 (else a connection failure).
        let mut last_unavailable: bool;
        let mut attempts = 0usize;
        if self.recheck_due() {
            self.recheck(deadline).await;
        }
        loop {
            let conn = match self.conn(deadline).await {
                Ok(conn) => conn,
                Err(reasons) if last.is_empty() => {
                    return Err(Error::Unavailable(self.unreachable(&reasons)));
                }
                Err(reasons) => {
                    return Err(Error::Unavailable(format!(
                        "{last}; then no endpoint reachable: {reasons}"
                    )));
                }
            };
            let endpoint = &self.endpoints[conn.endpoint];
            attempts += 1;
            match conn.call(request.clone(), deadline).await {
                Attempt::Answer(Ok(response)) => return Ok(response),
                Attempt::Answer(Err(e)) => match e.kind {
                    ErrorKind::Unavailable { .. } => {
                        last = format!("{endpoint}: {}", e.message);
                        last_unavailable = true;
                        self.abandon(&conn);
                    }
                    ErrorKind::Timeout if !retry_lost => {
                        return Err(Error::Indeterminate(format!(
                            "{endpoint}: {} (the {op} may or may not have taken effect)",
                            e.message
                        )));
                    }
                    ErrorKind::Timeout => {
                        last = format!("{endpoint}: {}", e.message);
                        last_unavailable = true;
                        self.abandon(&conn);
                    }
                    _ => return Err(Error::Server(e)),
                },
                Attempt::NotSent(reason) => {
                    last = reason;
                    last_unavailable = false;
                    self.abandon(&conn);
                }
                Attempt::Lost(reason) if retry_lost => {
                    last = reason;
                    last_unavailable = false;
                    self.abandon(&conn);
                }
                Attempt::Lost(reason) => {
                    self.abandon(&conn);
                    return Err(Error::Indeterminate(format!(
                        "{reason} after the {op} was sent: it may or may not have taken effect"
                    )));
                }
                Attempt::TimedOut if retry_lost => {
                    return Err(Error::Timeout(format!(
                        "{op} timed out after {:?} waiting for {endpoint}",
                        self.opts.timeout
                    )));
                }
                Attempt::TimedOut => {
                    return Err(Error::Indeterminate(format!(
                        "{op} timed out after {:?} waiting for {endpoint}: it may or may not have taken effect",
                        self.opts.timeout
                    )));
                }
            }
            // Try the other endpoints at once; back off once a whole round has failed.
            if attempts % self.endpoints.len() == 0 {
                let now = Instant::now();
                if now + backoff >= deadline {
                    let given_up = format!(
                        "gave up after {:?} and {attempts} attempts; last: {last}",
                        self.opts.timeout
                    );
                    return Err(if last_unavailable || !retry_lost {
                        Error::Unavailable(given_up)
                    } else {
                        Error::Timeout(given_up)
                    });
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.opts.max_backoff);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (single assignments).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A reply to one call: the server's answer, or how the connection failed it.
type Reply = Result<Result<Response, ApiError>, Lost>;

enum Lost {
    NotSent(String),
    Sent(String),
}

struct Outgoing {
    request: Request,
    reply: oneshot::Sender<Reply>,
}

/// One pipelined connection: a writer task that frames queued requests, a reader task that
/// completes them by id.
struct Conn {
    /// Index into [`Inner::endpoints`].
    endpoint: usize,
    requests: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
}

/// What the writer and the reader share.
struct Shared {
    state: Mutex<ConnState>,
    /// Cancelled when the connection dies, by whichever task notices first.
    dead: CancellationToken,
}

struct ConnState {
    /// Calls written (or being written) and not yet answered.
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    /// Why the connection died. Invariant: once set, `pending` is empty and stays so.
    died: Option<String>,
}

impl Shared {
    /// Registers a call about to be written; hands it back if the connection is dead.
    fn register(
        &self,
        id: u64,
        reply: oneshot::Sender<Reply>,
    ) -> Result<(), (oneshot::Sender<Reply>, String)> {
        let mut state = lock(&self.state);
        if let Some(why) = &state.died {
            return Err((reply, why.clone()));
        }
        state.pending.insert(id, reply);
        Ok(())
    }

    fn complete(&self, frame: ResponseFrame) {
        // The server answers each id once, so an unknown id would be a server bug. It is
        // ignored: dropping the connection would fail every other call in flight on it.
        if let Some(reply) = lock(&self.state).pending.remove(&frame.id) {
            let _ = reply.send(Ok(frame.result));
        }
    }

    /// Marks the connection dead and fails every pending call as sent.
    fn fail(&self, why: String) {
        let pending = {
            let mut state = lock(&self.state);
            if state.died.is_none() {
                state.died = Some(why.clone());
            }
            std::mem::take(&mut state.pending)
        };
        self.dead.cancel();
        for (_, reply) in pending {
            let _ = reply.send(Err(Lost::Sent(why.clone())));
        }
    }

    fn why(&self) -> String {
        lock(&self.state)
            .died
            .clone()
            .unwrap_or_else(|| "connection closed".into())
    }
}

impl Conn {
    async fn open(endpoint: usize, ep: &Endpoint, timeout: Duration) -> io::Result<Arc<Conn>> {
        let connect = async {
            let stream = TcpStream::connect(ep.addr()).await?;
            stream.set_nodelay(true)?;
            Ok::<_, io::Error>(stream)
        };
        let stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        let (read, mut write) = stream.into_split();
        write.write_all(PREAMBLE).await?;
        let shared = Arc::new(Shared {
            state: Mutex::new(ConnState {
                pending: HashMap::new(),
                died: None,
            }),
            dead: CancellationToken::new(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let name = ep.to_string();
        tokio::spawn(write_loop(
            FramedWrite::new(write, ClientCodec::new()),
            rx,
            shared.clone(),
            name.clone(),
        ));
        tokio::spawn(read_loop(
            FramedRead::new(read, ClientCodec::new()),
            shared.clone(),
            name,
        ));
        Ok(Arc::new(Conn {
            endpoint,
            requests: tx,
            shared,
        }))
    }

    fn is_alive(&self) -> bool {
        !self.shared.dead.is_cancelled()
    }

    async fn call(&self, request: Request, deadline: Instant) -> Attempt {
        let (tx, rx) = oneshot::channel();
        if self.requests.send(Outgoing { request, reply: tx }).is_err() {
            return Attempt::NotSent(self.shared.why());
        }
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(Ok(answer))) => Attempt::Answer(answer),
            Ok(Ok(Err(Lost::NotSent(why)))) => Attempt::NotSent(why),
            Ok(Ok(Err(Lost::Sent(why)))) => Attempt::Lost(why),
            // The tasks always reply before dropping a sender; be safe anyway.
            Ok(Err(_)) => Attempt::Lost(self.shared.why()),
            Err(_) => Attempt::TimedOut,
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // No call holds the connection, so none waits for an answer: the writer closes its
        // side and the reader stops.
        self.shared.dead.cancel();
    }
}

async fn write_loop(
    mut sink: FramedWrite<OwnedWriteHalf, ClientCodec>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
    endpoint: String,
) {
    let mut next_id: u64 = 1;
    loop {
        let first = tokio::select! {
            next = rx.recv() => match next {
                Some(o) => o,
                None => break,
            },
            _ = shared.dead.cancelled() => break,
        };
        let mut next = Some(first);
        let mut written = 0;
        let result: io::Result<()> = async {
            while let Some(Outgoing { request, reply }) = next.take() {
                let id = next_id;
                next_id += 1;
                if let Err((reply, why)) = shared.register(id, reply) {
                    let _ = reply.send(Err(Lost::NotSent(why)));
                    return Ok(());
                }
                sink.feed(RequestFrame { id, request }).await?;
                written += 1;
                if written < MAX_WRITE_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            sink.flush().await
        }
        .await;
        if let Err(e) = result {
            shared.fail(format!("writing to {endpoint}: {e}"));
            break;
        }
    }
    // Whatever is still queued was never written.
    rx.close();
    let why = shared.why();
    while let Ok(o) = rx.try_recv() {
        let _ = o.reply.send(Err(Lost::NotSent(why.clone())));
    }
    let _ = sink.get_mut().shutdown().await;
}

async fn read_loop(
    mut stream: FramedRead<OwnedReadHalf, ClientCodec>,
    shared: Arc<Shared>,
    endpoint: String,
) {
    let why = loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            // The writer failed (and failed every pending call), or the connection was
            // dropped, which only happens once no call holds it: nobody waits for answers.
            _ = shared.dead.cancelled() => break "connection closed".to_owned(),
        };
        match frame {
            Some(Ok(frame)) => shared.complete(frame),
            Some(Err(e)) => break format!("reading from {endpoint}: {e}"),
            None => break format!("{endpoint} closed the connection"),
        }
    };
    shared.fail(why);
}

#[cfg(test)]
mod tests {
    //! The client against fake servers that speak `KVB1` and misbehave on purpose.

    use std::sync::atomic::{AtomicU64, AtomicUsize};

    use futures_util::future::join_all;
    use kv_server::binary::{Inbound, ServerCodec};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio_util::codec::Framed;

    use super::*;

    /// What a fake server does with a request.
    enum Action {
        Answer(Result<Response, ApiError>),
        /// Close the connection without answering.
        Close,
        /// Never answer.
        Ignore,
    }

    type Behaviour = Arc<dyn Fn(&Request) -> Action + Send + Sync>;

    struct Fake {
        endpoint: String,
        /// Requests other than [`Request::State`].
        requests: Arc<AtomicUsize>,
        /// [`Request::State`] requests: leader discovery's probes.
        probes: Arc<AtomicUsize>,
        connections: Arc<AtomicUsize>,
    }

    async fn accept_kvb1(listener: &TcpListener) -> Framed<TcpStream, ServerCodec> {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut preamble = [0u8; 4];
        stream.read_exact(&mut preamble).await.unwrap();
        assert_eq!(&preamble, PREAMBLE);
        Framed::new(stream, ServerCodec::new(1 << 20))
    }

    async fn fake(behaviour: impl Fn(&Request) -> Action + Send + Sync + 'static) -> Fake {
        let behaviour: Behaviour = Arc::new(behaviour);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let probes = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (r, p, c) = (requests.clone(), probes.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let mut framed = accept_kvb1(&listener).await;
                c.fetch_add(1, Ordering::SeqCst);
                let (behaviour, r, p) = (behaviour.clone(), r.clone(), p.clone());
                tokio::spawn(async move {
                    while let Some(Ok(Inbound::Request(frame))) = framed.next().await {
                        if matches!(frame.request, Request::State) {
                            p.fetch_add(1, Ordering::SeqCst);
                        } else {
                            r.fetch_add(1, Ordering::SeqCst);
                        }
                        match behaviour(&frame.request) {
                            Action::Answer(result) => {
                                let id = frame.id;
                                framed.send(ResponseFrame { id, result }).await.unwrap();
                            }
                            Action::Close => return,
                            Action::Ignore => {}
                        }
                    }
                });
            }
        });
        Fake {
            endpoint,
            requests,
            probes,
            connections,
        }
    }

    /// A fake node `id` of a cluster whose leader is `leader` (0: none; tests may change
    /// it): answers [`Request::State`] accordingly, everything else as `behaviour` says.
    async fn fake_node(
        id: u64,
        leader: &Arc<AtomicU64>,
        behaviour: impl Fn(&Request) -> Action + Send + Sync + 'static,
    ) -> Fake {
        let leader = leader.clone();
        fake(move |r| match r {
            Request::State => {
                let leader = leader.load(Ordering::SeqCst);
                Action::Answer(Ok(Response::State(NodeState {
                    id,
                    role: if leader == id {
                        Role::Leader
                    } else {
                        Role::Follower
                    },
                    term: 1,
                    leader,
                    commit: 0,
                    applied: 0,
                })))
            }
            other => behaviour(other),
        })
        .await
    }

    /// Three fake nodes with ids 1, 2, 3, all behaving as `behaviour` (leader or not).
    async fn fake_cluster(
        leader: &Arc<AtomicU64>,
        behaviour: impl Fn(&Request) -> Action + Send + Sync + Clone + 'static,
    ) -> [Fake; 3] {
        [
            fake_node(1, leader, behaviour.clone()).await,
            fake_node(2, leader, behaviour.clone()).await,
            fake_node(3, leader, behaviour).await,
        ]
    }

    fn endpoints_of(nodes: &[Fake]) -> Vec<&str> {
        nodes.iter().map(|n| n.endpoint.as_str()).collect()
    }

    fn counts(counters: &[&Arc<AtomicUsize>]) -> Vec<usize> {
        counters.iter().map(|c| c.load(Ordering::SeqCst)).collect()
    }

    fn dead_endpoint() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    /// Options of the failover and retry tests: the endpoint order is theirs to choose, so
    /// no leader routing (whose own tests use [`routed`]).
    fn opts(timeout_ms: u64) -> ClientOptions {
        ClientOptions {
            timeout: Duration::from_millis(timeout_ms),
            backoff: Duration::from_millis(5),
            prefer_leader: false,
            ..ClientOptions::default()
        }
    }

    fn client(endpoints: &[&str], timeout_ms: u64) -> Client {
        client_with(endpoints, opts(timeout_ms))
    }

    fn client_with(endpoints: &[&str], opts: ClientOptions) -> Client {
        let endpoints = endpoints
            .iter()
            .map(|e| Endpoint::parse(e).unwrap())
            .collect();
        Client::new(endpoints, opts).unwrap()
    }

    /// Options with leader routing, checking again after `recheck`.
    fn routed(recheck: Duration) -> ClientOptions {
        ClientOptions {
            timeout: Duration::from_secs(5),
            backoff: Duration::from_millis(5),
            leader_recheck: recheck,
            ..ClientOptions::default()
        }
    }

    fn done(_: &Request) -> Action {
        Action::Answer(Ok(Response::Done))
    }

    fn unavailable(_: &Request) -> Action {
        Action::Answer(Err(ApiError::unavailable(None, "no leader")))
    }

    #[test]
    fn endpoints_parse() {
        let ok = |s: &str, addr: &str| assert_eq!(Endpoint::parse(s).unwrap().addr(), addr);
        ok("http://127.0.0.1:12380", "127.0.0.1:12380");
        ok("127.0.0.1:12380", "127.0.0.1:12380");
        ok("http://localhost:1/", "localhost:1");
        ok("[::1]:80", "[::1]:80");
        assert_eq!(Endpoint::parse("h:1").unwrap().to_string(), "http://h:1");
        for bad in [
            "https://h:1",
            "h",
            "h:",
            "h:0",
            "h:99999",
            ":1",
            "http://h:1/x",
            "",
        ] {
            let err = Endpoint::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{bad}");
            assert_eq!(err.exit_code(), 2);
        }
        let list = Endpoint::parse_list("a:1, http://b:2 ,").unwrap();
        assert_eq!(list.len(), 2);
        assert!(Endpoint::parse_list(" , ").is_err());
    }

    #[tokio::test]
    async fn pipelined_calls_share_one_connection_and_are_matched_by_id() {
        const N: usize = 50;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        // The server answers only once it holds every request, in reverse order: the calls
        // must have been pipelined, and each answer must find its own caller.
        let server = tokio::spawn(async move {
            let mut framed = accept_kvb1(&listener).await;
            let mut frames = Vec::new();
            while frames.len() < N {
                match framed.next().await {
                    Some(Ok(Inbound::Request(f))) => frames.push(f),
                    other => panic!("{other:?}"),
                }
            }
            for f in frames.into_iter().rev() {
                let Request::Get { key, .. } = f.request else {
                    panic!("not a get")
                };
                let result = Ok(Response::Value(Bytes::from(key)));
                framed
                    .feed(ResponseFrame { id: f.id, result })
                    .await
                    .unwrap();
            }
            framed.flush().await.unwrap();
            // A second connection would hang the test: there must be none.
            framed
        });
        let c = client(&[&endpoint], 10_000);
        let gets = (0..N).map(|i| {
            let c = c.clone();
            async move { c.get(format!("key-{i}")).await }
        });
        let results = tokio::time::timeout(Duration::from_secs(10), join_all(gets))
            .await
            .expect("the calls were not pipelined");
        for (i, r) in results.into_iter().enumerate() {
            assert_eq!(r.unwrap().unwrap(), format!("key-{i}").as_bytes());
        }
        let _conn = server.await.unwrap();
        assert_eq!(c.connected_to().unwrap().to_string(), endpoint);
    }

    #[tokio::test]
    async fn connecting_fails_over_to_the_next_endpoint() {
        let live = fake(done).await;
        let dead = dead_endpoint();
        let c = client(&[&dead, &live.endpoint], 5_000);
        c.put("k", "v").await.unwrap();
        assert_eq!(c.connected_to().unwrap().to_string(), live.endpoint);
        // Later calls stay on the working endpoint.
        c.put("k", "w").await.unwrap();
        assert_eq!(live.connections.load(Ordering::SeqCst), 1);
        // Connect reports every endpoint when none is reachable.
        let err = Client::connect([dead.as_str(), dead.as_str()], opts(1_000))
            .await
            .unwrap_err();
        assert!(matches!(&err, Error::Unavailable(m) if m.contains("no endpoint reachable")));
        assert_eq!(err.exit_code(), 3);
    }

    #[tokio::test]
    async fn unavailable_answers_are_retried_elsewhere_for_writes_too() {
        let no_leader = fake(unavailable).await;
        let live = fake(done).await;
        let c = client(&[&no_leader.endpoint, &live.endpoint], 5_000);
        c.put("k", "v").await.unwrap();
        assert_eq!(no_leader.requests.load(Ordering::SeqCst), 1);
        assert_eq!(live.requests.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn unavailable_everywhere_until_the_deadline() {
        let no_leader = fake(unavailable).await;
        let c = client(&[&no_leader.endpoint], 300);
        let err = c.put("k", "v").await.unwrap_err();
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains("no leader")),
            "{err:?}"
        );
        assert_eq!(err.exit_code(), 3);
        // It backed off between attempts: far fewer than a busy loop would make.
        let attempts = no_leader.requests.load(Ordering::SeqCst);
        assert!((2..100).contains(&attempts), "{attempts}");
    }

    #[tokio::test]
    async fn a_lost_write_is_indeterminate_but_a_lost_read_is_retried() {
        let closer = fake(|_| Action::Close).await;
        let live = fake(|r| match r {
            Request::Get { .. } => Action::Answer(Ok(Response::Value(Bytes::from("v")))),
            _ => Action::Answer(Ok(Response::Done)),
        })
        .await;
        let c = client(&[&closer.endpoint, &live.endpoint], 5_000);
        let err = c.put("k", "v").await.unwrap_err();
        assert!(matches!(err, Error::Indeterminate(_)), "{err:?}");
        assert_eq!(err.exit_code(), 3);
        assert_eq!(
            live.requests.load(Ordering::SeqCst),
            0,
            "the write was repeated"
        );
        let c = client(&[&closer.endpoint, &live.endpoint], 5_000);
        assert_eq!(c.get("k").await.unwrap().unwrap(), "v");
        assert_eq!(live.requests.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_server_timeout_is_indeterminate_for_writes_only() {
        let slow = fake(|_| Action::Answer(Err(ApiError::timeout("timed out")))).await;
        let live = fake(|_| Action::Answer(Ok(Response::Members(vec![])))).await;
        let c = client(&[&slow.endpoint, &live.endpoint], 5_000);
        let err = c.delete("k").await.unwrap_err();
        assert!(matches!(err, Error::Indeterminate(_)), "{err:?}");
        assert_eq!(c.members().await.unwrap(), vec![]);
    }

    #[tokio::test]
    async fn no_answer_before_the_deadline() {
        let silent = fake(|_| Action::Ignore).await;
        let c = client(&[&silent.endpoint], 200);
        let err = c.get("k").await.unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err:?}");
        let err = c.put("k", "v").await.unwrap_err();
        assert!(matches!(err, Error::Indeterminate(_)), "{err:?}");
        // The connection itself is fine: no reconnect happened.
        assert_eq!(silent.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refusals_pass_through() {
        let server = fake(|r| {
            Action::Answer(Err(match r {
                Request::Get { .. } | Request::Delete { .. } => ApiError::not_found("absent"),
                Request::Put {
                    condition: Some(_), ..
                } => ApiError::precondition_failed("no"),
                _ => ApiError::bad_request("bad"),
            }))
        })
        .await;
        let c = client(&[&server.endpoint], 5_000);
        assert_eq!(c.get("k").await.unwrap(), None);
        assert!(!c.delete("k").await.unwrap());
        assert!(!c.cas("k", "v", Condition::PrevExist(false)).await.unwrap());
        let err = c.put("k", "v").await.unwrap_err();
        assert_eq!(err.api_kind(), Some(ErrorKind::BadRequest));
        assert_eq!(err.exit_code(), 2);
        assert_eq!(err.to_string(), "bad");
        // Every refusal was answered once: none was retried.
        assert_eq!(server.requests.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_dropped_server_connection_is_replaced() {
        // The server closes after every answer: each call finds the connection dead (not
        // sent, or lost before the answer for a read) and reconnects.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let mut framed = accept_kvb1(&listener).await;
                if let Some(Ok(Inbound::Request(f))) = framed.next().await {
                    let result = Ok(Response::Value(Bytes::from("v")));
                    let _ = framed.send(ResponseFrame { id: f.id, result }).await;
                }
            }
        });
        let c = client(&[&endpoint], 5_000);
        for _ in 0..5 {
            assert_eq!(c.get("k").await.unwrap().unwrap(), "v");
        }
    }

    #[tokio::test]
    async fn connects_to_the_endpoint_whose_node_leads() {
        let leader = Arc::new(AtomicU64::new(3));
        let nodes = fake_cluster(&leader, done).await;
        let eps = endpoints_of(&nodes);
        let c = Client::connect(&eps, routed(Duration::from_secs(3600)))
            .await
            .unwrap();
        assert_eq!(c.connected_to().unwrap().to_string(), nodes[2].endpoint);
        c.put("k", "v").await.unwrap();
        let [n1, n2, n3] = &nodes;
        assert_eq!(
            counts(&[&n1.requests, &n2.requests, &n3.requests]),
            [0, 0, 1]
        );
        // Each endpoint was asked once, in order; the leader's probe connection is the one
        // kept.
        assert_eq!(counts(&[&n1.probes, &n2.probes, &n3.probes]), [1, 1, 1]);
        assert_eq!(counts(&[&n3.connections]), [1]);
        assert_eq!(c.find_leader().await.unwrap().to_string(), n3.endpoint);
        // The leader first: one question is enough.
        let c = client_with(&[&n3.endpoint, &n1.endpoint], routed(Duration::ZERO));
        c.put("k", "v").await.unwrap();
        assert_eq!(counts(&[&n1.probes, &n3.probes]), [1, 3]);
    }

    #[tokio::test]
    async fn without_a_leader_the_first_endpoint_that_accepts() {
        let leader = Arc::new(AtomicU64::new(0));
        let nodes = fake_cluster(&leader, done).await;
        let dead = dead_endpoint();
        let mut eps = vec![dead.as_str()];
        eps.extend(endpoints_of(&nodes));
        let c = client_with(&eps, routed(Duration::from_secs(3600)));
        c.put("k", "v").await.unwrap();
        assert_eq!(c.connected_to().unwrap().to_string(), nodes[0].endpoint);
        // Without routing, the first endpoint that accepts, unasked.
        let eps = endpoints_of(&nodes);
        leader.store(3, Ordering::SeqCst);
        let c = client_with(
            &eps,
            ClientOptions {
                prefer_leader: false,
                ..routed(Duration::ZERO)
            },
        );
        c.put("k", "v").await.unwrap();
        c.put("k", "v").await.unwrap();
        assert_eq!(c.connected_to().unwrap().to_string(), nodes[0].endpoint);
        assert_eq!(nodes[2].probes.load(Ordering::SeqCst), 1);
        // find_leader finds it all the same, and leaves the connection where it is.
        assert_eq!(
            c.find_leader().await.unwrap().to_string(),
            nodes[2].endpoint
        );
        assert_eq!(c.connected_to().unwrap().to_string(), nodes[0].endpoint);
        // No leader until the deadline: unavailable, saying what the nodes said.
        leader.store(0, Ordering::SeqCst);
        let c = client_with(
            &eps,
            ClientOptions {
                timeout: Duration::from_millis(200),
                ..routed(Duration::ZERO)
            },
        );
        let err = c.find_leader().await.unwrap_err();
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains("node 2 knows no leader")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn moves_to_a_new_leader_once_the_recheck_is_due() {
        let leader = Arc::new(AtomicU64::new(3));
        let nodes = fake_cluster(&leader, |r| match r {
            Request::Get { .. } => Action::Answer(Ok(Response::Value(Bytes::from("v")))),
            _ => Action::Answer(Ok(Response::Done)),
        })
        .await;
        let eps = endpoints_of(&nodes);
        let lazy = client_with(&eps, routed(Duration::from_secs(3600)));
        let eager = client_with(&eps, routed(Duration::ZERO));
        lazy.put("k", "v").await.unwrap();
        eager.put("k", "v").await.unwrap();
        let [n1, n2, n3] = &nodes;
        let probes_before = counts(&[&n1.probes, &n2.probes, &n3.probes]);
        leader.store(1, Ordering::SeqCst);
        // A burst of pipelined calls: the first checks (the node it is connected to names
        // node 1, whose endpoint it learnt), the others go on over the old connection
        // meanwhile. Every call is answered.
        let gets = (0..20).map(|_| eager.get("k"));
        for r in join_all(gets).await {
            assert_eq!(r.unwrap().unwrap(), "v");
        }
        assert_eq!(eager.connected_to().unwrap().to_string(), n1.endpoint);
        // One question to the old leader, one to the new; node 2 was not asked again.
        let probes_after = counts(&[&n1.probes, &n2.probes, &n3.probes]);
        assert_eq!(probes_after[0], probes_before[0] + 1);
        assert_eq!(probes_after[1], probes_before[1]);
        assert_eq!(probes_after[2], probes_before[2] + 1);
        let before = n1.requests.load(Ordering::SeqCst);
        eager.put("k", "w").await.unwrap();
        assert_eq!(n1.requests.load(Ordering::SeqCst), before + 1);
        // Not yet due: the lazy client stays, and its calls succeed all the same (a real
        // follower forwards them).
        lazy.put("k", "w").await.unwrap();
        assert_eq!(lazy.connected_to().unwrap().to_string(), n3.endpoint);
    }

    #[tokio::test]
    async fn a_call_does_not_retry_on_the_leader_that_failed_it() {
        let leader = Arc::new(AtomicU64::new(3));
        // Node 3 leads but has lost its quorum: it answers every write 503.
        let n1 = fake_node(1, &leader, done).await;
        let n2 = fake_node(2, &leader, done).await;
        let n3 = fake_node(3, &leader, unavailable).await;
        let c = client_with(
            &[&n1.endpoint, &n2.endpoint, &n3.endpoint],
            routed(Duration::from_secs(3600)),
        );
        c.put("k", "v").await.unwrap();
        // Tried on the leader, then on the endpoint after it: as without routing.
        assert_eq!(
            counts(&[&n1.requests, &n2.requests, &n3.requests]),
            [1, 0, 1]
        );
        assert_eq!(c.connected_to().unwrap().to_string(), n1.endpoint);
        // A write lost on the leader is indeterminate, and sent nowhere else.
        let n4 = fake_node(4, &leader, |r| match r {
            Request::Members => Action::Answer(Ok(Response::Members(vec![]))),
            _ => Action::Answer(Ok(Response::Done)),
        })
        .await;
        let n5 = fake_node(5, &leader, |_| Action::Close).await;
        leader.store(5, Ordering::SeqCst);
        let eps = [n4.endpoint.as_str(), n5.endpoint.as_str()];
        let c = client_with(&eps, routed(Duration::ZERO));
        let err = c.put("k", "v").await.unwrap_err();
        assert!(matches!(err, Error::Indeterminate(_)), "{err:?}");
        assert_eq!(counts(&[&n4.requests, &n5.requests]), [0, 1]);
        // A read lost there is retried on the other endpoint, although node 5 still says
        // it leads.
        let c = client_with(&eps, routed(Duration::ZERO));
        assert_eq!(c.members().await.unwrap(), vec![]);
        assert_eq!(counts(&[&n4.requests, &n5.requests]), [1, 2]);
        assert_eq!(c.connected_to().unwrap().to_string(), n4.endpoint);
    }
}
