//! Typed settings: `config/recoup.toml` layered with the environment, validated once at start-up.
//!
//! Precedence, lowest first: built-in defaults, the TOML file, the generic environment form
//! `RECOUP_<SECTION>__<KEY>`, and the fixed names of `docs/reference/configuration.md#settings` (`REDIS_URL`, `RECOUP_LISTEN`,
//! `RECOUP_LOG_FORMAT`, …). Secrets — webhook signing secrets for now — come from the environment only:
//! the file cannot hold them, and they are wrapped in [`SecretString`] so `Debug` and logs never show
//! them.
//!
//! The loader takes the environment as a list of pairs instead of reading the process's, so it can be
//! tested without touching global state. Every error names the key, the bad value and what is allowed.

mod env;
pub mod policy;
mod secrets;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use self::env::{EnvLayer, lookup};
pub use self::secrets::{ApiToken, Secrets};
use self::secrets::{api_tokens, link_secrets, secret, webhook_secrets};

/// The default location of the settings file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/recoup.toml";

/// Everything `recoup serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub webhook: WebhookSettings,
    pub redis: RedisSettings,
    pub log: LogSettings,
    pub worker: WorkerSettings,
    pub clock: ClockSettings,
    pub policy: PolicySettings,
    pub stripe: StripeSettings,
    pub notify: NotifySettings,
    pub links: LinkSettings,
    pub secrets: Secrets,
}

/// The part of [`Settings`] that may come from the file or the environment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Layered {
    server: ServerSettings,
    webhook: WebhookSettings,
    redis: RedisSettings,
    log: LogSettings,
    worker: WorkerSettings,
    clock: ClockSettings,
    policy: PolicySettings,
    stripe: StripeSettings,
    notify: NotifySettings,
    links: LinkSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Largest request body accepted; larger ones get 413.
    pub body_limit_bytes: usize,
    /// A request that takes longer than this in total is cut off with 408.
    pub request_timeout_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// How far a signature timestamp may be from now, in either direction.
    pub tolerance_secs: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            tolerance_secs: 300,
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port/db` or `rediss://…` for TLS; with `cluster`, several
    /// comma-separated node URLs (any reachable node is enough to discover the rest).
    pub url: String,
    /// Whether `url` names the nodes of a Redis Cluster.
    pub cluster: bool,
    /// Bound on one store operation; past it the webhook answers 503 and Stripe delivers again.
    pub timeout_ms: u64,
    /// How long an event id is remembered for deduplication.
    pub dedupe_ttl_secs: u64,
    /// How long a case is kept once dunning is over for it (recovered, paused, canceled, closed,
    /// nothing left to do), with its index entries; then it is forgotten.
    pub case_retention_secs: u64,
    /// How many days of the recovery dashboard's daily counters are kept, today included: the
    /// longest period the dashboard shows (`docs/user-guide/dashboard.md`).
    pub dashboard_days: u32,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            cluster: false,
            timeout_ms: 1000,
            dedupe_ttl_secs: 30 * 24 * 3600,
            case_retention_secs: 90 * 24 * 3600,
            dashboard_days: crate::store::DASHBOARD_DAYS,
        }
    }
}

impl RedisSettings {
    /// The node URLs: one, or several for a cluster.
    pub fn urls(&self) -> Vec<&str> {
        self.url.split(',').map(str::trim).collect()
    }

