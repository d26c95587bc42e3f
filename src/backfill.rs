//! Backfill: the events recoup may have missed, fetched from Stripe's events API.
//!
//! Stripe gives up on a webhook after three days of failures, and an endpoint can be broken for
//! longer (a rotated signing secret, an expired certificate, a firewall change). Stripe keeps every
//! event for 30 days and lists them: [`run`] asks for the events of every type recoup acts on created
//! since a point in time (`GET /v1/events`, `created[gte]`, one `types[]` per type, 100 a page, paged
//! with `starting_after` while `has_more`; Stripe lists newest first) and hands each event's JSON to
//! [`webhook::take_in`], the one way into the inbox: read by the same parser (both invoice shapes),
//! deduped on the same id. An event recoup already has is a duplicate and changes nothing; the order
//! the inbox gets them in does not matter, as a case's state follows Stripe's `created` times.
//!
//! A run that lists its whole window moves the store's backfill mark ([`Inbox::mark_backfilled`])
//! to the time it started, when its window reached back to where the last one ended (or to the
//! newest event stored), so the mark always means "nothing created before this was left unread".
//! A worker starts its backfills from that mark minus [`OVERLAP`] ([`window_start`]); a run that
//! stops half-way (rate limited throughout, Stripe or Redis unreachable) keeps what it stored and
//! leaves the mark, so the next run reads that stretch again and nothing is lost.
//!
//! Run by `recoup backfill` ([`crate::cli`]) and by the workers ([`crate::worker`]), once at start
//! and every `worker.backfill_secs`.

use jiff::{SignedDuration, Timestamp};

use crate::event::EventKind;
use crate::processor::{ListError, Listings};
use crate::store::{Arrival, Inbox, StoreError};
use crate::telemetry::metric;
use crate::webhook::{self, Taken};

/// How far back Stripe keeps events, and so the longest window a backfill reads.
pub const MAX_SINCE: SignedDuration = SignedDuration::from_hours(30 * 24);

/// The window `recoup backfill` reads by default, and a worker's first backfill when the store
/// knows of no event at all: Stripe's three days of webhook retries.
pub const DEFAULT_SINCE: SignedDuration = SignedDuration::from_hours(72);

/// How far before its mark a backfill starts: events can appear in Stripe's list a little after
/// they were created, and reading a few minutes twice costs one page at most.
pub const OVERLAP: SignedDuration = SignedDuration::from_mins(10);

/// What a backfill found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Pages listed.
    pub pages: usize,
    /// Events recoup did not have: stored now, for the workers to act on.
    pub new: usize,
    /// Events recoup already had (its webhook arrived): nothing changed.
    pub duplicate: usize,
    /// Events of a type recoup does not act on (Stripe's filter should leave none).
    pub ignored: usize,
    /// Events recoup cannot read, as the webhook would have refused them.
    pub invalid: usize,
    /// Whether the run moved the store's backfill mark.
    pub marked: bool,
}

/// Why a backfill stopped before the end of its window, or a reconcile before its end.
#[derive(Debug, thiserror::Error)]
pub enum Interrupted {
    #[error(transparent)]
    Stripe(#[from] ListError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A backfill that stopped, with what it had stored until then.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Stopped {
    pub tally: Tally,
    pub reason: Interrupted,
}

/// Where a worker's backfill starts: where the last complete one ended, else the newest event
/// stored, less [`OVERLAP`]; [`DEFAULT_SINCE`] ago when the store knows of no event; never more
/// than [`MAX_SINCE`] ago.
pub fn window_start(arrivals: &crate::store::Arrivals, now: Timestamp) -> Timestamp {
    let from = match arrivals.backfilled.or(arrivals.newest()) {
        Some(known) => known.min(now) - OVERLAP,
        None => now - DEFAULT_SINCE,
    };
    from.max(now - MAX_SINCE)
}

/// The type names a backfill asks Stripe for: every type recoup acts on.
pub fn event_types() -> Vec<&'static str> {
    EventKind::ALL.iter().map(|kind| kind.as_str()).collect()
}

