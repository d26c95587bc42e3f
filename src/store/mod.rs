//! Where everything durable lives: the inbox of verified events, cases, their timers, the indexes
//! support looks cases up by, card histories, dead letters, the test clock and the status page's
//! sessions.
//!
//! The store is split into roles, one trait each, so a part's signature says what it may do with
//! Redis: [`Health`] (does it answer), [`Inbox`] (verified events, exactly once), [`Cases`] (cases,
//! compare-and-set, and the indexes support looks them up by), [`Cards`] (card histories),
//! [`Counters`] (counts, once-only marks and leases that expire by themselves), [`Outcomes`]
//! (what attempts came to), [`Experiments`] (what each experiment arm's invoices came to),
//! [`Dashboard`] (what each day's final invoices came to), [`EarlyEvents`]
//! (events about a customer that came before their case), [`Timers`]
//! (claiming due wake-ups), [`TestClock`], [`Sessions`] (the status page's sign-ins) and
//! [`Answers`] (feedback links already answered). [`Store`]
//! is every role together, for the parts that need them all
//! (the worker); code holding a concrete store imports the roles whose methods it calls.
//! [`RedisStore`] is production and [`MemoryStore`] serves the one-process modes and fast tests;
//! both play every role and pass the same suite (`tests/api/store.rs`). The store knows nothing of
//! policy: it saves what it is given, under the promises each role's doc states.

pub(crate) mod codec;
pub mod memory;
pub mod redis;

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;
use crate::dashboard::day::{self, DayCounts};
use crate::dashboard::period::Period;
use crate::event::Event;
use crate::policy::budget::{CardHistory, Try};
use crate::policy::experiment::outcome::{ArmCounts, Contribution};
use crate::policy::learning::Observation;
use crate::policy::{Assignment, Case, Evidence};

/// How many due-time sets the timers are spread over. Fixed: a case's shard is part of its keys,
/// so changing this would strand the timers already stored.
pub const TIMER_SHARDS: u16 = 16;

/// How many times an inbox entry (or a case's wake-up) may fail for a reason of its own before it
/// is moved to the dead letters (or parked).
pub const MAX_FAILURES: u32 = 5;

/// The format of the inbox entries this release writes and reads (the entry's `v` field; absent is
/// `1`). An entry of a later format was stored by a newer recoup, as happens during a rolling
/// deploy: a worker of this release leaves it for a newer one instead of dead-lettering it.
pub const INBOX_FORMAT: u32 = 1;

/// The shard holding an invoice's case and wake-up entry.
pub fn shard_of(invoice_id: &str) -> u16 {
    (fnv1a(invoice_id) % u64::from(TIMER_SHARDS)) as u16
}

/// FNV-1a: spreads ids over shards and buckets the same way in every build and on every machine
/// (which std's hasher does not promise), as stored key names require.
fn fnv1a(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What happened to an event handed to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingest {
    /// Newly appended to the inbox under this stream entry id.
    Stored { entry_id: String },
    /// The event id was seen before; nothing was written.
    Duplicate,
}

/// How an event reached the inbox. The newest event stored by each of the first two is remembered
/// ([`Inbox::arrivals`]), so an operator can see when webhooks stopped arriving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Delivered by Stripe to `POST /webhooks/stripe`.
    Webhook,
    /// Fetched from Stripe's events API by a backfill.
    Backfill,
    /// Made by reconciling from an invoice Stripe lists ([`crate::policy::reconcile`]).
    Reconcile,
}

impl Arrival {
    pub fn as_str(self) -> &'static str {
        match self {
            Arrival::Webhook => "webhook",
            Arrival::Backfill => "backfill",
            Arrival::Reconcile => "reconcile",
        }
    }

    /// Whether the newest event stored this way is remembered: only Stripe's own events say
    /// anything about how Stripe reaches recoup.
    pub fn remembered(self) -> bool {
        self != Arrival::Reconcile
    }
}

