//! Frame codecs for both ends of a `KVB1` connection (format in the parent module's docs).

use std::io;

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use super::{RequestFrame, ResponseFrame};
use crate::api::ApiError;

/// Bytes of the length prefix.
const LEN: usize = 4;
/// Longest postcard varint of a u64.
const MAX_VARINT: usize = 10;

/// Default largest response frame a [`ClientCodec`] accepts: well above a list page
/// (4 MiB by default) or a 1 MiB value.
pub const DEFAULT_MAX_RESPONSE_FRAME: usize = 64 << 20;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// What the server reads from a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A well-formed request.
    Request(RequestFrame),
    /// A frame with a readable id that cannot be served: oversized or malformed. Answer
    /// `error` for `id` and keep reading.
    Rejected {
        /// The id the frame began with.
        id: u64,
        /// Why it was refused.
        error: ApiError,
    },
}

/// Server side: decodes [`Inbound`] frames, encodes [`ResponseFrame`]s.
///
/// Oversized frames are not buffered: the codec reads their id, discards the rest as it
/// arrives, and then yields [`Inbound::Rejected`]. Decoding fails (the caller should close
/// the connection) only when a frame has no readable id or the stream ends mid-frame.
#[derive(Debug)]
pub struct ServerCodec {
    max_frame: usize,
    skipping: Option<Skip>,
}

#[derive(Debug)]
struct Skip {
    id: u64,
    len: usize,
    /// Payload bytes still to discard.
    remaining: usize,
}

impl ServerCodec {
    /// A codec accepting request payloads of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        ServerCodec {
            max_frame,
            skipping: None,
        }
    }
}

/// Reads the id a frame payload begins with. `complete` says whether `bytes` holds the whole
/// payload; if not, `Ok(None)` means the varint may continue in bytes not yet received.
fn peek_id(bytes: &[u8], complete: bool) -> Result<Option<u64>, ()> {
    match postcard::take_from_bytes::<u64>(bytes) {
        Ok((id, _)) => Ok(Some(id)),
        Err(postcard::Error::DeserializeUnexpectedEnd) if !complete && bytes.len() < MAX_VARINT => {
            Ok(None)
        }
        Err(_) => Err(()),
    }
}

fn decode_request(payload: &[u8]) -> io::Result<Inbound> {
    let err = match postcard::take_from_bytes::<RequestFrame>(payload) {
        Ok((frame, [])) => return Ok(Inbound::Request(frame)),
        Ok((_, rest)) => format!("{} trailing bytes after the request", rest.len()),
        Err(e) => e.to_string(),
    };
    match peek_id(payload, true) {
        Ok(Some(id)) => Ok(Inbound::Rejected {
            id,
            error: ApiError::bad_request(format!("malformed request frame: {err}")),
        }),
        _ => Err(invalid(format!(
            "malformed frame without a request id: {err}"
        ))),
    }
}

impl Decoder for ServerCodec {
    type Item = Inbound;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Inbound>> {
        loop {
            if let Some(skip) = &mut self.skipping {
                let n = skip.remaining.min(src.len());
                src.advance(n);
                skip.remaining -= n;
                if skip.remaining > 0 {
                    return Ok(None);
                }
                let (id, len) = (skip.id, skip.len);
                self.skipping = None;
                return Ok(Some(Inbound::Rejected {
                    id,
                    error: ApiError::too_large(format!(
                        "request frame of {len} bytes exceeds the limit of {} bytes",
                        self.max_frame
                    )),
                }));
            }
            if src.len() < LEN {
                return Ok(None);
            }
            let len = u32::from_be_bytes(src[..LEN].try_into().expect("4 bytes")) as usize;
            if len <= self.max_frame {
                if src.len() < LEN + len {
                    src.reserve(LEN + len - src.len());
                    return Ok(None);
                }
                src.advance(LEN);
                let payload = src.split_to(len);
                return decode_request(&payload).map(Some);
            }
            let available = &src[LEN..(LEN + len.min(MAX_VARINT)).min(src.len())];
            match peek_id(available, available.len() == len) {
                Ok(Some(id)) => {
                    src.advance(LEN);
                    self.skipping = Some(Skip {
                        id,
                        len,
                        remaining: len,
                    });
                }
                Ok(None) => return Ok(None),
                Err(()) => return Err(invalid("oversized frame without a request id")),
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> io::Result<Option<Inbound>> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && self.skipping.is_none() => Ok(None),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of a frame",
            )),
        }
    }
}

