//! The nudge plan: which messages a case's customer gets, and when.
//!
//! A case's nudges follow a list of [`Step`]s, each a kind and tier of message sent a set time
//! after the first failure: a friendly reminder soon after, firmer ones days later, and a final
//! notice that states the consequence. A customer who must confirm a payment (3-D Secure) gets the
//! `action_required` steps instead of the `payment_failed` ones. Like retries, a case holds exactly
//! one pending nudge timer, the plan's next, placed in the customer's contact window (their local
//! daytime, or the window their metadata asks for); the same kind and tier never goes out twice, at
//! most `per_case` go out in all, and once the invoice is paid the customer who heard from recoup
//! gets one thank-you. A nudge no channel took for a passing reason is the pending one until it is
//! delivered or given up on: it is tried again after [`RETRY_GAPS`], in the same window. How many nudges one customer gets in a day, across all their invoices, is
//! counted by the worker when a nudge is due (see `Input::NudgeHeld`).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::timing::{self, Window};
use super::{Case, Channel, DeclineClass, NudgeKind, Reaction, State};

/// When the messages go out, and on which channels.
#[derive(Debug, Clone, PartialEq)]
pub struct NudgePlan {
    pub steps: Vec<Step>,
    /// The customer's local hours nudges go out in (quiet hours are the rest), unless their
    /// metadata names their own (`contact_window = "18-22"`).
    pub window: Window,
    /// At most this many nudges per case, the thank-you not counted.
    pub per_case: u32,
    /// At most this many nudges per customer per local day, across all their cases.
    pub per_customer_per_day: u32,
    /// The channels every nudge goes out on (those configured; SMS only to customers who opted in).
    pub channels: Vec<Channel>,
    /// How long a note that a payment failed, or a final notice, that the customer had about one
    /// invoice of a subscription speaks for the subscription's other invoices
    /// ([`Self::covered_by`]); zero gives every invoice its own.
    pub once_per_subscription: SignedDuration,
    /// The customer's budget: no note that a payment failed and no request to confirm one goes
    /// out to a customer who had this many messages within `per_customer_within`, whichever
    /// invoices they were about (0: no budget). The final notice always goes out.
    pub per_customer: u32,
    pub per_customer_within: SignedDuration,
}

/// One message of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: NudgeKind,
    pub tier: u32,
    /// How long after the first failure it is due.
    pub after: SignedDuration,
    /// The declines it is for, by class (a case's latest decline); empty: every decline.
    pub declines: Vec<DeclineClass>,
}

impl Step {
    /// Whether the step is for `case`'s decline. A decline not read yet (the case opened a moment
    /// ago, or Stripe never said) is an ambiguous one: nobody can tell yet what fixes it.
    fn fits(&self, case: &Case) -> bool {
        let class = case
            .decline
            .as_ref()
            .map_or(DeclineClass::Ambiguous, |d| d.class);
        self.declines.is_empty() || self.declines.contains(&class)
    }
}

impl Default for NudgePlan {
    /// Three messages at most (`docs/design/dunning-practice.md#escalate-in-tiers`): for a failed
    /// payment a friendly note — within the hour where only the customer can fix it, after 14
    /// days for a soft or ambiguous decline, which the retries usually fix first — and the final
    /// notice after 50 days, a week before the end decision, when most invoices that will be paid
    /// have been (a reminder between them, or the notice at 30 days, lost more customers to
    /// nagging than it won: `config/policy.toml`); for a payment to confirm, a note at once and a
    /// reminder after 2 days. Local 09:00–20:00, at most one nudge a day per customer and 3 per
    /// case, on every configured channel. One conversation per subscription for 60 days: a renewal
    /// that fails within 60 days of the last one's note is the same problem, not news
    /// (`docs/user-guide/nudges.md#one-conversation-per-subscription`). And a customer's budget of
    /// two messages in 90 days, whatever the invoices, before a note or a request is left unsent
    /// (`docs/user-guide/nudges.md#a-budget-per-customer`).
    fn default() -> Self {
        let step = |kind, tier, hours| Step {
            kind,
            tier,
            after: SignedDuration::from_hours(hours),
            declines: Vec::new(),
        };
        Self {
            steps: vec![
                Step {
                    declines: vec![
                        DeclineClass::Hard,
                        DeclineClass::CardData,
                        DeclineClass::ActionRequired,
                    ],
                    ..step(NudgeKind::PaymentFailed, 1, 1)
                },
                Step {
                    declines: vec![DeclineClass::Soft, DeclineClass::Ambiguous],
                    ..step(NudgeKind::PaymentFailed, 1, 14 * 24)
                },
                step(NudgeKind::ActionRequired, 1, 0),
                step(NudgeKind::ActionRequired, 2, 2 * 24),
                Step {
                    declines: vec![DeclineClass::Hard, DeclineClass::CardData],
                    ..step(NudgeKind::PaymentFailed, 2, 10 * 24)
                },
                step(NudgeKind::FinalNotice, 1, 50 * 24),
            ],
            window: Window {
                start_hour: 9,
                end_hour: 20,
            },
            per_case: 3,
            per_customer_per_day: 1,
            channels: vec![Channel::Email, Channel::Sms, Channel::Webhook],
            once_per_subscription: SignedDuration::from_hours(60 * 24),
            per_customer: 2,
            per_customer_within: SignedDuration::from_hours(90 * 24),
        }
    }
}

