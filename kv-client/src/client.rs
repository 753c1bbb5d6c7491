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
//! Judgement call: the leader hint of a 503 ([`ErrorKind::Unavailable`]'s `leader`) is not
//! used, because a node id does not say which client endpoint belongs to it; any node
//! forwards writes to the leader anyway.

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
    NodeState, Request, Response,
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
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// A client of a kv cluster over the `KVB1` binary protocol.
///
/// Cheap to clone; clones share the connection. Calls may be made concurrently from many
/// tasks: they are pipelined over the one connection. See the [module docs](self) for
/// failover and retries.
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
}

impl Client {
    /// Parses `endpoints` and connects to the first one that accepts a connection.
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
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints,
                opts,
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                preferred: AtomicUsize::new(0),
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

    /// The open connection, or a new one to the first endpoint that accepts, starting from
    /// the preferred one. `Err` lists why each endpoint failed.
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
                Ok(conn) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    *lock(&self.current) = Some(conn.clone());
                    return Ok(conn);
                }
                Err(e) => failures.push(format!("{endpoint}: {e}")),
            }
        }
        Err(failures.join("; "))
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

    use std::sync::atomic::AtomicUsize;

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
        requests: Arc<AtomicUsize>,
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
        let connections = Arc::new(AtomicUsize::new(0));
        let (r, c) = (requests.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let mut framed = accept_kvb1(&listener).await;
                c.fetch_add(1, Ordering::SeqCst);
                let (behaviour, r) = (behaviour.clone(), r.clone());
                tokio::spawn(async move {
                    while let Some(Ok(Inbound::Request(frame))) = framed.next().await {
                        r.fetch_add(1, Ordering::SeqCst);
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
            connections,
        }
    }

    fn dead_endpoint() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    fn opts(timeout_ms: u64) -> ClientOptions {
        ClientOptions {
            timeout: Duration::from_millis(timeout_ms),
            backoff: Duration::from_millis(5),
            ..ClientOptions::default()
        }
    }

    fn client(endpoints: &[&str], timeout_ms: u64) -> Client {
        let endpoints = endpoints
            .iter()
            .map(|e| Endpoint::parse(e).unwrap())
            .collect();
        Client::new(endpoints, opts(timeout_ms)).unwrap()
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
}
