//! recoup wins back failed subscription payments for businesses on Stripe Billing.
//!
//! Stripe posts signed webhooks to recoup; recoup verifies each one, stores it durably in Redis
//! exactly once, and decides per invoice, card and customer when to retry, whom to nudge, and when
//! to pause or cancel. This crate is the library behind the `recoup` binary:
//!
//! - [`config`] — typed settings from `config/recoup.toml` and the environment;
//! - [`webhook`] — signature verification, the typed events, `POST /webhooks/stripe`;
//! - [`policy`] — every decision, as pure functions over a case; [`dashboard`] — what recovery
//!   came to per day and over a period, from counters;
//! - [`store`] — Redis: dedupe and the inbox, in one atomic step; cases, timers and card histories;
//! - [`worker`] — the scheduler and executors: inbox, timers, charges, nudges, decisions;
//! - [`processor`] — Stripe, as the worker calls it; [`notify`] — the nudge channels; [`links`] —
//!   the update links nudges carry, and `GET /fix/<token>` that opens them;
//! - [`backfill`] — the events webhooks missed, from Stripe's events API; [`reconcile`] — Stripe's
//!   open invoices against the open cases;
//! - [`api`] — the support API; [`story`] — a case told for people; [`page`] — the status page,
//!   where support reads it;
//! - [`cli`] — the `recoup` commands, their flags and exit codes; [`demo`] — `recoup demo`, the
//!   whole product in one process;
//! - [`server`] — the HTTP service, operations endpoints and graceful shutdown; [`http`] — the one
//!   JSON error body every endpoint answers with;
//! - [`telemetry`] — logs and Prometheus metrics; [`redact`] — credentials out of URLs in logs and
//!   on timelines.

// Tests may unwrap: a panic there is the failure report. Production code may not.
#![cfg_attr(test, allow(clippy::unwrap_used))]

// The pure core lives in its own crate (src/core); its modules read as if they were here.
pub use recoup_core::{dashboard, event, policy, redact};

pub mod api;
pub mod backfill;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod http;
pub mod links;
pub mod notify;
pub mod page;
pub mod processor;
pub mod reconcile;
pub mod server;
pub mod sim;
pub mod store;
pub mod story;
pub mod telemetry;
pub mod webhook;
pub mod worker;