/// What speaks for a case's due nudge, so that it is not sent: the message the customer had about
/// `invoice_id` at `at` (the latest one, for a spent budget).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cover {
    pub invoice_id: String,
    pub at: Timestamp,
    pub why: Covered,
}

/// Why a due nudge is not sent ([`NudgePlan::covered_by`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Covered {
    /// The same message about another invoice of the subscription.
    Conversation,
    /// The customer's budget is spent: they had this many messages within
    /// [`NudgePlan::per_customer_within`].
    Budget(u32),
}

/// A nudge the policy handed to the channels: the same kind and tier never goes out twice, but a
/// nudge no channel could take for a passing reason is tried again ([`RETRY_GAPS`]).
///
/// Where it stands: being tried while `retry_at` is set (from the first try on: a try whose result
/// never comes back is made once more then); delivered once `delivered_at` is; undeliverable once
/// `given_up_at` is. A nudge with none of the three was recorded by an older recoup, which marked a
/// first try without a later one: it counts from `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Nudged {
    pub kind: NudgeKind,
    pub tier: u32,
    /// When it first went out to the channels.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// When a channel first took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<Timestamp>,
    /// Tries that no channel took, for a passing reason.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_tries: u32,
    /// Tries made so far, each counted as it goes out — one whose result never came back too — so
    /// that a nudge whose results keep getting lost is not sent every hour for ever.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tries: u32,
    /// When it is tried again (or, while a try is under way, tried once more should its result
    /// never come back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub retry_at: Option<Timestamp>,
    /// When recoup stopped trying: every channel refused for good, or the tries ran out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub given_up_at: Option<Timestamp>,
    /// Not sent: the same message about this other invoice of the subscription spoke for it
    /// ([`NudgePlan::covered_by`]); `delivered_at` is when that was found, what the end decision's
    /// grace counts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered_by: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Nudged {
    /// A nudge going out for the first time at `at`.
    pub fn going_out(kind: NudgeKind, tier: u32, at: Timestamp) -> Self {
        Self {
            kind,
            tier,
            at,
            delivered_at: None,
            failed_tries: 0,
            tries: 1,
            retry_at: None,
            given_up_at: None,
            covered_by: None,
        }
    }

    /// Whether a channel took it for this case (not another invoice's message speaking for it).
    pub fn reached(&self) -> Option<Timestamp> {
        self.delivered_at.filter(|_| self.covered_by.is_none())
    }

    /// When the nudge's fate was settled — delivered, or given up on — or `None` while it is still
    /// being tried. What the end decision's grace counts from for a final notice.
    pub fn settled_at(&self) -> Option<Timestamp> {
        self.retry_at
            .is_none()
            .then(|| self.delivered_at.or(self.given_up_at).unwrap_or(self.at))
    }
}

/// How long after each try no channel took (for a passing reason) the nudge is tried again: growing
/// gaps, six tries over about three and a half days, each moved into the customer's window. An
/// SMTP server answering "451 try later" for longer than that is down, not busy.
pub const RETRY_GAPS: [SignedDuration; 5] = [
    SignedDuration::from_hours(1),
    SignedDuration::from_hours(3),
    SignedDuration::from_hours(9),
    SignedDuration::from_hours(24),
    SignedDuration::from_hours(48),
];

/// How long a retry under way may take before it is tried once more: its result normally comes
/// back within seconds, so only a worker that died mid-send lets this run out.
pub const RETRY_UNDER_WAY: SignedDuration = SignedDuration::from_hours(1);

