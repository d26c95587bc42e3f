//! The Redis store: key layout, scripts and time bounds.
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `recoup:{inbox}:stream` | stream | the inbox; consumer group `workers` |
//! | `recoup:{inbox}:seen:<week>:<bucket>` | set | fingerprints of the events received that week (see [`Seen`]) |
//! | `recoup:{inbox}:failures` | hash | entry id → failed attempts so far |
//! | `recoup:{inbox}:dead` | stream | dead letters: entry, id, type, failures, error, at, event |
//! | `recoup:{t<shard>}:case:<invoice id>` | string | the case, `<version>:1<zstd json>` (see `store::codec`) |
//! | `recoup:{t<shard>}:due` | sorted set | invoice id → next wake-up (unix ms) |
//! | `recoup:{t<shard>}:failures` | hash | invoice id → failed wake-ups in a row |
//! | `recoup:{t<shard>}:parked` | hash | invoice id → a parked wake-up (see [`Parked`]) |
//! | `recoup:{t<shard>}:forget` | sorted set | cases kept until their retention runs out → when |
//! | `recoup:{ix<bucket>}:cases` | sorted set | `<customer or subscription id>:<invoice id>`, all scored 0 (see [`index_key`]) |
//! | `recoup:{inbox}:arrivals` | hash | `webhook`, `backfill`: the newest `created` stored each way; `backfilled`: how far backfills got (unix seconds) |
//! | `recoup:{clock}:offset` | string | the test clock's offset, seconds |
//! | `recoup:lease:<name>` | string | who holds a lease (a backfill's), expiring by itself |
//! | `recoup:early:{<customer>}` | list | events about the customer (JSON), newest first, capped (see [`EarlyEvents`]) |
//! | `recoup:session:<sha-256 of the cookie's id>` | string | a status page session (JSON), expiring with it |
//! | `recoup:answered:<hex MAC of a feedback link>` | string | the feedback link was answered, kept until it expires |
//! | `recoup:{exp:<experiment>}:counts` | hash | an experiment's counters per arm (see `experiments.rs`) |
//! | `recoup:{exp:<experiment>}:final:<invoice>`, `…:recovered:<invoice>` | string | the invoice was counted, kept a little longer than its case |
//! | `recoup:{dash}:day:<YYYY-MM-DD>` | hash | the recovery dashboard's counters of a day (see `dashboard.rs`) |
//! | `recoup:{dash}:final:<invoice>`, `…:recovered:<invoice>` | string | the invoice was counted on the dashboard, kept a little longer than its case |
//!
//! Keys that one script touches share a hash tag — the inbox's `{inbox}`, a case's shard `{t<n>}` —
//! so every script also runs on Redis Cluster. Every operation is bounded by `redis.timeout_ms`,
//! connecting included, so a dead or stalled Redis turns into a prompt error (a 503 for Stripe, a
//! retry later for a worker) instead of a hang.
//!
//! One server is reached through a connection manager, a cluster through redis-rs's cluster
//! connection (which follows slot moves); both multiplex every caller over shared connections, which
//! pipelines concurrent work for free, and both reconnect by themselves when a connection breaks; one
//! that goes half-open instead is replaced after a timeout (see [`Link`]). The blocking inbox read
//! gets a connection of its own, so it never holds up anyone else's command.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use futures_util::future::try_join_all;
use jiff::Timestamp;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamRangeReply, StreamReadReply};
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, Script, Value};
use tokio::sync::{Mutex, OnceCell};

use super::{
    Answers, Arrival, Arrivals, Cards, Cases, Claim, Counters, Dashboard, DeadLetter,
    EARLY_EVENTS_KEEP, EARLY_EVENTS_KEPT, EarlyEvents, Experiments, Failure, Health, INBOX_FORMAT,
    Inbox, InboxEntry, Ingest, MAX_FAILURES, Outcomes, Parked, Saved, Session, Sessions,
    StoreError, TIMER_SHARDS, TestClock, Timers, codec, fnv1a, in_created_order, newest_first,
    shard_of,
};
use crate::config::RedisSettings;
use crate::event::Event;
use crate::policy::Case;
use crate::policy::budget::CardHistory;

