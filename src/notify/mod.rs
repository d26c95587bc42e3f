//! Nudges leaving recoup: email over SMTP, SMS through a Twilio-compatible API, and signed JSON to
//! the business's own webhook.
//!
//! The policy decides that a nudge goes out (its kind and tier); this module renders it from the
//! templates ([`templates`]) and delivers it on each channel asked for. A channel is on when its
//! settings are given. Every delivery is bounded in time; a failure that may pass (no answer, a
//! 4xx from an SMTP server, 429 or 5xx from an API) is tried again with backoff and jitter, and one
//! that will not (a refused address, a 4xx answer) is reported at once. Each channel's result comes
//! back as a [`Delivery`], saying whether a failure may pass, for the case's timeline and the
//! metrics; trying a nudge again hours later is the policy's decision, not this module's.

mod email;
mod sms;
pub mod templates;
mod webhook;

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::config::{NotifySettings, Secrets};
use crate::policy::{Channel, NudgeKind};
use crate::telemetry::metric;

pub use self::templates::{Rendered, Templates};

/// One nudge, rendered, with who it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nudge {
    /// The same on every try of this nudge ([`Nudge::id_for`]), so a receiver that got it twice
    /// (a retry after a lost answer) can tell.
    pub id: String,
    pub kind: NudgeKind,
    pub tier: u32,
    pub customer_id: String,
    pub invoice_id: Option<String>,
    pub amount_due: i64,
    pub currency: String,
    /// The one-click fix: a billing portal session, or the hosted invoice page.
    pub update_url: Option<String>,
    /// "What's in the way?": the customer's feedback link, when the nudge carries one.
    pub feedback_url: Option<String>,
    pub to: Recipient,
    pub message: Rendered,
}

impl Nudge {
    /// The id of the nudge of `kind` and `tier` about `about` (the invoice, or for a nudge about no
    /// invoice the customer and what it is about): derived, not drawn, so every try of the same
    /// nudge carries the same one, and nothing about the customer can be read back from it.
    pub fn id_for(about: &str, kind: NudgeKind, tier: u32) -> String {
        let digest = Sha256::digest(format!("{about}\n{}\n{tier}", kind.as_str()));
        format!("nudge_{}", hex::encode(&digest[..12]))
    }
}

/// Where the customer can be reached, as Stripe knows them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recipient {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// `metadata.sms_opt_in = "true"`: SMS only ever goes to customers who said yes.
    pub sms_opt_in: bool,
}

/// What became of a nudge on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Not sent, after the quick tries allowed; `passing` when the cause may pass (no answer, a
    /// 4xx SMTP answer, HTTP 408, 429 or 5xx), so the nudge is worth trying again later.
    Failed {
        error: String,
        passing: bool,
    },
    /// Not attempted: the channel is off, or the customer cannot or must not be reached on it.
    Skipped {
        why: String,
    },
}

impl Delivery {
    pub fn as_str(&self) -> &'static str {
        match self {
            Delivery::Sent => "sent",
            Delivery::Failed { .. } => "failed",
            Delivery::Skipped { .. } => "skipped",
        }
    }
}

/// A failed attempt at one delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub message: String,
    /// Whether trying again may work.
    pub passing: bool,
}

/// The channels that are configured, and the templates nudges are rendered from.
pub struct Notifier {
    email: Option<email::Email>,
    sms: Option<sms::Sms>,
    webhook: Option<webhook::Webhook>,
    pub templates: Templates,
    settings: NotifySettings,
    business: String,
}

/// Why the notifier cannot start; each names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{variable}: {problem}")]
    Setting {
        variable: &'static str,
        problem: String,
    },
    #[error(transparent)]
    Templates(#[from] templates::TemplateError),
}

impl NotifyError {
    fn setting(variable: &'static str, problem: impl Into<String>) -> Self {
        NotifyError::Setting {
            variable,
            problem: problem.into(),
        }
    }
}

