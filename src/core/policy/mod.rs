//! The policy core: every decision recoup makes, as pure functions over plain data.
//!
//! [`decide`] takes the policy, the case as it stands (or `None` for an invoice recoup has not seen),
//! one [`Input`] and the scheduler's "now", and returns a [`Decision`]: the case as it must be saved
//! and the [`Action`]s to carry out afterwards. The case is taken by value and changed in place —
//! a case is a few dozen strings and lists, and copying it for every input was a tenth of the
//! simulator's time — so an input that changes nothing hands it back untouched. Nothing in here
//! reads a clock, touches Redis or speaks HTTP, which is what lets the same code run in `serve`,
//! in tests and on a virtual clock.
//!
//! Two rules make cases safe against Stripe's delivery habits (late, twice, out of order):
//!
//! - an event that already left its mark on a case changes nothing the second time;
//! - the state is computed from *facts* stamped with Stripe's own `created` time (first failure,
//!   payment, closure), never from the order events arrived in, so every delivery order of the same
//!   events ends in the same state. A payment wins over everything; a payment created before any
//!   failure leaves the case `closed` ("paid before any failure"), one created after it `recovered`.
//!   Arrival order breaks the tie only when both fall in the same `created` second.
//!
//! A case's timers are part of the case, so they are saved with it in one write; a timer fires by
//! being fed back in as [`Input::Timer`], and only while the case still holds it.

pub mod budget;
mod card_paid;
mod case;
mod charge;
pub mod decline;
pub mod duration;
mod ended;
pub mod ending;
mod events;
pub mod experiment;
pub mod expiring;
pub mod feedback;
pub mod file;
mod hold;
pub mod learning;
pub mod networks;
mod newer_card;
mod nudge;
mod nudged;
mod opened;
mod plan;
pub mod reconcile;
mod replan;
mod segment;
pub mod time;
mod timers;
pub mod timing;

use std::sync::Arc;

use jiff::Timestamp;

use self::card_paid::on_card_paid;
pub use self::card_paid::{AFTER_CARD_PAID, CardPaid};
pub use self::case::*;
pub use self::charge::{Charge, ChargeResult, Declined};
use self::ended::{on_ended, on_resumed};
pub use self::ending::{DisputePlan, End, EndOrder, EndPlan, EndResult, PauseBehavior};
use self::events::on_event;
pub use self::experiment::{Arm, Assignment, Experiment, Treatment};
use self::feedback::on_answered;
pub use self::feedback::{Answer, CustomerAnswer, FeedbackPlan, Reaction};
pub use self::hold::{Support, SupportAct, retry_allowed};
pub use self::learning::{Evidence, Learning, RetryChoice};
pub use self::networks::Networks;
pub use self::newer_card::newer_card;
pub use self::nudge::{
    CardOnFile, Cover, Covered, NudgePlan, NudgeResult, Nudged, RETRY_GAPS, RETRY_UNDER_WAY, Step,
    card_expired, card_expires_at, contact_window,
};
use self::nudged::{on_nudge_covered, on_nudge_held, on_nudged};
pub use self::opened::LinkOutcome;
use self::opened::on_link_opened;
pub use self::plan::{NextRetry, Plan};
pub use self::segment::{CustomerFacts, Match, Segment, Threshold};
use self::timers::on_timer;
pub use self::timers::{HELD_BACK_BY_NETWORK, await_results};
use crate::event::{Event, EventObject, Invoice};

/// What a case's timers and retries are tuned by: `config/policy.toml`, read by [`file`].
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// When retries are due.
    pub plan: Plan,
    /// The card networks' rules: limits on retries counted per card, what their codes ask, fees.
    pub networks: Arc<Networks>,
    /// Invoices that get a plan of their own, first match first.
    pub segments: Vec<Segment>,
    /// The messages customers get.
    pub nudges: NudgePlan,
    /// What happens when dunning runs out.
    pub ending: EndPlan,
    /// What a lost dispute means for retries.
    pub disputes: DisputePlan,
    /// Whether nudges carry the feedback link, and what each answer on it does (`[feedback]`).
    pub feedback: FeedbackPlan,
    /// Whether and how retries are timed by what earlier attempts came to.
    pub learning: Learning,
    /// The experiment customers are split by, if one runs (`[[experiment]]`).
    pub experiment: Option<Experiment>,
    /// What earlier attempts came to: learned by `serve` from Stripe's answers, by `simulate` as
    /// its virtual time passes; empty in a policy just read from its file.
    pub evidence: Arc<Evidence>,
}

impl Default for Policy {
    /// Every section at its default and no segments; the shipped file adds two ([`Policy::shipped`]).
    fn default() -> Self {
        Self {
            plan: Plan::default(),
            networks: Networks::built_in(),
            segments: Vec::new(),
            nudges: NudgePlan::default(),
            ending: EndPlan::default(),
            disputes: DisputePlan::default(),
            feedback: FeedbackPlan::default(),
            learning: Learning::default(),
            experiment: None,
            evidence: Arc::default(),
        }
    }
}

