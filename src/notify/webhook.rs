//! Nudges as signed JSON to the business, for those that talk to customers themselves (in their
//! app, by phone). Signed exactly as Stripe signs webhooks, under `Recoup-Signature:
//! t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, so the code that verifies Stripe's
//! webhooks verifies these.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{NotifyError, Nudge, SendError, http_client, http_error, passing_status};
use crate::webhook::signature;

pub(super) struct Webhook {
    http: reqwest::Client,
    url: String,
    secret: SecretString,
}

impl Webhook {
    pub(super) fn new(
        url: &str,
        secret: &SecretString,
        timeout: Duration,
    ) -> Result<Self, NotifyError> {
        Ok(Self {
            http: http_client("RECOUP_NUDGE_WEBHOOK_URL", url, timeout)?,
            url: url.to_owned(),
            secret: secret.clone(),
        })
    }

    pub(super) async fn send(&self, nudge: &Nudge) -> Result<(), SendError> {
        let body = serde_json::to_vec(&serde_json::json!({
            "id": nudge.id,
            "type": "recoup.nudge",
            "kind": nudge.kind.as_str(),
            "tier": nudge.tier,
            "customer_id": nudge.customer_id,
            "invoice_id": nudge.invoice_id,
            "amount_due": nudge.amount_due,
            "currency": nudge.currency,
            "update_url": nudge.update_url,
            "feedback_url": nudge.feedback_url,
            "template": nudge.message.template,
            "locale": nudge.message.locale,
            "subject": nudge.message.subject,
            "text": nudge.message.text,
        }))
        .expect("JSON of plain values");
        let header = signature::sign(
            self.secret.expose_secret().as_bytes(),
            signature::unix_now(),
            &body,
        );
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("recoup-signature", header)
            .body(body)
            .send()
            .await
            .map_err(|e| http_error("nudge webhook", &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(SendError {
            message: format!("nudge webhook answered {status}"),
            passing: passing_status(status),
        })
    }
}