impl Notifier {
    /// Sets up every configured channel and loads (and checks) every template.
    pub fn new(settings: &NotifySettings, secrets: &Secrets) -> Result<Self, NotifyError> {
        let timeout = Duration::from_millis(settings.timeout_ms);
        let email = match &secrets.smtp_url {
            None => None,
            Some(url) => {
                let from = settings.email_from.as_deref().ok_or_else(|| {
                    NotifyError::setting(
                        "RECOUP_EMAIL_FROM",
                        "required when RECOUP_SMTP_URL is set: the From address of email nudges",
                    )
                })?;
                Some(email::Email::new(url.expose_secret(), from, timeout)?)
            }
        };
        let webhook = match (&settings.webhook_url, &secrets.nudge_webhook_secret) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(NotifyError::setting(
                    "RECOUP_NUDGE_WEBHOOK_SECRET",
                    "required when RECOUP_NUDGE_WEBHOOK_URL is set: nudges are always signed",
                ));
            }
            (Some(url), Some(secret)) => Some(webhook::Webhook::new(url, secret, timeout)?),
        };
        let sms = sms::Sms::from_settings(settings, secrets, timeout)?;
        let business = settings
            .email_from
            .as_deref()
            .map(|from| {
                let name = from.split('<').next().unwrap_or_default().trim();
                let domain = from.rsplit('@').next().unwrap_or_default();
                let name = name.trim_matches('"');
                if name.is_empty() || name.contains('@') {
                    domain.trim_end_matches('>').to_owned()
                } else {
                    name.to_owned()
                }
            })
            .unwrap_or_else(|| "Billing".to_owned());
        Ok(Self {
            email,
            sms,
            webhook,
            templates: Templates::for_service(&settings.templates)?,
            settings: settings.clone(),
            business,
        })
    }

    /// The business as its customers know it: the From address's name (`Acme Billing <…>`), else
    /// its domain.
    pub fn business(&self) -> &str {
        &self.business
    }

    /// The channels that are on.
    pub fn channels(&self) -> Vec<Channel> {
        let on = [
            (Channel::Email, self.email.is_some()),
            (Channel::Sms, self.sms.is_some()),
            (Channel::Webhook, self.webhook.is_some()),
        ];
        on.into_iter()
            .filter(|(_, on)| *on)
            .map(|(c, _)| c)
            .collect()
    }

    /// Delivers `nudge` on each of `channels`, in order, and says what became of it on each.
    pub async fn deliver(&self, nudge: &Nudge, channels: &[Channel]) -> Vec<(Channel, Delivery)> {
        let mut results = Vec::with_capacity(channels.len());
        for &channel in channels {
            let delivery = match self.reachable(nudge, channel) {
                Err(why) => Delivery::Skipped { why },
                Ok(()) => match self.send(nudge, channel).await {
                    Ok(()) => Delivery::Sent,
                    Err(e) => Delivery::Failed {
                        error: e.message,
                        passing: e.passing,
                    },
                },
            };
            metrics::counter!(
                metric::NUDGES,
                "channel" => channel.as_str(),
                "kind" => nudge.kind.as_str(),
                "tier" => nudge.tier.to_string(),
                "outcome" => delivery.as_str(),
            )
            .increment(1);
            results.push((channel, delivery));
        }
        results
    }

    /// Why `nudge` cannot go out on `channel`, if it cannot.
    fn reachable(&self, nudge: &Nudge, channel: Channel) -> Result<(), String> {
        let (on, address) = match channel {
            Channel::Email => (self.email.is_some(), nudge.to.email.is_some()),
            Channel::Sms => {
                if !nudge.to.sms_opt_in {
                    return Err("the customer has not opted in to SMS".to_owned());
                }
                (self.sms.is_some(), nudge.to.phone.is_some())
            }
            Channel::Webhook => (self.webhook.is_some(), true),
        };
        match (on, address) {
            (false, _) => Err(format!("the {} channel is off", channel.as_str())),
            (true, false) => Err(format!(
                "Stripe has no {} for the customer",
                if channel == Channel::Email {
                    "email address"
                } else {
                    "phone number"
                }
            )),
            (true, true) => Ok(()),
        }
    }

    async fn send(&self, nudge: &Nudge, channel: Channel) -> Result<(), SendError> {
        let once = || async {
            match channel {
                Channel::Email => self.email.as_ref().expect("checked").send(nudge).await,
                Channel::Sms => self.sms.as_ref().expect("checked").send(nudge).await,
                Channel::Webhook => self.webhook.as_ref().expect("checked").send(nudge).await,
            }
        };
        once.retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(self.settings.retries as usize)
                .with_jitter(),
        )
        .when(|e: &SendError| e.passing)
        .notify(|e, pause| {
            tracing::warn!(
                channel = channel.as_str(),
                ?pause,
                "nudge not delivered, trying again: {e}"
            )
        })
        .await
    }
}

/// An HTTP client for the API at `url` (named by `variable` when it is not an http(s) URL).
fn http_client(
    variable: &'static str,
    url: &str,
    timeout: Duration,
) -> Result<reqwest::Client, NotifyError> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(NotifyError::setting(
            variable,
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| NotifyError::setting(variable, e.to_string()))
}

/// An HTTP status's verdict: 408, 429 and 5xx may pass, other refusals will not.
fn passing_status(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// An HTTP request that got no answer may get one next time. reqwest's message quotes the URL,
/// which may carry credentials (`https://user:password@hooks.example/…`): they are masked before
/// the message goes anywhere (a log line, a case's timeline).
fn http_error(what: &str, e: &reqwest::Error) -> SendError {
    SendError {
        message: format!("{what}: {}", crate::redact::text(&e.to_string())),
        passing: true,
    }
}
