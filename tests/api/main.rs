//! recoup as a user sees it: real HTTP, a real Redis per test, the real binary where it matters.

mod helpers;
mod operations;
mod process;
mod status;
mod store;
mod webhook;
mod worker;