impl Policy {
    /// The segment a failed invoice of a customer belongs to when it fails at `at`, if any.
    pub fn segment_for(
        &self,
        invoice: &Invoice,
        customer: &CustomerFacts,
        at: Timestamp,
    ) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| s.when.matches(invoice, customer, at))
    }

    /// The plan of the case's experiment arm, else of its segment, else the policy's own (also when
    /// the policy no longer has a segment or arm of the name the case keeps).
    pub fn plan_for(&self, case: &Case) -> &Plan {
        self.treatment_of(case).map_or_else(
            || self.segment_of(case).map_or(&self.plan, |s| &s.plan),
            |t| &t.plan,
        )
    }

    /// The nudges of the case's arm, else of its segment, else the policy's own.
    pub fn nudges_for(&self, case: &Case) -> &NudgePlan {
        self.treatment_of(case).map_or_else(
            || self.segment_of(case).map_or(&self.nudges, |s| &s.nudges),
            |t| &t.nudges,
        )
    }

    /// What happens when dunning runs out for the case's arm, else its segment, else the policy's.
    pub fn ending_for(&self, case: &Case) -> &EndPlan {
        self.treatment_of(case).map_or_else(
            || self.segment_of(case).map_or(&self.ending, |s| &s.ending),
            |t| &t.ending,
        )
    }

    /// Whether and how the case's retries are timed by evidence: its arm's learning, else the
    /// policy's (segments have no learning of their own).
    pub fn learning_for(&self, case: &Case) -> &Learning {
        self.treatment_of(case)
            .and_then(|t| t.learning.as_ref())
            .unwrap_or(&self.learning)
    }

    /// Whether any case of the policy's may be timed by evidence: the policy's own learning, or
    /// an experiment arm's.
    pub fn learns(&self) -> bool {
        self.learning.enabled
            || self.experiment.as_ref().is_some_and(|e| {
                e.arms.iter().any(|a| {
                    std::iter::once(&a.own)
                        .chain(&a.segments)
                        .any(|t| t.learning.as_ref().is_some_and(|l| l.enabled))
                })
            })
    }

    fn segment_of(&self, case: &Case) -> Option<&Segment> {
        self.segment_index(case).map(|n| &self.segments[n])
    }

    fn segment_index(&self, case: &Case) -> Option<usize> {
        let name = case.segment.as_deref()?;
        self.segments.iter().position(|s| s.name == name)
    }

    /// The experiment arm a case's customer was put in when it opened, if the policy still runs
    /// that experiment and arm.
    pub fn arm_of(&self, case: &Case) -> Option<&Arm> {
        let assigned = case.arm.as_ref()?;
        self.experiment
            .as_ref()
            .filter(|e| e.name == assigned.experiment)?
            .arms
            .iter()
            .find(|a| a.name == assigned.arm)
    }

    /// What the case's arm does with the case's segment: the arm's overrides over the segment's
    /// plan (or the holdout's baseline, whatever the segment).
    fn treatment_of(&self, case: &Case) -> Option<&Treatment> {
        self.arm_of(case)
            .map(|arm| arm.treatment(self.segment_index(case)))
    }
}

/// Something that happened to a case.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A verified Stripe event about the case's invoice.
    Event(Box<Event>),
    /// An invoice event that may open a case, with what Stripe shows of the invoice's customer:
    /// the worker reads the customer first, so that a case opens in the customer's own time zone
    /// and segment. Once the case exists it is the plain event. `untold`: the case it opens keeps
    /// no timeline ([`Case::untold`]) — the simulator's, whose stories nobody reads.
    Opening {
        event: Box<Event>,
        customer: Box<CustomerFacts>,
        untold: bool,
    },
    /// One of the case's own timers came due. `card` holds the recent tries on the case's card
    /// (empty while the card is not known), over which the networks' budgets are counted.
    Timer {
        timer: Timer,
        card: Vec<budget::Try>,
    },
    /// What a charge attempt on the invoice came to: recoup's own, or the decline details of one of
    /// Stripe's.
    Charge(Box<Charge>),
    /// What became of one try of a nudge at `at` on each channel, rendered from `template`.
    Nudged {
        kind: NudgeKind,
        tier: u32,
        at: Timestamp,
        template: String,
        results: Vec<NudgeResult>,
    },
    /// A due nudge was not sent: the customer had their day's nudges already; again from `until`.
    NudgeHeld {
        kind: NudgeKind,
        tier: u32,
        until: Timestamp,
    },
    /// A due nudge was not sent at `at`: the customer had the same message about another unpaid
    /// invoice of the subscription ([`NudgePlan::covered_by`]).
    NudgeCovered {
        kind: NudgeKind,
        tier: u32,
        at: Timestamp,
        cover: Cover,
    },
    /// What carrying out the case's end decision in Stripe came to.
    Ended { at: Timestamp, result: EndResult },
    /// What resuming the collection recoup paused came to.
    Resumed { at: Timestamp, result: EndResult },
    /// A dispute event about the case's customer (disputes name a charge; the worker found the
    /// customer), with the disputed card when Stripe showed it.
    Dispute {
        event: Box<Event>,
        card: Option<Card>,
    },
    /// A support agent's action.
    Support(Box<Support>),
    /// The customer opened an update link recoup sent them for the case's invoice, and where it
    /// led them.
    LinkOpened { at: Timestamp, outcome: LinkOutcome },
    /// A retry of another of the customer's invoices, `invoice_id`, went through at `at` on the card
    /// `fingerprint`: the customer's money is there now.
    CardPaid {
        invoice_id: String,
        fingerprint: String,
        at: Timestamp,
    },
    /// The customer gave the card `card` (payment method `method`) on another of their invoices
    /// at `since`, after the card this case's invoice failed on; the case hears of it at `at`.
    NewerCard {
        method: String,
        card: Card,
        since: Timestamp,
        at: Timestamp,
    },
    /// The customer answered "What's in the way?" on the feedback link of one of the case's nudges,
    /// perhaps with a few words of their own.
    Answered {
        at: Timestamp,
        answer: Answer,
        text: Option<String>,
    },
}

