//! The server side of one `KVB1` connection.

use std::collections::HashMap;
use std::future::Future;
use std::time::Instant;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::{Inbound, RequestFrame, ResponseFrame, ServerCodec};
use crate::api::{Backend, Limits};
use crate::metrics::{Counter, Histogram, Metrics};

/// Requests one connection may have in flight; past it the connection stops reading until
/// one completes, so a client that pipelines without bound is slowed, not buffered.
const MAX_IN_FLIGHT: usize = 1024;

/// Serves one connection whose preamble has been read, until the client closes it, a frame
/// without an id arrives, `shutdown` is cancelled (then in-flight requests are answered
/// first) or `force` is cancelled (then everything is dropped).
///
/// Requests of one connection run concurrently inside this task (no task per request): the
/// futures are polled by one `FuturesUnordered`, and each answer is written as it completes.
pub(crate) async fn serve_connection<B: Backend>(
    stream: TcpStream,
    backend: B,
    limits: Limits,
    shutdown: CancellationToken,
    force: CancellationToken,
) {
    let mut framed = Framed::new(stream, ServerCodec::new(limits.max_request_frame()));
    let mut metrics = ConnMetrics::new(backend.metrics().clone());
    let mut in_flight = FuturesUnordered::new();
    let mut reading = true;
    // Created once: a fresh `cancelled()` future per loop turn registers with the token (a
    // lock) every time. Neither is polled after it completes: `forced` ends the task, and
    // `stopping` is only polled while `reading`, which its completion clears.
    let forced = force.cancelled();
    let stopping = shutdown.cancelled();
    tokio::pin!(forced, stopping);
    loop {
        if !reading && in_flight.is_empty() {
            break;
        }
        // Set when a response is ready to be written.
        let ready = tokio::select! {
            biased;
            _ = &mut forced => return,
            Some(finished) = in_flight.next(), if !in_flight.is_empty() => {
                metrics.record(&finished);
                finished.response
            }
            _ = &mut stopping, if reading => {
                reading = false;
                continue;
            }
            inbound = framed.next(), if reading && in_flight.len() < MAX_IN_FLIGHT => match inbound {
                Some(Ok(Inbound::Request(frame))) => {
                    in_flight.push(execute(backend.clone(), limits, frame));
                    continue;
                }
                Some(Ok(Inbound::Rejected { id, error })) => ResponseFrame { id, result: Err(error) },
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "closing binary connection");
                    reading = false;
                    continue;
                }
                None => {
                    reading = false;
                    continue;
                }
            },
        };
        // A client that stops reading blocks the write; `force` still ends the connection.
        let written = tokio::select! {
            r = write_responses(&mut framed, ready, &mut in_flight, &mut metrics) => r,
            _ = &mut forced => return,
        };
        if written.is_err() {
            return;
        }
    }
}

/// Writes `first` and every other response already complete, then flushes once: answers
/// that finish together leave in one write.
async fn write_responses<F: Future<Output = Finished>>(
    framed: &mut Framed<TcpStream, ServerCodec>,
    first: ResponseFrame,
    in_flight: &mut FuturesUnordered<F>,
    metrics: &mut ConnMetrics,
) -> std::io::Result<()> {
    framed.feed(first).await?;
    while let Some(Some(next)) = in_flight.next().now_or_never() {
        metrics.record(&next);
        framed.feed(next.response).await?;
    }
    framed.flush().await
}

/// A finished request: the response to write and what to record about it.
struct Finished {
    response: ResponseFrame,
    op: &'static str,
    start: Instant,
}

async fn execute<B: Backend>(backend: B, limits: Limits, frame: RequestFrame) -> Finished {
    let start = Instant::now();
    let op = frame.request.op_name();
    let result = match frame.request.check(&limits) {
        Ok(request) => backend.call(request).await,
        Err(e) => Err(e),
    };
    Finished {
        response: ResponseFrame {
            id: frame.id,
            result,
        },
        op,
        start,
    }
}

/// The request metrics of one connection. Handles are looked up in the registry once per
/// operation and outcome and kept: a registry lookup renders the labels and takes the
/// registry's lock, and doing that twice per request was a quarter of this path's CPU time
/// under `kv-client bench`.
struct ConnMetrics {
    metrics: Metrics,
    counters: HashMap<(&'static str, &'static str), Counter>,
    histograms: HashMap<&'static str, Histogram>,
}

impl ConnMetrics {
    fn new(metrics: Metrics) -> Self {
        ConnMetrics {
            metrics,
            counters: HashMap::new(),
            histograms: HashMap::new(),
        }
    }

    fn record(&mut self, finished: &Finished) {
        let outcome = match &finished.response.result {
            Ok(_) => "ok",
            Err(e) => e.kind.name(),
        };
        let op = finished.op;
        let metrics = &self.metrics;
        self.counters
            .entry((op, outcome))
            .or_insert_with(|| {
                metrics.counter_with(
                    "kv_binary_requests_total",
                    "Binary-protocol requests by operation and outcome.",
                    &[("op", op), ("outcome", outcome)],
                )
            })
            .inc();
        self.histograms
            .entry(op)
            .or_insert_with(|| {
                metrics.histogram_with(
                    "kv_binary_request_duration_seconds",
                    "Binary-protocol request latency by operation.",
                    &[("op", op)],
                )
            })
            .observe(finished.start.elapsed());
    }
}