    /// The URL(s) with any password replaced, for messages and logs.
    pub fn redacted_url(&self) -> String {
        self.urls()
            .into_iter()
            .map(crate::redact::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.redacted_url())
            .field("cluster", &self.cluster)
            .field("timeout_ms", &self.timeout_ms)
            .field("dedupe_ttl_secs", &self.dedupe_ttl_secs)
            .field("case_retention_secs", &self.case_retention_secs)
            .field("dashboard_days", &self.dashboard_days)
            .finish()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// How long a claimed inbox entry or timer stays claimed before another worker may take it over.
    pub lease_secs: u64,
    /// How many cases one worker process works on at once.
    pub concurrency: usize,
    /// How often a worker looks whether today's scan of default cards has run (one worker runs it
    /// a day).
    pub scan_interval_secs: u64,
    /// `RECOUP_WORKER__BACKFILL_SECS`: how often a worker fetches the events webhooks may have
    /// missed from Stripe's events API (also once at start); 0 = never.
    pub backfill_secs: u64,
    /// How often one worker reconciles Stripe's open invoices with the open cases; 0 = never.
    pub reconcile_secs: u64,
    /// `RECOUP_WORKER__EVIDENCE_SECS`: how often a worker reads the learning policy's evidence
    /// again (also once at start), so what other workers learned reaches its plans.
    pub evidence_secs: u64,
    /// How long an inbox entry may keep failing for passing reasons (Stripe or Redis away, an
    /// entry only a newer release reads) before it is dead-lettered, counted in deliveries: this
    /// over the lease.
    pub dead_letter_after_secs: u64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            lease_secs: 10,
            concurrency: 64,
            scan_interval_secs: 3600,
            backfill_secs: 3600,
            reconcile_secs: 86_400,
            evidence_secs: 60,
            dead_letter_after_secs: 86_400,
        }
    }
}

impl WorkerSettings {
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_secs)
    }

    pub fn scan_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.scan_interval_secs)
    }

    /// How often to read the evidence again.
    pub fn evidence_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.evidence_secs)
    }

    /// How often to backfill; `None` = never.
    pub fn backfill_interval(&self) -> Option<std::time::Duration> {
        (self.backfill_secs > 0).then(|| std::time::Duration::from_secs(self.backfill_secs))
    }

    /// How often to reconcile; `None` = never.
    pub fn reconcile_interval(&self) -> Option<std::time::Duration> {
        (self.reconcile_secs > 0).then(|| std::time::Duration::from_secs(self.reconcile_secs))
    }

    /// After how many deliveries an inbox entry that keeps failing for passing reasons is
    /// dead-lettered: [`Self::dead_letter_after_secs`] over the lease (one delivery per lease), at
    /// least 3.
    pub fn give_up_deliveries(&self) -> u32 {
        let deliveries = self.dead_letter_after_secs / self.lease_secs.max(1);
        u32::try_from(deliveries).unwrap_or(u32::MAX).max(3)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockSettings {
    /// `RECOUP_TEST_CLOCK=1`: the scheduler's now is the wall clock plus an offset kept in the store.
    #[serde(deserialize_with = "flag")]
    pub test: bool,
}

/// Where the retry policy comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySettings {
    /// `RECOUP_POLICY`: the policy file. When it is left at the default and no such file exists,
    /// the built-in policy (which `config/policy.toml` spells out) applies.
    pub path: PathBuf,
    /// `RECOUP_NETWORKS`: the card networks' rules (`config/networks.toml`). Unset: that file
    /// when it exists, else the rules built into recoup.
    pub networks: Option<PathBuf>,
}

/// How recoup calls Stripe (the key itself is a secret: `STRIPE_API_KEY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StripeSettings {
    /// `STRIPE_API_BASE`: where the Stripe API is; tests point it at a fake.
    pub api_base: String,
    /// Bound on one HTTP call to Stripe.
    pub timeout_ms: u64,
    /// How many more times a call is made after a passing failure (timeout, 429, 5xx).
    pub retries: u32,
    /// The first pause before such a call is made again; it doubles (with jitter) up to 5 s.
    pub backoff_ms: u64,
}

impl Default for StripeSettings {
    fn default() -> Self {
        Self {
            api_base: "https://api.stripe.com".to_owned(),
            timeout_ms: 8_000,
            retries: 3,
            backoff_ms: 250,
        }
    }
}

