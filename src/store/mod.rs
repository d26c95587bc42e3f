//! Where everything durable lives: the inbox of verified events, cases, their timers, the indexes
//! support looks cases up by, dead letters and the test clock.
//!
//! [`Store`] is the one interface; [`RedisStore`] is production and [`MemoryStore`] serves the
//! one-process modes and fast tests. Both pass the same suite (`tests/api/store.rs`). The store
//! knows nothing of policy: it saves what it is given, under these promises —
//!
//! - **ingest**: [`Ingest::Stored`] means the event is in the inbox exactly once, `Duplicate` that it
//!   was already there; any error means nothing was acknowledged, so Stripe must deliver again;
//! - **inbox**: an entry read by a consumer stays *pending* until acknowledged; one pending for longer
//!   than a lease may be reclaimed by any consumer; one that failed [`MAX_FAILURES`] times moves to
//!   the dead letters with its last error;
//! - **cases**: [`Store::save_case`] writes only if the stored version is still the one the case was
//!   loaded at (compare-and-set), and writes the case's next wake-up time in the same atomic step;
//! - **timers**: every case with timers has one wake-up entry, in one of [`TIMER_SHARDS`] due-time
//!   sets chosen by its invoice id; [`Store::claim_due`] hands each due entry to one claimer and
//!   pushes it a lease into the future, so a claimer that dies gives it back by doing nothing.

pub mod memory;
pub mod redis;

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;
use crate::policy::Case;
use crate::webhook::event::Event;

/// How many due-time sets the timers are spread over. Fixed: a case's shard is part of its keys,
/// so changing this would strand the timers already stored.
pub const TIMER_SHARDS: u16 = 16;

/// How many times an inbox entry may fail before it is moved to the dead letters.
pub const MAX_FAILURES: u32 = 5;

/// The shard holding an invoice's case and wake-up entry (FNV-1a of the id; stable across builds).
pub fn shard_of(invoice_id: &str) -> u16 {
    let hash = invoice_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % u64::from(TIMER_SHARDS)) as u16
}

/// What happened to an event handed to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingest {
    /// Newly appended to the inbox under this stream entry id.
    Stored { entry_id: String },
    /// The event id was seen before; nothing was written.
    Duplicate,
}

/// An event read from the inbox, to be acknowledged once its cases are saved.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxEntry {
    pub entry_id: String,
    pub event: Event,
}

/// The outcome of a compare-and-set save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Written; the case now has this version.
    Saved { version: u64 },
    /// Someone saved the case since it was loaded; load it again and decide again.
    Conflict,
}

/// What became of an inbox entry whose processing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Left pending; it will be reclaimed after the lease and tried again.
    WillRetry { failures: u32 },
    /// Moved to the dead letters and taken off the inbox.
    DeadLettered,
}

/// An inbox entry that failed [`MAX_FAILURES`] times, kept for inspection.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadLetter {
    pub entry_id: String,
    pub event_id: String,
    pub event_type: String,
    pub failures: u32,
    pub error: String,
    pub at: Timestamp,
    /// The normalised event, as it was in the inbox.
    pub event: String,
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
}

/// The operations recoup needs from durable storage; see the module doc for the promises.
pub trait Store: Clone + Send + Sync + 'static {
    /// Dedupes `event` on its id and appends it to the inbox, atomically.
    fn ingest(&self, event: &Event) -> impl Future<Output = Result<Ingest, StoreError>> + Send;

    /// Whether the store answers.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads up to `max` new inbox entries for `consumer`, waiting up to `wait` for the first.
    fn read_inbox(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<InboxEntry>, StoreError>> + Send;

    /// Takes over up to `max` entries that have been pending for longer than `lease`.
    fn reclaim_inbox(
        &self,
        consumer: &str,
        lease: Duration,
        max: usize,
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

    /// The newest `max` dead letters, newest first.
    fn dead_letters(
        &self,
        max: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, StoreError>> + Send;

    /// Forgets a consumer that has nothing pending (a worker shutting down cleanly).
    fn retire_consumer(
        &self,
        consumer: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The case of an invoice, at its stored version.
    fn load_case(
        &self,
        invoice_id: &str,
    ) -> impl Future<Output = Result<Option<Case>, StoreError>> + Send;

    /// Saves `case` if the stored version is still `case.version` (0 = not stored yet), with its
    /// wake-up time; the saved case has the returned version.
    fn save_case(&self, case: &Case) -> impl Future<Output = Result<Saved, StoreError>> + Send;

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

    /// Claims up to `max` wake-ups of `shard` due at `now`, each for `lease`; returns the invoice
    /// ids of the claimed cases, earliest due first.
    fn claim_due(
        &self,
        shard: u16,
        now: Timestamp,
        lease: Duration,
        max: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// How many wake-ups (over all shards) are due at `now` and not claimed.
    fn count_due(&self, now: Timestamp) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The test clock's offset from the wall clock, in seconds.
    fn clock_offset(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Moves the test clock forward; returns the new offset.
    fn advance_clock(&self, seconds: i64) -> impl Future<Output = Result<i64, StoreError>> + Send;
}

/// A case as stored: `<version>:` then the case as LZ4-compressed JSON. The version leads in
/// plain digits so the save script can compare it without decoding the rest.
pub(crate) mod codec {
    use super::StoreError;
    use crate::policy::Case;

    pub fn encode(case: &Case) -> Vec<u8> {
        let json = serde_json::to_vec(case).expect("a Case always serialises");
        let mut stored = format!("{}:", case.version).into_bytes();
        stored.extend(lz4_flex::compress_prepend_size(&json));
        stored
    }

    pub fn decode(stored: &[u8]) -> Result<Case, StoreError> {
        let corrupt = |why: String| StoreError::Corrupt(why);
        let colon = stored
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| corrupt("a case without its version".into()))?;
        let json = lz4_flex::decompress_size_prepended(&stored[colon + 1..])
            .map_err(|e| corrupt(format!("case does not decompress: {e}")))?;
        serde_json::from_slice(&json).map_err(|e| corrupt(format!("case does not parse: {e}")))
    }
}

/// Newest first, as the status API lists cases.
fn newest_first(cases: &mut [Case]) {
    cases.sort_by(|a, b| {
        b.opened_at
            .cmp(&a.opened_at)
            .then_with(|| b.invoice_id.cmp(&a.invoice_id))
    });
}
