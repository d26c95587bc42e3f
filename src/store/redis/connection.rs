//! Connections that come back: every socket with TCP keepalive and a user timeout, a timeout that
//! makes the connection check itself and be replaced when dead, and the Redis settings recoup's
//! promises rest on checked at start-up.

// The backend is one type over one connection: each file implements some of its roles, with the
// keys, scripts and helpers of `mod.rs` in scope.
use super::*;

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
    pub(super) async fn config_get(&self, name: &str) -> Result<Vec<String>, StoreError> {
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
pub(super) fn flatten(value: Value, into: &mut Vec<String>) {
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

pub(super) async fn open_bounded(
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
pub(super) struct Link {
    current: std::sync::RwLock<Connection>,
    /// A check (and perhaps a reconnection) is under way; one at a time is enough.
    checking: std::sync::atomic::AtomicBool,
    settings: RedisSettings,
    timeout: Duration,
    response_timeout: Option<Duration>,
}

impl Link {
    pub(super) async fn open(
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
    pub(super) fn get(&self) -> Connection {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A request on this link timed out: checks the connection in the background, and replaces it
    /// if it does not answer a PING within the time bound.
    pub(super) fn suspect(self: &Arc<Self>) {
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
pub(super) fn tcp_settings() -> TcpSettings {
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

/// One Redis server or a cluster, behind the same commands.
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    /// Opens a connection whose answers time out after `response_timeout` (`None`: the caller
    /// bounds each call itself, as the blocking inbox read does).
    pub(super) async fn open(
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
