//! Compares raft-core with raft-rs (tikv `raft` 0.7): proposals committed and
//! applied per second (wall and CPU) through a 3-node in-memory cluster driven
//! in one thread, and heap per entry for a long log without compaction.
//! See README.md for the method.

mod alloc;
mod cluster;
mod raft_core_driver;
mod raft_rs_driver;

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use cluster::{Applied, Cluster, Delivery, Setup};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// Runs `$body` with `$c` naming the driver type of library `$lib`.
/// The one place where a library is bound to its driver.
macro_rules! with_cluster {
    ($lib:expr, $c:ident => $body:expr) => {
        match $lib {
            "raft-rs" => {
                type $c = raft_rs_driver::RaftRsCluster;
                $body
            }
            "raft-core" => {
                type $c = raft_core_driver::RaftCoreCluster;
                $body
            }
            other => Err(format!("library {other:?} is not built in")),
        }
    };
}

/// The libraries this build can drive, in report order.
fn available_libs() -> Vec<&'static str> {
    ["raft-core", "raft-rs"]
        .into_iter()
        .filter(|lib| with_cluster!(*lib, C => Ok::<_, String>(C::NAME)).is_ok())
        .collect()
}

const PAYLOAD_LEN: usize = 100;

struct Opts {
    libs: Vec<String>,
    batches: Vec<usize>,
    secs: f64,
    warmup: f64,
    reps: usize,
    delivery: Delivery,
    compact_every: u64,
    mem: bool,
    throughput: bool,
    mem_entries: u64,
    mem_batch: usize,
    mem_delivery: Delivery,
    merge_appends: bool,
    json: bool,
}

impl Opts {
    fn setup(&self, delivery: Delivery) -> Setup {
        Setup {
            delivery,
            merge_appends: self.merge_appends,
        }
    }
}

const USAGE: &str = "\
usage: raft-compare [options]
  --lib raft-rs|raft-core|both   libraries to run (default: both, i.e. every one built in)
  --batch 1,64,1024              proposals per Ready cycle (default 1,64,1024)
  --secs N                       measured seconds per run (default 3)
  --warmup N                     unmeasured seconds before each run (default 0.5)
  --reps N                       runs per (library, batch), interleaved (default 2)
  --delivery share|copy          throughput runs: share payload buffers between nodes
                                 or copy them on delivery like a wire would (default share)
  --compact-every N              throughput runs: compact every node's storage to its
                                 applied index after every N proposals (default 65536, 0 = never)
  --mem-entries N                memory test: entries appended (default 1000000)
  --mem-batch N                  memory test: proposals per cycle (default 1024)
  --mem-delivery share|copy      memory test delivery (default copy)
  --merge-appends on|off         turn on the libraries' option to merge appends queued for
                                 one follower into one message (raft-rs batch_append; default on)
  --no-mem                       skip the memory test
  --mem-only                     only the memory test
  --json                         print JSON instead of tables";

fn parse_delivery(s: &str) -> Result<Delivery, String> {
    match s {
        "share" => Ok(Delivery::Share),
        "copy" => Ok(Delivery::Copy),
        _ => Err(format!("bad delivery {s:?} (share or copy)")),
    }
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        libs: available_libs().iter().map(|s| s.to_string()).collect(),
        batches: vec![1, 64, 1024],
        secs: 3.0,
        warmup: 0.5,
        reps: 2,
        delivery: Delivery::Share,
        compact_every: 65536,
        mem: true,
        throughput: true,
        mem_entries: 1_000_000,
        mem_batch: 1024,
        mem_delivery: Delivery::Copy,
        merge_appends: true,
        json: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .map(String::as_str)
                .ok_or_else(|| format!("{a} needs a value"))
        };
        let num = |v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("bad number {v:?} for {a}"))
        };
        match a.as_str() {
            "--lib" => {
                let v = val()?;
                o.libs = if v == "both" || v == "all" {
                    available_libs().iter().map(|s| s.to_string()).collect()
                } else {
                    v.split(',').map(str::to_string).collect()
                };
            }
            "--batch" => {
                o.batches = val()?
                    .split(',')
                    .map(|b| b.parse::<usize>().ok().filter(|&b| b > 0))
                    .collect::<Option<_>>()
                    .ok_or("bad --batch (positive integers, comma separated)")?;
            }
            "--secs" => o.secs = num(val()?)?,
            "--warmup" => o.warmup = num(val()?)?,
            "--reps" => o.reps = num(val()?)?.max(1.0) as usize,
            "--delivery" => o.delivery = parse_delivery(val()?)?,
            "--compact-every" => o.compact_every = num(val()?)? as u64,
            "--mem-entries" => o.mem_entries = num(val()?)?.max(1.0) as u64,
            "--mem-batch" => o.mem_batch = num(val()?)?.max(1.0) as usize,
            "--mem-delivery" => o.mem_delivery = parse_delivery(val()?)?,
            "--merge-appends" => {
                o.merge_appends = match val()? {
                    "on" => true,
                    "off" => false,
                    v => return Err(format!("bad --merge-appends {v:?} (on or off)")),
                }
            }
            "--no-mem" => o.mem = false,
            "--mem-only" => o.throughput = false,
            "--json" => o.json = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
    }
    for lib in &o.libs {
        if !available_libs().contains(&lib.as_str()) {
            return Err(format!(
                "library {lib:?} is not built in (available: {})",
                available_libs().join(", ")
            ));
        }
    }
    Ok(o)
}

