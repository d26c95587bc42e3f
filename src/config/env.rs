//! The environment as a figment provider, in its two forms: the generic `RECOUP_<SECTION>__<KEY>`
//! and the fixed names the docs list (`REDIS_URL`, `RECOUP_LISTEN`, …), which win over it. The
//! loader passes the environment in as pairs, so tests never touch the process's own.

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

/// Prefix of the generic environment form `RECOUP_<SECTION>__<KEY>`.
pub(super) const ENV_PREFIX: &str = "RECOUP_";

/// The fixed environment names (docs/reference/configuration.md#settings) and the setting each
/// one overrides.
const NAMED_ENV: &[(&str, &str)] = &[
    ("REDIS_URL", "redis.url"),
    ("RECOUP_LISTEN", "server.listen"),
    ("RECOUP_LOG_FORMAT", "log.format"),
    ("RECOUP_TEST_CLOCK", "clock.test"),
    ("RECOUP_POLICY", "policy.path"),
    ("RECOUP_NETWORKS", "policy.networks"),
    ("STRIPE_API_BASE", "stripe.api_base"),
    ("RECOUP_EMAIL_FROM", "notify.email_from"),
    ("RECOUP_NUDGE_WEBHOOK_URL", "notify.webhook_url"),
    ("RECOUP_SMS_API_BASE", "notify.sms_api_base"),
    ("RECOUP_SMS_ACCOUNT_SID", "notify.sms_account_sid"),
    ("RECOUP_SMS_FROM", "notify.sms_from"),
    ("RECOUP_PUBLIC_URL", "links.public_url"),
];

/// A figment provider over an environment snapshot, in one of its two forms.
pub(super) struct EnvLayer {
    name: &'static str,
    pairs: Vec<(String, String)>,
}

impl EnvLayer {
    /// `RECOUP_SERVER__LISTEN=…` → `server.listen`. Variables without `__` (such as `RECOUP_LISTEN`
    /// or `RECOUP_API_TOKENS`) are not part of this form.
    pub(super) fn generic(env: &[(String, String)]) -> Self {
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

    /// The fixed names, which win over the generic form.
    pub(super) fn named(env: &[(String, String)]) -> Self {
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

/// The value of `name` in the environment snapshot; the last one wins, as in a shell.
pub(super) fn lookup<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
