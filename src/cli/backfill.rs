//! `recoup backfill`: the events recoup may have missed, fetched from Stripe's events API and
//! stored exactly as delivered webhooks would be ([`crate::backfill`]).

use std::path::PathBuf;
use std::process::ExitCode;

use jiff::{SignedDuration, Timestamp};

use super::{Failure, stripe_and_store};
use crate::backfill::{self, MAX_SINCE};
use crate::cli::output::outln;
use crate::policy::duration::parse_duration;

/// `--since`: a duration of at least a second and at most 30 days.
pub fn parse_since(text: &str) -> Result<SignedDuration, String> {
    let seconds = parse_duration(text)?;
    let since = SignedDuration::from_secs(seconds);
    if seconds < 1 || since > MAX_SINCE {
        return Err(format!(
            "{text:?}: between 1s and 30d (Stripe keeps events for 30 days)"
        ));
    }
    Ok(since)
}

pub(super) async fn run(
    since: SignedDuration,
    config: Option<PathBuf>,
) -> Result<ExitCode, Failure> {
    let (stripe, store) = stripe_and_store(config).await?;
    let now = Timestamp::now();
    let from = now - since;
    outln!(
        "backfill: events created since {} ({:#} ago), of the {} types recoup acts on",
        from.round(jiff::Unit::Second).unwrap_or(from),
        since,
        backfill::event_types().len()
    );
    let tally = match backfill::run(&store, &stripe, from, now).await {
        Ok(tally) => tally,
        Err(stopped) => {
            let t = stopped.tally;
            return Err(Failure::User(anyhow::anyhow!(
                "backfill stopped: {} ({} new and {} already known events were stored before it \
                 stopped; nothing stored is lost, run it again)",
                stopped.reason,
                t.new,
                t.duplicate
            )));
        }
    };
    outln!(
        "new: {} (missed by the webhooks; stored for the workers)",
        tally.new
    );
    outln!("already known: {}", tally.duplicate);
    outln!("ignored: {}", tally.ignored);
    if tally.invalid > 0 {
        outln!(
            "refused: {} (not readable as the events recoup acts on; the webhook would have refused them too)",
            tally.invalid
        );
    }
    outln!("({} page(s) from Stripe)", tally.pages);
    Ok(ExitCode::SUCCESS)
}
