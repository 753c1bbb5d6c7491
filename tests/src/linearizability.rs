//! A linearizability checker for a map of registers with get, put,
//! compare-and-set and delete.
//!
//! # Model
//!
//! Each key is a register that is absent or holds a value. The operations
//! and what each outcome says about the register at the operation's
//! linearization point:
//!
//! | operation | outcome | precondition | effect |
//! |---|---|---|---|
//! | `Get` | `Read(v)` (200, or 404 as `None`) | register == v | none |
//! | `Put(v)` | `Applied` (204) | none | register = v |
//! | `Cas { cond, v }` | `Applied` (204) | cond holds | register = v |
//! | `Cas { cond, v }` | `NotApplied` (412) | cond fails | none |
//! | `Delete` | `Applied` (204) | register present | register = absent |
//! | `Delete` | `NotApplied` (404) | register absent | none |
//!
//! `Failed` means the operation certainly had no effect (refused before it
//! was proposed: 503, connection refused); it is left out of the search.
//! `Indeterminate` means it may or may not have taken effect (504, timeout,
//! connection lost after sending), and if it did, at any point after its
//! invocation: it is given a completion time of infinity and an
//! unconstrained result. Linearizing it at the very end of the history, after
//! every observation, is always possible, which is how "it never took
//! effect" is expressed. A read whose outcome is unknown observed nothing
//! and is left out.
//!
//! # Algorithm
//!
//! Wing and Gong's search with Lowe's memoization, as Porcupine and Knossos
//! implement it: the history is a list of call and return events in time
//! order; the search repeatedly tries to linearize an operation whose call
//! comes before the first remaining return, lifting both of its events out
//! of the list, and backtracks when it reaches a return whose operation it
//! could not linearize. A cache of (set of linearized operations, register
//! state) pairs already explored prunes the search: two paths that reach the
//! same set with the same state have the same future.
//!
//! Linearizability is local (Herlihy and Wing's P-compositionality): a
//! history of independent objects is linearizable iff each object's
//! sub-history is, so every key is checked on its own, which keeps each
//! search small.
//!
//! The search of a key stops after [`CheckOptions::max_steps_per_key`] steps
//! with [`KeyVerdict::Unknown`] rather than run without bound.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A register value.
pub type Value = String;

/// The condition of a compare-and-set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Cond {
    /// The register holds exactly this value (`?prev_value=`); an absent
    /// register fails it.
    PrevValue(Value),
    /// The register is present (`true`) or absent (`false`) (`?prev_exist=`).
    PrevExist(bool),
}

/// An operation on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read the register.
    Get,
    /// Set the register.
    Put(Value),
    /// Set the register if `cond` holds.
    Cas {
        /// The condition.
        cond: Cond,
        /// The value written if it holds.
        value: Value,
    },
    /// Remove the register.
    Delete,
}

/// What a client learnt about an operation. See the module docs for what
/// each outcome means for each operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A `Get` answered: the value, or `None` for absent (404).
    Read(Option<Value>),
    /// A write took effect (204).
    Applied,
    /// A `Cas` whose condition failed (412), or a `Delete` of an absent key
    /// (404): an observation that changed nothing.
    NotApplied,
    /// Certainly had no effect: refused before it could be proposed.
    Failed,
    /// May or may not have taken effect, at any time after its invocation.
    Indeterminate,
}