/// When the newest events arrived, by Stripe's `created`, and how far backfilling has got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arrivals {
    /// The newest `created` of an event stored from a webhook.
    pub webhook: Option<Timestamp>,
    /// The newest `created` of an event a backfill stored (one no webhook had brought).
    pub backfill: Option<Timestamp>,
    /// Every event created before this was listed by a backfill that ran without a gap from the
    /// previous one (see [`Inbox::mark_backfilled`]).
    pub backfilled: Option<Timestamp>,
}

impl Arrivals {
    /// The newest event stored from Stripe, however it came.
    pub fn newest(&self) -> Option<Timestamp> {
        self.webhook.max(self.backfill)
    }
}

/// An event read from the inbox, to be acknowledged once its cases are saved.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxEntry {
    pub entry_id: String,
    pub event: Event,
    /// How many times the entry has been handed to a worker, this time included (the stream's
    /// delivery counter): what caps an entry that keeps failing for passing reasons.
    pub deliveries: u32,
}

/// The outcome of a compare-and-set save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Written; the case now has this version.
    Saved { version: u64 },
    /// Someone saved the case since it was loaded; load it again and decide again.
    Conflict,
}

/// A claimed wake-up, with the case as it was read in the same step (saving the claimer a read).
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub invoice_id: String,
    /// `Ok(None)` when the case is gone; an unreadable case is the claimer's to report.
    pub case: Result<Option<Case>, String>,
}

/// What became of an inbox entry whose processing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Left pending; it will be reclaimed after the lease and tried again.
    WillRetry { failures: u32 },
    /// Moved to the dead letters and taken off the inbox.
    DeadLettered,
}

/// An inbox entry that failed [`MAX_FAILURES`] times (or kept failing for passing reasons, or
/// could not be read), kept for inspection and replay.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadLetter {
    /// The dead letter's own id (its entry in the dead-letter stream), which `recoup deadletters`
    /// names it by.
    pub id: String,
    /// The inbox entry it was.
    pub entry_id: String,
    pub event_id: String,
    pub event_type: String,
    pub failures: u32,
    /// How many times it was handed to a worker.
    pub deliveries: u32,
    pub error: String,
    pub at: Timestamp,
    /// The normalised event, as it was in the inbox.
    pub event: String,
}

/// A case whose wake-up failed [`MAX_FAILURES`] times for a reason of its own (say, a case no
/// release can read): taken off the schedule, so it is not retried every lease forever, and kept
/// for inspection until someone puts it back.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Parked {
    pub invoice_id: String,
    pub failures: u32,
    pub error: String,
    pub at: Timestamp,
}

/// The store could not do what was asked, within its time bound.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach Redis at {url}: {reason} (check REDIS_URL and that Redis is running)")]
    Unreachable { url: String, reason: String },
    #[error("Redis did not answer within {0} ms")]
    Timeout(u64),
    #[error("Redis error: {0}")]
    Redis(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// Stored by a newer recoup in a format this release does not know (a rolling deploy): left
    /// for a newer worker, not treated as damaged.
    #[error("stored by a newer recoup: {0}")]
    Newer(String),
}

/// Whether the store answers at all: what `/readyz` reports.
///
/// A role of its own rather than part of [`Inbox`]: readiness is asked of every process, a worker's
/// as much as a receiver's, and is about the store as a whole, not about events; the operations
/// endpoints that ask it need no right to touch the inbox.
pub trait Health: Send + Sync {
    /// Whether the store answers, within its time bound.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The inbox: verified events, held exactly once until a worker has acted on them.
///
/// - **ingest**: [`Ingest::Stored`] means the event is in the inbox exactly once, `Duplicate` that
///   it was already there; any error means nothing was acknowledged, so Stripe must deliver again;
/// - **reading**: an entry read by a consumer stays *pending* until acknowledged; one pending for
///   longer than a lease may be reclaimed by any consumer;
/// - **failing**: an entry that failed [`MAX_FAILURES`] times moves to the dead letters with its
///   last error.
pub trait Inbox: Send + Sync {
    /// Dedupes `event` on its id and appends it to the inbox, atomically, as a delivered webhook.
    fn ingest(&self, event: &Event) -> impl Future<Output = Result<Ingest, StoreError>> + Send {
        self.ingest_via(event, Arrival::Webhook)
    }