/// User + system CPU time of the whole process.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Resident set size in bytes, from /proc/self/statm.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    pages * page
}

/// Proposes with payloads stamped with consecutive sequence numbers and keeps
/// what every node must have applied once quiescent.
struct Proposer {
    payload: [u8; PAYLOAD_LEN],
    expected: Applied,
}

impl Proposer {
    fn new() -> Self {
        let mut payload = [0u8; PAYLOAD_LEN];
        for (i, b) in payload.iter_mut().enumerate() {
            *b = i as u8;
        }
        Proposer {
            payload,
            expected: Applied::default(),
        }
    }

    #[inline]
    fn propose<C: Cluster>(&mut self, c: &mut C, n: usize) {
        for _ in 0..n {
            self.payload[..8].copy_from_slice(&self.expected.count.to_le_bytes());
            self.expected.apply(&self.payload);
            c.propose(&self.payload);
        }
    }

    fn verify<C: Cluster>(&self, c: &C) -> Result<(), String> {
        for (i, got) in c.applied().iter().enumerate() {
            if *got != self.expected {
                return Err(format!(
                    "{}: node {} applied {:?}, expected {:?}",
                    C::NAME,
                    i + 1,
                    got,
                    self.expected
                ));
            }
        }
        Ok(())
    }
}

struct Run {
    lib: String,
    batch: usize,
    rep: usize,
    proposals: u64,
    wall: f64,
    cpu: f64,
}

impl Run {
    fn per_wall(&self) -> f64 {
        self.proposals as f64 / self.wall
    }
    fn per_cpu(&self) -> f64 {
        self.proposals as f64 / self.cpu
    }
}

