//! `recoup status`: an invoice's case, or every case of a customer or subscription, told as the
//! status page tells it ([`crate::story`]), or as the API's JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Failure, environment, user};
use crate::cli::output::{out, outln};
use crate::clock::Clock;
use crate::config::{self, Settings};
use crate::store::{self, Cases, IdKind, RedisStore, Timers};
use crate::story;

pub(super) async fn run(
    id: &str,
    json: bool,
    config: Option<PathBuf>,
) -> Result<ExitCode, Failure> {
    let kind = IdKind::of(id).map_err(user)?;
    let settings = Settings::load(config.as_deref(), environment()).map_err(user)?;
    let policy = config::policy::for_service(&settings.policy).map_err(user)?;
    let store = RedisStore::connect(&settings.redis).await.map_err(user)?;
    let cases = kind.cases(&store, id).await.map_err(user)?;
    if json {
        let printed = match kind {
            IdKind::Invoice => serde_json::to_string_pretty(&cases[0]),
            _ => serde_json::to_string_pretty(&serde_json::json!({ "cases": cases })),
        }
        .map_err(|e| Failure::Internal(e.into()))?;
        outln!("{printed}");
        return Ok(ExitCode::SUCCESS);
    }
    let now = Clock::new(store.clone(), settings.clock.test)
        .now()
        .await
        .map_err(user)?;
    let parked = store.parked().await.map_err(user)?;
    for (n, case) in cases.iter().enumerate() {
        let card = store::card_tries(&store, case).await.map_err(user)?;
        if n > 0 {
            outln!();
        }
        out!("{}", story::tell(case, &policy, &card, now));
        if let Some(at) = store.forgotten_at(&case.invoice_id).await.map_err(user)? {
            outln!(
                "Dunning is over: recoup keeps this case until {at} (redis.case_retention_secs), \
                 then forgets it."
            );
        }
        if let Some(p) = parked.iter().find(|p| p.invoice_id == case.invoice_id) {
            outln!(
                "Its wake-up is parked since {} after {} failures ({}): nothing happens until \
                 `recoup deadletters replay {}`.",
                p.at,
                p.failures,
                p.error,
                p.invoice_id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
