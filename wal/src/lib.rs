//! Segmented, memory-mapped write-ahead log (work in progress).
