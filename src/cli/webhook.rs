//! `recoup webhook send`: an event file, signed and posted exactly as Stripe would.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{Failure, user};
use crate::cli::output::outln;
use crate::webhook;

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// Sign an event file with the current time and POST it, exactly as Stripe would.
    Send {
        /// A Stripe event as JSON, e.g. fixtures/events/invoice.payment_failed.json.
        file: PathBuf,
        /// Where recoup receives webhooks.
        #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/stripe")]
        url: String,
        /// Signing secret (whsec_…) [default: the first of STRIPE_WEBHOOK_SECRETS].
        #[arg(long, value_name = "WHSEC")]
        secret: Option<String>,
        /// Give the event a fresh id, so sending the same file again is not a duplicate.
        #[arg(long)]
        new_id: bool,
    },
}

pub(super) async fn send(
    file: PathBuf,
    url: String,
    secret: Option<String>,
    new_id: bool,
) -> Result<ExitCode, Failure> {
    let secret = match secret {
        Some(secret) => secret,
        None => std::env::var("STRIPE_WEBHOOK_SECRETS")
            .ok()
            .and_then(|all| all.split(',').next().map(|s| s.trim().to_owned()))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                user(anyhow::anyhow!(
                    "no signing secret: pass --secret whsec_… or set STRIPE_WEBHOOK_SECRETS"
                ))
            })?,
    };
    let delivery = webhook::send::send(&file, &url, secret.as_bytes(), new_id)
        .await
        .map_err(user)?;
    outln!("{} {}", delivery.status, delivery.body);
    if (200..300).contains(&delivery.status) {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(user(anyhow::anyhow!(
            "{url} answered {}: {}",
            delivery.status,
            delivery.body
        )))
    }
}
