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
//! | `recoup:session:<sha-256 of the cookie's id>` | string | a status page session (JSON), expiring with it |
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
    Arrival, Arrivals, Cards, Cases, Claim, Counters, DeadLetter, Failure, Health, INBOX_FORMAT,
    Inbox, InboxEntry, Ingest, MAX_FAILURES, Parked, Saved, Session, Sessions, StoreError,
    TIMER_SHARDS, TestClock, Timers, codec, fnv1a, newest_first, shard_of,
};
use crate::config::RedisSettings;
use crate::event::Event;
use crate::policy::Case;
use crate::policy::budget::CardHistory;

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
                ingest: Script::new(include_str!("scripts/ingest.lua")),
                save_versioned: Script::new(include_str!("scripts/save_versioned.lua")),
                claim_due: Script::new(include_str!("scripts/claim_due.lua")),
                ack: Script::new(include_str!("scripts/ack.lua")),
                fail: Script::new(include_str!("scripts/fail.lua")),
                lease: Script::new(include_str!("scripts/lease.lua")),
                newest: Script::new(include_str!("scripts/newest.lua")),
                renew: Script::new(include_str!("scripts/renew.lua")),
                replay: Script::new(include_str!("scripts/replay.lua")),
                fail_wake: Script::new(include_str!("scripts/fail_wake.lua")),
                unpark: Script::new(include_str!("scripts/unpark.lua")),
                forget: Script::new(include_str!("scripts/forget.lua")),
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

/// A Redis setting that breaks one of recoup's promises, as found at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Risk {
    pub setting: &'static str,
    pub value: String,
    /// What goes wrong, and what to set instead.
    pub why: &'static str,
}

impl RedisStore {
    /// Reads the settings recoup's promises rest on — `maxmemory-policy` and `appendonly`, from
    /// every primary of a cluster — and returns those that break one. `Err` when Redis does not let
    /// them be read (managed services often disable or rename `CONFIG`).
    pub async fn risky_settings(&self) -> Result<Vec<Risk>, StoreError> {
        let mut risks = Vec::new();
        for value in self.config_get("maxmemory-policy").await? {
            if value.starts_with("volatile-") || value.starts_with("allkeys-") {
                risks.push(Risk {
                    setting: "maxmemory-policy",
                    why: if value.starts_with("volatile-") {
                        "under memory pressure Redis evicts keys that expire: card histories \
                         (the networks' retry budgets silently reset, so cards can be retried \
                         past the rules), event dedupe sets and nudge counters; set \
                         maxmemory-policy noeviction"
                    } else {
                        "under memory pressure Redis evicts any key: cases, their timers and \
                         queued events can silently vanish; set maxmemory-policy noeviction"
                    },
                    value,
                });
            }
        }
        for value in self.config_get("appendonly").await? {
            if value != "yes" {
                risks.push(Risk {
                    setting: "appendonly",
                    value,
                    why: "without the append-only file a restart of Redis loses every event \
                          acknowledged to Stripe since the last snapshot (Stripe will not send \
                          them again) and every change to cases since; set appendonly yes",
                });
            }
        }
        risks.dedup();
        Ok(risks)
    }

    /// `CONFIG GET name` on the server, or on every primary of a cluster: each one's value.
    async fn config_get(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let mut get = redis::cmd("CONFIG");
        get.arg("GET").arg(name);
        let reply: Value = match self.conn.get() {
            Connection::Single(mut conn) => self.bounded(get.query_async(&mut conn)).await?,
            Connection::Cluster(mut conn) => {
                use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
                let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                self.bounded(conn.route_command(get, all)).await?
            }
        };
        // A server answers [name, value] (a map in RESP3), a cluster one such answer per node:
        // every value is the word after the name.
        let mut words = Vec::new();
        flatten(reply, &mut words);
        Ok(words
            .windows(2)
            .filter(|pair| pair[0].eq_ignore_ascii_case(name))
            .map(|pair| pair[1].clone())
            .collect())
    }
}

/// Every string in a reply, depth first.
fn flatten(value: Value, into: &mut Vec<String>) {
    match value {
        Value::BulkString(bytes) => into.push(String::from_utf8_lossy(&bytes).into_owned()),
        Value::SimpleString(text) => into.push(text),
        Value::Array(items) | Value::Set(items) => {
            items.into_iter().for_each(|item| flatten(item, into));
        }
        Value::Map(pairs) => pairs.into_iter().for_each(|(k, v)| {
            flatten(k, into);
            flatten(v, into);
        }),
        _ => {}
    }
}