/// How nudges reach customers and the business; a channel is on when its address is set. The
/// secrets of each (`RECOUP_SMTP_URL`, which may hold a password, `RECOUP_NUDGE_WEBHOOK_SECRET`,
/// `RECOUP_SMS_AUTH_TOKEN`) come from the environment only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifySettings {
    /// `RECOUP_EMAIL_FROM`: the From of email nudges, `Name <address>` or a bare address.
    pub email_from: Option<String>,
    /// `RECOUP_NUDGE_WEBHOOK_URL`: where nudges are POSTed as signed JSON.
    pub webhook_url: Option<String>,
    /// `RECOUP_SMS_API_BASE`: a Twilio-compatible API, e.g. `https://api.twilio.com`.
    pub sms_api_base: Option<String>,
    /// `RECOUP_SMS_ACCOUNT_SID`.
    pub sms_account_sid: Option<String>,
    /// `RECOUP_SMS_FROM`: the sending number, E.164.
    pub sms_from: Option<String>,
    /// The message templates: `<language>/<kind>-<tier>.txt` and `.html`.
    pub templates: PathBuf,
    /// Bound on one delivery (an SMTP session, an HTTP request).
    pub timeout_ms: u64,
    /// How many more times a delivery is tried after a passing failure.
    pub retries: u32,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            email_from: None,
            webhook_url: None,
            sms_api_base: None,
            sms_account_sid: None,
            sms_from: None,
            templates: PathBuf::from(crate::notify::templates::DEFAULT_DIR),
            timeout_ms: 10_000,
            retries: 3,
        }
    }
}

/// The update links nudges carry (`<public_url>/fix/<token>`); the key that signs their tokens is
/// a secret, `RECOUP_LINK_SECRET`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkSettings {
    /// `RECOUP_PUBLIC_URL`: where customers reach recoup's own pages, e.g.
    /// `https://billing.acme.example`; required by a worker with any nudge channel on.
    pub public_url: Option<String>,
    /// How long an update link works after its nudge was sent.
    pub expire_days: u32,
}

impl Default for LinkSettings {
    fn default() -> Self {
        Self {
            public_url: None,
            expire_days: 30,
        }
    }
}

impl LinkSettings {
    /// How long an update link works.
    pub fn lifetime(&self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_hours(i64::from(self.expire_days) * 24)
    }
}

/// The policy file `recoup serve` reads unless told otherwise.
pub const DEFAULT_POLICY_PATH: &str = crate::policy::file::SHIPPED_PATH;

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_POLICY_PATH),
            networks: None,
        }
    }
}

/// A switch written as `true`/`false` in the file or `1`/`0` in the environment.
fn flag<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Number(i64),
        Text(String),
    }
    match Flag::deserialize(deserializer)? {
        Flag::Bool(b) => Ok(b),
        Flag::Number(1) => Ok(true),
        Flag::Number(0) => Ok(false),
        Flag::Text(t) if t == "1" || t.eq_ignore_ascii_case("true") => Ok(true),
        Flag::Text(t) if t.is_empty() || t == "0" || t.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(serde::de::Error::custom("expected 1, 0, true or false")),
    }
}

/// A setting that could not be used, with enough detail to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: {key} = {value:?}: {allowed}")]
    Invalid {
        key: String,
        value: String,
        allowed: String,
    },
}

impl ConfigError {
    fn invalid(key: &str, value: impl ToString, allowed: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }
}

impl Settings {
    /// Loads the settings from `path` (or [`DEFAULT_CONFIG_PATH`] when it exists) and `env`.
    ///
    /// A path given explicitly must exist; the default one may be missing, and then the built-in
    /// defaults apply, so the binary runs from any directory.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut figment = Figment::from(Serialized::defaults(Layered::default()));
        match path {
            Some(path) => {
                // Figment skips a missing file silently; an explicit path must exist.
                std::fs::File::open(path).map_err(|source| ConfigError::File {
                    path: path.to_path_buf(),
                    source,
                })?;
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                figment = figment.merge(Toml::file(DEFAULT_CONFIG_PATH));
            }
            None => {}
        }
        let layered: Layered = figment
            .merge(EnvLayer::generic(&env))
            .merge(EnvLayer::named(&env))
            .extract()
            .map_err(|e| ConfigError::Parse(describe_figment_error(e)))?;