impl Outcome {
    /// The outcome is a definite answer (not `Failed`, not `Indeterminate`).
    pub fn is_ok(&self) -> bool {
        matches!(
            self,
            Outcome::Read(_) | Outcome::Applied | Outcome::NotApplied
        )
    }
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client (process) that issued it; a client issues one operation at
    /// a time.
    pub client: u64,
    /// The key it addressed.
    pub key: String,
    /// What it asked for.
    pub op: Op,
    /// When it was invoked (nanoseconds from any fixed origin).
    pub invoke: u64,
    /// When its answer arrived, same origin; ignored for `Indeterminate`.
    /// Invariant: `invoke <= complete`.
    pub complete: u64,
    /// Its outcome.
    pub outcome: Outcome,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |ns: u64| ns as f64 / 1e9;
        write!(f, "[client {} {:.6}s..", self.client, secs(self.invoke))?;
        if self.outcome == Outcome::Indeterminate {
            write!(f, "?")?;
        } else {
            write!(f, "{:.6}s", secs(self.complete))?;
        }
        write!(f, "] {:?} ", self.key)?;
        match &self.op {
            Op::Get => write!(f, "get")?,
            Op::Put(v) => write!(f, "put {v:?}")?,
            Op::Cas { cond, value } => match cond {
                Cond::PrevValue(p) => write!(f, "cas {p:?} -> {value:?}")?,
                Cond::PrevExist(e) => write!(f, "cas prev_exist={e} -> {value:?}")?,
            },
            Op::Delete => write!(f, "delete")?,
        }
        match &self.outcome {
            Outcome::Read(Some(v)) => write!(f, " = {v:?}"),
            Outcome::Read(None) => write!(f, " = absent"),
            Outcome::Applied => write!(f, " = applied"),
            Outcome::NotApplied => write!(f, " = not applied"),
            Outcome::Failed => write!(f, " = failed"),
            Outcome::Indeterminate => write!(f, " = indeterminate"),
        }
    }
}

/// Records a history from concurrent clients: cheap to clone, one per
/// client task.
#[derive(Clone, Debug)]
pub struct Recorder {
    start: Instant,
    ops: Arc<Mutex<Vec<Operation>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty history whose clock starts now.
    pub fn new() -> Self {
        Recorder {
            start: Instant::now(),
            ops: Arc::default(),
        }
    }

    /// Nanoseconds since the recorder was created: take it just before
    /// sending a request, as the invocation time.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Records an operation invoked at `invoke` (from [`Recorder::now`])
    /// that completes now with `outcome`.
    ///
    /// # Panics
    /// If the lock is poisoned (another client panicked while recording).
    pub fn record(&self, client: u64, key: &str, op: Op, invoke: u64, outcome: Outcome) {
        let complete = self.now();
        self.ops.lock().expect("recorder lock").push(Operation {
            client,
            key: key.to_owned(),
            op,
            invoke,
            complete,
            outcome,
        });
    }

    /// The number of operations recorded so far.
    ///
    /// # Panics
    /// If the lock is poisoned.
    pub fn len(&self) -> usize {
        self.ops.lock().expect("recorder lock").len()
    }

    /// Whether nothing was recorded yet.
    ///
    /// # Panics
    /// If the lock is poisoned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the history so far.
    ///
    /// # Panics
    /// If the lock is poisoned.
    pub fn history(&self) -> Vec<Operation> {
        self.ops.lock().expect("recorder lock").clone()
    }
}

/// Limits of a check.
#[derive(Clone, Copy, Debug)]
pub struct CheckOptions {
    /// Search steps (operations tried or undone) allowed per key before the
    /// key's verdict is [`KeyVerdict::Unknown`].
    pub max_steps_per_key: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            max_steps_per_key: 50_000_000,
        }
    }
}

/// The verdict for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyVerdict {
    /// A linearization exists.
    Linearizable,
    /// None exists.
    Violation(Violation),
    /// The search ran out of steps.
    Unknown,
}

/// Evidence that a key's history is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// The longest sequence of operations the search could linearize, in
    /// linearization order.
    pub longest_prefix: Vec<Operation>,
    /// The operation whose completion that prefix could not get past: it
    /// must be linearized before its return, and no order allowed it.
    pub stuck_at: Option<Operation>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key {:?}: not linearizable; longest linearizable prefix ({} ops, last 20 shown):",
            self.key,
            self.longest_prefix.len()
        )?;
        let skip = self.longest_prefix.len().saturating_sub(20);
        for op in &self.longest_prefix[skip..] {
            writeln!(f, "  {op}")?;
        }
        if let Some(op) = &self.stuck_at {
            writeln!(f, "then no order could linearize: {op}")?;
        }
        Ok(())
    }
}

/// The result of checking a whole history.
#[derive(Clone, Debug)]
pub struct Report {
    /// Operations in the history.
    pub ops: usize,
    /// Operations with a definite answer.
    pub ok: usize,
    /// Operations that certainly had no effect.
    pub failed: usize,
    /// Operations that may or may not have taken effect.
    pub indeterminate: usize,
    /// The verdict per key.
    pub keys: BTreeMap<String, KeyVerdict>,
    /// Search steps per key.
    pub steps: BTreeMap<String, u64>,
}