async fn open_bounded(
    settings: &RedisSettings,
    timeout: Duration,
    response_timeout: Option<Duration>,
) -> Result<Connection, StoreError> {
    let url = settings.redacted_url();
    let unreachable = |reason: String| StoreError::Unreachable {
        url: url.clone(),
        reason,
    };
    tokio::time::timeout(
        timeout,
        Connection::open(settings, timeout, response_timeout),
    )
    .await
    .map_err(|_| unreachable(format!("no answer within {} ms", settings.timeout_ms)))?
    .map_err(|e| unreachable(e.to_string()))
}

/// A connection that is replaced when it stops answering.
///
/// redis-rs reconnects by itself when a connection breaks (an I/O error, a closed socket), but a
/// socket that goes *half-open* — Redis failed over, a NAT or load balancer dropped the flow — never
/// breaks: requests just get no answer, each one times out, and the kernel only gives up on the
/// socket after its retransmissions run out, some 15 minutes later. So a timeout makes the link
/// [suspect](Link::suspect) its connection: it sends a PING on it, and when that gets no answer
/// within the time bound either, opens a new connection (again and again, until one answers) and
/// swaps it in; requests already waiting on the old one time out as they would have. A Redis that
/// is merely slow answers the PING, and keeps its connection. The sockets themselves carry TCP
/// keepalive and a TCP user timeout (see [`tcp_settings`]), so the kernel also notices a dead peer
/// in well under a minute rather than a quarter of an hour.
struct Link {
    current: std::sync::RwLock<Connection>,
    /// A check (and perhaps a reconnection) is under way; one at a time is enough.
    checking: std::sync::atomic::AtomicBool,
    settings: RedisSettings,
    timeout: Duration,
    response_timeout: Option<Duration>,
}

impl Link {
    async fn open(
        settings: &RedisSettings,
        timeout: Duration,
        response_timeout: Option<Duration>,
    ) -> Result<Arc<Self>, StoreError> {
        let conn = open_bounded(settings, timeout, response_timeout).await?;
        Ok(Arc::new(Self {
            current: std::sync::RwLock::new(conn),
            checking: std::sync::atomic::AtomicBool::new(false),
            settings: settings.clone(),
            timeout,
            response_timeout,
        }))
    }

    /// The connection to send on now.
    fn get(&self) -> Connection {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A request on this link timed out: checks the connection in the background, and replaces it
    /// if it does not answer a PING within the time bound.
    fn suspect(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        let link = self.clone();
        tokio::spawn(async move {
            let mut conn = link.get();
            let ping_cmd = redis::cmd("PING");
            let ping = ping_cmd.query_async::<String>(&mut conn);
            let alive = matches!(tokio::time::timeout(link.timeout, ping).await, Ok(Ok(_)));
            if !alive {
                let url = link.settings.redacted_url();
                tracing::warn!(redis = %url, "Redis stopped answering on its connection: opening a new one");
                let mut pauses = backon::ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(50))
                    .with_max_delay(Duration::from_secs(2))
                    .with_jitter()
                    .without_max_times()
                    .build();
                loop {
                    match open_bounded(&link.settings, link.timeout, link.response_timeout).await {
                        Ok(fresh) => {
                            *link.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                            tracing::info!(redis = %url, "connected to Redis again");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!("cannot reconnect to Redis yet: {e}");
                            tokio::time::sleep(pauses.next().unwrap_or(Duration::from_secs(2)))
                                .await;
                        }
                    }
                }
            }
            link.checking.store(false, Ordering::Release);
        });
    }
}

/// TCP settings of every connection to Redis: no Nagle delay, keepalive probes on an idle socket
/// and a bound on unacknowledged data, so the kernel itself closes a socket whose peer vanished
/// (about 30 s idle, 20 s with a request outstanding) and redis-rs reconnects.
fn tcp_settings() -> TcpSettings {
    use redis::io::tcp::socket2::TcpKeepalive;
    // Commands are small and pipelined by many callers at once: with Nagle's algorithm on, a
    // command can sit in the socket for the peer's delayed ACK (tens of ms), which cut a
    // worker's timer firings to a fifth.
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(15))
        .with_interval(Duration::from_secs(5));
    #[cfg(target_os = "linux")]
    let keepalive = keepalive.with_retries(3);
    let tcp = TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive);
    #[cfg(target_os = "linux")]
    let tcp = tcp.set_user_timeout(Duration::from_secs(20));
    tcp
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

