//! End-to-end tests of the `portcullis` binary: see `e2e/`.
