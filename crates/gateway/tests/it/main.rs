//! Gateway tests: the in-process router over a fresh database.

mod envelope;
