//! A small metrics registry: counters, gauges and fixed-bucket histograms, rendered in the
//! Prometheus text exposition format (version 0.0.4).
//!
//! Handles are cheap to clone and lock-free to update (one atomic add); only registering or
//! looking up a series takes the registry lock. Hot paths should look a handle up once and
//! keep it:
//!
//! ```
//! use std::time::Duration;
//! use kv_server::metrics::Metrics;
//!
//! let metrics = Metrics::new();
//! let sync = metrics.histogram("kv_wal_sync_seconds", "Duration of one WAL sync.");
//! sync.observe(Duration::from_micros(700));
//! let entries = metrics.value_histogram("kv_ready_entries", "Entries persisted per Ready.");
//! entries.record(12);
//! metrics
//!     .counter_with("kv_http_requests_total", "HTTP requests.", &[("route", "get_key"), ("status", "200")])
//!     .inc();
//! let text = metrics.render();
//! assert!(text.contains("kv_wal_sync_seconds_bucket{le=\"0.001\"} 1"));
//! assert!(text.contains("kv_http_requests_total{route=\"get_key\",status=\"200\"} 1"));
//! ```
//!
//! Asking for a series that exists returns a handle to it; series are never removed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of latency buckets in nanoseconds: 1-2-5 steps from 1 µs to 10 s. A WAL sync,
/// a ReadIndex round and a whole request all land in the middle of this range.
const LATENCY_BOUNDS_NS: [u64; 22] = [
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
    2_000_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Number of value buckets: upper bounds 2^0 ..= 2^30.
const VALUE_BUCKETS: usize = 31;

/// A registry of metrics; clones share it.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Registry {
    families: BTreeMap<String, Family>,
}

struct Family {
    help: String,
    kind: Kind,
    /// Keyed by the rendered label set, e.g. `{route="get_key"}` (empty without labels).
    series: BTreeMap<String, Series>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Counter,
    Gauge,
    Histogram(Scale),
}

#[derive(Clone)]
enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Adds `d` (which may be negative).
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// How a histogram's samples are bucketed and rendered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scale {
    /// Durations, kept in nanoseconds, rendered in seconds.
    Latency,
    /// Plain counts or sizes, power-of-two buckets.
    Value,
}

impl Scale {
    fn bounds(self) -> Vec<u64> {
        match self {
            Scale::Latency => LATENCY_BOUNDS_NS.to_vec(),
            Scale::Value => (0..VALUE_BUCKETS).map(|i| 1u64 << i).collect(),
        }
    }

    fn render(self, v: u64) -> String {
        match self {
            Scale::Latency => format!("{}", v as f64 / 1e9),
            Scale::Value => v.to_string(),
        }
    }
}

/// A distribution of samples over fixed buckets.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramCore>);

