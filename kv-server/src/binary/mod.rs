//! The binary protocol `KVB1`: pipelined postcard frames on the client port.
//!
//! # Wire format
//!
//! A client opens a TCP connection to the client port and sends the 4-byte preamble
//! [`PREAMBLE`] (`KVB1`) once; anything else on the port is HTTP/1.1. Then both directions
//! carry frames:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | payload length, u32 big-endian (the payload only, not these 4 bytes) |
//! | n | payload: postcard of [`RequestFrame`] (client to server) or [`ResponseFrame`] (server to client) |
//!
//! Both frame types begin with the request id (a postcard varint `u64`), chosen by the
//! client. Requests may be pipelined: the server executes the requests of one connection
//! concurrently and answers each as it completes, so responses may come back in any order;
//! match them by id. The server neither sends a preamble back nor any unsolicited frame.
//!
//! # Errors
//!
//! - A request the server understands but refuses gets a [`ResponseFrame`] with an
//!   [`ApiError`] (the same kinds as the HTTP API).
//! - A frame longer than the server's limit ([`crate::api::Limits::max_request_frame`]) is
//!   read past and answered with [`crate::api::ErrorKind::PayloadTooLarge`] for its id; the
//!   connection stays usable.
//! - A frame that does not decode, but begins with a valid id, is answered with
//!   [`crate::api::ErrorKind::BadRequest`] for that id.
//! - A frame without even a valid id closes the connection (after answering the requests
//!   already in flight); other connections are unaffected.
//!
//! # Client side
//!
//! [`ClientCodec`] frames requests and decodes responses; [`connect`] opens a connection and
//! sends the preamble:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use futures_util::{SinkExt, StreamExt};
//! use kv_server::api::{Consistency, Request};
//! use kv_server::binary::{self, RequestFrame};
//!
//! let mut conn = binary::connect("127.0.0.1:12380").await?;
//! let request = Request::Get { key: "my-key".into(), consistency: Consistency::Linearizable };
//! conn.send(RequestFrame { id: 1, request }).await?;
//! let response = conn.next().await.expect("connection closed")?;
//! assert_eq!(response.id, 1);
//! # Ok(()) }
//! ```

mod codec;
pub(crate) mod conn;

pub use codec::{ClientCodec, DEFAULT_MAX_RESPONSE_FRAME, Inbound, ServerCodec};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_util::codec::Framed;

use crate::api::{ApiError, Request, Response};

/// The 4 bytes a binary-protocol connection begins with.
pub const PREAMBLE: &[u8; 4] = b"KVB1";

/// A request and the id its response will carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Chosen by the client; unique among its requests in flight on the connection.
    pub id: u64,
    /// The request.
    pub request: Request,
}

/// The answer to the request with the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// The request's id.
    pub id: u64,
    /// Its outcome.
    pub result: Result<Response, ApiError>,
}

/// Connects to a client port, sends the preamble, and frames the connection with
/// [`ClientCodec`].
///
/// # Errors
///
/// Connection and write errors.
pub async fn connect(addr: impl ToSocketAddrs) -> std::io::Result<Framed<TcpStream, ClientCodec>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    stream.write_all(PREAMBLE).await?;
    Ok(Framed::new(stream, ClientCodec::new()))
}