impl Health for RedisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }
}

impl Inbox for RedisStore {
    async fn ingest_via(&self, event: &Event, via: Arrival) -> Result<Ingest, StoreError> {
        let payload = serde_json::to_string(event).expect("an Event always serialises");
        let seen = Seen::of(&event.id, Timestamp::now(), self.settings.dedupe_ttl_secs);
        let mut invocation = self.scripts.ingest.prepare_invoke();
        invocation.key(INBOX_STREAM).key(ARRIVALS);
        for key in seen.keys() {
            invocation.key(key);
        }
        invocation
            .arg(seen.fingerprint)
            .arg(seen.expires_at)
            .arg(&event.id)
            .arg(event.kind.as_str())
            .arg(payload)
            .arg(if via.remembered() { via.as_str() } else { "" })
            .arg(event.created)
            .arg(INBOX_FORMAT);
        let mut conn = self.conn.get();
        let entry: Option<String> = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(match entry {
            Some(entry_id) => Ingest::Stored { entry_id },
            None => Ingest::Duplicate,
        })
    }

    async fn arrivals(&self) -> Result<Arrivals, StoreError> {
        let fields = [
            Arrival::Webhook.as_str(),
            Arrival::Backfill.as_str(),
            BACKFILLED,
        ];
        let times: Vec<Option<i64>> = self
            .query(redis::cmd("HMGET").arg(ARRIVALS).arg(&fields[..]))
            .await?;
        let at = |field: usize| {
            times
                .get(field)
                .copied()
                .flatten()
                .and_then(|s| Timestamp::from_second(s).ok())
        };
        Ok(Arrivals {
            webhook: at(0),
            backfill: at(1),
            backfilled: at(2),
        })
    }

    async fn mark_backfilled(&self, through: Timestamp) -> Result<(), StoreError> {
        let mut invocation = self.scripts.newest.prepare_invoke();
        invocation
            .key(ARRIVALS)
            .arg(BACKFILLED)
            .arg(through.as_second());
        let mut conn = self.conn.get();
        self.bounded(invocation.invoke_async::<()>(&mut conn)).await
    }

