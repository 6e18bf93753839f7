//! End-to-end tests: the real `portcullis` binary, on port 0, over a real PostgreSQL.

mod cli;
mod serve;
mod support;