    /// Dedupes `event` on its id and appends it to the inbox, atomically; a new event that came
    /// `via` a [remembered](Arrival::remembered) way moves that way's newest-event time forward in
    /// the same step.
    fn ingest_via(
        &self,
        event: &Event,
        via: Arrival,
    ) -> impl Future<Output = Result<Ingest, StoreError>> + Send;

    /// When the newest events arrived, and how far backfilling has got.
    fn arrivals(&self) -> impl Future<Output = Result<Arrivals, StoreError>> + Send;

    /// Records that every event created before `through` has been listed by a backfill; a mark
    /// older than the one stored changes nothing.
    fn mark_backfilled(
        &self,
        through: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads up to `max` new inbox entries for `consumer`, waiting up to `wait` for the first.
    fn read_inbox(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<InboxEntry>, StoreError>> + Send;

    /// Takes over up to `max` entries that have been pending for longer than `lease`, with how
    /// many times each was delivered. An entry of a newer [`INBOX_FORMAT`] is left pending for a
    /// worker that reads it, until it has been delivered `give_up` times: then it is dead-lettered.
    fn reclaim_inbox(
        &self,
        consumer: &str,
        lease: Duration,
        max: usize,
        give_up: u32,
    ) -> impl Future<Output = Result<Vec<InboxEntry>, StoreError>> + Send;

    /// Acknowledges an entry and removes it from the inbox.
    fn ack(&self, entry_id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records a failed attempt at an entry; the [`MAX_FAILURES`]th moves it to the dead letters.
    fn fail(
        &self,
        entry: &InboxEntry,
        error: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Failure, StoreError>> + Send;

    /// Moves an entry to the dead letters now, with its last error: one that kept failing for
    /// passing reasons over too many deliveries.
    fn give_up(
        &self,
        entry: &InboxEntry,
        error: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The newest `max` dead letters, newest first.
    fn dead_letters(
        &self,
        max: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, StoreError>> + Send;

    /// The dead letter named `id`: its own id, or the id of the event in it (the newest such).
    fn dead_letter(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<DeadLetter>, StoreError>> + Send;

    /// Puts dead letter `id` (its own id) back into the inbox as a new entry, and removes it from
    /// the dead letters, in one step; the new entry's id, or `None` when there is no such dead
    /// letter. The event is not deduplicated again: it was stored once, and is being retried.
    fn replay(&self, id: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Keeps an entry `consumer` holds claimed for another lease (a worker still at work on it, say
    /// waiting for Stripe), without counting a delivery; `false` when `consumer` no longer holds it
    /// (its lease ran out and another worker took it over, or it is done).
    fn renew_entry(
        &self,
        consumer: &str,
        entry_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Forgets a consumer that has nothing pending (a worker shutting down cleanly).
    fn retire_consumer(
        &self,
        consumer: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Cases, one per invoice, and the indexes support finds them by (customer, subscription).
///
/// [`Cases::save_case`] writes only if the stored version is still the one the case was loaded at
/// (compare-and-set), and writes the case's next wake-up time in the same atomic step: saving a
/// case is what sets its [`Timers`] entry, so the two never disagree.
pub trait Cases: Send + Sync {
    /// The case of an invoice, at its stored version.
    fn load_case(
        &self,
        invoice_id: &str,
    ) -> impl Future<Output = Result<Option<Case>, StoreError>> + Send;

    /// Saves `case` if the stored version is still `case.version` (0 = not stored yet), with its
    /// wake-up time; the saved case has the returned version.
    fn save_case(&self, case: &Case) -> impl Future<Output = Result<Saved, StoreError>> + Send;

    /// Every customer with a case, each once.
    fn customers(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// When the case will be forgotten: a case whose dunning is over (a final state, nothing left
    /// to do) is kept for `redis.case_retention_secs` after its last save, then removed. `None`
    /// while it is kept for good (still in dunning, or a store that keeps everything).
    fn forgotten_at(
        &self,
        invoice_id: &str,
    ) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;

    /// Removes the customer and subscription index entries of the cases forgotten since the last
    /// sweep; how many cases that was.
    fn sweep_forgotten(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The cases of a customer, newest first.
    fn cases_of_customer(
        &self,
        customer_id: &str,
    ) -> impl Future<Output = Result<Vec<Case>, StoreError>> + Send;

    /// The cases of a subscription, newest first.
    fn cases_of_subscription(
        &self,
        subscription_id: &str,
    ) -> impl Future<Output = Result<Vec<Case>, StoreError>> + Send;
}

/// The recent tries on each card, by fingerprint, which the card networks' retry budgets count
/// across every invoice charged to the card.
///
/// Saves are compare-and-set, like a case's, so two workers charging one card for different
/// invoices cannot both spend the last try a network allows; a history nobody saved for its `keep`
/// is forgotten.
pub trait Cards: Send + Sync {
    /// The recent tries on a card; an empty history at version 0 when it has none.
    fn load_card(
        &self,
        fingerprint: &str,
    ) -> impl Future<Output = Result<CardHistory, StoreError>> + Send;

    /// Saves a card's history if the stored version is still `card.version`; it is forgotten once
    /// it has not been saved for `keep` (the networks' longest window).
    fn save_card(
        &self,
        card: &CardHistory,
        keep: Duration,
    ) -> impl Future<Output = Result<Saved, StoreError>> + Send;
}

/// Counts, once-only marks and leases that expire by themselves: a customer's nudges per day, what
/// must be done only once, and what one worker at a time may do (a backfill).
///
/// A role apart from [`Cases`] and [`Cards`] because they are neither: a nudge count is about a
/// customer across all their cases, a mark about whatever key the caller names; neither is
/// versioned (each step is atomic by itself, so there is nothing to compare-and-set) and neither is
/// kept for long.
pub trait Counters: Send + Sync {
    /// Counts one more nudge to a customer on `day` (their local date, `2026-11-30`) and returns the
    /// day's count so far; a day's count is forgotten two days later.
    fn count_nudge(
        &self,
        customer_id: &str,
        day: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Marks `key` as done for `keep`; whether this was the first time (so something is done once).
    fn first_time(
        &self,
        key: &str,
        keep: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether `key` is marked by [`Self::first_time`] and still remembered.
    fn marked(&self, key: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Puts `member` on the list of things to do later, `list`, for `at` (a member already on it
    /// is moved to `at`). Kept until taken; what is waiting is bounded by its caller (one entry
    /// per customer, say).
    fn defer(
        &self,
        list: &str,
        member: &str,
        at: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes up to `limit` members of `list` whose time has come by `now`, each by one caller only
    /// (two workers asking at once get different members).
    fn take_due(
        &self,
        list: &str,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Takes the lease `name` for `holder` for `ttl`, or extends it when `holder` already holds it;
    /// whether `holder` holds it now. A lease nobody extends runs out by itself, so a holder that
    /// dies gives it back by doing nothing.
    fn lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives the lease `name` back, if `holder` still holds it.
    fn release(
        &self,
        name: &str,
        holder: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What recoup's own attempts came to: the evidence the learning policy times retries by
/// (`docs/design/learning.md`). Counters by group and feature that every worker adds to and each
/// reads whole now and then; their number is fixed by the groups, not by the attempts counted.
pub trait Outcomes: Send + Sync {
    /// Counts one attempt's outcome.
    fn record_outcome(
        &self,
        observation: &Observation,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Everything counted so far.
    fn load_evidence(&self) -> impl Future<Output = Result<Evidence, StoreError>> + Send;

    /// Replaces everything counted with `evidence` (an import, or faded counts).
    fn replace_evidence(
        &self,
        evidence: &Evidence,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What each experiment arm's invoices came to (`docs/user-guide/experiments.md`): counters per
/// arm that the worker adds a case to once its outcome is final, and the report reads whole. Their
/// number is fixed by the arms and currencies, not by the invoices counted; the report never scans
/// cases.
///
/// Counting is idempotent per invoice: a case's final outcome is counted once however many times
/// its final state is saved (a retried save, a later event on a closed case), and its recovery once
/// more if it is recovered after an earlier final state (a paused subscription whose customer pays
/// later). The marks that make it so are kept at least as long as the case itself.
pub trait Experiments: Send + Sync {
    /// Counts what the final case of `invoice_id` adds to its arm, unless it was counted already;
    /// whether anything was added.
    fn count_final(
        &self,
        arm: &Assignment,
        invoice_id: &str,
        contribution: &Contribution,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The counters of each arm of `experiment` that counted anything, by arm name.
    fn arm_counts(
        &self,
        experiment: &str,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<String, ArmCounts>, StoreError>> + Send;
}

/// How many days of [`Dashboard`] counters are kept unless `redis.dashboard_days` says otherwise:
/// a year and a month, so the same month of last year is still there to compare with.
pub const DASHBOARD_DAYS: u32 = 400;

/// The recovery dashboard's counters (`docs/user-guide/dashboard.md`): one set per day that the
/// worker adds a case to once its outcome is final, and that the dashboard reads a period of. Their
/// number is fixed by what the days saw (states, currencies, decline classes, segments, nudges, end
/// actions, card brands), not by the invoices counted; the dashboard never scans cases.
///
/// Counting is idempotent per invoice, with the same promise as [`Experiments`]: a case's outcome
/// is counted once however many times its final state is saved, and its recovery once more if it
/// is recovered after an earlier final state — each on the day it is counted. A day's counters are
/// forgotten once they are older than [`Dashboard::days_kept`].
pub trait Dashboard: Send + Sync {
    /// Adds what the final case of `invoice_id` contributes to the counters of `day`, unless it
    /// was counted already; whether anything was added.
    fn count_day(
        &self,
        day: Date,
        invoice_id: &str,
        contribution: &day::Contribution,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The counters of each day of `period` that counted anything.
    fn days(
        &self,
        period: &Period,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<Date, DayCounts>, StoreError>> + Send;

    /// How many days of counters are kept, today included: the longest period there is to read.
    fn days_kept(&self) -> u32;
}

/// How many events about one customer [`EarlyEvents`] keeps: the newest, enough for every card,
/// time zone, subscription and dispute event a customer makes in the weeks before a failure.
pub const EARLY_EVENTS_KEPT: usize = 20;

/// How long [`EarlyEvents`] keeps a customer's events after the last one kept: a failure that
/// comes later than this opens a case that reads the customer afresh anyway.
pub const EARLY_EVENTS_KEEP: Duration = Duration::from_secs(30 * 86_400);

/// Events about a customer (a new card, a time zone, a subscription changed in Stripe, a dispute),
/// kept for a case their next failed invoice opens.
///
/// Stripe delivers late and out of order: the `customer.updated` naming a new card, or the
/// `customer.subscription.deleted`, may arrive before the `invoice.payment_failed` that opens the
/// case it matters to, when there is no case to apply it to yet. So every such event is kept under
/// its customer — the newest [`EARLY_EVENTS_KEPT`], forgotten [`EARLY_EVENTS_KEEP`] after the last
/// one kept — and the worker replays them into the case when it opens. Not part of [`Cases`]: the
/// events belong to the customer, not to any case, and keeping them is no compare-and-set.
pub trait EarlyEvents: Send + Sync {
    /// Keeps `event` about `customer_id`, dropping that customer's oldest beyond the cap.
    fn keep_early_event(
        &self,
        customer_id: &str,
        event: &Event,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The events kept about `customer_id`, each once, in the order Stripe created them.
    fn early_events(
        &self,
        customer_id: &str,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;
}

/// Kept events in the order [`EarlyEvents::early_events`] promises: each once (an entry retried
/// after a failure keeps its event again), in the order of Stripe's `created`, ties by id.
fn in_created_order(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
    events.dedup_by(|a, b| a.id == b.id);
    events
}

/// Wake-ups: when each case next needs a worker.
///
/// Every case with timers has one wake-up entry (written by [`Cases::save_case`]), in one of
/// [`TIMER_SHARDS`] due-time sets chosen by its invoice id. [`Timers::claim_due`] hands each due
/// entry to one claimer and pushes it a lease into the future, so a claimer that dies gives it back
/// by doing nothing.
pub trait Timers: Send + Sync {
    /// Claims up to `max` wake-ups of `shard` due at `now`, each for `lease`; returns the claimed
    /// cases, earliest due first.
    fn claim_due(
        &self,
        shard: u16,
        now: Timestamp,
        lease: Duration,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Claim>, StoreError>> + Send;

    /// Pushes a claimed wake-up out to `until` while its claimer is still at work on the case (a
    /// slow Stripe call), so no other worker takes it over meanwhile; a wake-up already set later,
    /// or gone, is left as it is.
    fn renew_claim(
        &self,
        invoice_id: &str,
        until: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records a failed wake-up of the case, for a reason of its own; the [`MAX_FAILURES`]th parks
    /// it: its wake-up is taken off the schedule and kept in the parked list with the error. A
    /// successful save of the case forgets its failures (and parking).
    fn fail_wake(
        &self,
        invoice_id: &str,
        error: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Failure, StoreError>> + Send;

    /// Every parked wake-up.
    fn parked(&self) -> impl Future<Output = Result<Vec<Parked>, StoreError>> + Send;

    /// Puts a parked wake-up back on the schedule, due at `now`; `false` when it is not parked.
    fn unpark(
        &self,
        invoice_id: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// How many wake-ups (over all shards) are due at `now` and not claimed.
    fn count_due(&self, now: Timestamp) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// The test clock's offset from the wall clock, kept in the store so every process of a deployment
/// sees the same "now" (see [`crate::clock`]); it is 0 until advanced, and only advancing moves it.
pub trait TestClock: Send + Sync {
    /// The test clock's offset from the wall clock, in seconds.
    fn clock_offset(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Moves the test clock forward; returns the new offset.
    fn advance_clock(&self, seconds: i64) -> impl Future<Output = Result<i64, StoreError>> + Send;
}

/// A support agent signed in to the status page, as the store keeps it: who, and the token the
/// page's forms must carry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    /// The name of the API token the agent signed in with.
    pub name: String,
    /// The anti-forgery token of the signed-in page's forms (sign-out), compared with what a form
    /// posts.
    pub csrf: String,
}

/// The status page's sessions, kept server-side so the browser holds only a random id, never an
/// API token.
///
/// Keys are the caller's to choose: the page stores each session under a hash of its cookie's id,
/// so what Redis holds (or a dump of it) cannot be replayed as a cookie. A session is forgotten once
/// its `keep` runs out, or when it is closed (sign-out).
pub trait Sessions: Send + Sync {
    /// Keeps `session` under `key` for `keep`.
    fn open_session(
        &self,
        key: &str,
        session: &Session,
        keep: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The session under `key`, unless it expired or was closed.
    fn session(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send;

    /// Forgets the session under `key` at once.
    fn close_session(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Feedback links answered: each link answers once.
///
/// Kept under the link's MAC — what identifies one link without holding on to its token, which is
/// a bearer credential — until the link expires: while it works a used link cannot answer again,
/// and after that nothing is kept (an expired link is refused by its signature alone). A role of its
/// own, not [`Counters::first_time`]: an answer that could not be recorded on its case gives its
/// mark back, so the customer can try again.
pub trait Answers: Send + Sync {
    /// Marks the link with MAC `link` as answered, for `keep`, if it was not already, atomically;
    /// whether this was the first answer.
    fn mark_answered(
        &self,
        link: &[u8; 16],
        keep: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether the link was answered (and its mark is still kept).
    fn answered(&self, link: &[u8; 16]) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives the mark back: the answer was not recorded after all.
    fn unmark_answered(
        &self,
        link: &[u8; 16],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Every role of the store together, for the parts that need them all (the worker, the service);
/// a part that needs fewer names only those.
pub trait Store:
    Health
    + Inbox
    + Cases
    + Cards
    + Counters
    + Outcomes
    + Experiments
    + Dashboard
    + EarlyEvents
    + Timers
    + TestClock
    + Sessions
    + Answers
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Store for S where
    S: Health
        + Inbox
        + Cases
        + Cards
        + Counters
        + Outcomes
        + Experiments
        + Dashboard
        + EarlyEvents
        + Timers
        + TestClock
        + Sessions
        + Answers
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Why looking up an id found no case.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{0:?} is not an invoice (in_…), customer (cus_…) or subscription (sub_…) id")]
    NotAnId(String),
    #[error("recoup has no case for {what} {id}")]
    NoCase { what: &'static str, id: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The kind of id support looks cases up by, told by Stripe's prefix (`in_`, `cus_`, `sub_`).
/// `recoup status` and the status page both look up through it, so they find the same cases and say
/// the same when they cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Invoice,
    Customer,
    Subscription,
}

impl IdKind {
    pub fn of(id: &str) -> Result<Self, LookupError> {
        match id.split_once('_').map(|(prefix, _)| prefix) {
            Some("in") => Ok(Self::Invoice),
            Some("cus") => Ok(Self::Customer),
            Some("sub") => Ok(Self::Subscription),
            _ => Err(LookupError::NotAnId(id.to_owned())),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Invoice => "invoice",
            Self::Customer => "customer",
            Self::Subscription => "subscription",
        }
    }

    /// The cases under `id`, a `self` id: an invoice's one case, a customer's or subscription's
    /// newest first; never none (that is [`LookupError::NoCase`]).
    pub async fn cases<S: Cases>(self, store: &S, id: &str) -> Result<Vec<Case>, LookupError> {
        let cases = match self {
            Self::Invoice => store.load_case(id).await?.into_iter().collect(),
            Self::Customer => store.cases_of_customer(id).await?,
            Self::Subscription => store.cases_of_subscription(id).await?,
        };
        if cases.is_empty() {
            return Err(LookupError::NoCase {
                what: self.as_str(),
                id: id.to_owned(),
            });
        }
        Ok(cases)
    }
}

/// The tries on the case's card, which its network budgets count; none before recoup knows the card.
pub async fn card_tries<S: Cards>(store: &S, case: &Case) -> Result<Vec<Try>, StoreError> {
    match &case.card {
        Some(card) => Ok(store.load_card(&card.fingerprint).await?.tries),
        None => Ok(Vec::new()),
    }
}

/// The report of the policy's experiment from its arms' counters (`recoup experiments` and
/// `GET /api/v1/experiments`); none when the policy runs no experiment.
pub async fn experiment_reports<S: Experiments>(
    store: &S,
    policy: &crate::policy::Policy,
) -> Result<Vec<crate::policy::experiment::report::Report>, StoreError> {
    let Some(experiment) = &policy.experiment else {
        return Ok(Vec::new());
    };
    let counts = store.arm_counts(&experiment.name).await?;
    Ok(vec![crate::policy::experiment::report::report(
        experiment, &counts,
    )])
}

/// Newest first, as the status API lists cases.
fn newest_first(cases: &mut [Case]) {
    cases.sort_by(|a, b| {
        b.opened_at
            .cmp(&a.opened_at)
            .then_with(|| b.invoice_id.cmp(&a.invoice_id))
    });
}