mod cases;
mod connection;
mod dashboard;
mod early;
mod experiments;
mod inbox;
mod outcomes;
mod sessions;
mod timers;

pub use self::connection::Risk;
use self::connection::*;
pub use self::dashboard::day_key;
pub use self::early::early_key;
pub use self::experiments::counts_key;
pub use self::sessions::{answered_key, session_key};

/// The inbox stream that workers consume.
pub const INBOX_STREAM: &str = "recoup:{inbox}:stream";

/// Prefix of the sets of events seen, by week and bucket.
pub const SEEN_PREFIX: &str = "recoup:{inbox}:seen:";

/// How many sets one week's events are spread over; see [`Seen`].
pub const SEEN_BUCKETS: u16 = 1024;

/// The consumer group every worker reads the inbox through.
pub const INBOX_GROUP: &str = "workers";

/// Failed-attempt counts of inbox entries.
pub const FAILURES: &str = "recoup:{inbox}:failures";

/// The dead-letter stream.
pub const DEAD_LETTERS: &str = "recoup:{inbox}:dead";

/// The test clock's offset.
pub const CLOCK_OFFSET: &str = "recoup:{clock}:offset";

/// When the newest events arrived, by way, and how far backfills got.
pub const ARRIVALS: &str = "recoup:{inbox}:arrivals";

/// The `ARRIVALS` field of the backfill mark.
const BACKFILLED: &str = "backfilled";

/// The key of a card's recent tries, named by its fingerprint.
pub fn card_key(fingerprint: &str) -> String {
    format!("recoup:card:{{{fingerprint}}}")
}

/// The key of an invoice's case.
pub fn case_key(invoice_id: &str) -> String {
    format!("{}{invoice_id}", case_prefix(shard_of(invoice_id)))
}

/// What the keys of a shard's cases start with.
fn case_prefix(shard: u16) -> String {
    format!("recoup:{{t{shard}}}:case:")
}

/// The due-time set of a shard.
pub fn due_key(shard: u16) -> String {
    format!("recoup:{{t{shard}}}:due")
}

/// The failed wake-ups of a shard's cases: invoice id → failures so far.
pub fn wake_failures_key(shard: u16) -> String {
    format!("recoup:{{t{shard}}}:failures")
}

/// The cases of a shard kept only until their retention runs out: `<invoice>\t<customer>\t<subscription>`
/// → when the case expires (unix ms), so their index entries can be removed after.
pub fn forget_key(shard: u16) -> String {
    format!("recoup:{{t{shard}}}:forget")
}

/// The parked wake-ups of a shard: invoice id → JSON of [`Parked`].
pub fn parked_key(shard: u16) -> String {
    format!("recoup:{{t{shard}}}:parked")
}

/// How many sorted sets the customer and subscription indexes are spread over; see [`index_key`].
pub const INDEX_BUCKETS: u64 = 8192;

/// The index set holding the cases of a customer or subscription.
///
/// Not one set per owner: a key costs Redis about 100 bytes before its content, and most owners
/// have one case. Each bucket instead holds `<owner id>:<invoice id>` members, all scored 0 so
/// they sort by name and one owner's cases are a `ZRANGEBYLEX` away. Redis keeps a bucket as a
/// compact listpack while it has at most `zset-max-listpack-entries` (128) members, so about a
/// million memberships (half a million cases) stay compact; past that a bucket still works, at
/// skiplist cost.
pub fn index_key(owner_id: &str) -> String {
    bucket_key(fnv1a(owner_id) % INDEX_BUCKETS)
}

fn bucket_key(bucket: u64) -> String {
    format!("recoup:{{ix{bucket}}}:cases")
}

/// The longest an inbox read blocks in Redis; the caller's wait is capped to it.
const MAX_BLOCK: Duration = Duration::from_secs(2);

