//! A case: one invoice in dunning, as recoup keeps it and as support reads it.
//!
//! The serialised form is the case JSON of `docs/api.md#the-case-json`, so the store, the status API and `recoup status`
//! all show the same thing; the schemas `/api/openapi.json` gives for it are derived from the same
//! serde attributes, so they describe exactly this JSON. Besides what support reads, a case holds
//! the *facts* its state is computed from (when Stripe first saw it fail, when it was paid, why it
//! was closed) and its own pending [`Timer`]s: a case's timers live inside the case, so saving a
//! case and its timers is one write, and a timer can only fire while the case still holds it.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::nudge::Nudged;
use super::timing::Window;

/// Where a case stands; see `docs/api.md#states` for what each state means to support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Retrying,
    AwaitingCustomer,
    Recovered,
    Paused,
    Canceled,
    Closed,
    OnHold,
}

impl State {
    /// Whether dunning is over for the case: nothing will be scheduled for it again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Recovered | State::Paused | State::Canceled | State::Closed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Retrying => "retrying",
            State::AwaitingCustomer => "awaiting_customer",
            State::Recovered => "recovered",
            State::Paused => "paused",
            State::Canceled => "canceled",
            State::Closed => "closed",
            State::OnHold => "on_hold",
        }
    }
}

/// Who brought the money in, once a case is recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecoveredBy {
    Retry,
    Customer,
    Unknown,
}

/// How a decline is to be treated; classification itself belongs to the retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeclineClass {
    Soft,
    Ambiguous,
    CardData,
    ActionRequired,
    Hard,
}

impl DeclineClass {
    pub fn as_str(self) -> &'static str {
        match self {
            DeclineClass::Soft => "soft",
            DeclineClass::Ambiguous => "ambiguous",
            DeclineClass::CardData => "card_data",
            DeclineClass::ActionRequired => "action_required",
            DeclineClass::Hard => "hard",
        }
    }
}

/// The decline that put (or keeps) the case in dunning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Decline {
    pub code: Option<String>,
    pub class: DeclineClass,
    pub advice_code: Option<String>,
    pub network_advice_code: Option<String>,
    /// How long the card's network asked recoup to wait before any retry (Mastercard's advice
    /// 24–30), as the network rules read it on the decline's day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "PT24H")]
    pub network_wait: Option<SignedDuration>,
}

impl Decline {
    /// A decline known only by its code and class: no advice, no network wait.
    pub fn of_code(code: &str, class: DeclineClass) -> Self {
        Self {
            code: Some(code.to_owned()),
            class,
            advice_code: None,
            network_advice_code: None,
            network_wait: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Failed,
    Succeeded,
    Error,
}

/// One charge attempt on the invoice, by Stripe or by recoup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub number: u32,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    /// How many times in a row the attempt reached no result (`outcome` error): each is made
    /// again later with the same idempotency key, up to [`Attempt::MAX_ERRORS`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub errors: u32,
}

impl Attempt {
    /// Errors in a row after which an attempt is held for support: 8 tries, spaced 10 minutes
    /// doubling, span 42 hours — past Stripe's 24 hours of replaying a stored error for one key,
    /// and past most outages. What still fails then (a 404, a 403, a key without the right) needs
    /// a person, not another try every few minutes for weeks.
    pub const MAX_ERRORS: u32 = 8;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Webhook => "webhook",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NudgeKind {
    PaymentFailed,
    CardExpiring,
    ActionRequired,
    FinalNotice,
    Recovered,
    /// The update link again, because the customer answered that their card changed.
    UpdateLink,
}

impl NudgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NudgeKind::PaymentFailed => "payment_failed",
            NudgeKind::CardExpiring => "card_expiring",
            NudgeKind::ActionRequired => "action_required",
            NudgeKind::FinalNotice => "final_notice",
            NudgeKind::Recovered => "recovered",
            NudgeKind::UpdateLink => "update_link",
        }
    }

    /// Whether the caps count it: every nudge but the thank-you and the update link the customer
    /// asked for (see `NudgePlan::next`).
    pub fn capped(self) -> bool {
        !matches!(self, NudgeKind::Recovered | NudgeKind::UpdateLink)
    }
}

/// A message sent to the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Nudge {
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub channel: Channel,
    pub kind: NudgeKind,
    pub tier: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndAction {
    Pause,
    Cancel,
    MarkUncollectible,
    LeavePastDue,
}

impl EndAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EndAction::Pause => "pause",
            EndAction::Cancel => "cancel",
            EndAction::MarkUncollectible => "mark_uncollectible",
            EndAction::LeavePastDue => "leave_past_due",
        }
    }
}

