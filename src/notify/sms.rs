//! SMS nudges through a Twilio-compatible API (`POST /2010-04-01/Accounts/{sid}/Messages.json`),
//! only ever to customers whose metadata says `sms_opt_in=true`.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{NotifyError, Nudge, SendError, http_client, http_error, passing_status};
use crate::config::{NotifySettings, Secrets};

pub(super) struct Sms {
    http: reqwest::Client,
    messages_url: String,
    account_sid: String,
    token: SecretString,
    from: String,
}

impl Sms {
    /// The SMS channel when all four of its settings are given; none means off, some is an error.
    pub(super) fn from_settings(
        settings: &NotifySettings,
        secrets: &Secrets,
        timeout: Duration,
    ) -> Result<Option<Self>, NotifyError> {
        let (base, sid, from, token) = (
            &settings.sms_api_base,
            &settings.sms_account_sid,
            &settings.sms_from,
            &secrets.sms_auth_token,
        );
        let (Some(base), Some(sid), Some(from), Some(token)) = (base, sid, from, token) else {
            if base.is_some() || sid.is_some() || from.is_some() || token.is_some() {
                return Err(NotifyError::setting(
                    "RECOUP_SMS_API_BASE",
                    "SMS needs all of RECOUP_SMS_API_BASE, RECOUP_SMS_ACCOUNT_SID, \
                     RECOUP_SMS_AUTH_TOKEN and RECOUP_SMS_FROM, or none of them",
                ));
            }
            return Ok(None);
        };
        Ok(Some(Self {
            http: http_client("RECOUP_SMS_API_BASE", base, timeout)?,
            messages_url: format!(
                "{}/2010-04-01/Accounts/{sid}/Messages.json",
                base.trim_end_matches('/')
            ),
            account_sid: sid.clone(),
            token: token.clone(),
            from: from.clone(),
        }))
    }

    pub(super) async fn send(&self, nudge: &Nudge) -> Result<(), SendError> {
        let to = nudge.to.phone.as_deref().unwrap_or_default();
        let response = self
            .http
            .post(&self.messages_url)
            .basic_auth(&self.account_sid, Some(self.token.expose_secret()))
            .form(&[
                ("To", to),
                ("From", self.from.as_str()),
                ("Body", nudge.message.sms.as_str()),
            ])
            .send()
            .await
            .map_err(|e| http_error("SMS API", &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // Twilio explains a refusal (an unreachable number, an unverified sender) in the body.
        let why = response.text().await.unwrap_or_default();
        Err(SendError {
            message: format!("SMS API answered {status}: {}", why.trim()),
            passing: passing_status(status),
        })
    }
}