impl Report {
    /// Every key is linearizable.
    pub fn is_linearizable(&self) -> bool {
        self.keys.values().all(|v| *v == KeyVerdict::Linearizable)
    }

    /// The overall verdict: "linearizable", "NOT linearizable" or "unknown".
    pub fn verdict(&self) -> &'static str {
        if self.is_linearizable() {
            "linearizable"
        } else if self
            .keys
            .values()
            .any(|v| matches!(v, KeyVerdict::Violation(_)))
        {
            "NOT linearizable"
        } else {
            "unknown (search budget exhausted)"
        }
    }

    /// The violations found.
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.keys.values().filter_map(|v| match v {
            KeyVerdict::Violation(v) => Some(v),
            _ => None,
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ops ({} ok, {} failed, {} indeterminate) on {} keys, {} search steps: {}",
            self.ops,
            self.ok,
            self.failed,
            self.indeterminate,
            self.keys.len(),
            self.steps.values().sum::<u64>(),
            self.verdict()
        )?;
        for v in self.violations() {
            write!(f, "{v}")?;
        }
        for (key, v) in &self.keys {
            if *v == KeyVerdict::Unknown {
                writeln!(f, "key {key:?}: search budget exhausted")?;
            }
        }
        Ok(())
    }
}

/// Checks a history with the default options.
///
/// # Panics
/// If an operation's outcome does not fit it (a `Read` of a write, a
/// `NotApplied` put, anything but `Read`, `Failed` or `Indeterminate` for a
/// get), or `invoke > complete`: the history was recorded wrongly.
pub fn check(history: &[Operation]) -> Report {
    check_with(history, CheckOptions::default())
}

/// Checks a history, key by key.
///
/// # Panics
/// As [`check`].
pub fn check_with(history: &[Operation], opts: CheckOptions) -> Report {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    let mut report = Report {
        ops: history.len(),
        ok: history.iter().filter(|o| o.outcome.is_ok()).count(),
        failed: history
            .iter()
            .filter(|o| o.outcome == Outcome::Failed)
            .count(),
        indeterminate: history
            .iter()
            .filter(|o| o.outcome == Outcome::Indeterminate)
            .count(),
        keys: BTreeMap::new(),
        steps: BTreeMap::new(),
    };
    for (key, ops) in by_key {
        let (verdict, steps) = check_key(key, &ops, opts.max_steps_per_key);
        report.keys.insert(key.to_owned(), verdict);
        report.steps.insert(key.to_owned(), steps);
    }
    report
}

/// A register state: 0 is absent, `v + 1` holds interned value `v`.
type State = u32;
const ABSENT: State = 0;

/// An operation reduced to what the search needs: which states it may be
/// linearized in, and the state it leaves.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Requires the state to be exactly this.
    Observe(State),
    /// Requires the condition, then sets the state.
    Write(Guard, State),
    /// Requires the condition not to hold; changes nothing.
    Refused(Guard),
}

/// A condition on the state.
#[derive(Clone, Copy, Debug)]
enum Guard {
    Always,
    Equals(State),
    Present,
    Absent,
}

impl Guard {
    fn holds(self, s: State) -> bool {
        match self {
            Guard::Always => true,
            Guard::Equals(v) => s == v,
            Guard::Present => s != ABSENT,
            Guard::Absent => s == ABSENT,
        }
    }
}

impl Step {
    /// The state after linearizing the step in state `s`, if it may be.
    fn apply(self, s: State) -> Option<State> {
        match self {
            Step::Observe(v) => (s == v).then_some(s),
            Step::Write(g, v) => g.holds(s).then_some(v),
            Step::Refused(g) => (!g.holds(s)).then_some(s),
        }
    }
}

/// Interns values of one key as states.
#[derive(Default)]
struct Interner(HashMap<String, State>);

impl Interner {
    fn state(&mut self, v: &str) -> State {
        let next = self.0.len() as State + 1;
        *self.0.entry(v.to_owned()).or_insert(next)
    }