struct Scripts {
    ingest: Script,
    save_versioned: Script,
    claim_due: Script,
    ack: Script,
    fail: Script,
    lease: Script,
    newest: Script,
    renew: Script,
    replay: Script,
    fail_wake: Script,
    unpark: Script,
    forget: Script,
    count_final: Script,
    count_day: Script,
}

/// A handle on Redis; cheap to clone, shared by every request and worker task.
#[derive(Clone)]
pub struct RedisStore {
    conn: Arc<Link>,
    /// The connection for blocking inbox reads, opened on first use (receivers never need it).
    reader: Arc<OnceCell<Arc<Link>>>,
    /// Where the next `XAUTOCLAIM` scan of the pending entries starts.
    reclaim_cursor: Arc<Mutex<String>>,
    scripts: Arc<Scripts>,
    settings: RedisSettings,
    timeout: Duration,
    url: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .finish()
    }
}

impl RedisStore {
    /// Connects, failing within the time bound when Redis cannot be reached.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, StoreError> {
        let timeout = Duration::from_millis(settings.timeout_ms);
        let url = settings.redacted_url();
        let conn = Link::open(settings, timeout, Some(timeout)).await?;
        Ok(Self {
            conn,
            reader: Arc::new(OnceCell::new()),
            reclaim_cursor: Arc::new(Mutex::new("0-0".to_owned())),
            scripts: Arc::new(Scripts {
                ingest: Script::new(include_str!("../scripts/ingest.lua")),
                save_versioned: Script::new(include_str!("../scripts/save_versioned.lua")),
                claim_due: Script::new(include_str!("../scripts/claim_due.lua")),
                ack: Script::new(include_str!("../scripts/ack.lua")),
                fail: Script::new(include_str!("../scripts/fail.lua")),
                lease: Script::new(include_str!("../scripts/lease.lua")),
                newest: Script::new(include_str!("../scripts/newest.lua")),
                renew: Script::new(include_str!("../scripts/renew.lua")),
                replay: Script::new(include_str!("../scripts/replay.lua")),
                fail_wake: Script::new(include_str!("../scripts/fail_wake.lua")),
                unpark: Script::new(include_str!("../scripts/unpark.lua")),
                forget: Script::new(include_str!("../scripts/forget.lua")),
                count_final: Script::new(include_str!("../scripts/count_final.lua")),
                count_day: Script::new(include_str!("../scripts/count_day.lua")),
            }),
            settings: settings.clone(),
            timeout,
            url,
        })
    }

    async fn save_versioned(
        &self,
        invocation: redis::ScriptInvocation<'_>,
        version: u64,
    ) -> Result<Saved, StoreError> {
        let mut conn = self.conn.get();
        let written: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(if written == 1 {
            Saved::Saved { version }
        } else {
            Saved::Conflict
        })
    }

    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        self.bounded_for(&self.conn, self.timeout, op).await
    }

    /// Runs `op` on `link` within `limit`; a timeout makes `link` check its connection and replace
    /// it when it is dead (see [`Link::suspect`]).
    async fn bounded_for<T>(
        &self,
        link: &Arc<Link>,
        limit: Duration,
        op: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        let ms = self.timeout.as_millis() as u64;
        let timed_out = || {
            link.suspect();
            Err(StoreError::Timeout(ms))
        };
        match tokio::time::timeout(limit, op).await {
            Err(_) => timed_out(),
            Ok(Err(e)) if e.is_timeout() => timed_out(),
            Ok(Err(e))
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() =>
            {
                Err(StoreError::Unreachable {
                    url: self.url.clone(),
                    reason: e.to_string(),
                })
            }
            Ok(Err(e)) => Err(StoreError::Redis(e.to_string())),
            Ok(Ok(v)) => Ok(v),
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.get();
        self.bounded(cmd.query_async(&mut conn)).await
    }

    async fn ensure_group(&self) -> Result<(), StoreError> {
        let created = self
            .query::<()>(
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(INBOX_STREAM)
                    .arg(INBOX_GROUP)
                    .arg("0")
                    .arg("MKSTREAM"),
            )
            .await;
        match created {
            Err(StoreError::Redis(e)) if e.contains("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Turns stream entries into inbox entries, with how many times each was delivered (1 when
    /// `deliveries` does not name it). One of a newer [`INBOX_FORMAT`] stays pending for a worker
    /// that reads it, until it has been delivered `give_up` times; one that cannot be read at all
    /// is dead-lettered at once, since no number of retries will make it readable.
    async fn entries(
        &self,
        ids: Vec<StreamId>,
        deliveries: &std::collections::HashMap<String, u32>,
        give_up: u32,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let mut entries = Vec::with_capacity(ids.len());
        for raw in ids {
            let delivered = deliveries.get(&raw.id).copied().unwrap_or(1);
            let format: u32 = raw
                .get::<String>("v")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let stored: Option<String> = raw.get("event");
            let parsed = stored.as_deref().map(serde_json::from_str::<Event>);
            let error = match parsed {
                Some(Ok(event)) if format <= INBOX_FORMAT => {
                    entries.push(InboxEntry {
                        entry_id: raw.id,
                        event,
                        deliveries: delivered,
                    });
                    continue;
                }
                _ if format > INBOX_FORMAT && delivered < give_up => {
                    tracing::info!(
                        entry = %raw.id,
                        format,
                        "inbox entry stored by a newer recoup: left for a worker that reads it"
                    );
                    continue;
                }
                _ if format > INBOX_FORMAT => format!(
                    "inbox entry of format {format}, stored by a newer recoup: no worker that reads \
                     it took it in {delivered} deliveries"
                ),
                Some(Err(e)) => format!("unreadable inbox entry: {e}"),
                _ => "inbox entry without an event".to_owned(),
            };
            let id: String = raw.get("id").unwrap_or_default();
            let kind: String = raw.get("type").unwrap_or_default();
            let fields = [id.as_str(), kind.as_str(), stored.as_deref().unwrap_or("")];
            self.count_failure(
                &raw.id,
                0,
                &error,
                Timestamp::now(),
                fields,
                delivered,
                format,
            )
            .await?;
        }
        Ok(entries)
    }

    #[allow(clippy::too_many_arguments)]
    async fn count_failure(
        &self,
        entry_id: &str,
        max_failures: u32,
        error: &str,
        now: Timestamp,
        [event_id, event_type, event]: [&str; 3],
        deliveries: u32,
        format: u32,
    ) -> Result<i64, StoreError> {
        let mut invocation = self.scripts.fail.prepare_invoke();
        invocation
            .key(INBOX_STREAM)
            .key(FAILURES)
            .key(DEAD_LETTERS)
            .arg(INBOX_GROUP)
            .arg(entry_id)
            .arg(max_failures)
            .arg(error)
            .arg(now.to_string())
            .arg(event_id)
            .arg(event_type)
            .arg(event)
            .arg(deliveries)
            .arg(format);
        let mut conn = self.conn.get();
        self.bounded(invocation.invoke_async(&mut conn)).await
    }

    /// How many times each of `ids` has been delivered, from the consumer group's pending list.
    async fn deliveries(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, u32>, StoreError> {
        let counts = try_join_all(ids.iter().map(|&id| async move {
            let pending: Vec<(String, String, u64, u32)> = self
                .query(
                    redis::cmd("XPENDING")
                        .arg(INBOX_STREAM)
                        .arg(INBOX_GROUP)
                        .arg(id)
                        .arg(id)
                        .arg(1),
                )
                .await?;
            Ok::<_, StoreError>(pending.into_iter().next().map(|p| (p.0, p.3)))
        }))
        .await?;
        Ok(counts.into_iter().flatten().collect())
    }

    /// Reads dead letters from the stream, newest first, `COUNT max`, from `end` back.
    async fn dead_range(&self, end: &str, max: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let reply: StreamRangeReply = self
            .query(
                redis::cmd("XREVRANGE")
                    .arg(DEAD_LETTERS)
                    .arg(end)
                    .arg("-")
                    .arg("COUNT")
                    .arg(max),
            )
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|raw| {
                let text = |field: &str| raw.get::<String>(field).unwrap_or_default();
                DeadLetter {
                    entry_id: text("entry"),
                    event_id: text("id"),
                    event_type: text("type"),
                    failures: raw.get("failures").unwrap_or_default(),
                    deliveries: raw.get("deliveries").unwrap_or_default(),
                    error: text("error"),
                    at: text("at").parse().unwrap_or_default(),
                    event: text("event"),
                    id: raw.id,
                }
            })
            .collect())
    }

    async fn cases_under(&self, owner_id: &str) -> Result<Vec<Case>, StoreError> {
        let members: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYLEX")
                    .arg(index_key(owner_id))
                    .arg(format!("[{owner_id}:"))
                    // ';' follows ':', so this ends the range right after the owner's members.
                    .arg(format!("({owner_id};")),
            )
            .await?;
        let prefix = owner_id.len() + 1;
        let ids: Vec<&str> = members.iter().filter_map(|m| m.get(prefix..)).collect();
        // Cases of one owner sit in different shards, so they are read one by one (concurrently,
        // which the multiplexed connection pipelines) rather than with a cross-slot MGET.
        let loaded = try_join_all(ids.into_iter().map(|id| self.load_case(id))).await?;
        let mut cases: Vec<Case> = loaded.into_iter().flatten().collect();
        newest_first(&mut cases);
        Ok(cases)
    }
}

/// Where an event id is remembered, for `redis.dedupe_ttl_secs`, so a redelivery is recognised.
///
/// Not one key per event: a key costs Redis about 100 bytes before its value, three times what the
/// rest of an event's trace costs. Instead each week's event ids go, as 64-bit fingerprints (from
/// SHA-256), into [`SEEN_BUCKETS`] sets, which Redis keeps as sorted integer arrays (intsets) at 8
/// bytes a member while a set holds at most `set-max-intset-entries` (512) of them — about half a
/// million events a week; past that a set still works, at hashtable cost. A week's sets expire `ttl`
/// after the week ends, and a delivery is checked against every week that may still be remembered,
/// so an event id is remembered at least `ttl` and at most a week longer. Weeks, not days, because
/// every delivery checks each remembered period's set: six sets for the default 30 days instead of
/// thirty-one, which is what keeps ingest cheap. Two different ids are taken for one with a chance
/// of about n²/2⁷⁵ for n events in the window (bucket and fingerprint together use 74 bits of the
/// hash).
struct Seen {
    fingerprint: i64,
    bucket: u16,
    period: i64,
    periods_back: i64,
    expires_at: i64,
}

impl Seen {
    /// How long one set of fingerprints collects new ones.
    const PERIOD_SECS: i64 = 7 * 86_400;

    fn of(event_id: &str, now: Timestamp, ttl_secs: u64) -> Self {
        use sha2::{Digest, Sha256};
        let hash = Sha256::digest(event_id.as_bytes());
        let fingerprint = i64::from_be_bytes(hash[..8].try_into().expect("8 bytes"));
        let bucket = u16::from_be_bytes([hash[8], hash[9]]) % SEEN_BUCKETS;
        let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2);
        let period = now.as_second().div_euclid(Self::PERIOD_SECS);
        Self {
            fingerprint,
            bucket,
            period,
            periods_back: (ttl + Self::PERIOD_SECS - 1) / Self::PERIOD_SECS,
            expires_at: (period + 1) * Self::PERIOD_SECS + ttl,
        }
    }

    /// This period's set first, then the earlier periods', newest first.
    fn keys(&self) -> impl Iterator<Item = String> + '_ {
        (0..=self.periods_back)
            .map(move |back| format!("{SEEN_PREFIX}{}:{}", self.period - back, self.bucket))
    }
}