#[derive(Debug)]
struct HistogramCore {
    scale: Scale,
    bounds: Vec<u64>,
    /// Non-cumulative counts; the last slot is the `+Inf` bucket.
    // Invariant: buckets.len() == bounds.len() + 1.
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(scale: Scale) -> Self {
        let bounds = scale.bounds();
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(HistogramCore {
            scale,
            bounds,
            buckets,
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }))
    }

    /// Records a duration (for a histogram made by [`Metrics::histogram`]).
    pub fn observe(&self, d: Duration) {
        self.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records a raw sample: a count or size for a [`Metrics::value_histogram`], nanoseconds
    /// for a latency histogram.
    pub fn record(&self, v: u64) {
        let core = &self.0;
        let slot = core.bounds.partition_point(|&b| b < v);
        core.buckets[slot].fetch_add(1, Ordering::Relaxed);
        core.sum.fetch_add(v, Ordering::Relaxed);
        core.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of samples recorded.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    /// Sum of the raw samples (nanoseconds for a latency histogram).
    pub fn sum(&self) -> u64 {
        self.0.sum.load(Ordering::Relaxed)
    }
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter `name` (no labels), created on first use.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid Prometheus metric name or is registered as another kind.
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        self.counter_with(name, help, &[])
    }

    /// The counter `name` with `labels`, created on first use.
    ///
    /// # Panics
    ///
    /// As [`Metrics::counter`], and if a label name is invalid.
    pub fn counter_with(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        match self.series(name, help, Kind::Counter, labels) {
            Series::Counter(c) => c,
            _ => unreachable!("kind checked by series()"),
        }
    }

    /// The gauge `name` (no labels), created on first use.
    ///
    /// # Panics
    ///
    /// As [`Metrics::counter`].
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.gauge_with(name, help, &[])
    }

    /// The gauge `name` with `labels`, created on first use.
    ///
    /// # Panics
    ///
    /// As [`Metrics::counter_with`].
    pub fn gauge_with(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        match self.series(name, help, Kind::Gauge, labels) {
            Series::Gauge(g) => g,
            _ => unreachable!("kind checked by series()"),
        }
    }

    /// The latency histogram `name` (seconds; buckets 1 µs to 10 s in 1-2-5 steps).
    ///
    /// # Panics
    ///
    /// As [`Metrics::counter`].
    pub fn histogram(&self, name: &str, help: &str) -> Histogram {
        self.histogram_with(name, help, &[])
    }

    /// The latency histogram `name` with `labels`.
    ///
    /// # Panics
    ///
    /// As [`Metrics::counter_with`].
    pub fn histogram_with(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Histogram {
        match self.series(name, help, Kind::Histogram(Scale::Latency), labels) {
            Series::Histogram(h) => h,
            _ => unreachable!("kind checked by series()"),
        }
    }

    /// A histogram of counts or sizes (buckets at powers of two, 1 to 2^30), for example
    /// entries or bytes per Ready.
    ///
    /// # Panics
    ///
    /// As [`Metrics::counter`].
    pub fn value_histogram(&self, name: &str, help: &str) -> Histogram {
        match self.series(name, help, Kind::Histogram(Scale::Value), &[]) {
            Series::Histogram(h) => h,
            _ => unreachable!("kind checked by series()"),
        }
    }

    fn series(&self, name: &str, help: &str, kind: Kind, labels: &[(&str, &str)]) -> Series {
        assert!(valid_name(name, true), "invalid metric name {name:?}");
        let key = render_labels(labels);
        let mut reg = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let family = reg
            .families
            .entry(name.to_owned())
            .or_insert_with(|| Family {
                help: help.to_owned(),
                kind,
                series: BTreeMap::new(),
            });
        assert_eq!(
            family.kind, kind,
            "metric {name:?} registered as {:?}, asked for as {kind:?}",
            family.kind
        );
        family
            .series
            .entry(key)
            .or_insert_with(|| match kind {
                Kind::Counter => Series::Counter(Counter::default()),
                Kind::Gauge => Series::Gauge(Gauge::default()),
                Kind::Histogram(scale) => Series::Histogram(Histogram::new(scale)),
            })
            .clone()
    }

    /// Every counter's value, keyed by `name{labels}`: for JSON statistics.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let reg = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeMap::new();
        for (name, family) in &reg.families {
            for (labels, series) in &family.series {
                if let Series::Counter(c) = series {
                    out.insert(format!("{name}{labels}"), c.get());
                }
            }
        }
        out
    }

    /// Everything in the Prometheus text format, families in name order.
    pub fn render(&self) -> String {
        let reg = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, family) in &reg.families {
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram(_) => "histogram",
            };
            let help = family.help.replace('\\', "\\\\").replace('\n', "\\n");
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, series) in &family.series {
                match series {
                    Series::Counter(c) => {
                        let _ = writeln!(out, "{name}{labels} {}", c.get());
                    }
                    Series::Gauge(g) => {
                        let _ = writeln!(out, "{name}{labels} {}", g.get());
                    }
                    Series::Histogram(h) => render_histogram(&mut out, name, labels, h),
                }
            }
        }
        out
    }
}

fn render_histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let core = &h.0;
    // `le` joins the series' own labels inside one pair of braces.
    let with_le = |le: &str| match labels.strip_suffix('}') {
        Some(open) => format!("{open},le=\"{le}\"}}"),
        None => format!("{{le=\"{le}\"}}"),
    };
    let mut cumulative = 0u64;
    for (i, bucket) in core.buckets.iter().enumerate() {
        cumulative += bucket.load(Ordering::Relaxed);
        let le = match core.bounds.get(i) {
            Some(&b) => core.scale.render(b),
            None => "+Inf".to_owned(),
        };
        let _ = writeln!(out, "{name}_bucket{} {cumulative}", with_le(&le));
    }
    let sum = core.scale.render(core.sum.load(Ordering::Relaxed));
    let _ = writeln!(out, "{name}_sum{labels} {sum}");
    // The count is read after the buckets, so a concurrent observe can make it exceed the
    // +Inf bucket by a few; Prometheus tolerates that skew.
    let _ = writeln!(
        out,
        "{name}_count{labels} {}",
        core.count.load(Ordering::Relaxed)
    );
}

