//! recoup's pure core: what Stripe told recoup ([`event`]), what recoup decides about it
//! ([`policy`]), what recovery came to over a period ([`dashboard`]), and keeping credentials out
//! of the words it keeps ([`redact`]).
//!
//! Everything here is plain data in, decisions out. Nothing reads a clock, touches Redis, speaks
//! HTTP, reads a file or logs — the time is an argument, and the shell (the `recoup` crate) does
//! the I/O before and after. That is what lets the same [`policy::decide`] run in `recoup serve`,
//! in the tests and on the simulator's virtual clock, and it is kept so by the build: this crate's
//! `Cargo.toml` lists only pure dependencies.

// Tests may unwrap: a panic there is the failure report. Production code may not.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod dashboard;
pub mod event;
pub mod policy;
pub mod redact;