    async fn read_inbox(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let wait = wait.min(MAX_BLOCK);
        let reader = self
            .reader
            .get_or_try_init(|| Link::open(&self.settings, self.timeout, None))
            .await?;
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(INBOX_GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(max);
        // To Redis `BLOCK 0` means "forever"; a zero wait means "don't wait".
        if !wait.is_zero() {
            read.arg("BLOCK").arg(wait.as_millis() as u64);
        }
        read.arg("STREAMS").arg(INBOX_STREAM).arg(">");
        let limit = wait + self.timeout;
        let reply = match self
            .bounded_for(reader, limit, read.query_async(&mut reader.get()))
            .await
        {
            Err(StoreError::Redis(e)) if e.contains("NOGROUP") => {
                self.ensure_group().await?;
                self.bounded_for(reader, limit, read.query_async(&mut reader.get()))
                    .await?
            }
            other => other?,
        };
        let reply: Option<StreamReadReply> = reply;
        let ids = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect();
        self.entries(ids, &Default::default(), u32::MAX).await
    }

    async fn reclaim_inbox(
        &self,
        consumer: &str,
        lease: Duration,
        max: usize,
        give_up: u32,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let mut cursor = self.reclaim_cursor.lock().await;
        let claim = redis::cmd("XAUTOCLAIM")
            .arg(INBOX_STREAM)
            .arg(INBOX_GROUP)
            .arg(consumer)
            .arg(lease.as_millis() as u64)
            .arg(cursor.as_str())
            .arg("COUNT")
            .arg(max)
            .clone();
        let reply: StreamAutoClaimReply = match self.query(&claim).await {
            Err(StoreError::Redis(e)) if e.contains("NOGROUP") => {
                self.ensure_group().await?;
                return Ok(Vec::new());
            }
            other => other?,
        };
        *cursor = reply.next_stream_id;
        drop(cursor);
        for gone in &reply.deleted_ids {
            self.ack(gone).await?;
        }
        let ids: Vec<&str> = reply.claimed.iter().map(|raw| raw.id.as_str()).collect();
        let deliveries = self.deliveries(&ids).await?;
        self.entries(reply.claimed, &deliveries, give_up).await
    }

    async fn ack(&self, entry_id: &str) -> Result<(), StoreError> {
        let mut invocation = self.scripts.ack.prepare_invoke();
        invocation
            .key(INBOX_STREAM)
            .key(FAILURES)
            .arg(INBOX_GROUP)
            .arg(entry_id);
        let mut conn = self.conn.get();
        self.bounded(invocation.invoke_async::<()>(&mut conn)).await
    }

    async fn fail(
        &self,
        entry: &InboxEntry,
        error: &str,
        now: Timestamp,
    ) -> Result<Failure, StoreError> {
        let event = serde_json::to_string(&entry.event).expect("an Event always serialises");
        let fields = [entry.event.id.as_str(), entry.event.kind.as_str(), &event];
        let failures = self
            .count_failure(
                &entry.entry_id,
                MAX_FAILURES,
                error,
                now,
                fields,
                entry.deliveries,
                INBOX_FORMAT,
            )
            .await?;
        Ok(match u32::try_from(failures) {
            Ok(failures) => Failure::WillRetry { failures },
            Err(_) => Failure::DeadLettered,
        })
    }

    async fn give_up(
        &self,
        entry: &InboxEntry,
        error: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let event = serde_json::to_string(&entry.event).expect("an Event always serialises");
        let fields = [entry.event.id.as_str(), entry.event.kind.as_str(), &event];
        self.count_failure(
            &entry.entry_id,
            0,
            error,
            now,
            fields,
            entry.deliveries,
            INBOX_FORMAT,
        )
        .await
        .map(drop)
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.dead_range("+", max).await
    }

    async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        let is_stream_id = id.split_once('-').is_some_and(|(ms, seq)| {
            !ms.is_empty()
                && ms.bytes().all(|b| b.is_ascii_digit())
                && seq.bytes().all(|b| b.is_ascii_digit())
        });
        if is_stream_id {
            let found = self.dead_range(id, 1).await?;
            return Ok(found.into_iter().find(|d| d.id == id));
        }
        // By event id: the stream is read newest first, a page at a time.
        let mut end = "+".to_owned();
        loop {
            let page = self.dead_range(&end, 1000).await?;
            if let Some(found) = page.iter().find(|d| d.event_id == id) {
                return Ok(Some(found.clone()));
            }
            match page.last() {
                Some(last) if page.len() == 1000 => end = format!("({}", last.id),
                _ => return Ok(None),
            }
        }
    }

    async fn replay(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut invocation = self.scripts.replay.prepare_invoke();
        invocation.key(INBOX_STREAM).key(DEAD_LETTERS).arg(id);
        let mut conn = self.conn.get();
        self.bounded(invocation.invoke_async(&mut conn)).await
    }

    async fn renew_entry(&self, consumer: &str, entry_id: &str) -> Result<bool, StoreError> {
        let mut invocation = self.scripts.renew.prepare_invoke();
        invocation
            .key(INBOX_STREAM)
            .arg(INBOX_GROUP)
            .arg(consumer)
            .arg(entry_id);
        let mut conn = self.conn.get();
        let renewed: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(renewed == 1)
    }

    async fn retire_consumer(&self, consumer: &str) -> Result<(), StoreError> {
        // XGROUP DELCONSUMER drops the consumer's pending entries from the group, which would lose
        // them: retire only a consumer that has none.
        let pending: Vec<Value> = self
            .query(
                redis::cmd("XPENDING")
                    .arg(INBOX_STREAM)
                    .arg(INBOX_GROUP)
                    .arg("-")
                    .arg("+")
                    .arg(1)
                    .arg(consumer),
            )
            .await?;
        if pending.is_empty() {
            self.query::<()>(
                redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(INBOX_STREAM)
                    .arg(INBOX_GROUP)
                    .arg(consumer),
            )
            .await?;
        }
        Ok(())
    }
}

impl Cases for RedisStore {
    async fn load_case(&self, invoice_id: &str) -> Result<Option<Case>, StoreError> {
        let stored: Option<Vec<u8>> = self
            .query(redis::cmd("GET").arg(case_key(invoice_id)))
            .await?;
        stored.as_deref().map(codec::decode).transpose()
    }