/// Something to do for the decided case: Stripe calls (`Retry`, `End`, `Resume`) are made before
/// it is saved, their results saved with it; nudges go out after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Charge the invoice; `attempt` keys the charge so a redo cannot charge twice.
    Retry { attempt: u32 },
    /// Carry out the case's end decision in Stripe (its invoice and subscription read first).
    End(End),
    /// Resume the collection of the subscription recoup paused.
    Resume,
    /// Send the customer this message, on the plan's channels, and report back with
    /// `Input::Nudged`. Marked on the case before its first try goes out, so no redo sends it twice;
    /// a nudge no channel took for a passing reason comes back as this action when it is retried.
    Nudge { kind: NudgeKind, tier: u32 },
}

/// The result of [`decide`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    /// The case to save, or `None` when the input changes nothing (and nothing is saved).
    pub case: Option<Case>,
    pub actions: Vec<Action>,
    /// Why a support action was refused (nothing is saved then).
    pub refused: Option<String>,
    /// The case as it came in, handed back when the input changed nothing (`case` is `None`).
    pub unchanged: Option<Case>,
}

impl Decision {
    /// Nothing to save: `case` goes back as it came.
    fn unchanged(case: Case) -> Self {
        Self {
            unchanged: Some(case),
            ..Self::default()
        }
    }

    fn save(case: Case) -> Self {
        Self {
            case: Some(case),
            ..Self::default()
        }
    }

    /// The case after the input, changed or not: what a caller keeps (`None` only when there was
    /// no case and the input opened none).
    pub fn into_case(self) -> Option<Case> {
        self.case.or(self.unchanged)
    }
}

/// Decides what `input` means for `case` at `now`.
pub fn decide(policy: &Policy, case: Option<Case>, input: &Input, now: Timestamp) -> Decision {
    let Some(case) = case else {
        return match input {
            Input::Event(event) => on_event(policy, None, event, None, now),
            Input::Opening {
                event,
                customer,
                untold,
            } => on_event(policy, None, event, Some((&**customer, *untold)), now),
            Input::Support(_) => Decision {
                refused: Some("recoup has no case for this invoice".to_owned()),
                ..Decision::default()
            },
            _ => Decision::default(),
        };
    };
    match input {
        Input::Event(event) => on_event(policy, Some(case), event, None, now),
        Input::Opening {
            event,
            customer,
            untold,
        } => on_event(policy, Some(case), event, Some((&**customer, *untold)), now),
        Input::Timer { timer, card } => on_timer(policy, case, timer, card, now),
        Input::Charge(charge) => charge::on_charge(policy, case, charge),
        Input::Nudged {
            kind,
            tier,
            at,
            template,
            results,
        } => on_nudged(policy, case, (*kind, *tier), *at, template, results),
        Input::NudgeHeld { kind, tier, until } => on_nudge_held(policy, case, *kind, *tier, *until),
        Input::NudgeCovered {
            kind,
            tier,
            at,
            cover,
        } => on_nudge_covered(policy, case, (*kind, *tier), *at, cover),
        Input::Ended { at, result } => on_ended(policy, case, *at, result),
        Input::Resumed { at, result } => on_resumed(case, *at, result),
        Input::Dispute { event, card } => match &event.object {
            EventObject::Dispute(dispute) if !case.has_seen(&event.id) => {
                hold::on_dispute(policy, case, event, dispute, card.as_ref())
            }
            _ => Decision::unchanged(case),
        },
        Input::Support(support) => hold::on_support(policy, case, support),
        Input::LinkOpened { at, outcome } => on_link_opened(case, *at, *outcome),
        Input::CardPaid {
            invoice_id,
            fingerprint,
            at,
        } => on_card_paid(policy, case, invoice_id, fingerprint, *at),
        Input::NewerCard {
            method,
            card,
            since,
            at,
        } => newer_card::on_newer_card(policy, case, method, card, *since, *at),
        Input::Answered { at, answer, text } => {
            on_answered(policy, case, *at, *answer, text.as_deref())
        }
    }
}

#[cfg(test)]
mod tests;
