//! The customer opened an update link (`/fix/…`) recoup sent them: the first sign that a nudge
//! was read and acted on, kept on the case for support and for the policy to learn from.
//!
//! It changes no plan: a customer who opened the link may still not finish, and the retries and
//! nudges that follow are what catch that. The case keeps when the link was first opened and how
//! often; its timeline says so the first time and again only when the customer comes back after
//! [`AGAIN_AFTER`], so a customer reloading the page does not bury the story.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{Case, Decision, Entry};

/// A later opening is told on the timeline only when the last one told is at least this old.
pub const AGAIN_AFTER: SignedDuration = SignedDuration::from_hours(1);

/// Where opening the link led the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkOutcome {
    /// To a fresh billing portal session, where they can change their card.
    Portal,
    /// To a "thank you, already paid" page: the invoice was paid before they came.
    AlreadyPaid,
    /// To a "nothing to pay" page: the invoice was voided.
    NothingToPay,
    /// To an apology: Stripe could not open the portal just then (they may come back).
    Unavailable,
}

impl LinkOutcome {
    fn words(self) -> &'static str {
        match self {
            LinkOutcome::Portal => "sent to Stripe's billing portal to update their payment method",
            LinkOutcome::AlreadyPaid => "the invoice was already paid: shown a thank-you",
            LinkOutcome::NothingToPay => "the invoice was voided: shown that nothing is due",
            LinkOutcome::Unavailable => {
                "Stripe could not open the billing portal just then: asked to try again shortly"
            }
        }
    }
}

pub(super) fn on_link_opened(case: Case, at: Timestamp, outcome: LinkOutcome) -> Decision {
    let mut next = case;
    next.link_opened_at = Some(next.link_opened_at.map_or(at, |first| first.min(at)));
    next.link_opens = next.link_opens.saturating_add(1);
    let last_told = next
        .timeline
        .iter()
        .rev()
        .find(|e| e.what == "update link opened")
        .map(|e| e.at);
    let tell = last_told.is_none_or(|told| at.duration_since(told) >= AGAIN_AFTER);
    if tell {
        let times = match next.link_opens {
            1 => String::new(),
            n => format!(" (opened {n} times so far)"),
        };
        next.record(Entry {
            at,
            what: "update link opened".to_owned(),
            detail: format!(
                "the customer opened the link from a nudge; {}{times}",
                outcome.words()
            ),
            event: None,
        });
    }
    Decision::save(next)
}