    async fn save_case(&self, case: &Case) -> Result<Saved, StoreError> {
        let id = &case.invoice_id;
        if case.version == 0 {
            // Written before the case itself, so a crash in between leaves an index entry pointing
            // at no case (which readers skip and the redelivered event completes), never a case
            // that support cannot find.
            let owners = std::iter::once(&case.customer_id).chain(&case.subscription_id);
            // Each index bucket is its own slot on a cluster, so these are separate commands (sent
            // together on the multiplexed connection), not one pipeline.
            try_join_all(owners.map(|owner| async move {
                let mut add = redis::cmd("ZADD");
                add.arg(index_key(owner))
                    .arg(0)
                    .arg(format!("{owner}:{id}"));
                self.query::<()>(&add).await
            }))
            .await?;
        }
        let mut saved = case.clone();
        saved.version += 1;
        let wake = saved
            .next_wake()
            .map(|at| at.as_millisecond().to_string())
            .unwrap_or_default();
        // Dunning over and nothing left to do: kept for the retention (on the wall clock, which
        // is what Redis expires keys by), then forgotten.
        let over = saved.state.is_final() && saved.next_wake().is_none();
        let retention = i64::try_from(self.settings.case_retention_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let forget_at = if over {
            Timestamp::now()
                .as_millisecond()
                .saturating_add(retention)
                .to_string()
        } else {
            String::new()
        };
        let forget_entry = format!(
            "{id}\t{}\t{}",
            case.customer_id,
            case.subscription_id.as_deref().unwrap_or("")
        );
        let mut invocation = self.scripts.save_versioned.prepare_invoke();
        let shard = shard_of(id);
        invocation
            .key(case_key(id))
            .key(due_key(shard))
            .key(wake_failures_key(shard))
            .key(parked_key(shard))
            .key(forget_key(shard))
            .arg(case.version)
            .arg(codec::encode(&saved))
            .arg(id)
            .arg(wake)
            .arg("")
            .arg(forget_at)
            .arg(forget_entry);
        self.save_versioned(invocation, saved.version).await
    }

    async fn customers(&self) -> Result<Vec<String>, StoreError> {
        let mut customers = std::collections::BTreeSet::new();
        // A day's one scan reads every bucket, a few hundred at a time on the multiplexed connection.
        let buckets: Vec<u64> = (0..INDEX_BUCKETS).collect();
        for chunk in buckets.chunks(256) {
            let read = try_join_all(chunk.iter().map(|&bucket| {
                let key = bucket_key(bucket);
                async move {
                    self.query::<Vec<String>>(redis::cmd("ZRANGE").arg(key).arg(0).arg(-1))
                        .await
                }
            }))
            .await?;
            customers.extend(read.into_iter().flatten().filter_map(|member| {
                member
                    .split_once(':')
                    .map(|(owner, _)| owner.to_owned())
                    .filter(|owner| owner.starts_with("cus_"))
            }));
        }
        Ok(customers.into_iter().collect())
    }

    async fn forgotten_at(&self, invoice_id: &str) -> Result<Option<Timestamp>, StoreError> {
        let left: i64 = self
            .query(redis::cmd("PTTL").arg(case_key(invoice_id)))
            .await?;
        Ok((left >= 0).then(|| {
            let at = Timestamp::now().as_millisecond().saturating_add(left);
            Timestamp::from_millisecond(at).unwrap_or(Timestamp::MAX)
        }))
    }

    async fn sweep_forgotten(&self) -> Result<u64, StoreError> {
        let now = Timestamp::now().as_millisecond();
        let mut forgotten = 0;
        for shard in 0..TIMER_SHARDS {
            loop {
                let mut invocation = self.scripts.forget.prepare_invoke();
                invocation
                    .key(forget_key(shard))
                    .arg(now)
                    .arg(500)
                    .arg(case_prefix(shard));
                let mut conn = self.conn.get();
                let gone: Vec<String> = self.bounded(invocation.invoke_async(&mut conn)).await?;
                for entry in &gone {
                    let mut parts = entry.split('\t');
                    let invoice = parts.next().unwrap_or_default();
                    // Each index bucket is a slot of its own: one command per owner.
                    for owner in parts.filter(|owner| !owner.is_empty()) {
                        self.query::<()>(
                            redis::cmd("ZREM")
                                .arg(index_key(owner))
                                .arg(format!("{owner}:{invoice}")),
                        )
                        .await?;
                    }
                }
                forgotten += gone.len() as u64;
                if gone.len() < 500 {
                    break;
                }
            }
        }
        Ok(forgotten)
    }

    async fn cases_of_customer(&self, customer_id: &str) -> Result<Vec<Case>, StoreError> {
        self.cases_under(customer_id).await
    }

    async fn cases_of_subscription(&self, subscription_id: &str) -> Result<Vec<Case>, StoreError> {
        self.cases_under(subscription_id).await
    }
}

impl Cards for RedisStore {
    async fn load_card(&self, fingerprint: &str) -> Result<CardHistory, StoreError> {
        let stored: Option<Vec<u8>> = self
            .query(redis::cmd("GET").arg(card_key(fingerprint)))
            .await?;
        stored
            .as_deref()
            .map_or_else(|| Ok(CardHistory::new(fingerprint)), codec::decode_card)
    }

