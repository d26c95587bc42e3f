//! Typed settings: `config/recoup.toml` layered with the environment, validated once at start-up.
//!
//! Precedence, lowest first: built-in defaults, the TOML file, the generic environment form
//! `RECOUP_<SECTION>__<KEY>`, and the fixed names of CONTRACT.md (`REDIS_URL`, `RECOUP_LISTEN`,
//! `RECOUP_LOG_FORMAT`, …). Secrets — webhook signing secrets for now — come from the environment only:
//! the file cannot hold them, and they are wrapped in [`SecretString`] so `Debug` and logs never show
//! them.
//!
//! The loader takes the environment as a list of pairs instead of reading the process's, so it can be
//! tested without touching global state. Every error names the key, the bad value and what is allowed.

pub mod policy;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The default location of the settings file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/recoup.toml";

/// Prefix of the generic environment form `RECOUP_<SECTION>__<KEY>`.
const ENV_PREFIX: &str = "RECOUP_";

/// Fixed environment names of CONTRACT.md and the setting each one overrides.
const NAMED_ENV: &[(&str, &str)] = &[
    ("REDIS_URL", "redis.url"),
    ("RECOUP_LISTEN", "server.listen"),
    ("RECOUP_LOG_FORMAT", "log.format"),
    ("RECOUP_TEST_CLOCK", "clock.test"),
    ("RECOUP_POLICY", "policy.path"),
    ("STRIPE_API_BASE", "stripe.api_base"),
    ("RECOUP_EMAIL_FROM", "notify.email_from"),
    ("RECOUP_NUDGE_WEBHOOK_URL", "notify.webhook_url"),
    ("RECOUP_SMS_API_BASE", "notify.sms_api_base"),
    ("RECOUP_SMS_ACCOUNT_SID", "notify.sms_account_sid"),
    ("RECOUP_SMS_FROM", "notify.sms_from"),
];

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
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            cluster: false,
            timeout_ms: 1000,
            dedupe_ttl_secs: 30 * 24 * 3600,
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
            .map(redact_url)
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
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            lease_secs: 10,
            concurrency: 64,
            scan_interval_secs: 3600,
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
            templates: PathBuf::from("config/templates"),
            timeout_ms: 10_000,
            retries: 3,
        }
    }
}

/// The policy file `recoup serve` reads unless told otherwise.
pub const DEFAULT_POLICY_PATH: &str = crate::policy::file::SHIPPED_PATH;

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_POLICY_PATH),
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

/// A bearer token for `/api/v1/*`, with the name recorded on what its holder does.
#[derive(Clone)]
pub struct ApiToken {
    pub name: String,
    pub token: SecretString,
}