/// What a delivery on one channel came to, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NudgeResult {
    pub channel: Channel,
    pub sent: bool,
    /// Whether a failure may pass (no answer, a 4xx SMTP answer, HTTP 408, 429 or 5xx): the
    /// nudge is worth trying later. `false` when sent, skipped, or refused for good.
    pub passing: bool,
    /// Why it failed or was skipped; empty when sent.
    pub note: String,
}

impl NudgePlan {
    /// The next nudge of `case` and when, or `None` when nothing more is due.
    /// A nudge waiting to be tried again comes first: the case holds one pending nudge at a time.
    pub fn next(&self, case: &Case) -> Option<(NudgeKind, u32, Timestamp)> {
        // A case on hold (a dispute, a support hold) hears nothing until it is released; a
        // customer who said they cannot pay right now nothing until their payday's retry has come
        // to something, and one whose subscription ends at their request nothing more.
        let held = case.state == State::OnHold
            || case.nudges_wait_for_payday()
            || case.ends_on_request().is_some();
        // Once the case is over only the thank-you is still worth delivering.
        let over = case.state.is_final();
        let retry = case
            .nudged
            .iter()
            .filter(|n| !over || n.kind == NudgeKind::Recovered)
            .filter(|n| n.delivered_at.is_none())
            .find_map(|n| n.retry_at.map(|at| (n.kind, n.tier, at)));
        if held || retry.is_some() {
            return retry.filter(|_| !held);
        }
        // The customer answered that their card changed: the update link goes out at once, once.
        // Outside the steps, the per-case and daily caps and quiet hours — they asked for it a
        // moment ago, on a page of ours — and it cannot repeat, so it cannot flood anyone.
        if let Some(answer) = case.answered(Reaction::SendUpdateLink)
            && !over
            && !case.has_nudged(NudgeKind::UpdateLink, 1)
        {
            return Some((NudgeKind::UpdateLink, 1, answer.at));
        }
        let first_failure = case.failed_at?;
        if over || self.spent(case) >= self.per_case {
            return None;
        }
        let confirm = needs_confirmation(case);
        let step = self
            .steps
            .iter()
            .filter(|s| match s.kind {
                NudgeKind::PaymentFailed => !confirm,
                NudgeKind::ActionRequired => confirm,
                NudgeKind::FinalNotice => true,
                NudgeKind::CardExpiring | NudgeKind::Recovered | NudgeKind::UpdateLink => false,
            })
            .filter(|s| !case.has_nudged(s.kind, s.tier) && s.fits(case))
            .min_by_key(|s| s.after)?;
        // At least 20 hours after the case's previous nudge reached the customer, whatever the
        // steps say, and not while nudges are held back (the daily cap, quiet hours).
        let not_before = case
            .nudged
            .iter()
            .map(|n| {
                let reached = n.delivered_at.unwrap_or(n.at);
                super::time::later(reached, SignedDuration::from_hours(20))
            })
            .chain(case.nudges_held_until)
            .max()
            .unwrap_or(first_failure);
        let wanted = super::time::later(first_failure, step.after).max(not_before);
        Some((step.kind, step.tier, self.into_window(case, wanted)))
    }

    /// `at`, or the next opening of the case customer's contact window when `at` falls in their
    /// quiet hours: their local daytime, or the window their metadata asks for.
    pub fn into_window(&self, case: &Case, at: Timestamp) -> Timestamp {
        let zone = timing::zone(&case.customer_timezone);
        timing::into_window(at, &zone, case.contact_window.unwrap_or(self.window))
    }

    /// Whether the plan will still send the case a final notice: it has one not sent yet, and the
    /// per-case cap leaves room for it.
    pub fn will_send_final_notice(&self, case: &Case) -> bool {
        self.spent(case) < self.per_case
            && self
                .steps
                .iter()
                .any(|s| s.kind == NudgeKind::FinalNotice && !case.has_nudged(s.kind, s.tier))
    }

    /// The customer's local day a nudge of `kind` at `at` counts toward under the daily cap, which
    /// is counted per customer and local day across all their invoices; `None` for the thank-you
    /// and the update link the customer asked for, which are never held back. The worker counts in
    /// the store, the simulator in memory; both ask here which day, and
    /// [`Self::held_by_day_cap`] whether it is spent.
    pub fn capped_day(kind: NudgeKind, zone: &TimeZone, at: Timestamp) -> Option<Date> {
        kind.capped().then(|| customer_day(zone, at))
    }