    fn guard(&mut self, c: &Cond) -> Guard {
        match c {
            Cond::PrevValue(v) => Guard::Equals(self.state(v)),
            Cond::PrevExist(true) => Guard::Present,
            Cond::PrevExist(false) => Guard::Absent,
        }
    }
}

/// The search step of an operation, or `None` if it is left out (it had
/// certainly no effect and observed nothing).
fn to_step(op: &Operation, values: &mut Interner) -> Option<Step> {
    use Outcome::*;
    assert!(
        op.outcome == Indeterminate || op.invoke <= op.complete,
        "operation completes before it is invoked: {op}"
    );
    match (&op.op, &op.outcome) {
        (_, Failed) => None,
        (Op::Get, Read(None)) => Some(Step::Observe(ABSENT)),
        (Op::Get, Read(Some(v))) => Some(Step::Observe(values.state(v))),
        (Op::Get, Indeterminate) => None,
        (Op::Put(v), Applied | Indeterminate) => Some(Step::Write(Guard::Always, values.state(v))),
        (Op::Cas { cond, value }, Applied | Indeterminate) => {
            let g = values.guard(cond);
            Some(Step::Write(g, values.state(value)))
        }
        (Op::Cas { cond, .. }, NotApplied) => Some(Step::Refused(values.guard(cond))),
        (Op::Delete, Applied | Indeterminate) => Some(Step::Write(Guard::Present, ABSENT)),
        (Op::Delete, NotApplied) => Some(Step::Refused(Guard::Present)),
        _ => panic!("outcome does not fit the operation: {op}"),
    }
}

/// A set of operations, with an incrementally maintained hash (Zobrist
/// hashing: the XOR of a fixed random word per member).
#[derive(Clone, PartialEq, Eq)]
struct Bits {
    words: Vec<u64>,
    hash: u64,
}

impl Hash for Bits {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash);
    }
}

/// A fixed pseudo-random word per operation index (splitmix64).
fn zobrist(i: usize) -> u64 {
    let mut z = (i as u64)
        .wrapping_add(1)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Bits {
    fn new(n: usize) -> Self {
        Bits {
            words: vec![0; n.div_ceil(64)],
            hash: 0,
        }
    }

    fn flip(&mut self, i: usize) {
        self.words[i / 64] ^= 1 << (i % 64);
        self.hash ^= zobrist(i);
    }
}

const NIL: usize = usize::MAX;

/// One event of the list the search walks: the call or the return of
/// operation `op`.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    call: bool,
    /// The time; `u64::MAX` for the return of an indeterminate operation.
    time: u64,
}

