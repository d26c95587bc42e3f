//! recoup as a user sees it: real HTTP, a real Redis per test, the real binary where it matters.

// A test (and a benchmark) may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

mod backfill;
mod chaos;
mod credentials;
mod dashboard;
mod deadletters;
mod decisions;
mod early;
mod echoes;
mod experiments;
mod fake_stripe;
mod feedback;
mod helpers;
mod learning;
mod links;
mod networks;
mod nudges;
mod openapi;
mod operations;
mod page;
mod process;
mod reconcile;
mod retries;
mod simulate;
mod smtp_sink;
mod status;
mod store;
mod tune;
mod webhook;
mod worker;