/// Proposes `batch` entries per cycle for `secs` seconds (after `warmup`) and
/// counts proposals the leader applied; every node's application is verified.
fn throughput<C: Cluster>(o: &Opts, batch: usize, rep: usize) -> Result<Run, String> {
    let mut c = C::new(o.setup(o.delivery));
    let mut p = Proposer::new();
    let mut since_compact = 0u64;
    let mut cycle = |c: &mut C, p: &mut Proposer| {
        p.propose(c, batch);
        let n = c.run_until_quiescent();
        since_compact += n;
        if o.compact_every > 0 && since_compact >= o.compact_every {
            c.compact();
            since_compact = 0;
        }
        n
    };
    let warm = Instant::now();
    while warm.elapsed().as_secs_f64() < o.warmup {
        cycle(&mut c, &mut p);
    }
    let limit = Duration::from_secs_f64(o.secs);
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let mut proposals = 0u64;
    loop {
        proposals += cycle(&mut c, &mut p);
        if t0.elapsed() >= limit {
            break;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu0).as_secs_f64();
    p.verify(&c)?;
    // Every cycle ends quiescent, so everything proposed was applied by the leader.
    debug_assert_eq!(proposals % batch as u64, 0);
    Ok(Run {
        lib: C::NAME.to_string(),
        batch,
        rep,
        proposals,
        wall,
        cpu: cpu.max(1e-9),
    })
}

struct Mem {
    lib: String,
    entries: u64,
    heap_before: u64,
    heap_after: u64,
    heap_peak: u64,
    rss_before: u64,
    rss_after: u64,
}

impl Mem {
    fn per_entry(&self) -> f64 {
        (self.heap_after as f64 - self.heap_before as f64) / self.entries as f64
    }
    fn peak_per_entry(&self) -> f64 {
        (self.heap_peak as f64 - self.heap_before as f64) / self.entries as f64
    }
    fn rss_per_entry(&self) -> f64 {
        (self.rss_after as f64 - self.rss_before as f64) / self.entries as f64
    }
}

/// The memory test proper, run in a child process so each library starts from
/// a fresh heap and RSS: appends `mem_entries` entries through the leader in
/// cycles of `mem_batch`, never compacting, and prints the measurements.
fn mem_child<C: Cluster>(o: &Opts) -> Result<(), String> {
    let mut c = C::new(o.setup(o.mem_delivery));
    let mut p = Proposer::new();
    let heap_before = alloc::current();
    let rss_before = rss();
    alloc::reset_peak();
    let mut left = o.mem_entries;
    while left > 0 {
        let n = left.min(o.mem_batch as u64);
        p.propose(&mut c, n as usize);
        c.run_until_quiescent();
        left -= n;
    }
    let heap_after = alloc::current();
    let heap_peak = alloc::peak();
    let rss_after = rss();
    p.verify(&c)?;
    println!(
        "heap_before {heap_before}\nheap_after {heap_after}\nheap_peak {heap_peak}\n\
         rss_before {rss_before}\nrss_after {rss_after}"
    );
    Ok(())
}

fn memory(o: &Opts, lib: &str) -> Result<Mem, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args(["--internal-mem-child", lib])
        .args(["--mem-entries", &o.mem_entries.to_string()])
        .args(["--mem-batch", &o.mem_batch.to_string()])
        .args(["--mem-delivery", o.mem_delivery.name()])
        .args([
            "--merge-appends",
            if o.merge_appends { "on" } else { "off" },
        ])
        .output()
        .map_err(|e| format!("memory test child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "memory test child for {lib} failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let field = |k: &str| -> Result<u64, String> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(' ')?.parse().ok())
            .ok_or_else(|| format!("memory test child for {lib}: no {k} in {stdout:?}"))
    };
    Ok(Mem {
        lib: lib.to_string(),
        entries: o.mem_entries,
        heap_before: field("heap_before")?,
        heap_after: field("heap_after")?,
        heap_peak: field("heap_peak")?,
        rss_before: field("rss_before")?,
        rss_after: field("rss_after")?,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// Per (batch, library): best and median of proposals per CPU-second and per wall-second.
struct Summary {
    batch: usize,
    lib: String,
    best_cpu: f64,
    median_cpu: f64,
    best_wall: f64,
    median_wall: f64,
}

fn summarize(o: &Opts, runs: &[Run]) -> Vec<Summary> {
    let mut out = Vec::new();
    for &batch in &o.batches {
        for lib in &o.libs {
            let sel: Vec<&Run> = runs
                .iter()
                .filter(|r| r.batch == batch && &r.lib == lib)
                .collect();
            if sel.is_empty() {
                continue;
            }
            let cpu: Vec<f64> = sel.iter().map(|r| r.per_cpu()).collect();
            let wall: Vec<f64> = sel.iter().map(|r| r.per_wall()).collect();
            out.push(Summary {
                batch,
                lib: lib.clone(),
                best_cpu: best(&cpu),
                median_cpu: median(cpu),
                best_wall: best(&wall),
                median_wall: median(wall),
            });
        }
    }
    out
}

/// raft-core's best proposals per CPU-second over raft-rs's, per batch.
fn ratios(sum: &[Summary]) -> Vec<(usize, f64)> {
    let mut out = Vec::new();
    for s in sum.iter().filter(|s| s.lib == "raft-core") {
        if let Some(r) = sum
            .iter()
            .find(|r| r.lib == "raft-rs" && r.batch == s.batch)
        {
            out.push((s.batch, s.best_cpu / r.best_cpu));
        }
    }
    out
}

fn print_tables(o: &Opts, runs: &[Run], sum: &[Summary], mems: &[Mem]) {
    if !runs.is_empty() {
        println!(
            "throughput: 3 nodes, one thread, {PAYLOAD_LEN}-byte entries, delivery {}, \
             merge appends {}, compaction every {} proposals, {} s per run",
            o.delivery.name(),
            o.merge_appends,
            o.compact_every,
            o.secs
        );
        println!(
            "{:<10} {:>6} {:>4} {:>11} {:>7} {:>7} {:>13} {:>13}",
            "lib", "batch", "rep", "proposals", "wall_s", "cpu_s", "props/s", "props/cpu-s"
        );
        for r in runs {
            println!(
                "{:<10} {:>6} {:>4} {:>11} {:>7.3} {:>7.3} {:>13.0} {:>13.0}",
                r.lib,
                r.batch,
                r.rep,
                r.proposals,
                r.wall,
                r.cpu,
                r.per_wall(),
                r.per_cpu()
            );
        }
        println!();
        println!(
            "{:<10} {:>6} {:>15} {:>15} {:>13} {:>13}",
            "lib", "batch", "best cpu-s", "median cpu-s", "best wall", "median wall"
        );
        for s in sum {
            println!(
                "{:<10} {:>6} {:>15.0} {:>15.0} {:>13.0} {:>13.0}",
                s.lib, s.batch, s.best_cpu, s.median_cpu, s.best_wall, s.median_wall
            );
        }
        for (batch, ratio) in ratios(sum) {
            println!("raft-core / raft-rs, batch {batch}: {ratio:.2}x proposals per CPU-second");
        }
    }
    if !mems.is_empty() {
        if !runs.is_empty() {
            println!();
        }
        println!(
            "memory: {} entries of {PAYLOAD_LEN} bytes in batches of {}, no compaction, \
             delivery {}; bytes per entry over the 3-node cluster (and per replica)",
            o.mem_entries,
            o.mem_batch,
            o.mem_delivery.name()
        );
        println!(
            "{:<10} {:>14} {:>12} {:>12} {:>14} {:>12}",
            "lib", "heap delta", "heap/entry", "per replica", "peak/entry", "rss/entry"
        );
        for m in mems {
            println!(
                "{:<10} {:>14} {:>12.1} {:>12.1} {:>14.1} {:>12.1}",
                m.lib,
                m.heap_after as i64 - m.heap_before as i64,
                m.per_entry(),
                m.per_entry() / 3.0,
                m.peak_per_entry(),
                m.rss_per_entry()
            );
        }
    }
}

fn print_json(o: &Opts, runs: &[Run], sum: &[Summary], mems: &[Mem]) {
    let runs_json: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "{{\"lib\":\"{}\",\"batch\":{},\"rep\":{},\"proposals\":{},\"wall_s\":{:.6},\
                 \"cpu_s\":{:.6},\"proposals_per_s\":{:.1},\"proposals_per_cpu_s\":{:.1}}}",
                r.lib,
                r.batch,
                r.rep,
                r.proposals,
                r.wall,
                r.cpu,
                r.per_wall(),
                r.per_cpu()
            )
        })
        .collect();
    let sum_json: Vec<String> = sum
        .iter()
        .map(|s| {
            format!(
                "{{\"lib\":\"{}\",\"batch\":{},\"best_per_cpu_s\":{:.1},\"median_per_cpu_s\":{:.1},\
                 \"best_per_s\":{:.1},\"median_per_s\":{:.1}}}",
                s.lib, s.batch, s.best_cpu, s.median_cpu, s.best_wall, s.median_wall
            )
        })
        .collect();
    let ratio_json: Vec<String> = ratios(sum)
        .iter()
        .map(|(b, r)| format!("{{\"batch\":{b},\"raft_core_over_raft_rs_per_cpu_s\":{r:.3}}}"))
        .collect();
    let mem_json: Vec<String> = mems
        .iter()
        .map(|m| {
            format!(
                "{{\"lib\":\"{}\",\"entries\":{},\"heap_before\":{},\"heap_after\":{},\
                 \"heap_peak\":{},\"rss_before\":{},\"rss_after\":{},\"heap_per_entry\":{:.2},\
                 \"heap_per_entry_per_replica\":{:.2},\"peak_per_entry\":{:.2},\"rss_per_entry\":{:.2}}}",
                m.lib,
                m.entries,
                m.heap_before,
                m.heap_after,
                m.heap_peak,
                m.rss_before,
                m.rss_after,
                m.per_entry(),
                m.per_entry() / 3.0,
                m.peak_per_entry(),
                m.rss_per_entry()
            )
        })
        .collect();
    println!(
        "{{\"config\":{{\"payload_len\":{PAYLOAD_LEN},\"secs\":{},\"warmup\":{},\"reps\":{},\
         \"delivery\":\"{}\",\"merge_appends\":{},\"compact_every\":{},\"mem_entries\":{},\"mem_batch\":{},\
         \"mem_delivery\":\"{}\"}},\n\"runs\":[{}],\n\"summary\":[{}],\n\"ratios\":[{}],\n\"memory\":[{}]}}",
        o.secs,
        o.warmup,
        o.reps,
        o.delivery.name(),
        o.merge_appends,
        o.compact_every,
        o.mem_entries,
        o.mem_batch,
        o.mem_delivery.name(),
        runs_json.join(",\n "),
        sum_json.join(",\n "),
        ratio_json.join(","),
        mem_json.join(",\n ")
    );
}

