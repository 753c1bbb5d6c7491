//! Helpers shared by the crate's unit tests.

use crate::types::Entry;

/// An empty entry at `index` of `term`.
pub(crate) fn ent(term: u64, index: u64) -> Entry {
    Entry::new(term, index, Vec::new())
}

/// Entries at indexes `from..from + terms.len()`, with the given terms.
pub(crate) fn ents(from: u64, terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &t)| ent(t, from + i as u64))
        .collect()
}