fn valid_name(name: &str, allow_colon: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic()
            || c == '_'
            || (allow_colon && c == ':')
            || (!first && c.is_ascii_digit())
    };
    let mut chars = name.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut out = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        assert!(
            valid_name(k, false) && !k.starts_with("__"),
            "invalid label name {k:?}"
        );
        if i > 0 {
            out.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{v}\"");
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_render() {
        let m = Metrics::new();
        let c = m.counter("kv_things_total", "Things.");
        c.inc();
        c.add(2);
        // The same name and labels give the same series.
        m.counter("kv_things_total", "Things.").inc();
        assert_eq!(c.get(), 4);
        let g = m.gauge_with("kv_term", "Term.", &[("node", "1")]);
        g.set(7);
        g.add(-2);
        m.counter_with("kv_req_total", "Reqs.", &[("path", "a\"b\\c\nd")])
            .inc();
        let text = m.render();
        assert_eq!(
            text,
            "# HELP kv_req_total Reqs.\n# TYPE kv_req_total counter\n\
             kv_req_total{path=\"a\\\"b\\\\c\\nd\"} 1\n\
             # HELP kv_term Term.\n# TYPE kv_term gauge\nkv_term{node=\"1\"} 5\n\
             # HELP kv_things_total Things.\n# TYPE kv_things_total counter\nkv_things_total 4\n"
        );
        assert_eq!(m.counters()["kv_things_total"], 4);
    }

    #[test]
    fn latency_buckets_are_cumulative() {
        let m = Metrics::new();
        let h = m.histogram_with("kv_lat_seconds", "Latency.", &[("op", "put")]);
        h.observe(Duration::from_nanos(500)); // <= 1 µs
        h.observe(Duration::from_micros(1)); // exactly on a bound: counted in it
        h.observe(Duration::from_micros(1500)); // <= 2 ms
        h.observe(Duration::from_secs(60)); // +Inf
        assert_eq!(h.count(), 4);
        let text = m.render();
        assert!(text.contains("# TYPE kv_lat_seconds histogram\n"));
        assert!(text.contains("kv_lat_seconds_bucket{op=\"put\",le=\"0.000001\"} 2\n"));
        assert!(text.contains("kv_lat_seconds_bucket{op=\"put\",le=\"0.001\"} 2\n"));
        assert!(text.contains("kv_lat_seconds_bucket{op=\"put\",le=\"0.002\"} 3\n"));
        assert!(text.contains("kv_lat_seconds_bucket{op=\"put\",le=\"10\"} 3\n"));
        assert!(text.contains("kv_lat_seconds_bucket{op=\"put\",le=\"+Inf\"} 4\n"));
        assert!(text.contains("kv_lat_seconds_sum{op=\"put\"} 60.0015015\n"));
        assert!(text.contains("kv_lat_seconds_count{op=\"put\"} 4\n"));
    }

    #[test]
    fn value_histogram_uses_powers_of_two() {
        let m = Metrics::new();
        let h = m.value_histogram("kv_ready_entries", "Entries.");
        for v in [0, 1, 3, 4, 1 << 31] {
            h.record(v);
        }
        let text = m.render();
        assert!(text.contains("kv_ready_entries_bucket{le=\"1\"} 2\n"));
        assert!(text.contains("kv_ready_entries_bucket{le=\"2\"} 2\n"));
        assert!(text.contains("kv_ready_entries_bucket{le=\"4\"} 4\n"));
        assert!(text.contains("kv_ready_entries_bucket{le=\"1073741824\"} 4\n"));
        assert!(text.contains("kv_ready_entries_bucket{le=\"+Inf\"} 5\n"));
    }

    #[test]
    #[should_panic(expected = "registered as Counter")]
    fn kind_mismatch_panics() {
        let m = Metrics::new();
        m.counter("kv_x", "x");
        m.gauge("kv_x", "x");
    }

    #[test]
    #[should_panic(expected = "invalid metric name")]
    fn bad_name_panics() {
        Metrics::new().counter("2bad", "x");
    }
}