/// Secrets, from the environment only.
#[derive(Clone, Default)]
pub struct Secrets {
    /// `STRIPE_WEBHOOK_SECRETS`: every one is accepted, so a secret can be rotated without downtime.
    pub webhook_secrets: Vec<SecretString>,
    /// `RECOUP_API_TOKENS`: `name:token` or bare `token` (named `token-<position>`).
    pub api_tokens: Vec<ApiToken>,
    /// `STRIPE_API_KEY`: the processor secret key.
    pub stripe_api_key: Option<SecretString>,
    /// `RECOUP_SMTP_URL`: `smtp://[user:password@]host:port` or `smtps://…`; email is off without it.
    pub smtp_url: Option<SecretString>,
    /// `RECOUP_NUDGE_WEBHOOK_SECRET`: signs nudge webhooks.
    pub nudge_webhook_secret: Option<SecretString>,
    /// `RECOUP_SMS_AUTH_TOKEN`.
    pub sms_auth_token: Option<SecretString>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field(
                "webhook_secrets",
                &format_args!("[{} redacted]", self.webhook_secrets.len()),
            )
            .field(
                "api_tokens",
                &self.api_tokens.iter().map(|t| &t.name).collect::<Vec<_>>(),
            )
            .field(
                "stripe_api_key",
                &self.stripe_api_key.as_ref().map(|_| "redacted"),
            )
            .field("smtp_url", &self.smtp_url.as_ref().map(|_| "redacted"))
            .field(
                "nudge_webhook_secret",
                &self.nudge_webhook_secret.as_ref().map(|_| "redacted"),
            )
            .field(
                "sms_auth_token",
                &self.sms_auth_token.as_ref().map(|_| "redacted"),
            )
            .finish()
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
                    redact_url(url),
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
            "worker.scan_interval_secs",
            w.scan_interval_secs,
            1..=86_400,
            "between 1 and 86400 seconds",
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
        let live_key = self
            .secrets
            .stripe_api_key
            .as_ref()
            .is_some_and(|k| k.expose_secret().starts_with("sk_live_"));
        if self.clock.test && live_key {
            return Err(ConfigError::invalid(
                "RECOUP_TEST_CLOCK",
                "1",
                "off while STRIPE_API_KEY is a live key (sk_live_…): moving the clock would \
                 charge real cards early; use a test key (sk_test_…) with the test clock",
            ));
        }
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

/// A secret from the environment; blank counts as unset.
fn secret(env: &[(String, String)], name: &str) -> Option<SecretString> {
    lookup(env, name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| SecretString::from(v.to_owned()))
}

/// Parses `STRIPE_WEBHOOK_SECRETS`; its value is never echoed, only the position of a bad entry.
fn webhook_secrets(raw: Option<&str>) -> Result<Vec<SecretString>, ConfigError> {
    // Set but empty (as compose files and CI often leave a variable) means not set.
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .enumerate()
        .map(|(i, secret)| {
            if secret.starts_with("whsec_") && secret.len() > "whsec_".len() {
                Ok(SecretString::from(secret.to_owned()))
            } else {
                Err(ConfigError::invalid(
                    "STRIPE_WEBHOOK_SECRETS",
                    format!("<entry {} redacted>", i + 1),
                    "comma-separated signing secrets that each start with whsec_ \
                     (Stripe dashboard → Webhooks → your endpoint → Signing secret)",
                ))
            }
        })
        .collect()
}

/// Parses `RECOUP_API_TOKENS`; like the signing secrets, a bad entry is named by position only.
fn api_tokens(raw: Option<&str>) -> Result<Vec<ApiToken>, ConfigError> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .enumerate()
        .map(|(i, entry)| {
            let (name, token) = match entry.split_once(':') {
                Some((name, token)) => (name.trim().to_owned(), token.trim()),
                None => (format!("token-{}", i + 1), entry),
            };
            if token.len() < 16 || name.is_empty() {
                return Err(ConfigError::invalid(
                    "RECOUP_API_TOKENS",
                    format!("<entry {} redacted>", i + 1),
                    "comma-separated tokens of at least 16 characters, each bare or as \
                     name:token (for example support-ana:6f1c…; openssl rand -hex 24 makes one)",
                ));
            }
            Ok(ApiToken {
                name,
                token: SecretString::from(token.to_owned()),
            })
        })
        .collect()
}

impl Secrets {
    /// The signing secrets as bytes, for the verifier.
    pub fn webhook_secret_bytes(&self) -> impl Iterator<Item = &[u8]> {
        self.webhook_secrets
            .iter()
            .map(|s| s.expose_secret().as_bytes())
    }
}

fn lookup<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Replaces the password of a URL (`redis://user:secret@host`) with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
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

/// A figment provider over an environment snapshot, in one of its two forms.
struct EnvLayer {
    name: &'static str,
    pairs: Vec<(String, String)>,
}