    /// Whether a nudge due at `now` must wait for the customer's next local day, and until when:
    /// `sent_today` counts their nudges on [`Self::capped_day`] of `now`, this one included.
    pub fn held_by_day_cap(
        &self,
        zone: &TimeZone,
        now: Timestamp,
        sent_today: u64,
    ) -> Option<Timestamp> {
        if sent_today <= u64::from(self.per_customer_per_day) {
            return None;
        }
        let tomorrow = customer_day(zone, now).tomorrow().ok()?;
        tomorrow.to_zoned(zone.clone()).ok().map(|z| z.timestamp())
    }

    /// What speaks for `case`'s due nudge of `kind` and `tier` at `now`, so that it is not sent,
    /// among `others` (the customer's cases, as the worker reads them from the store and the
    /// simulator holds them):
    ///
    /// - **One conversation per subscription:** the latest delivery of the same message about
    ///   another invoice of the subscription within [`Self::once_per_subscription`]. Only the
    ///   messages about the subscription's standing speak for others ([`Self::coverable`]): the note
    ///   that a payment failed (a renewal failing a month after the last did is the same problem,
    ///   whether or not the last was paid since) and the final notice, while its invoice is unpaid
    ///   (its consequence, a cancellation or a pause, is the subscription's). A payment to confirm
    ///   is one invoice's own.
    /// - **The customer's budget:** a note that a payment failed or a request to confirm one, when
    ///   the customer had [`Self::per_customer`] messages within [`Self::per_customer_within`]
    ///   (those sent, whichever invoices they were about; not the thank-yous, the update links
    ///   they asked for or the messages left unsent). Every message more risks the customer more
    ///   than it wins: a customer who stops reading leaves. The final notice is never held back by
    ///   the budget: it is the last word before the end decision, which counts its grace from it.
    pub fn covered_by<'a>(
        &self,
        case: &Case,
        (kind, tier): (NudgeKind, u32),
        others: impl IntoIterator<Item = &'a Case> + Clone,
        now: Timestamp,
    ) -> Option<Cover> {
        self.conversation(case, (kind, tier), others.clone(), now)
            .or_else(|| self.budget_spent(kind, others, now))
    }

    fn conversation<'a>(
        &self,
        case: &Case,
        (kind, tier): (NudgeKind, u32),
        others: impl IntoIterator<Item = &'a Case>,
        now: Timestamp,
    ) -> Option<Cover> {
        let subscription = case
            .subscription_id
            .as_ref()
            .filter(|_| self.coverable(kind))?;
        others
            .into_iter()
            .filter(|other| {
                other.invoice_id != case.invoice_id
                    && other.subscription_id.as_ref() == Some(subscription)
                    && (kind == NudgeKind::PaymentFailed
                        || !matches!(other.state, State::Recovered | State::Closed))
            })
            .filter_map(|other| {
                let at = other
                    .nudged
                    .iter()
                    .find(|n| n.kind == kind && n.tier == tier)?
                    .reached()?;
                let recent = at <= now && now.duration_since(at) <= self.once_per_subscription;
                recent.then(|| Cover {
                    invoice_id: other.invoice_id.clone(),
                    at,
                    why: Covered::Conversation,
                })
            })
            .max_by_key(|cover| cover.at)
    }

    fn budget_spent<'a>(
        &self,
        kind: NudgeKind,
        customers_cases: impl IntoIterator<Item = &'a Case>,
        now: Timestamp,
    ) -> Option<Cover> {
        if !self.budgeted(kind) {
            return None;
        }
        let sent: Vec<(&str, Timestamp)> = customers_cases
            .into_iter()
            .flat_map(|c| c.nudged.iter().map(move |n| (c.invoice_id.as_str(), n)))
            .filter(|(_, n)| n.kind.capped() && n.covered_by.is_none())
            .filter_map(|(invoice, n)| n.reached().map(|at| (invoice, at)))
            .filter(|(_, at)| *at <= now && now.duration_since(*at) <= self.per_customer_within)
            .collect();
        let spent = u32::try_from(sent.len()).unwrap_or(u32::MAX);
        let (invoice_id, at) = sent.into_iter().max_by_key(|(_, at)| *at)?;
        (spent >= self.per_customer).then(|| Cover {
            invoice_id: invoice_id.to_owned(),
            at,
            why: Covered::Budget(spent),
        })
    }

    /// Whether another invoice's message can speak for a nudge of `kind` ([`Self::covered_by`]).
    pub fn coverable(&self, kind: NudgeKind) -> bool {
        matches!(kind, NudgeKind::PaymentFailed | NudgeKind::FinalNotice)
            && !self.once_per_subscription.is_zero()
    }

    /// Whether the customer's budget can hold back a nudge of `kind` ([`Self::covered_by`]).
    pub fn budgeted(&self, kind: NudgeKind) -> bool {
        matches!(kind, NudgeKind::PaymentFailed | NudgeKind::ActionRequired)
            && self.per_customer > 0
    }

    /// Nudges that count toward the per-case cap: all but the thank-you, the update link the
    /// customer asked for, and those another invoice's message spoke for.
    fn spent(&self, case: &Case) -> u32 {
        let spent = case
            .nudged
            .iter()
            .filter(|n| n.kind.capped() && n.covered_by.is_none())
            .count();
        u32::try_from(spent).unwrap_or(u32::MAX)
    }
}