        let secrets = Secrets {
            webhook_secrets: webhook_secrets(lookup(&env, "STRIPE_WEBHOOK_SECRETS"))?,
            api_tokens: api_tokens(lookup(&env, "RECOUP_API_TOKENS"))?,
            stripe_api_key: secret(&env, "STRIPE_API_KEY"),
            smtp_url: secret(&env, "RECOUP_SMTP_URL"),
            nudge_webhook_secret: secret(&env, "RECOUP_NUDGE_WEBHOOK_SECRET"),
            sms_auth_token: secret(&env, "RECOUP_SMS_AUTH_TOKEN"),
            link_secrets: link_secrets(lookup(&env, "RECOUP_LINK_SECRET"))?,
        };
        let settings = Settings {
            server: layered.server,
            webhook: layered.webhook,
            redis: layered.redis,
            log: layered.log,
            worker: layered.worker,
            clock: layered.clock,
            policy: layered.policy,
            stripe: layered.stripe,
            notify: layered.notify,
            links: layered.links,
            secrets,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what the types alone cannot.
    fn validate(&self) -> Result<(), ConfigError> {
        /// `value` must lie in `range`; otherwise the error names `key` and says what is allowed.
        fn within<T: PartialOrd + ToString>(
            key: &str,
            value: T,
            range: std::ops::RangeInclusive<T>,
            allowed: &str,
        ) -> Result<(), ConfigError> {
            if range.contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::invalid(key, value, allowed))
            }
        }
        let s = &self.server;
        within(
            "server.body_limit_bytes",
            s.body_limit_bytes,
            1024..=64 * 1024 * 1024,
            "between 1024 (1 KiB) and 67108864 (64 MiB)",
        )?;
        within(
            "server.request_timeout_secs",
            s.request_timeout_secs,
            1..=300,
            "between 1 and 300 seconds",
        )?;
        within(
            "webhook.tolerance_secs",
            self.webhook.tolerance_secs,
            1..=3600,
            "between 1 and 3600 seconds (Stripe's libraries use 300)",
        )?;
        let r = &self.redis;
        if r.urls().len() > 1 && !r.cluster {
            return Err(ConfigError::invalid(
                "redis.url (REDIS_URL)",
                r.redacted_url(),
                "one URL, or several comma-separated node URLs with redis.cluster = true \
                 (RECOUP_REDIS__CLUSTER=true) for a Redis Cluster",
            ));
        }
        for url in r.urls() {
            if let Err(e) = redis::Client::open(url) {
                return Err(ConfigError::invalid(
                    "redis.url (REDIS_URL)",
                    crate::redact::url(url),
                    format!("a redis:// or rediss:// URL such as redis://127.0.0.1:6379/0 ({e})"),
                ));
            }
        }
        within(
            "redis.timeout_ms",
            r.timeout_ms,
            10..=60_000,
            "between 10 and 60000 milliseconds",
        )?;
        let w = &self.worker;
        within(
            "worker.lease_secs (RECOUP_WORKER__LEASE_SECS)",
            w.lease_secs,
            1..=3600,
            "between 1 and 3600 seconds; longer than the slowest case takes to process",
        )?;
        within(
            "worker.concurrency",
            w.concurrency,
            1..=10_000,
            "between 1 and 10000 cases at once",
        )?;
        within(
            "worker.dead_letter_after_secs",
            w.dead_letter_after_secs,
            1..=30 * 86_400,
            "between 1 and 2592000 seconds (30 days)",
        )?;
        within(
            "worker.scan_interval_secs",
            w.scan_interval_secs,
            1..=86_400,
            "between 1 and 86400 seconds",
        )?;
        within(
            "worker.backfill_secs (RECOUP_WORKER__BACKFILL_SECS)",
            w.backfill_secs,
            0..=604_800,
            "0 (never) or up to 604800 seconds (a week); Stripe keeps events for 30 days",
        )?;
        within(
            "worker.evidence_secs (RECOUP_WORKER__EVIDENCE_SECS)",
            w.evidence_secs,
            1..=3_600,
            "between 1 and 3600 seconds",
        )?;
        within(
            "worker.reconcile_secs (RECOUP_WORKER__RECONCILE_SECS)",
            w.reconcile_secs,
            0..=2_592_000,
            "0 (never) or up to 2592000 seconds (30 days)",
        )?;
        let st = &self.stripe;
        if !(st.api_base.starts_with("https://") || st.api_base.starts_with("http://")) {
            return Err(ConfigError::invalid(
                "stripe.api_base (STRIPE_API_BASE)",
                &st.api_base,
                "an http:// or https:// URL such as https://api.stripe.com",
            ));
        }
        within(
            "stripe.timeout_ms",
            st.timeout_ms,
            100..=120_000,
            "between 100 and 120000 milliseconds",
        )?;
        within("stripe.retries", st.retries, 0..=10, "between 0 and 10")?;
        within(
            "stripe.backoff_ms",
            st.backoff_ms,
            1..=10_000,
            "between 1 and 10000 milliseconds",
        )?;
        let live_key = self.secrets.stripe_api_key.as_ref().is_some_and(|k| {
            let key = k.expose_secret().trim();
            key.starts_with("sk_live_") || key.starts_with("rk_live_")
        });
        if self.clock.test && live_key {
            return Err(ConfigError::invalid(
                "RECOUP_TEST_CLOCK",
                "1",
                "off while STRIPE_API_KEY is a live key (sk_live_… or rk_live_…): moving the \
                 clock would charge real cards early; use a test key (sk_test_… or rk_test_…) \
                 with the test clock",
            ));
        }
        let links = &self.links;
        within(
            "links.expire_days (RECOUP_LINKS__EXPIRE_DAYS)",
            links.expire_days,
            1..=365,
            "between 1 and 365 days",
        )?;
        if let Some(url) = &links.public_url {
            check_public_url(url)?;
        }
        within(
            "redis.case_retention_secs (RECOUP_REDIS__CASE_RETENTION_SECS)",
            r.case_retention_secs,
            1..=10 * 365 * 86_400,
            "between 1 and 315360000 seconds (10 years); 7776000 (90 days) by default",
        )?;
        within(
            "redis.dashboard_days (RECOUP_REDIS__DASHBOARD_DAYS)",
            r.dashboard_days,
            1..=3_650,
            "between 1 and 3650 days (10 years); 400 by default",
        )?;
        const THREE_DAYS: u64 = 3 * 24 * 3600;
        if r.dedupe_ttl_secs < THREE_DAYS {
            return Err(ConfigError::invalid(
                "redis.dedupe_ttl_secs",
                r.dedupe_ttl_secs,
                "at least 259200 (3 days, how long Stripe keeps redelivering an event)",
            ));
        }
        Ok(())
    }
}