impl EnvLayer {
    /// `RECOUP_SERVER__LISTEN=…` → `server.listen`. Variables without `__` (such as `RECOUP_LISTEN`
    /// or `RECOUP_API_TOKENS`) are not part of this form.
    fn generic(env: &[(String, String)]) -> Self {
        let pairs = env
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(ENV_PREFIX)?;
                rest.contains("__")
                    .then(|| (rest.to_ascii_lowercase().replace("__", "."), v.clone()))
            })
            .collect();
        Self {
            name: "environment variable",
            pairs,
        }
    }

    /// The fixed names of CONTRACT.md, which win over the generic form.
    fn named(env: &[(String, String)]) -> Self {
        let pairs = NAMED_ENV
            .iter()
            .filter_map(|(var, key)| lookup(env, var).map(|v| ((*key).to_owned(), v.to_owned())))
            .collect();
        Self {
            name: "environment variable",
            pairs,
        }
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name).interpolater(|_profile, keys| {
            let key = keys.join(".");
            NAMED_ENV
                .iter()
                .find(|(_, k)| *k == key)
                .map(|(var, _)| (*var).to_owned())
                .unwrap_or_else(|| format!("{ENV_PREFIX}{}", keys.join("__").to_ascii_uppercase()))
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (key, raw) in &self.pairs {
            let value: Value = raw.parse().expect("parsing an env value is infallible");
            let mut parts: Vec<&str> = key.split('.').collect();
            let leaf = parts.pop().unwrap_or_default();
            let mut dict = &mut root;
            for part in parts {
                let entry = dict
                    .entry(part.to_owned())
                    .or_insert_with(|| Value::from(Dict::new()));
                if !matches!(entry, Value::Dict(..)) {
                    *entry = Value::from(Dict::new());
                }
                let Value::Dict(_, inner) = entry else {
                    unreachable!("just made a dict")
                };
                dict = inner;
            }
            dict.insert(leaf.to_owned(), value);
        }
        Ok(Profile::Default.collect(root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load(None, env(pairs))
    }

    fn load_err(pairs: &[(&str, &str)]) -> String {
        load(pairs).unwrap_err().to_string()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = load(&[]).unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.server.body_limit_bytes, 1_048_576);
        assert_eq!(s.webhook.tolerance_secs, 300);
        assert_eq!(s.redis.url, "redis://127.0.0.1:6379");
        assert_eq!(s.log.format, LogFormat::Text);
        assert!(s.secrets.webhook_secrets.is_empty());
    }

    #[test]
    fn the_shipped_file_is_valid_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
        let s = Settings::load(Some(&path), env(&[])).unwrap();
        let d = load(&[]).unwrap();
        assert_eq!(s.server.listen, d.server.listen);
        assert_eq!(s.server.body_limit_bytes, d.server.body_limit_bytes);
        assert_eq!(s.server.request_timeout_secs, d.server.request_timeout_secs);
        assert_eq!(s.webhook.tolerance_secs, d.webhook.tolerance_secs);
        assert_eq!(s.redis.url, d.redis.url);
        assert_eq!(s.redis.cluster, d.redis.cluster);
        assert_eq!(s.redis.timeout_ms, d.redis.timeout_ms);
        assert_eq!(s.redis.dedupe_ttl_secs, d.redis.dedupe_ttl_secs);
        assert_eq!(s.log.format, d.log.format);
        assert_eq!(s.stripe, d.stripe);
        assert_eq!(s.notify, d.notify);
    }

    #[test]
    fn named_variables_win_over_the_generic_form() {
        let s = load(&[
            ("RECOUP_SERVER__LISTEN", "127.0.0.1:9000"),
            ("RECOUP_LISTEN", "127.0.0.1:9001"),
            ("RECOUP_REDIS__URL", "redis://10.0.0.1:6379"),
            ("REDIS_URL", "redis://10.0.0.2:6379"),
            ("RECOUP_LOG_FORMAT", "json"),
            ("RECOUP_WEBHOOK__TOLERANCE_SECS", "60"),
        ])
        .unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:9001");
        assert_eq!(s.redis.url, "redis://10.0.0.2:6379");
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.webhook.tolerance_secs, 60);
    }

    #[test]
    fn the_file_is_layered_under_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recoup.toml");
        std::fs::write(
            &path,
            "[webhook]\ntolerance_secs = 120\n[server]\nbody_limit_bytes = 4096\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&path),
            env(&[("RECOUP_WEBHOOK__TOLERANCE_SECS", "90")]),
        )
        .unwrap();
        assert_eq!(s.webhook.tolerance_secs, 90);
        assert_eq!(s.server.body_limit_bytes, 4096);
    }

    #[test]
    fn a_bad_type_names_the_variable_and_value() {
        let err = load_err(&[("RECOUP_SERVER__BODY_LIMIT_BYTES", "lots")]);
        assert!(err.contains("server.body_limit_bytes"), "{err}");
        assert!(err.contains("lots"), "{err}");
        assert!(err.contains("RECOUP_SERVER__BODY_LIMIT_BYTES"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_refused_with_the_allowed_ones() {
        let err = load_err(&[("RECOUP_SERVER__LISTN", "x")]);
        assert!(err.contains("listn"), "{err}");
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn a_bad_enum_lists_what_is_allowed() {
        let err = load_err(&[("RECOUP_LOG_FORMAT", "xml")]);
        assert!(
            err.contains("xml") && err.contains("text") && err.contains("json"),
            "{err}"
        );
        assert!(err.contains("RECOUP_LOG_FORMAT"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_key_value_and_range() {
        let err = load_err(&[("RECOUP_WEBHOOK__TOLERANCE_SECS", "0")]);
        assert!(err.contains("webhook.tolerance_secs = \"0\""), "{err}");
        assert!(err.contains("between 1 and 3600"), "{err}");
        let err = load_err(&[("REDIS_URL", "postgres://u:hunter2@db/1")]);
        assert!(err.contains("REDIS_URL"), "{err}");
        assert!(!err.contains("hunter2"), "the password leaked: {err}");
        let err = load_err(&[("REDIS_URL", "redis://a:6379,redis://b:6379")]);
        assert!(err.contains("RECOUP_REDIS__CLUSTER=true"), "{err}");
    }

    #[test]
    fn a_cluster_takes_several_urls_and_redacts_each() {
        let s = load(&[
            (
                "REDIS_URL",
                "redis://:pw1@10.0.0.1:7000, redis://:pw2@10.0.0.2:7000",
            ),
            ("RECOUP_REDIS__CLUSTER", "true"),
        ])
        .unwrap();
        assert!(s.redis.cluster);
        assert_eq!(
            s.redis.urls(),
            vec!["redis://:pw1@10.0.0.1:7000", "redis://:pw2@10.0.0.2:7000"]
        );
        assert_eq!(
            s.redis.redacted_url(),
            "redis://:***@10.0.0.1:7000,redis://:***@10.0.0.2:7000"
        );
        let err = load_err(&[
            ("REDIS_URL", "redis://10.0.0.1:7000,http://10.0.0.2"),
            ("RECOUP_REDIS__CLUSTER", "true"),
        ]);
        assert!(err.contains("http://10.0.0.2"), "{err}");
    }

    #[test]
    fn an_explicit_missing_file_is_an_error() {
        let err = Settings::load(Some(Path::new("/nonexistent/recoup.toml")), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/recoup.toml"), "{err}");
    }

    #[test]
    fn secrets_come_from_the_environment_and_never_show() {
        let s = load(&[("STRIPE_WEBHOOK_SECRETS", "whsec_one, whsec_two")]).unwrap();
        let secrets: Vec<&[u8]> = s.secrets.webhook_secret_bytes().collect();
        assert_eq!(secrets, vec![&b"whsec_one"[..], &b"whsec_two"[..]]);
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("whsec_one") && !debug.contains("whsec_two"),
            "{debug}"
        );
    }

    #[test]
    fn nudge_settings_come_from_the_environment_and_their_secrets_never_show() {
        let s = load(&[
            ("RECOUP_EMAIL_FROM", "Acme <billing@acme.example>"),
            ("RECOUP_SMTP_URL", "smtp://mailer:hunter2@127.0.0.1:2525"),
            ("RECOUP_NUDGE_WEBHOOK_URL", "https://acme.example/nudges"),
            ("RECOUP_NUDGE_WEBHOOK_SECRET", "nudge_secret_9f8e"),
            ("RECOUP_SMS_AUTH_TOKEN", "sms_token_1a2b"),
            ("RECOUP_NOTIFY__RETRIES", "1"),
        ])
        .unwrap();
        assert_eq!(
            s.notify.email_from.as_deref(),
            Some("Acme <billing@acme.example>")
        );
        assert_eq!(
            s.notify.webhook_url.as_deref(),
            Some("https://acme.example/nudges")
        );
        assert_eq!(s.notify.retries, 1);
        assert!(s.secrets.smtp_url.is_some() && s.secrets.sms_auth_token.is_some());
        let debug = format!("{s:?}");
        for secret in ["hunter2", "nudge_secret_9f8e", "sms_token_1a2b"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn a_malformed_secret_is_named_by_position_not_value() {
        let err = load_err(&[("STRIPE_WEBHOOK_SECRETS", "whsec_ok,sk_live_oops")]);
        assert!(err.contains("entry 2"), "{err}");
        assert!(!err.contains("sk_live_oops"), "{err}");
    }

    #[test]
    fn a_secret_cannot_be_put_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recoup.toml");
        std::fs::write(&path, "stripe_webhook_secrets = \"whsec_x\"\n").unwrap();
        let err = Settings::load(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("stripe_webhook_secrets"), "{err}");
    }

    #[test]
    fn worker_and_clock_settings_come_from_the_environment() {
        let settings = load(&[
            ("RECOUP_WORKER__LEASE_SECS", "3"),
            ("RECOUP_TEST_CLOCK", "1"),
            ("STRIPE_API_KEY", "sk_test_abc"),
        ])
        .unwrap();
        assert_eq!(settings.worker.lease_secs, 3);
        assert!(settings.clock.test);
        assert!(!load(&[("RECOUP_TEST_CLOCK", "0")]).unwrap().clock.test);
        let err = load_err(&[("RECOUP_TEST_CLOCK", "yes")]);
        assert!(err.contains("RECOUP_TEST_CLOCK"), "{err}");
        let err = load_err(&[("RECOUP_WORKER__LEASE_SECS", "0")]);
        assert!(err.contains("RECOUP_WORKER__LEASE_SECS"), "{err}");
        let err = load_err(&[("RECOUP_WORKER__SCAN_INTERVAL_SECS", "0")]);
        assert!(err.contains("worker.scan_interval_secs"), "{err}");
    }

    #[test]
    fn stripe_settings_come_from_the_file_or_environment_and_are_checked() {
        let s = load(&[
            ("STRIPE_API_BASE", "http://127.0.0.1:12111"),
            ("RECOUP_STRIPE__TIMEOUT_MS", "1500"),
        ])
        .unwrap();
        assert_eq!(s.stripe.api_base, "http://127.0.0.1:12111");
        assert_eq!(s.stripe.timeout_ms, 1500);
        assert_eq!(load(&[]).unwrap().stripe.api_base, "https://api.stripe.com");
        let err = load_err(&[("STRIPE_API_BASE", "api.stripe.com")]);
        assert!(
            err.contains("STRIPE_API_BASE") && err.contains("https://"),
            "{err}"
        );
        let err = load_err(&[("RECOUP_STRIPE__RETRIES", "11")]);
        assert!(err.contains("stripe.retries"), "{err}");
    }

    #[test]
    fn the_test_clock_is_refused_with_a_live_key() {
        let err = load_err(&[
            ("RECOUP_TEST_CLOCK", "1"),
            ("STRIPE_API_KEY", "sk_live_51Habc"),
        ]);
        assert!(
            err.contains("RECOUP_TEST_CLOCK") && err.contains("sk_live_"),
            "{err}"
        );
        assert!(
            !err.contains("51Habc"),
            "the key itself is never echoed: {err}"
        );
    }

    #[test]
    fn api_tokens_are_named_or_numbered_and_never_shown() {
        let settings = load(&[(
            "RECOUP_API_TOKENS",
            "support-ana:aaaaaaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbbbbbb",
        )])
        .unwrap();
        let names: Vec<_> = settings
            .secrets
            .api_tokens
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["support-ana", "token-2"]);
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("aaaaaaaa") && !shown.contains("bbbbbbbb"),
            "{shown}"
        );
        let err = load_err(&[("RECOUP_API_TOKENS", "ana:short")]);
        assert!(err.contains("entry 1") && !err.contains("short"), "{err}");
    }

    #[test]
    fn redis_passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://default:hunter2@cache:6379/0"),
            "redis://default:***@cache:6379/0"
        );
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
        let s = load(&[("REDIS_URL", "redis://:hunter2@cache:6379")]).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