/// What became of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionOutcome {
    /// Handed to Stripe; its answer is not on the case yet.
    UnderWay,
    /// Done in Stripe by recoup (or, for `leave_past_due`, nothing to do there).
    CarriedOut,
    /// Stripe already showed exactly this change when recoup came to make it: an earlier try of
    /// the same decision whose answer was lost, or someone in the dashboard.
    FoundDone,
    /// Right before acting, the invoice or the subscription had changed: recoup left it alone.
    NotCarriedOut,
    /// Stripe could not be reached or refused; tried again later with the same idempotency key.
    Failed,
}

impl DecisionOutcome {
    /// Whether the change may still have to be made: Stripe refused it, or its answer is not on
    /// the case — the call is in flight, or the worker making it died. Either way it is made again
    /// under the same idempotency key, so a change Stripe did make is only found done.
    pub fn to_redo(self) -> bool {
        matches!(self, DecisionOutcome::UnderWay | DecisionOutcome::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DecisionOutcome::UnderWay => "under_way",
            DecisionOutcome::CarriedOut => "carried_out",
            DecisionOutcome::FoundDone => "found_done",
            DecisionOutcome::NotCarriedOut => "not_carried_out",
            DecisionOutcome::Failed => "failed",
        }
    }

    /// Whether the change is in place in Stripe.
    pub fn done(self) -> bool {
        matches!(
            self,
            DecisionOutcome::CarriedOut | DecisionOutcome::FoundDone
        )
    }
}

/// What recoup decided to do about the subscription when dunning ran out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CaseDecision {
    pub action: EndAction,
    /// When it was made (for a failed one: when it was last tried).
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// The policy rule that chose it: the segment (or the policy's own), the experiment arm if any,
    /// and the situation.
    pub rule: String,
    pub reason: String,
    /// The change in Stripe's words: `pause_collection[behavior]=keep_as_draft`, …
    pub how: String,
    /// When a pause ends by itself (`pause_collection[resumes_at]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resumes_at: Option<Timestamp>,
    pub outcome: DecisionOutcome,
    /// Why it was not carried out, or what failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// How many ended holds a case remembers: enough for every dispute a customer plausibly has open
/// at once, bounded so a case stays small.
pub const ENDED_HOLDS_KEPT: usize = 20;

/// Who holds a case back from dunning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum HoldBy {
    /// A dispute on one of the customer's charges, until it closes.
    Dispute { dispute: String },
    /// A support agent, by the name of their API token, until support resumes it.
    Support { name: String },
    /// The business paused the subscription's collection in Stripe, until it resumes it there.
    Stripe { subscription: String },
}

/// One reason a case is `on_hold`: no retries, no nudges, no decision while any is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Hold {
    #[serde(flatten)]
    pub by: HoldBy,
    pub reason: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

/// Support asked for a retry now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetryRequest {
    pub by: String,
    pub reason: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

/// A dispute the customer won against the business: the card it was on is not charged again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LostDispute {
    pub dispute: String,
    /// The disputed card's fingerprint; `None` when Stripe did not show it (then no card of the
    /// case is retried).
    pub card: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

/// Resuming the collection recoup paused, once the invoice is paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Resumption {
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub outcome: DecisionOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimerKind {
    /// Charge the invoice again; `attempt` is the attempt number the retry will be.
    Retry { attempt: u32 },
    /// Send the customer a message of the plan.
    Nudge { nudge: NudgeKind, tier: u32 },
    /// Dunning ran out: make the policy's end decision (pause, cancel, …) and carry it out.
    Decide,
    /// The invoice of a subscription recoup paused is paid: resume its collection.
    Resume,
}

/// Something the case must do at a given time, unless the case moves on first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Timer {
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    #[serde(flatten)]
    pub kind: TimerKind,
}

/// A line of the story support reads; `event` names the Stripe event that caused it, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Entry {
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub what: String,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// Why a case was closed without being recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Closure {
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub reason: String,
}

/// A payment method that arrived for the case's customer (Stripe's `created` time of the event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewPaymentMethod {
    pub id: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

/// The card a decline came from, as Stripe identifies it: what network budgets are kept per.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Card {
    pub fingerprint: String,
    /// `visa`, `mastercard`, … as Stripe names the brand.
    pub brand: String,
    /// `credit`, `debit`, `prepaid` or `unknown`, as Stripe names the card's funding, when it
    /// showed it: a credit line, an account paid into and a card topped up fill at different
    /// moments, so learning keeps their evidence apart ([`Funding`](super::learning::Funding)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funding: Option<String>,
    /// When the card stops working: the first moment after its expiry month
    /// ([`card_expires_at`](super::card_expires_at)), when Stripe showed it. No retry on it is
    /// planned for later: it would be declined as expired whatever the customer's balance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
}