/// `RECOUP_PUBLIC_URL` must be a plain base URL: `https://` (plain `http://` only for a loopback
/// host, where a browser keeps it on the machine), with a host, and no credentials, query or
/// fragment to mangle the `/fix/<token>` appended to it. Update links are bearer links to the
/// customer's billing portal: they must not travel in clear text.
fn check_public_url(url: &str) -> Result<(), ConfigError> {
    let refuse = |why: &str| {
        Err(ConfigError::invalid(
            "RECOUP_PUBLIC_URL (links.public_url)",
            crate::redact::url(url),
            format!(
                "{why}: the https:// base URL at which customers reach recoup, such as \
                 https://billing.acme.example (http:// only for localhost)"
            ),
        ))
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return refuse("not a URL");
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(host, _)| host);
    let loopback = host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    match scheme {
        "https" => {}
        "http" if loopback => {}
        "http" => return refuse("plain http:// outside localhost"),
        _ => return refuse("not an https:// URL"),
    }
    if host.is_empty() {
        return refuse("no host");
    }
    if url.contains('@')
        || url.contains('?')
        || url.contains('#')
        || url.contains(char::is_whitespace)
    {
        return refuse("credentials, a query or a fragment");
    }
    Ok(())
}

/// Turns figment's error into one line per problem that names the environment variable or file.
fn describe_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(src) => format!(" (from {src})"),
                    None => {
                        let profile = e.profile.clone().unwrap_or_default();
                        format!(" (from {} {})", m.name, m.interpolate(&profile, &e.path))
                    }
                })
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("{key}: {}{source}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