fn customer_day(zone: &TimeZone, at: Timestamp) -> Date {
    at.to_zoned(zone.clone()).date()
}

/// Whether the customer must confirm the payment rather than change the card.
fn needs_confirmation(case: &Case) -> bool {
    match &case.decline {
        Some(decline) => decline.class == DeclineClass::ActionRequired,
        None => case.state == State::AwaitingCustomer,
    }
}

/// A contact window written in customer metadata as `"18-22"` (local hours, end excluded).
pub fn contact_window(written: &str) -> Option<Window> {
    let (start, end) = written.split_once('-')?;
    let start_hour: u8 = start.trim().parse().ok()?;
    let end_hour: u8 = end.trim().parse().ok()?;
    (start_hour < end_hour && end_hour <= 24).then_some(Window {
        start_hour,
        end_hour,
    })
}

/// Whether a card expiring `exp_month`/`exp_year` no longer works at `at`: cards are good through
/// the last day of their expiry month (counted in UTC, a few hours' caution either way).
pub fn card_expired(exp_month: u32, exp_year: u32, at: Timestamp) -> bool {
    card_expires_at(exp_month, exp_year).is_some_and(|expires| expires <= at)
}

/// The first moment a card expiring `exp_month`/`exp_year` no longer works: the start of the
/// following month, UTC. `None` for a date out of range.
pub fn card_expires_at(exp_month: u32, exp_year: u32) -> Option<Timestamp> {
    let month = i8::try_from(exp_month).unwrap_or(12).clamp(1, 12);
    let year = i16::try_from(exp_year).ok()?;
    let first = jiff::civil::Date::new(year, month, 1).ok()?;
    let after = first.checked_add(jiff::Span::new().months(1)).ok()?;
    after.to_zoned(TimeZone::UTC).ok().map(|z| z.timestamp())
}

/// A customer's card as Stripe shows it, for the expiring-card nudge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardOnFile {
    /// The payment method or (legacy) card source.
    pub id: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
}

impl CardOnFile {
    /// Whether the card no longer works at `at` ([`card_expired`]).
    pub fn expired_by(&self, at: Timestamp) -> bool {
        card_expired(self.exp_month, self.exp_year, at)
    }

    /// The card in words: `Visa ending 4242, expiring 12/2026`.
    pub fn describe(&self) -> String {
        let mut brand = self.brand.clone();
        if let Some(first) = brand.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        format!(
            "{brand} ending {}, expiring {:02}/{}",
            self.last4, self.exp_month, self.exp_year
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(exp_month: u32, exp_year: u32) -> CardOnFile {
        CardOnFile {
            id: "pm_1".into(),
            brand: "visa".into(),
            last4: "4242".into(),
            exp_month,
            exp_year,
        }
    }

    #[test]
    fn a_card_works_through_its_expiry_month() {
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert!(!card(12, 2026).expired_by(at("2026-12-31T23:59:59Z")));
        assert!(card(12, 2026).expired_by(at("2027-01-01T00:00:00Z")));
        assert!(card(1, 2026).expired_by(at("2026-02-15T00:00:00Z")));
        assert_eq!(
            card(3, 2027).describe(),
            "Visa ending 4242, expiring 03/2027"
        );
    }

    #[test]
    fn a_contact_window_is_two_hours_that_open_before_they_close() {
        assert_eq!(
            contact_window("18-22"),
            Some(Window {
                start_hour: 18,
                end_hour: 22
            })
        );
        assert_eq!(contact_window("22-18"), None);
        assert_eq!(contact_window("evenings"), None);
    }
}