/// Who an invoice was addressed to (its `customer_name` and `customer_email`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BilledTo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A retry that came due and was handed to the processor, whose result is not on the case yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetryUnderWay {
    pub attempt: u32,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

/// One invoice in dunning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Case {
    pub invoice_id: String,
    pub customer_id: String,
    pub subscription_id: Option<String>,
    pub amount_due: i64,
    /// What is still due when a partial payment left less than `amount_due` (Stripe's
    /// `amount_remaining` on the latest failure); absent when all of it is. [`Case::still_due`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_remaining: Option<i64>,
    pub currency: String,
    pub state: State,
    pub customer_timezone: String,
    pub decline: Option<Decline>,
    pub attempts: Vec<Attempt>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
    pub nudges: Vec<Nudge>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_by: Option<RecoveredBy>,
    pub decision: Option<Box<CaseDecision>>,
    pub timers: Vec<Timer>,
    pub timeline: Vec<Entry>,
    /// When Stripe first reported a failed payment (the `created` time of the earliest
    /// `invoice.payment_failed`); `None` while no failure has been seen.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failed_at: Option<Timestamp>,
    /// When Stripe reported the invoice paid (the `created` time of the paid event).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub paid_at: Option<Timestamp>,
    /// Whether the payment arrived before any failure when both share one `created` second; the
    /// only place where arrival order, not Stripe's clock, decides.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paid_first: bool,
    pub closure: Option<Box<Closure>>,
    /// The latest payment method the customer added or made their default after the invoice
    /// failed: the best moment to retry, whatever the old card's decline was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_payment_method: Option<Box<NewPaymentMethod>>,
    /// The latest payment a retry of another of the customer's invoices made on the case's card:
    /// the next retry follows it ([`super::card_paid`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_paid: Option<Box<super::CardPaid>>,
    /// The latest retry fired; until an attempt of that number is recorded, the plan waits for its
    /// result instead of planning it again, and a later try takes the next attempt number (and so
    /// a fresh idempotency key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_under_way: Option<RetryUnderWay>,
    /// The policy segment the invoice fell in when the case opened; `None`: the policy's own plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// The experiment arm the customer was put in when the case opened (`None`: no experiment
    /// ran); its plan is the arm's ([`crate::policy::experiment`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm: Option<Box<super::Assignment>>,
    /// Nudges the policy sent out (whatever became of them on each channel: see `nudges`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nudged: Vec<Nudged>,
    /// The name and email address the failed invoice was addressed to: who nudges go to when
    /// Stripe cannot be asked about the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billed_to: Option<BilledTo>,
    /// The customer's own contact hours, from their metadata (`contact_window = "18-22"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_window: Option<Window>,
    /// Keeps no timeline: `recoup simulate` opens its cases so ([`super::Input::Opening`]), as nobody
    /// reads their stories and no event arrives twice (the timeline is what recognises a repeated
    /// event). Its words are not written at all ([`Case::words`]), nor its end decision's rule and
    /// reason, support's words. Never stored.
    #[serde(skip)]
    pub untold: bool,
    /// The case's next nudge waits until then: the per-customer daily cap held one back, or one
    /// came due in the customer's quiet hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub nudges_held_until: Option<Timestamp>,
    /// The card of the latest known decline: the card the next retry will most likely charge, and
    /// the one whose network budget it spends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<Card>,
    /// When Stripe's latest failure says Stripe itself will try again (its own retries are on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub stripe_retries_at: Option<Timestamp>,
    /// Why the case is on hold, while it is (a dispute, support, a pause in Stripe).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<Hold>,
    /// The state the case returns to when its last hold ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_state: Option<State>,
    /// Holds that ended, as of Stripe's time of the ending (the latest [`ENDED_HOLDS_KEPT`]): a
    /// dispute whose closing arrived before its opening holds nothing when the opening comes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds_ended: Vec<Hold>,
    /// Stripe's time of the newest subscription event applied. Each such event is a snapshot of
    /// the subscription, so one made earlier that arrives later is stale: a "paused" that Stripe
    /// sent before its "resumed" must not hold the case after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub subscription_as_of: Option<Timestamp>,
    /// Stripe's time of the newest `customer.updated` whose time zone was read: the newest wins,
    /// whatever order they arrive in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub zone_as_of: Option<Timestamp>,
    /// The latest retry support asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_requested: Option<Box<RetryRequest>>,
    /// The latest dispute of the customer that they won, when the policy stops the card for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_dispute: Option<Box<LostDispute>>,
    /// Collection resumed (or not) after recoup had paused it and the invoice was paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumption: Option<Box<Resumption>>,
    /// When the customer first opened an update link recoup sent them for this invoice
    /// (`<RECOUP_PUBLIC_URL>/fix/…`): the first sign that a nudge was read and acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub link_opened_at: Option<Timestamp>,
    /// How many times the customer opened one of the case's update links.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub link_opens: u32,
    /// The customer's latest answer to "What's in the way?" on a nudge's feedback link
    /// (`<RECOUP_PUBLIC_URL>/feedback/…`), and what the policy did about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Box<super::CustomerAnswer>>,
    /// The customer's billing country (ISO 3166-1 alpha-2), as Stripe showed it when the case
    /// opened: the evidence retries are timed by is kept by country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The days of the month the customer's earlier invoices were paid on (local): their likely
    /// paydays, which an `insufficient_funds` retry waits for before the policy's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paydays: Vec<u8>,
    /// The moment learning chose for the pending retry, and why (`None`: the static plan's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_choice: Option<super::RetryChoice>,
    /// When recoup first heard of the invoice, on the scheduler's clock.
    #[schema(value_type = String, format = DateTime)]
    pub opened_at: Timestamp,
    /// Bumped by the store on every save; a save naming an older version is refused.
    pub version: u64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Case {
    /// Whether recoup decided `action` for this case and did not find it overtaken: a change Stripe
    /// reports with that shape is then recoup's own coming back, even before its answer is saved.
    pub fn decided(&self, action: EndAction) -> bool {
        self.decision
            .as_ref()
            .is_some_and(|d| d.action == action && d.outcome != DecisionOutcome::NotCarriedOut)
    }

    /// What the customer still owes on the invoice: what a retry charges, a nudge names and a
    /// recovery counts.
    pub fn still_due(&self) -> i64 {
        self.amount_remaining.unwrap_or(self.amount_due)
    }

    /// Whether a payment method newer than the last attempt answers a request to act (an older one
    /// was tried already).
    pub fn answered_by_new_card(&self) -> bool {
        self.new_payment_method
            .as_ref()
            .is_some_and(|m| self.attempts.iter().all(|a| a.at < m.at))
    }

    /// The earliest time one of the case's timers is due, which is when the case must wake.
    pub fn next_wake(&self) -> Option<Timestamp> {
        self.timers.iter().map(|t| t.at).min()
    }

    /// The timers due at `now`, earliest first.
    pub fn due_timers(&self, now: Timestamp) -> Vec<Timer> {
        let mut due: Vec<Timer> = self
            .timers
            .iter()
            .filter(|t| t.at <= now)
            .copied()
            .collect();
        due.sort_by_key(|t| t.at);
        due
    }

    /// Whether a nudge of this kind and tier went out.
    pub fn has_nudged(&self, kind: NudgeKind, tier: u32) -> bool {
        self.nudged.iter().any(|n| n.kind == kind && n.tier == tier)
    }

    /// Whether the event with this id has already left its mark on the case.
    pub fn has_seen(&self, event_id: &str) -> bool {
        self.timeline
            .iter()
            .any(|e| e.event.as_deref() == Some(event_id))
    }

    /// Whether attempt `number` failed and why is not known yet: Stripe's failure events carry no
    /// decline, and the worker reads it from the payment intent next, as the attempt's result.
    pub fn decline_unread(&self, number: u32) -> bool {
        self.attempts
            .iter()
            .any(|a| a.number == number && a.outcome == Outcome::Failed && a.decline_code.is_none())
    }

    /// Words for the timeline: `text()`, or nothing for a case that keeps none (`untold`), whose
    /// story would cost more to write than the decisions it explains.
    pub fn words(&self, text: impl FnOnce() -> String) -> String {
        if self.untold { String::new() } else { text() }
    }

    /// Adds a line to the timeline, keeping it ordered by time (stable for equal times), so the
    /// story reads the same whatever order Stripe delivered its events in.
    ///
    /// A URL's credentials never reach the timeline, which support reads, the API returns and the
    /// store keeps: an error quoting a URL (`error sending request for url (https://user:pw@…)`)
    /// has its password masked here, whichever part of recoup wrote it ([`crate::redact`]).
    pub fn record(&mut self, mut entry: Entry) {
        if self.untold {
            return;
        }
        for words in [&mut entry.what, &mut entry.detail] {
            if let std::borrow::Cow::Owned(redacted) = crate::redact::text(words) {
                *words = redacted;
            }
        }
        let at = self.timeline.partition_point(|e| e.at <= entry.at);
        self.timeline.insert(at, entry);
    }
}