fn run(args: Vec<String>) -> Result<(), String> {
    if args.first().map(String::as_str) == Some("--internal-mem-child") {
        let lib = args.get(1).ok_or("--internal-mem-child needs a library")?;
        let o = parse_args(&args[2..])?;
        return with_cluster!(lib.as_str(), C => mem_child::<C>(&o));
    }
    let o = parse_args(&args)?;
    let mut runs = Vec::new();
    if o.throughput {
        // Reps are the outer loop so that drift in machine load spreads over
        // every (library, batch) pair instead of landing on one of them.
        for rep in 1..=o.reps {
            for &batch in &o.batches {
                for lib in &o.libs {
                    let r = with_cluster!(lib.as_str(), C => throughput::<C>(&o, batch, rep))?;
                    if !o.json {
                        eprintln!(
                            "  {} batch {} rep {}: {:.0} proposals/s, {:.0} per CPU-second",
                            r.lib,
                            r.batch,
                            r.rep,
                            r.per_wall(),
                            r.per_cpu()
                        );
                    }
                    runs.push(r);
                }
            }
        }
    }
    let mut mems = Vec::new();
    if o.mem {
        for lib in &o.libs {
            mems.push(memory(&o, lib)?);
        }
    }
    let sum = summarize(&o, &runs);
    if o.json {
        print_json(&o, &runs, &sum, &mems);
    } else {
        print_tables(&o, &runs, &sum, &mems);
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives `C` through batches of several sizes, compaction and both kinds of
    /// delivery, checking every node applied exactly what was proposed.
    fn applies_everything_everywhere<C: Cluster>() {
        for delivery in [Delivery::Share, Delivery::Copy] {
            for merge_appends in [false, true] {
                let mut c = C::new(Setup {
                    delivery,
                    merge_appends,
                });
                let mut p = Proposer::new();
                for (i, batch) in [1usize, 7, 300, 1, 1024].into_iter().enumerate() {
                    p.propose(&mut c, batch);
                    assert_eq!(c.run_until_quiescent(), batch as u64);
                    p.verify(&c).unwrap();
                    if i % 2 == 1 {
                        c.compact();
                    }
                }
                assert_eq!(c.run_until_quiescent(), 0, "quiescent means nothing left");
                assert_eq!(p.expected.count, 1 + 7 + 300 + 1 + 1024);
            }
        }
    }

    #[test]
    fn raft_rs_applies_everything_everywhere() {
        applies_everything_everywhere::<raft_rs_driver::RaftRsCluster>();
    }

    #[test]
    fn raft_core_applies_everything_everywhere() {
        applies_everything_everywhere::<raft_core_driver::RaftCoreCluster>();
    }

    #[test]
    fn applied_reads_the_stamped_sequence_number() {
        let mut a = Applied::default();
        let mut data = [0xffu8; PAYLOAD_LEN];
        data[..8].copy_from_slice(&41u64.to_le_bytes());
        a.apply(&data);
        a.apply(&[1]);
        assert_eq!(a.count, 2);
        assert_eq!(a.checksum, 42);
        assert_eq!(a.bytes, PAYLOAD_LEN as u64 + 1);
    }
}