impl Encoder<ResponseFrame> for ServerCodec {
    type Error = io::Error;

    fn encode(&mut self, frame: ResponseFrame, dst: &mut BytesMut) -> io::Result<()> {
        let start = dst.len();
        dst.put_u32(0);
        // Serializing straight into the buffer saves a copy of large values.
        postcard::to_io(&frame, (&mut *dst).writer()).map_err(|e| invalid(e.to_string()))?;
        let len = u32::try_from(dst.len() - start - LEN).map_err(|_| {
            dst.truncate(start);
            invalid("response frame longer than 4 GiB")
        })?;
        dst[start..start + LEN].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

/// Client side: encodes [`RequestFrame`]s, decodes [`ResponseFrame`]s.
///
/// A response that does not decode is an `InvalidData` error: the stream can no longer be
/// trusted, so reconnect.
#[derive(Debug)]
pub struct ClientCodec {
    frames: LengthDelimitedCodec,
}

impl Default for ClientCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientCodec {
    /// A codec accepting responses of up to [`DEFAULT_MAX_RESPONSE_FRAME`] bytes.
    pub fn new() -> Self {
        Self::with_max_response_frame(DEFAULT_MAX_RESPONSE_FRAME)
    }

    /// A codec accepting responses of up to `max` bytes.
    pub fn with_max_response_frame(max: usize) -> Self {
        ClientCodec {
            frames: LengthDelimitedCodec::builder()
                .length_field_length(LEN)
                .max_frame_length(max)
                .new_codec(),
        }
    }
}

impl Encoder<RequestFrame> for ClientCodec {
    type Error = io::Error;

    fn encode(&mut self, frame: RequestFrame, dst: &mut BytesMut) -> io::Result<()> {
        let start = dst.len();
        dst.put_u32(0);
        // Straight into the buffer, as the server does: no allocation per request.
        if let Err(e) = postcard::to_io(&frame, (&mut *dst).writer()) {
            dst.truncate(start);
            return Err(invalid(e.to_string()));
        }
        let len = u32::try_from(dst.len() - start - LEN).map_err(|_| {
            dst.truncate(start);
            invalid("request longer than 4 GiB")
        })?;
        dst[start..start + LEN].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

impl Decoder for ClientCodec {
    type Item = ResponseFrame;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<ResponseFrame>> {
        let Some(payload) = self.frames.decode(src)? else {
            return Ok(None);
        };
        match postcard::take_from_bytes::<ResponseFrame>(&payload) {
            Ok((frame, [])) => Ok(Some(frame)),
            Ok((_, rest)) => Err(invalid(format!(
                "{} trailing bytes after a response",
                rest.len()
            ))),
            Err(e) => Err(invalid(format!("malformed response frame: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Consistency, ErrorKind, Request, Response};
    use bytes::Bytes;

    fn get(id: u64) -> RequestFrame {
        RequestFrame {
            id,
            request: Request::Get {
                key: "k".into(),
                consistency: Consistency::Serializable,
            },
        }
    }

    fn encode_request(frame: RequestFrame) -> BytesMut {
        let mut buf = BytesMut::new();
        ClientCodec::new().encode(frame, &mut buf).unwrap();
        buf
    }

    #[test]
    fn request_round_trip_byte_by_byte() {
        let bytes = encode_request(get(300));
        let mut codec = ServerCodec::new(1024);
        let mut src = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            src.put_u8(*b);
            let out = codec.decode(&mut src).unwrap();
            if i + 1 < bytes.len() {
                assert_eq!(out, None);
            } else {
                assert_eq!(out, Some(Inbound::Request(get(300))));
            }
        }
        assert!(codec.decode_eof(&mut src).unwrap().is_none());
    }

    #[test]
    fn response_round_trip() {
        let frames = [
            ResponseFrame {
                id: 7,
                result: Ok(Response::Value(Bytes::from(vec![9u8; 100_000]))),
            },
            ResponseFrame {
                id: u64::MAX,
                result: Err(ApiError::unavailable(Some(2), "no quorum")),
            },
        ];
        let mut buf = BytesMut::new();
        for f in frames.clone() {
            ServerCodec::new(0).encode(f, &mut buf).unwrap();
        }
        let mut client = ClientCodec::new();
        for f in frames {
            assert_eq!(client.decode(&mut buf).unwrap(), Some(f));
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_frame_is_skipped_and_rejected_with_its_id() {
        let big = encode_request(RequestFrame {
            id: 42,
            request: Request::Put {
                key: "k".into(),
                value: Bytes::from(vec![1u8; 5000]),
                condition: None,
            },
        });
        let mut codec = ServerCodec::new(1000);
        let mut src = BytesMut::new();
        let mut out = Vec::new();
        // Feed in small pieces: the codec never buffers the oversized payload.
        let mut stream = big.clone();
        stream.extend_from_slice(&encode_request(get(43)));
        for chunk in stream.chunks(97) {
            src.extend_from_slice(chunk);
            while let Some(frame) = codec.decode(&mut src).unwrap() {
                out.push(frame);
            }
            assert!(src.len() < 1100);
        }
        assert_eq!(out.len(), 2);
        match &out[0] {
            Inbound::Rejected { id: 42, error } => {
                assert_eq!(error.kind, ErrorKind::PayloadTooLarge)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(out[1], Inbound::Request(get(43)));
    }

    #[test]
    fn malformed_frames() {
        let mut codec = ServerCodec::new(1000);
        // A valid id followed by garbage: rejected for that id.
        let mut src = BytesMut::new();
        src.put_u32(3);
        src.extend_from_slice(&[5, 0xee, 0xee]);
        match codec.decode(&mut src).unwrap() {
            Some(Inbound::Rejected { id: 5, error }) => {
                assert_eq!(error.kind, ErrorKind::BadRequest)
            }
            other => panic!("{other:?}"),
        }
        // Trailing bytes after a valid request: rejected too.
        let mut src = encode_request(get(9));
        let len = src.len() - LEN + 1;
        src[..LEN].copy_from_slice(&(len as u32).to_be_bytes());
        src.put_u8(0);
        assert!(matches!(
            codec.decode(&mut src).unwrap(),
            Some(Inbound::Rejected { id: 9, .. })
        ));
        // No readable id: an error, the connection must close.
        for payload in [&[][..], &[0xff; 11][..]] {
            let mut src = BytesMut::new();
            src.put_u32(payload.len() as u32);
            src.extend_from_slice(payload);
            assert!(ServerCodec::new(1000).decode(&mut src).is_err());
        }
        let mut src = BytesMut::new();
        src.put_u32(u32::MAX);
        src.extend_from_slice(&[0xff; 10]);
        assert!(ServerCodec::new(1000).decode(&mut src).is_err());
        // EOF mid-frame.
        let mut src = encode_request(get(1));
        src.truncate(src.len() - 1);
        assert!(ServerCodec::new(1000).decode_eof(&mut src).is_err());
    }

    #[test]
    fn client_rejects_garbage_and_oversized_responses() {
        let mut src = BytesMut::new();
        src.put_u32(2);
        src.extend_from_slice(&[0xff, 0xff]);
        assert!(ClientCodec::new().decode(&mut src).is_err());
        let mut src = BytesMut::new();
        src.put_u32(100);
        assert!(
            ClientCodec::with_max_response_frame(10)
                .decode(&mut src)
                .is_err()
        );
    }
}