/// Fetches every event of the types recoup acts on created at or after `since`, stores each as a
/// delivered webhook would be stored, and moves the backfill mark to `now` when the window joins
/// the one before.
pub async fn run<S: Inbox>(
    store: &S,
    stripe: &dyn Listings,
    since: Timestamp,
    now: Timestamp,
) -> Result<Tally, Stopped> {
    let mut tally = Tally::default();
    match read(store, stripe, since, now, &mut tally).await {
        Ok(()) => Ok(tally),
        Err(reason) => Err(Stopped { tally, reason }),
    }
}

async fn read<S: Inbox>(
    store: &S,
    stripe: &dyn Listings,
    since: Timestamp,
    now: Timestamp,
    tally: &mut Tally,
) -> Result<(), Interrupted> {
    // Read before anything is stored, so the run's own events do not count as what came before.
    let before = store.arrivals().await?;
    let joins = before
        .backfilled
        .or(before.newest())
        .is_none_or(|known| since <= known);
    let types = event_types();
    let mut after: Option<String> = None;
    loop {
        let page = stripe
            .events(since.as_second(), &types, after.as_deref())
            .await?;
        tally.pages += 1;
        for listed in &page.objects {
            let outcome = match webhook::take_in(store, &listed.json, Arrival::Backfill).await {
                Ok(Taken::Stored { .. }) => {
                    tally.new += 1;
                    "new"
                }
                Ok(Taken::Duplicate { .. }) => {
                    tally.duplicate += 1;
                    "duplicate"
                }
                Ok(Taken::Ignored { .. }) => {
                    tally.ignored += 1;
                    "ignored"
                }
                Ok(Taken::Invalid(e)) => {
                    tracing::warn!(event = %listed.id, "backfilled event refused: {e}");
                    tally.invalid += 1;
                    "invalid"
                }
                Err(e) => return Err(e.error.into()),
            };
            metrics::counter!(metric::BACKFILLED_EVENTS, "outcome" => outcome).increment(1);
        }
        match page.objects.last() {
            Some(last) if page.has_more => after = Some(last.id.clone()),
            _ => break,
        }
    }
    if joins {
        store.mark_backfilled(now).await?;
        tally.marked = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Arrivals;

    fn at(hours_ago: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap() - SignedDuration::from_hours(hours_ago)
    }

    #[test]
    fn a_worker_starts_from_its_mark_else_the_newest_event_less_the_overlap_at_most_30_days_back() {
        let now = at(0);
        let nothing = Arrivals::default();
        assert_eq!(window_start(&nothing, now), at(72));

        let webhooks_stopped = Arrivals {
            webhook: Some(at(50)),
            backfill: Some(at(40)),
            backfilled: None,
        };
        assert_eq!(window_start(&webhooks_stopped, now), at(40) - OVERLAP);

        // The mark wins over a newer webhook: the stretch before that webhook may have gaps.
        let back_up = Arrivals {
            webhook: Some(at(1)),
            backfill: None,
            backfilled: Some(at(30)),
        };
        assert_eq!(window_start(&back_up, now), at(30) - OVERLAP);

        let long_ago = Arrivals {
            backfilled: Some(at(24 * 45)),
            ..Arrivals::default()
        };
        assert_eq!(window_start(&long_ago, now), now - MAX_SINCE);

        // An event stamped ahead of this machine's clock starts the window no later than now.
        let ahead = Arrivals {
            webhook: Some(now + SignedDuration::from_hours(1)),
            ..Arrivals::default()
        };
        assert_eq!(window_start(&ahead, now), now - OVERLAP);
    }

    #[test]
    fn a_backfill_asks_for_every_type_recoup_acts_on_within_stripes_limit_of_20() {
        let types = event_types();
        assert_eq!(types.len(), EventKind::ALL.len());
        assert!(types.len() <= 20);
        assert!(types.contains(&"invoice.payment_failed"));
    }
}