/// Checks one key's operations. Returns the verdict and the steps taken.
fn check_key(key: &str, ops: &[&Operation], max_steps: u64) -> (KeyVerdict, u64) {
    let mut values = Interner::default();
    let kept: Vec<(&Operation, Step)> = ops
        .iter()
        .filter_map(|op| to_step(op, &mut values).map(|s| (*op, s)))
        .collect();
    let n = kept.len();
    if n == 0 {
        return (KeyVerdict::Linearizable, 0);
    }

    // The event list, in time order; at equal times calls come first, which
    // treats the two operations as concurrent (the weaker claim).
    let mut events: Vec<Event> = Vec::with_capacity(2 * n);
    for (i, (op, _)) in kept.iter().enumerate() {
        events.push(Event {
            op: i,
            call: true,
            time: op.invoke,
        });
        let time = if op.outcome == Outcome::Indeterminate {
            u64::MAX
        } else {
            op.complete
        };
        events.push(Event {
            op: i,
            call: false,
            time,
        });
    }
    events.sort_by_key(|e| (e.time, !e.call));
    let mut ret_of = vec![0; n];
    for (pos, e) in events.iter().enumerate() {
        if !e.call {
            ret_of[e.op] = pos;
        }
    }

    // A doubly linked list over `events` with a head sentinel at index
    // `head`. Lifting removes an operation's call and return; unlifting in
    // the reverse order of lifting restores them (dancing links).
    let head = events.len();
    let mut next: Vec<usize> = (1..=events.len()).collect();
    next[events.len() - 1] = NIL;
    next.push(0);
    let mut prev: Vec<usize> = (0..events.len()).map(|i| i.wrapping_sub(1)).collect();
    prev[0] = head;
    prev.push(NIL);
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, nx) = (prev[e], next[e]);
        next[p] = nx;
        if nx != NIL {
            prev[nx] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, nx) = (prev[e], next[e]);
        next[p] = e;
        if nx != NIL {
            prev[nx] = e;
        }
    };

    let mut linearized = Bits::new(n);
    let mut state: State = ABSENT;
    let mut cache: HashSet<(Bits, State)> = HashSet::new();
    // The search stack: (call event lifted, state before it).
    let mut stack: Vec<(usize, State)> = Vec::new();
    // For the violation report: the deepest stack seen and where it got stuck.
    let mut best: Vec<usize> = Vec::new();
    let mut best_stuck: Option<usize> = None;
    let mut steps: u64 = 0;
    let mut entry = next[head];
    loop {
        steps += 1;
        if steps > max_steps {
            return (KeyVerdict::Unknown, steps);
        }
        if entry == NIL {
            // Every operation is linearized.
            return (KeyVerdict::Linearizable, steps);
        }
        let ev = events[entry];
        if ev.call {
            if let Some(after) = kept[ev.op].1.apply(state) {
                linearized.flip(ev.op);
                let seen = (linearized, after);
                let fresh = !cache.contains(&seen);
                linearized = seen.0;
                if fresh {
                    cache.insert((linearized.clone(), after));
                    stack.push((entry, state));
                    state = after;
                    unlink(&mut next, &mut prev, entry);
                    unlink(&mut next, &mut prev, ret_of[ev.op]);
                    if stack.len() > best.len() {
                        best = stack.iter().map(|&(e, _)| events[e].op).collect();
                        best_stuck = None;
                    }
                    entry = next[head];
                    continue;
                }
                linearized.flip(ev.op);
            }
            entry = next[entry];
        } else {
            if ev.time == u64::MAX {
                // Returns are in time order, so every operation still in
                // the list is indeterminate: they can all go at the end,
                // where they change nothing anyone observed.
                return (KeyVerdict::Linearizable, steps);
            }
            if stack.len() == best.len() && best_stuck.is_none() {
                best_stuck = Some(ev.op);
            }
            // The operation returning here cannot be linearized before its
            // return in this order: undo the last choice and try the next.
            let Some((call, before)) = stack.pop() else {
                let violation = Violation {
                    key: key.to_owned(),
                    longest_prefix: best.iter().map(|&i| kept[i].0.clone()).collect(),
                    stuck_at: best_stuck.map(|i| kept[i].0.clone()),
                };
                return (KeyVerdict::Violation(violation), steps);
            };
            let op = events[call].op;
            relink(&mut next, &mut prev, ret_of[op]);
            relink(&mut next, &mut prev, call);
            linearized.flip(op);
            state = before;
            entry = next[call];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds operations tersely: times in milliseconds.
    fn op(
        client: u64,
        key: &str,
        op: Op,
        invoke: u64,
        complete: u64,
        outcome: Outcome,
    ) -> Operation {
        Operation {
            client,
            key: key.to_owned(),
            op,
            invoke: invoke * 1_000_000,
            complete: complete * 1_000_000,
            outcome,
        }
    }

    fn put(v: &str) -> Op {
        Op::Put(v.to_owned())
    }

    fn read(v: Option<&str>) -> Outcome {
        Outcome::Read(v.map(str::to_owned))
    }

    fn cas(prev: &str, v: &str) -> Op {
        Op::Cas {
            cond: Cond::PrevValue(prev.to_owned()),
            value: v.to_owned(),
        }
    }

    fn assert_valid(h: &[Operation]) {
        let r = check(h);
        assert!(r.is_linearizable(), "expected linearizable:\n{r}");
    }

    fn assert_violation(h: &[Operation]) -> Violation {
        let r = check(h);
        assert!(!r.is_linearizable(), "expected a violation:\n{r}");
        r.violations().next().expect("a violation").clone()
    }

    #[test]
    fn sequential_history_is_linearizable() {
        use Outcome::*;
        assert_valid(&[
            op(1, "k", Op::Get, 0, 1, read(None)),
            op(1, "k", put("a"), 2, 3, Applied),
            op(1, "k", Op::Get, 4, 5, read(Some("a"))),
            op(1, "k", cas("a", "b"), 6, 7, Applied),
            op(1, "k", cas("a", "c"), 8, 9, NotApplied),
            op(1, "k", Op::Get, 10, 11, read(Some("b"))),
            op(1, "k", Op::Delete, 12, 13, Applied),
            op(1, "k", Op::Delete, 14, 15, NotApplied),
            op(
                1,
                "k",
                Op::Cas {
                    cond: Cond::PrevExist(false),
                    value: "d".into(),
                },
                16,
                17,
                Applied,
            ),
            op(
                1,
                "k",
                Op::Cas {
                    cond: Cond::PrevExist(false),
                    value: "e".into(),
                },
                18,
                19,
                NotApplied,
            ),
            op(1, "k", Op::Get, 20, 21, read(Some("d"))),
        ]);
    }

    #[test]
    fn stale_read_is_caught() {
        use Outcome::*;
        let v = assert_violation(&[
            op(1, "k", put("a"), 0, 1, Applied),
            op(1, "k", put("b"), 2, 3, Applied),
            // Invoked after "b" was acknowledged, yet sees "a".
            op(2, "k", Op::Get, 4, 5, read(Some("a"))),
        ]);
        assert_eq!(v.key, "k");
        assert_eq!(v.stuck_at.expect("stuck").op, Op::Get);
    }

    #[test]
    fn lost_write_is_caught() {
        use Outcome::*;
        assert_violation(&[
            op(1, "k", put("a"), 0, 1, Applied),
            op(2, "k", Op::Get, 5, 6, read(None)),
        ]);
        // Lost among concurrent traffic on other keys, which stays valid.
        let r = check(&[
            op(1, "x", put("1"), 0, 10, Applied),
            op(2, "k", put("a"), 0, 1, Applied),
            op(3, "x", Op::Get, 2, 3, read(None)),
            op(2, "k", Op::Get, 5, 6, read(None)),
            op(3, "x", Op::Get, 11, 12, read(Some("1"))),
        ]);
        assert_eq!(r.keys["x"], KeyVerdict::Linearizable);
        assert!(matches!(r.keys["k"], KeyVerdict::Violation(_)), "{r}");
    }

    #[test]
    fn bad_cas_is_caught() {
        use Outcome::*;
        // Two CAS from the same old value cannot both succeed.
        assert_violation(&[
            op(1, "k", put("a"), 0, 1, Applied),
            op(1, "k", cas("a", "b"), 2, 5, Applied),
            op(2, "k", cas("a", "c"), 3, 6, Applied),
        ]);
        // A CAS that failed although the value matched.
        assert_violation(&[
            op(1, "k", put("a"), 0, 1, Applied),
            op(2, "k", cas("a", "b"), 2, 3, NotApplied),
        ]);
        // A CAS on an absent key succeeds only with prev_exist=false.
        assert_violation(&[op(2, "k", cas("a", "b"), 2, 3, Applied)]);
        // A delete that found nothing although the key existed.
        assert_violation(&[
            op(1, "k", put("a"), 0, 1, Applied),
            op(2, "k", Op::Delete, 2, 3, NotApplied),
        ]);
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        use Outcome::*;
        // The read overlaps the write: both answers are fine.
        for seen in [None, Some("a")] {
            assert_valid(&[
                op(1, "k", put("a"), 0, 10, Applied),
                op(2, "k", Op::Get, 1, 2, read(seen)),
            ]);
        }
        // Two overlapping writes and reads that see them in an order that
        // only works with "b" before "a".
        assert_valid(&[
            op(1, "k", put("a"), 0, 10, Applied),
            op(2, "k", put("b"), 0, 10, Applied),
            op(3, "k", Op::Get, 1, 2, read(Some("b"))),
            op(3, "k", Op::Get, 3, 4, read(Some("a"))),
            op(4, "k", Op::Get, 11, 12, read(Some("a"))),
        ]);
        // But once a read saw "a" after "b", no later read may see "b".
        assert_violation(&[
            op(1, "k", put("a"), 0, 10, Applied),
            op(2, "k", put("b"), 0, 10, Applied),
            op(3, "k", Op::Get, 1, 2, read(Some("b"))),
            op(3, "k", Op::Get, 3, 4, read(Some("a"))),
            op(4, "k", Op::Get, 5, 6, read(Some("b"))),
        ]);
    }

    #[test]
    fn indeterminate_writes_may_apply_late_or_never() {
        use Outcome::*;
        // Took effect long after the client gave up.
        assert_valid(&[
            op(1, "k", put("a"), 0, 1, Applied),
            op(2, "k", put("x"), 2, 3, Indeterminate),
            op(3, "k", Op::Get, 4, 5, read(Some("a"))),
            op(3, "k", Op::Get, 100, 101, read(Some("x"))),
        ]);
        // Never took effect.
        assert_valid(&[
            op(1, "k", put("a"), 0, 1, Applied),
            op(2, "k", put("x"), 2, 3, Indeterminate),
            op(3, "k", Op::Get, 100, 101, read(Some("a"))),
        ]);
        // An indeterminate CAS and delete, both applied later.
        assert_valid(&[
            op(1, "k", put("a"), 0, 1, Applied),
            op(2, "k", cas("a", "b"), 2, 3, Indeterminate),
            op(3, "k", Op::Delete, 4, 5, Indeterminate),
            op(1, "k", Op::Get, 6, 7, read(Some("b"))),
            op(1, "k", Op::Get, 8, 9, read(None)),
        ]);
        // But not before it was invoked.
        assert_violation(&[
            op(1, "k", Op::Get, 0, 1, read(Some("x"))),
            op(2, "k", put("x"), 2, 3, Indeterminate),
        ]);
        // And not once it was overwritten and then observed gone...
        assert_violation(&[
            op(2, "k", put("x"), 0, 1, Indeterminate),
            op(1, "k", put("a"), 2, 3, Applied),
            op(1, "k", Op::Get, 4, 5, read(Some("x"))),
            op(1, "k", Op::Get, 6, 7, read(Some("a"))),
        ]);
    }

    #[test]
    fn failed_writes_must_not_take_effect() {
        use Outcome::*;
        assert_violation(&[
            op(1, "k", put("x"), 0, 1, Failed),
            op(2, "k", Op::Get, 2, 3, read(Some("x"))),
        ]);
        assert_valid(&[
            op(1, "k", put("x"), 0, 1, Failed),
            op(2, "k", Op::Get, 2, 3, read(None)),
            op(3, "k", Op::Get, 2, 3, Failed),
            op(3, "k", Op::Get, 4, 5, Indeterminate),
        ]);
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_put_cannot_be_refused() {
        check(&[op(1, "k", put("x"), 0, 1, Outcome::NotApplied)]);
    }

    /// A valid history of `clients` concurrent clients doing `n` operations
    /// on `keys` keys: each operation takes effect at a random instant
    /// between its invocation and its completion, against a real map.
    /// `indeterminate` is the share of writes whose answer is lost (half of
    /// them take effect), `failed` the share refused outright.
    pub(super) fn generate(
        seed: u64,
        keys: usize,
        clients: usize,
        n: usize,
        indeterminate: f64,
        failed: f64,
    ) -> Vec<Operation> {
        #[derive(Clone)]
        enum Phase {
            Idle,
            Invoked(Operation),
            Done(Operation),
        }
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut map: HashMap<String, String> = HashMap::new();
        let mut phases = vec![Phase::Idle; clients];
        let mut out = Vec::with_capacity(n);
        let mut started = 0;
        let mut seq = 0u64;
        let mut t = 0u64;
        while out.len() < n {
            t += 1 + rng.u64(0..3);
            let c = rng.usize(0..clients);
            phases[c] = match std::mem::replace(&mut phases[c], Phase::Idle) {
                Phase::Idle if started < n => {
                    started += 1;
                    seq += 1;
                    let key = format!("k{}", rng.usize(0..keys));
                    let value = format!("c{c}-{seq}");
                    let current = map.get(&key).cloned();
                    let op = match rng.u8(0..10) {
                        0..=3 => Op::Get,
                        4..=5 => Op::Put(value),
                        6..=8 => Op::Cas {
                            cond: match (rng.bool(), &current) {
                                (true, Some(v)) => Cond::PrevValue(v.clone()),
                                (true, None) => Cond::PrevValue("nope".into()),
                                (false, _) => Cond::PrevExist(rng.bool()),
                            },
                            value,
                        },
                        _ => Op::Delete,
                    };
                    Phase::Invoked(Operation {
                        client: c as u64,
                        key,
                        op,
                        invoke: t,
                        complete: 0,
                        outcome: Outcome::Failed,
                    })
                }
                Phase::Idle => Phase::Idle,
                Phase::Invoked(mut o) => {
                    // The linearization point.
                    let is_write = o.op != Op::Get;
                    let roll = rng.f64();
                    if is_write && roll < failed {
                        o.outcome = Outcome::Failed;
                    } else {
                        let cur = map.get(&o.key).cloned();
                        let (outcome, new) = match &o.op {
                            Op::Get => (Outcome::Read(cur.clone()), cur),
                            Op::Put(v) => (Outcome::Applied, Some(v.clone())),
                            Op::Cas { cond, value } => {
                                let holds = match cond {
                                    Cond::PrevValue(p) => cur.as_ref() == Some(p),
                                    Cond::PrevExist(e) => cur.is_some() == *e,
                                };
                                if holds {
                                    (Outcome::Applied, Some(value.clone()))
                                } else {
                                    (Outcome::NotApplied, cur)
                                }
                            }
                            Op::Delete => match cur {
                                Some(_) => (Outcome::Applied, None),
                                None => (Outcome::NotApplied, None),
                            },
                        };
                        let lost = is_write && roll < failed + indeterminate;
                        // A lost answer: half the time the write never
                        // happened at all.
                        if !(lost && rng.bool()) {
                            match new {
                                Some(v) => map.insert(o.key.clone(), v),
                                None => map.remove(&o.key),
                            };
                        }
                        o.outcome = if lost {
                            Outcome::Indeterminate
                        } else {
                            outcome
                        };
                    }
                    Phase::Done(o)
                }
                Phase::Done(mut o) => {
                    o.complete = t;
                    out.push(o);
                    Phase::Idle
                }
            };
        }
        out
    }

    #[test]
    fn generated_valid_histories_pass() {
        for seed in 0..20 {
            let h = generate(seed, 3, 5, 300, 0.05, 0.05);
            let r = check(&h);
            assert!(r.is_linearizable(), "seed {seed}:\n{r}");
        }
    }

    #[test]
    fn an_injected_stale_read_in_a_generated_history_is_caught() {
        let mut caught = 0;
        for seed in 0..10 {
            let mut h = generate(seed, 1, 4, 400, 0.0, 0.0);
            // A read that starts after a put P completed and after another
            // applied put Q, invoked after P completed, completed: with
            // unique values, seeing P's value is stale.
            let puts: Vec<usize> = (0..h.len())
                .filter(|&i| matches!(h[i].op, Op::Put(_)) && h[i].outcome == Outcome::Applied)
                .collect();
            let found = (0..h.len()).find_map(|r| {
                if h[r].op != Op::Get {
                    return None;
                }
                puts.iter().find_map(|&p| {
                    puts.iter()
                        .any(|&q| h[q].invoke > h[p].complete && h[q].complete < h[r].invoke)
                        .then_some((r, p))
                })
            });
            let Some((r, p)) = found else { continue };
            let Op::Put(v) = h[p].op.clone() else {
                unreachable!()
            };
            h[r].outcome = Outcome::Read(Some(v));
            assert!(!check(&h).is_linearizable(), "seed {seed}");
            caught += 1;
        }
        assert!(caught > 5, "too few histories had a stale read to inject");
    }

    #[test]
    fn thousands_of_operations_per_key_are_checked() {
        // 5,000 operations per key, concurrency 8, with indeterminate and
        // failed writes. No timing assertion: it must finish and say valid.
        let h = generate(42, 2, 8, 10_000, 0.01, 0.01);
        let started = Instant::now();
        let r = check(&h);
        eprintln!("{r}checked in {:?}", started.elapsed());
        assert!(r.is_linearizable(), "{r}");
        assert!(r.indeterminate > 0 && r.failed > 0);
    }
}
