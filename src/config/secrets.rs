//! Secrets, from the environment only: webhook signing secrets, API tokens, Stripe's key, the SMTP
//! URL, the nudge webhook's and the SMS provider's secrets, and the keys that sign update links. The settings file cannot hold them,
//! they are wrapped in [`SecretString`] so `Debug` and logs never show them, and a bad entry is
//! named by its position, never echoed.

use secrecy::{ExposeSecret, SecretString};

use super::ConfigError;
use super::env::lookup;

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
    /// `RECOUP_LINK_SECRET`: the keys that sign update-link tokens, newest first; the newest signs,
    /// every one verifies (so a key can be rotated without breaking links already sent).
    pub link_secrets: Vec<SecretString>,
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
            .field(
                "link_secrets",
                &format_args!("[{} redacted]", self.link_secrets.len()),
            )
            .finish()
    }
}

/// A secret from the environment; blank counts as unset.
pub(super) fn secret(env: &[(String, String)], name: &str) -> Option<SecretString> {
    lookup(env, name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| SecretString::from(v.to_owned()))
}

/// Parses `STRIPE_WEBHOOK_SECRETS`; its value is never echoed, only the position of a bad entry.
pub(super) fn webhook_secrets(raw: Option<&str>) -> Result<Vec<SecretString>, ConfigError> {
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
pub(super) fn api_tokens(raw: Option<&str>) -> Result<Vec<ApiToken>, ConfigError> {
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

/// The shortest key `RECOUP_LINK_SECRET` accepts: 32 characters (`openssl rand -hex 32` makes 64).
pub const MIN_LINK_SECRET: usize = 32;

/// Parses `RECOUP_LINK_SECRET`: comma-separated keys, newest first, each at least
/// [`MIN_LINK_SECRET`] characters; like the other secrets, a bad entry is named by position only.
pub(super) fn link_secrets(raw: Option<&str>) -> Result<Vec<SecretString>, ConfigError> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .enumerate()
        .map(|(i, key)| {
            if key.chars().count() >= MIN_LINK_SECRET {
                Ok(SecretString::from(key.to_owned()))
            } else {
                Err(ConfigError::invalid(
                    "RECOUP_LINK_SECRET",
                    format!("<entry {} redacted>", i + 1),
                    "comma-separated keys of at least 32 characters, newest first (openssl rand \
                     -hex 32 makes one); the newest signs update links, every one is accepted",
                ))
            }
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
