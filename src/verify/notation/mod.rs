//! Notation signature verification (in progress).
