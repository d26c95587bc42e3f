//! Sending an event file the way Stripe would, so recoup can be tried without a Stripe account.
//!
//! `recoup webhook send FILE --url … --secret …` signs the file's bytes with the current time and
//! POSTs them with the headers Stripe sends. The body goes out byte for byte unless `--new-id` asks
//! for a fresh event id (to send the same fixture again without it being a duplicate).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::signature;
use crate::event::wire::{self, EventError};

/// What the receiver answered.
#[derive(Debug)]
pub struct Delivery {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a Stripe event: {message}", path.display())]
    NotAnEvent { path: PathBuf, message: String },
    #[error("cannot deliver to {url}: {source}")]
    Http { url: String, source: reqwest::Error },
}

/// Signs the event in `path` with `secret` and POSTs it to `url`.
pub async fn send(
    path: &Path,
    url: &str,
    secret: &[u8],
    new_id: bool,
) -> Result<Delivery, SendError> {
    let mut body = std::fs::read(path).map_err(|source| SendError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let not_an_event = |message: String| SendError::NotAnEvent {
        path: path.to_path_buf(),
        message,
    };
    if let Err(EventError::NotAnEvent(message)) = wire::parse(&body) {
        return Err(not_an_event(message));
    }
    if new_id {
        let mut value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| not_an_event(e.to_string()))?;
        value["id"] = format!("evt_{}", uuid::Uuid::new_v4().simple()).into();
        body = serde_json::to_vec_pretty(&value).expect("a JSON value serialises");
    }
    let http = |source| SendError::Http {
        url: url.to_owned(),
        source,
    };
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .user_agent("Stripe/1.0 (+https://stripe.com/docs/webhooks)")
        .build()
        .map_err(http)?
        .post(url)
        .header("content-type", "application/json; charset=utf-8")
        .header(
            "stripe-signature",
            signature::sign(secret, signature::unix_now(), &body),
        )
        .body(body)
        .send()
        .await
        .map_err(http)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(http)?;
    Ok(Delivery { status, body })
}
