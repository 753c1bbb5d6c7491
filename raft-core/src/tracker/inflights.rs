use std::collections::VecDeque;

/// One append message in flight: the index of its last entry and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Inflight {
    index: u64,
    bytes: u64,
}

/// The sliding window of append messages sent to a follower in
/// `Replicate` state and not yet acknowledged (etcd's `Inflights`).
///
/// The window is bounded both by the number of messages (`size`) and by
/// their total byte size (`max_bytes`, 0 for no limit); the leader stops
/// streaming while it is [`full`](Inflights::full).
///
/// The ring buffer starts empty and doubles as needed up to `size`: most
/// followers keep few messages in flight, and a leader holds one window per
/// follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inflights {
    // Invariant: indexes strictly increase from front to back.
    // Invariant: buffer.len() <= size.
    buffer: VecDeque<Inflight>,
    // Invariant: bytes == sum of buffer[..].bytes.
    bytes: u64,
    size: usize,
    max_bytes: u64,
}

impl Inflights {
    /// An empty window of at most `size` messages and (unless `max_bytes` is
    /// 0) fewer than `max_bytes` bytes. Allocates nothing until the first
    /// [`add`](Inflights::add).
    pub fn new(size: usize, max_bytes: u64) -> Self {
        Inflights {
            buffer: VecDeque::new(),
            bytes: 0,
            size,
            max_bytes,
        }
    }

    /// Records a message whose last entry is `index`, of `bytes` bytes.
    ///
    /// # Panics
    /// If the window is [`full`](Inflights::full), or `index` is not greater
    /// than the last index added: both are bugs in the caller's flow control.
    pub fn add(&mut self, index: u64, bytes: u64) {
        assert!(
            !self.full(),
            "cannot add index {index} into a full Inflights \
             (count {}/{}, bytes {}/{})",
            self.buffer.len(),
            self.size,
            self.bytes,
            self.max_bytes
        );
        if let Some(last) = self.buffer.back() {
            assert!(
                index > last.index,
                "Inflights indexes must increase: adding {index} after {}",
                last.index
            );
        }
        if self.buffer.len() == self.buffer.capacity() {
            // Double, capped at `size`; `full()` guarantees len < size here.
            let target = (self.buffer.capacity() * 2).clamp(1, self.size);
            self.buffer.reserve_exact(target - self.buffer.len());
        }
        self.buffer.push_back(Inflight { index, bytes });
        self.bytes += bytes;
    }

    /// Frees the messages whose last index is `<= to` (they were
    /// acknowledged).
    pub fn free_le(&mut self, to: u64) {
        while let Some(front) = self.buffer.front() {
            if front.index > to {
                break;
            }
            self.bytes -= front.bytes;
            self.buffer.pop_front();
        }
    }

    /// Whether no more messages may be sent: `size` messages are in flight,
    /// or (with a byte limit) at least `max_bytes` bytes are.
    pub fn full(&self) -> bool {
        self.buffer.len() == self.size || (self.max_bytes != 0 && self.bytes >= self.max_bytes)
    }

    /// The number of messages in flight.
    pub fn count(&self) -> usize {
        self.buffer.len()
    }

    /// The total size of the messages in flight.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The maximum number of messages in flight.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The byte limit (0 for none).
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Frees everything (the buffer's memory is kept for reuse).
    pub fn reset(&mut self) {
        self.buffer.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indexes(inf: &Inflights) -> Vec<u64> {
        inf.buffer.iter().map(|i| i.index).collect()
    }

    #[test]
    fn add_until_full_by_count() {
        let mut inf = Inflights::new(10, 0);
        assert_eq!(inf.buffer.capacity(), 0, "no allocation up front");
        for i in 0..5 {
            inf.add(i, 100 + i);
        }
        assert_eq!(inf.count(), 5);
        assert_eq!(inf.bytes(), 510);
        assert!(!inf.full());
        for i in 5..10 {
            inf.add(i, 100 + i);
        }
        assert_eq!(inf.count(), 10);
        assert_eq!(inf.bytes(), 1045);
        assert!(inf.full());
        assert!(inf.buffer.capacity() >= 10);
    }

    #[test]
    fn wraps_around_after_freeing() {
        let mut inf = Inflights::new(10, 0);
        for i in 0..10 {
            inf.add(i, 1);
        }
        inf.free_le(4);
        assert_eq!(inf.count(), 5);
        assert_eq!(indexes(&inf), vec![5, 6, 7, 8, 9]);
        for i in 10..15 {
            inf.add(i, 1);
        }
        assert!(inf.full());
        assert_eq!(indexes(&inf), (5..15).collect::<Vec<_>>());
        inf.free_le(8);
        assert_eq!(indexes(&inf), (9..15).collect::<Vec<_>>());
        assert_eq!(inf.bytes(), 6);
        // Freeing below the first index is a no-op; freeing past the last
        // empties the window.
        inf.free_le(3);
        assert_eq!(inf.count(), 6);
        inf.free_le(100);
        assert_eq!(inf.count(), 0);
        assert_eq!(inf.bytes(), 0);
    }

    #[test]
    fn free_le_between_indexes() {
        let mut inf = Inflights::new(10, 0);
        for i in [10, 20, 30] {
            inf.add(i, 5);
        }
        inf.free_le(25);
        assert_eq!(indexes(&inf), vec![30]);
        assert_eq!(inf.bytes(), 5);
    }

    #[test]
    fn full_by_bytes() {
        let mut inf = Inflights::new(10, 1000);
        inf.add(1, 400);
        assert!(!inf.full());
        inf.add(2, 599);
        assert!(!inf.full());
        inf.add(3, 1);
        assert!(inf.full(), "1000 bytes reach the limit");
        inf.free_le(1);
        assert!(!inf.full());
        // A single message larger than the limit is accepted, then fills.
        inf.reset();
        inf.add(4, 5000);
        assert!(inf.full());
    }

    #[test]
    fn reset_empties_and_keeps_limits() {
        let mut inf = Inflights::new(3, 0);
        for i in 1..=3 {
            inf.add(i, 7);
        }
        assert!(inf.full());
        inf.reset();
        assert_eq!(inf.count(), 0);
        assert_eq!(inf.bytes(), 0);
        assert!(!inf.full());
        assert_eq!(inf.size(), 3);
        inf.add(1, 1);
        assert_eq!(inf.count(), 1);
    }

    #[test]
    fn grows_lazily_up_to_size() {
        let mut inf = Inflights::new(5, 0);
        inf.add(1, 0);
        assert!(inf.buffer.capacity() < 5);
        for i in 2..=5 {
            inf.add(i, 0);
        }
        assert!(inf.full());
    }

    #[test]
    #[should_panic(expected = "full Inflights")]
    fn add_to_full_panics() {
        let mut inf = Inflights::new(2, 0);
        inf.add(1, 0);
        inf.add(2, 0);
        inf.add(3, 0);
    }

    #[test]
    #[should_panic(expected = "must increase")]
    fn add_out_of_order_panics() {
        let mut inf = Inflights::new(4, 0);
        inf.add(5, 0);
        inf.add(5, 0);
    }

    #[test]
    fn zero_size_is_always_full() {
        let inf = Inflights::new(0, 0);
        assert!(inf.full());
    }
}
