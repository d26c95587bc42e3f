//! The Redis store: key layout, scripts and time bounds.
//!
//! Keys of the inbox share the `{inbox}` hash tag so the ingest script's two keys land in one slot on
//! Redis Cluster. Every operation is bounded by `redis.timeout_ms` — connecting included — so a dead
//! or stalled Redis turns into a prompt error (and a 503 for Stripe) instead of a hung request.
//!
//! One server is reached through a connection manager, a cluster through redis-rs's cluster
//! connection (which follows slot moves); both multiplex every caller over shared connections, which
//! pipelines concurrent webhooks for free, and both reconnect by themselves when Redis comes back.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Script, Value};

use super::{Ingest, StoreError};
use crate::config::RedisSettings;
use crate::webhook::event::Event;

/// The inbox stream that workers consume.
pub const INBOX_STREAM: &str = "recoup:{inbox}:stream";

/// Prefix of the per-event dedupe markers; the event id follows.
pub const EVENT_MARKER_PREFIX: &str = "recoup:{inbox}:evt:";

/// A handle on Redis; cheap to clone, shared by every request.
#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    ingest: Script,
    timeout: Duration,
    dedupe_ttl_secs: u64,
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
        let url = settings.redacted_url();
        let unreachable = |reason: String| StoreError::Unreachable {
            url: url.clone(),
            reason,
        };
        let timeout = Duration::from_millis(settings.timeout_ms);
        let conn = tokio::time::timeout(timeout, Connection::open(settings, timeout))
            .await
            .map_err(|_| unreachable(format!("no answer within {} ms", settings.timeout_ms)))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Self {
            conn,
            ingest: Script::new(include_str!("scripts/ingest.lua")),
            timeout,
            dedupe_ttl_secs: settings.dedupe_ttl_secs,
            url,
        })
    }

    /// Dedupes `event` on its id and appends it to the inbox, atomically.
    pub async fn ingest(&self, event: &Event) -> Result<Ingest, StoreError> {
        let payload = serde_json::to_string(event).expect("an Event always serialises");
        let mut conn = self.conn.clone();
        let mut invocation = self.ingest.prepare_invoke();
        invocation
            .key(format!("{EVENT_MARKER_PREFIX}{}", event.id))
            .key(INBOX_STREAM)
            .arg(self.dedupe_ttl_secs)
            .arg(&event.id)
            .arg(event.kind.as_str())
            .arg(payload);
        let entry: Option<String> = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(match entry {
            Some(entry_id) => Ingest::Stored { entry_id },
            None => Ingest::Duplicate,
        })
    }

    /// Whether Redis answers a PING within the bound.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(redis::cmd("PING").query_async::<String>(&mut conn))
            .await
            .map(drop)
    }

    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, op).await {
            Err(_) => Err(StoreError::Timeout(self.timeout.as_millis() as u64)),
            Ok(Err(e)) if e.is_timeout() => {
                Err(StoreError::Timeout(self.timeout.as_millis() as u64))
            }
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
}

/// One Redis server or a cluster, behind the same commands.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    async fn open(settings: &RedisSettings, timeout: Duration) -> Result<Self, RedisError> {
        if settings.cluster {
            let client = ClusterClient::builder(settings.urls())
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(2)
                .build()?;
            return Ok(Connection::Cluster(client.get_async_connection().await?));
        }
        let client = redis::Client::open(settings.url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
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