    async fn save_card(&self, card: &CardHistory, keep: Duration) -> Result<Saved, StoreError> {
        let saved = CardHistory {
            version: card.version + 1,
            ..card.clone()
        };
        let mut invocation = self.scripts.save_versioned.prepare_invoke();
        invocation
            .key(card_key(&card.fingerprint))
            .arg(card.version)
            .arg(codec::encode_card(&saved))
            .arg("")
            .arg("")
            .arg(keep.as_millis() as u64);
        self.save_versioned(invocation, saved.version).await
    }
}

impl Counters for RedisStore {
    async fn count_nudge(&self, customer_id: &str, day: &str) -> Result<u64, StoreError> {
        let key = format!("recoup:nudges:{{{customer_id}}}:{day}");
        // Created with its expiry first, so the count never outlives its two days; INCR keeps it.
        self.query::<()>(
            redis::cmd("SET")
                .arg(&key)
                .arg(0)
                .arg("EX")
                .arg(2 * 86_400)
                .arg("NX"),
        )
        .await?;
        self.query(redis::cmd("INCR").arg(&key)).await
    }

    async fn first_time(&self, key: &str, keep: Duration) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(format!("recoup:once:{key}"))
                    .arg(1)
                    .arg("PX")
                    .arg(keep.as_millis() as u64)
                    .arg("NX"),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        // At least a millisecond: 0 would give the lease back.
        let ms = (ttl.as_millis() as u64).max(1);
        self.lease_script(name, holder, ms).await
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.lease_script(name, holder, 0).await.map(drop)
    }
}

impl RedisStore {
    async fn lease_script(&self, name: &str, holder: &str, ms: u64) -> Result<bool, StoreError> {
        let mut invocation = self.scripts.lease.prepare_invoke();
        invocation
            .key(format!("recoup:lease:{name}"))
            .arg(holder)
            .arg(ms);
        let mut conn = self.conn.get();
        let held: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(held == 1)
    }
}

impl Timers for RedisStore {
    async fn claim_due(
        &self,
        shard: u16,
        now: Timestamp,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        let mut invocation = self.scripts.claim_due.prepare_invoke();
        invocation
            .key(due_key(shard))
            .arg(now.as_millisecond())
            .arg(lease.as_millis() as u64)
            .arg(max)
            .arg(case_prefix(shard));
        let mut conn = self.conn.get();
        let claimed: Vec<(String, Option<Vec<u8>>)> =
            self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(claimed
            .into_iter()
            .map(|(invoice_id, stored)| Claim {
                case: stored
                    .as_deref()
                    .map(codec::decode)
                    .transpose()
                    .map_err(|e| e.to_string()),
                invoice_id,
            })
            .collect())
    }

    async fn renew_claim(&self, invoice_id: &str, until: Timestamp) -> Result<(), StoreError> {
        // XX: only a wake-up still there; GT: only pushed out, never brought forward.
        self.query::<()>(
            redis::cmd("ZADD")
                .arg(due_key(shard_of(invoice_id)))
                .arg("XX")
                .arg("GT")
                .arg(until.as_millisecond())
                .arg(invoice_id),
        )
        .await
    }

    async fn fail_wake(
        &self,
        invoice_id: &str,
        error: &str,
        now: Timestamp,
    ) -> Result<Failure, StoreError> {
        let shard = shard_of(invoice_id);
        let mut invocation = self.scripts.fail_wake.prepare_invoke();
        invocation
            .key(due_key(shard))
            .key(wake_failures_key(shard))
            .key(parked_key(shard))
            .arg(invoice_id)
            .arg(MAX_FAILURES)
            .arg(error)
            .arg(now.to_string());
        let mut conn = self.conn.get();
        let failures: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(match u32::try_from(failures) {
            Ok(failures) => Failure::WillRetry { failures },
            Err(_) => Failure::DeadLettered,
        })
    }

    async fn parked(&self) -> Result<Vec<Parked>, StoreError> {
        let shards = try_join_all((0..TIMER_SHARDS).map(|shard| async move {
            self.query::<Vec<(String, String)>>(redis::cmd("HGETALL").arg(parked_key(shard)))
                .await
        }))
        .await?;
        let mut parked: Vec<Parked> = shards
            .into_iter()
            .flatten()
            .map(|(invoice_id, json)| {
                serde_json::from_str(&json).unwrap_or(Parked {
                    invoice_id,
                    failures: 0,
                    error: format!("unreadable record: {json}"),
                    at: Timestamp::UNIX_EPOCH,
                })
            })
            .collect();
        parked.sort_by_key(|p| std::cmp::Reverse(p.at));
        Ok(parked)
    }

    async fn unpark(&self, invoice_id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let shard = shard_of(invoice_id);
        let mut invocation = self.scripts.unpark.prepare_invoke();
        invocation
            .key(due_key(shard))
            .key(wake_failures_key(shard))
            .key(parked_key(shard))
            .arg(invoice_id)
            .arg(now.as_millisecond());
        let mut conn = self.conn.get();
        let unparked: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(unparked == 1)
    }

    async fn count_due(&self, now: Timestamp) -> Result<u64, StoreError> {
        let now_ms = now.as_millisecond();
        let counts = try_join_all((0..TIMER_SHARDS).map(|shard| async move {
            let mut count = redis::cmd("ZCOUNT");
            count.arg(due_key(shard)).arg("-inf").arg(now_ms);
            self.query::<u64>(&count).await
        }))
        .await?;
        Ok(counts.into_iter().sum())
    }
}

impl TestClock for RedisStore {
    async fn clock_offset(&self) -> Result<i64, StoreError> {
        let offset: Option<i64> = self.query(redis::cmd("GET").arg(CLOCK_OFFSET)).await?;
        Ok(offset.unwrap_or(0))
    }

    async fn advance_clock(&self, seconds: i64) -> Result<i64, StoreError> {
        self.query(redis::cmd("INCRBY").arg(CLOCK_OFFSET).arg(seconds))
            .await
    }
}

/// The key of a status page session, named by the key its caller chose.
pub fn session_key(key: &str) -> String {
    format!("recoup:session:{key}")
}

impl Sessions for RedisStore {
    async fn open_session(
        &self,
        key: &str,
        session: &Session,
        keep: Duration,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(session).expect("a session always serialises");
        self.query::<()>(
            redis::cmd("SET")
                .arg(session_key(key))
                .arg(json)
                .arg("PX")
                .arg(keep.as_millis().max(1) as u64),
        )
        .await
    }

    async fn session(&self, key: &str) -> Result<Option<Session>, StoreError> {
        let stored: Option<String> = self.query(redis::cmd("GET").arg(session_key(key))).await?;
        stored
            .map(|json| {
                serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("a session that is not JSON: {e}")))
            })
            .transpose()
    }

    async fn close_session(&self, key: &str) -> Result<(), StoreError> {
        self.query::<()>(redis::cmd("DEL").arg(session_key(key)))
            .await
    }
}

/// One Redis server or a cluster, behind the same commands.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    /// Opens a connection whose answers time out after `response_timeout` (`None`: the caller
    /// bounds each call itself, as the blocking inbox read does).
    async fn open(
        settings: &RedisSettings,
        timeout: Duration,
        response_timeout: Option<Duration>,
    ) -> Result<Self, RedisError> {
        let tcp = tcp_settings();
        if settings.cluster {
            let client = ClusterClient::builder(settings.urls())
                .tcp_settings(tcp)
                .connection_timeout(timeout)
                .response_timeout(response_timeout.unwrap_or(MAX_BLOCK + timeout))
                .retries(2)
                .build()?;
            return Ok(Connection::Cluster(client.get_async_connection().await?));
        }
        let info = settings.url.as_str().into_connection_info()?;
        let client = redis::Client::open(info.set_tcp_settings(tcp))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(response_timeout)
            // Reconnection happens in the background of requests; keep each round short so
            // callers see Redis return promptly instead of waiting out a long backoff.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        Ok(Connection::Single(
            ConnectionManager::new_with_config(client, config).await?,
        ))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}
