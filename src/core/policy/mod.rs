//! The policy core: every decision recoup makes, as pure functions over plain data.
//!
//! [`decide`] takes the policy, the case as it stands (or `None` for an invoice recoup has not seen),
//! one [`Input`] and the scheduler's "now", and returns a [`Decision`]: the case as it must be saved
//! and the [`Action`]s to carry out afterwards. Nothing in here reads a clock, touches Redis or
//! speaks HTTP, which is what lets the same code run in `serve`, in tests and on a virtual clock.
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
mod case;
mod charge;
pub mod decline;
pub mod duration;
pub mod ending;
pub mod file;
mod hold;
mod nudge;
mod plan;
mod segment;
pub mod timing;

use jiff::Timestamp;

pub use self::case::*;
pub use self::charge::{Charge, ChargeResult, Declined};
pub use self::ending::{DisputePlan, End, EndOrder, EndPlan, EndResult, PauseBehavior};
pub use self::hold::{Support, SupportAct, retry_allowed};
pub use self::nudge::{
    CardOnFile, NudgePlan, NudgeResult, Nudged, Step, card_expired, contact_window,
};
use self::plan::human;
pub use self::plan::{NextRetry, Plan};
pub use self::segment::{CustomerFacts, Match, Segment};
use crate::event::{Event, EventKind, EventObject, Invoice};

/// What a case's timers and retries are tuned by: `config/policy.toml`, read by [`file`].
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// When retries are due.
    pub plan: Plan,
    /// The card networks' limits on retries, counted per card.
    pub networks: Vec<budget::Rule>,
    /// Invoices that get a plan of their own, first match first.
    pub segments: Vec<Segment>,
    /// The messages customers get.
    pub nudges: NudgePlan,
    /// What happens when dunning runs out.
    pub ending: EndPlan,
    /// What a lost dispute means for retries.
    pub disputes: DisputePlan,
}

impl Default for Policy {
    /// Every section at its default and no segments; the shipped file adds two ([`Policy::shipped`]).
    fn default() -> Self {
        Self {
            plan: Plan::default(),
            networks: budget::Rule::defaults(),
            segments: Vec::new(),
            nudges: NudgePlan::default(),
            ending: EndPlan::default(),
            disputes: DisputePlan::default(),
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

    /// The plan of the case's segment; the policy's own when it has none (or the policy no longer
    /// has a segment of that name).
    pub fn plan_for(&self, case: &Case) -> &Plan {
        self.segment_of(case).map_or(&self.plan, |s| &s.plan)
    }

    /// The nudges of the case's segment, or the policy's own.
    pub fn nudges_for(&self, case: &Case) -> &NudgePlan {
        self.segment_of(case).map_or(&self.nudges, |s| &s.nudges)
    }

    /// What happens when dunning runs out for the case's segment, or the policy's own.
    pub fn ending_for(&self, case: &Case) -> &EndPlan {
        self.segment_of(case).map_or(&self.ending, |s| &s.ending)
    }

    fn segment_of(&self, case: &Case) -> Option<&Segment> {
        let name = case.segment.as_deref()?;
        self.segments.iter().find(|s| s.name == name)
    }
}

/// Something that happened to a case.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A verified Stripe event about the case's invoice.
    Event(Box<Event>),
    /// An invoice event that may open a case, with what Stripe shows of the invoice's customer:
    /// the worker reads the customer first, so that a case opens in the customer's own time zone
    /// and segment. Once the case exists it is the plain event.
    Opening(Box<Event>, Box<CustomerFacts>),
    /// One of the case's own timers came due. `card` holds the recent tries on the case's card
    /// (empty while the card is not known), over which the networks' budgets are counted.
    Timer {
        timer: Timer,
        card: Vec<budget::Try>,
    },
    /// What a charge attempt on the invoice came to: recoup's own, or the decline details of one of
    /// Stripe's.
    Charge(Box<Charge>),
    /// What became of a nudge on each channel, rendered from `template`.
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
    /// Send the customer this message, on the plan's channels. Marked as sent on the case before it
    /// goes out, so no redo sends it twice.
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
}

impl Decision {
    fn unchanged() -> Self {
        Self::default()
    }

    fn save(case: Case) -> Self {
        Self {
            case: Some(case),
            actions: Vec::new(),
            refused: None,
        }
    }
}

/// Decides what `input` means for `case` at `now`.
pub fn decide(policy: &Policy, case: Option<&Case>, input: &Input, now: Timestamp) -> Decision {
    match input {
        Input::Event(event) => on_event(policy, case, event, None, now),
        Input::Opening(event, customer) => on_event(policy, case, event, Some(customer), now),
        Input::Timer { timer, card } => case.map_or_else(Decision::unchanged, |case| {
            on_timer(policy, case, timer, card, now)
        }),
        Input::Charge(charge) => case.map_or_else(Decision::unchanged, |case| {
            charge::on_charge(policy, case, charge)
        }),
        Input::Nudged {
            kind,
            tier,
            at,
            template,
            results,
        } => case.map_or_else(Decision::unchanged, |case| {
            on_nudged(case, (*kind, *tier), *at, template, results)
        }),
        Input::NudgeHeld { kind, tier, until } => case.map_or_else(Decision::unchanged, |case| {
            on_nudge_held(policy, case, *kind, *tier, *until)
        }),
        Input::Ended { at, result } => case.map_or_else(Decision::unchanged, |case| {
            on_ended(policy, case, *at, result)
        }),
        Input::Resumed { at, result } => {
            case.map_or_else(Decision::unchanged, |case| on_resumed(case, *at, result))
        }
        Input::Dispute { event, card } => match (case, &event.object) {
            (Some(case), EventObject::Dispute(dispute)) if !case.has_seen(&event.id) => {
                hold::on_dispute(policy, case, event, dispute, card.as_ref())
            }
            _ => Decision::unchanged(),
        },
        Input::Support(support) => case.map_or_else(
            || Decision {
                refused: Some("recoup has no case for this invoice".to_owned()),
                ..Decision::unchanged()
            },
            |case| hold::on_support(policy, case, support),
        ),
    }
}

fn on_event(
    policy: &Policy,
    case: Option<&Case>,
    event: &Event,
    customer: Option<&CustomerFacts>,
    now: Timestamp,
) -> Decision {
    if case.is_some_and(|c| c.has_seen(&event.id)) {
        return Decision::unchanged();
    }
    let invoice = match (&event.object, case) {
        (EventObject::Invoice(invoice), _) if invoice.id.is_some() => invoice,
        (EventObject::Subscription(subscription), Some(case)) => {
            return hold::on_subscription(policy, case, event, subscription);
        }
        _ => return on_customer_event(policy, case, event),
    };
    let fact = match event.kind {
        EventKind::InvoicePaymentFailed | EventKind::InvoicePaymentActionRequired => Fact::Failed {
            needs_customer: event.kind == EventKind::InvoicePaymentActionRequired,
        },
        EventKind::InvoicePaid | EventKind::InvoicePaymentSucceeded => Fact::Paid,
        EventKind::InvoiceVoided => Fact::Closed("voided in Stripe"),
        EventKind::InvoiceMarkedUncollectible => Fact::Closed("marked uncollectible in Stripe"),
        _ => return Decision::unchanged(),
    };
    let at = Timestamp::from_second(event.created).unwrap_or(now);
    let before = case.map(|c| c.state);
    let mut case = case
        .cloned()
        .unwrap_or_else(|| open(policy, invoice, customer, fact.opening_state(), at, now));
    match fact {
        Fact::Failed { needs_customer } => {
            case.failed_at = Some(case.failed_at.map_or(at, |f| f.min(at)));
            // Only the latest failure tells whether Stripe still plans an attempt of its own.
            if case.attempts.iter().all(|a| a.at <= at) {
                case.stripe_retries_at = invoice
                    .next_payment_attempt
                    .and_then(|t| Timestamp::from_second(t).ok());
            }
            record_attempt(
                &mut case,
                invoice.attempt_count.max(1),
                at,
                Outcome::Failed,
                None,
            );
            // A payment method the customer added after this failure already answers it.
            let answered = case.new_payment_method.as_ref().is_some_and(|c| c.at > at);
            if needs_customer && !answered && case.state == State::Retrying {
                case.state = State::AwaitingCustomer;
            }
        }
        Fact::Paid => {
            if case.paid_at.is_none() {
                case.paid_first = case.failed_at.is_none();
            }
            case.paid_at = Some(case.paid_at.map_or(at, |p| p.min(at)));
        }
        Fact::Closed(reason) => {
            if case.closure.as_ref().is_none_or(|c| at < c.at) {
                case.closure = Some(Closure {
                    at,
                    reason: reason.to_owned(),
                });
            }
        }
    }
    settle(&mut case);
    let (planned, actions) = replan(policy, &mut case, at);
    let detail = case.words(|| describe(event, invoice, before, &case)) + &planned;
    case.record(Entry {
        at,
        what: event.kind.as_str().to_owned(),
        detail,
        event: Some(event.id.clone()),
    });
    Decision {
        case: Some(case),
        actions,
        refused: None,
    }
}

/// An event about the case's customer: a new payment method — the best moment to retry, even for
/// a decline no schedule retries, as the old card's decline says nothing about the new one — or the
/// customer's own time zone, which moves the planned retry into their daytime.
fn on_customer_event(policy: &Policy, case: Option<&Case>, event: &Event) -> Decision {
    // A paused customer's new card is the way back: it is retried like any other.
    let Some(case) = case.filter(|c| !c.state.is_final() || c.state == State::Paused) else {
        return Decision::unchanged();
    };
    let (customer, method, card, zone) = match (&event.object, event.kind) {
        (
            EventObject::PaymentMethod(pm),
            EventKind::PaymentMethodAttached | EventKind::PaymentMethodAutomaticallyUpdated,
        ) => {
            let card = pm.card.as_ref().and_then(|c| {
                Some(Card {
                    fingerprint: c.fingerprint.clone()?,
                    brand: c.brand.clone()?,
                })
            });
            (pm.customer.as_deref(), Some(&pm.id), card, None)
        }
        (EventObject::Customer(customer), EventKind::CustomerUpdated) => (
            Some(customer.id.as_str()),
            customer
                .default_payment_method
                .as_ref()
                .filter(|_| customer.default_payment_method_changed),
            None,
            timing::known_zone(
                customer.metadata.get("timezone").map(String::as_str),
                customer.country.as_deref(),
            ),
        ),
        _ => return Decision::unchanged(),
    };
    let zone = zone.filter(|zone| *zone != case.customer_timezone);
    if customer != Some(case.customer_id.as_str()) || (method.is_none() && zone.is_none()) {
        return Decision::unchanged();
    }
    let at = Timestamp::from_second(event.created).unwrap_or(case.opened_at);
    let mut case = case.clone();
    let mut notes = Vec::new();
    if let Some(zone) = zone {
        notes.push(format!("the customer's time zone is {zone}"));
        case.customer_timezone = zone;
    }
    if let Some(method) = method {
        notes.push(format!("new payment method {method}"));
        if case
            .new_payment_method
            .as_ref()
            .is_none_or(|known| known.at <= at)
        {
            case.new_payment_method = Some(NewPaymentMethod {
                id: method.clone(),
                at,
            });
        }
        // The new card is the one the retry will charge: its network budget is the one to keep.
        if let Some(card) = card {
            case.card = Some(card);
        }
        if case.state == State::AwaitingCustomer && answered_by_new_card(&case) {
            case.state = State::Retrying;
        }
    }
    let (planned, actions) = replan(policy, &mut case, at);
    case.record(Entry {
        at,
        what: event.kind.as_str().to_owned(),
        detail: notes.join("; ") + &planned,
        event: Some(event.id.clone()),
    });
    Decision {
        case: Some(case),
        actions,
        refused: None,
    }
}

/// Whether a payment method newer than the last attempt answers a request to act (an older one
/// was tried already).
fn answered_by_new_card(case: &Case) -> bool {
    case.new_payment_method
        .as_ref()
        .is_some_and(|m| case.attempts.iter().all(|a| a.at < m.at))
}

fn on_timer(
    policy: &Policy,
    case: &Case,
    timer: &Timer,
    card: &[budget::Try],
    now: Timestamp,
) -> Decision {
    let Some(held) = case.timers.iter().position(|t| t == timer) else {
        return Decision::unchanged();
    };
    let mut case = case.clone();
    case.timers.remove(held);
    if case.state == State::OnHold {
        // The plan is made again from the facts when the hold ends.
        case.record(Entry {
            at: timer.at,
            what: "timer let go while on hold".to_owned(),
            detail: format!(
                "{}: not done while the case is on hold; planned again when the hold ends",
                describe_timer(timer.kind)
            ),
            event: None,
        });
        return Decision::save(case);
    }
    let attempt = match timer.kind {
        TimerKind::Retry { attempt } => attempt,
        TimerKind::Nudge { nudge, tier } => return fire_nudge(policy, case, nudge, tier, timer.at),
        TimerKind::Decide => return decide_end(policy, case, timer.at),
        TimerKind::Resume => {
            return Decision {
                case: Some(case),
                actions: vec![Action::Resume],
                refused: None,
            };
        }
    };
    case.next_attempt_at = None;
    let card = case.card.clone().map(|c| (c, others(&case, attempt, card)));
    let refused = card
        .as_ref()
        .and_then(|(c, tries)| network_refusal(policy, &case, &c.brand, tries, now));
    if let Some(refused) = refused {
        let plan = policy.plan_for(&case);
        let detail = match refused {
            Ok(deferral) => {
                let zone = timing::zone(&case.customer_timezone);
                let at = timing::into_window(deferral.until, &zone, plan.window);
                if case.failed_at.is_some_and(|f| at > f + plan.within) {
                    format!(
                        "attempt {attempt} dropped: {} allows it only at {at}, after the policy's \
                         {} from the first failure",
                        deferral.because,
                        human(plan.within)
                    )
                } else {
                    case.timers.push(Timer {
                        at,
                        kind: timer.kind,
                    });
                    case.next_attempt_at = Some(at);
                    format!(
                        "attempt {attempt} moved to {at}: {} (the earliest legal time, in the \
                         customer's daytime)",
                        deferral.because
                    )
                }
            }
            Err(never) => format!("attempt {attempt} dropped: {never} allows no try on this card"),
        };
        // A dropped retry may have been the last: the end decision takes its place.
        let ending = plan_decision(policy, &mut case);
        case.record(Entry {
            at: now,
            what: "retry held back by a network rule".to_owned(),
            detail: detail + &ending,
            event: None,
        });
        return Decision::save(case);
    }
    case.retry_under_way = Some(RetryUnderWay {
        attempt,
        at: timer.at,
    });
    let detail = case.words(|| {
        let budget = card.map_or_else(String::new, |(c, tries)| {
            let left =
                budget::left_after(&policy.networks, &c.brand, &tries, &case.invoice_id, now);
            let left: Vec<String> = left
                .into_iter()
                .map(|(rule, n)| format!("{rule}: {n} left"))
                .collect();
            let on = format!(" on {} card {}", c.brand, c.fingerprint);
            if left.is_empty() {
                on
            } else {
                format!("{on}; after it, {}", left.join("; "))
            }
        });
        format!("attempt {attempt}{budget}")
    });
    case.record(Entry {
        at: timer.at,
        what: "retry due".to_owned(),
        detail,
        event: None,
    });
    Decision {
        case: Some(case),
        actions: vec![Action::Retry { attempt }],
        refused: None,
    }
}

fn describe_timer(kind: TimerKind) -> String {
    match kind {
        TimerKind::Retry { attempt } => format!("retry (attempt {attempt})"),
        TimerKind::Nudge { nudge, tier } => format!("nudge {} tier {tier}", nudge.as_str()),
        TimerKind::Decide => "the end decision".to_owned(),
        TimerKind::Resume => "resuming collection".to_owned(),
    }
}

/// Dunning ran out: the policy's end decision is made and recorded, and handed to the worker to
/// carry out in Stripe; its result is saved with it.
fn decide_end(policy: &Policy, mut case: Case, at: Timestamp) -> Decision {
    let retried = case.decision.is_some();
    let (end, decision) = ending::decision(policy, &case, at);
    let detail = format!(
        "{}: {} — {}; {}",
        end.action().as_str(),
        end.how(),
        decision.rule,
        decision.reason
    );
    let what = if retried {
        "decision tried again"
    } else {
        "decision made"
    };
    // Leaving an invoice past due changes nothing in Stripe; the worker answers it without a call.
    let actions = vec![Action::End(end)];
    case.decision = Some(decision);
    case.record(Entry {
        at,
        what: what.to_owned(),
        detail,
        event: None,
    });
    Decision {
        case: Some(case),
        actions,
        refused: None,
    }
}

/// What carrying out the decision came to: the case is `paused` or `canceled` (or closed, for an
/// invoice written off); a decision Stripe's state overtook is recorded and nothing else done.
fn on_ended(policy: &Policy, case: &Case, at: Timestamp, result: &EndResult) -> Decision {
    let Some(decision) = case
        .decision
        .as_ref()
        .filter(|d| d.outcome == DecisionOutcome::UnderWay)
    else {
        return Decision::unchanged();
    };
    let mut next = case.clone();
    let mut decision = decision.clone();
    let (what, detail) = match result {
        EndResult::Done { already } => {
            decision.outcome = if *already {
                DecisionOutcome::FoundDone
            } else {
                DecisionOutcome::CarriedOut
            };
            match decision.action {
                EndAction::Pause => next.state = State::Paused,
                EndAction::Cancel => next.state = State::Canceled,
                EndAction::MarkUncollectible => {
                    next.closure.get_or_insert(Closure {
                        at,
                        reason: "marked uncollectible by recoup's decision".to_owned(),
                    });
                }
                EndAction::LeavePastDue => {
                    next.closure.get_or_insert(Closure {
                        at,
                        reason: "left past due by recoup's decision: dunning is over".to_owned(),
                    });
                }
            }
            let how = if *already {
                "Stripe already showed it (an earlier try of this decision, or the dashboard)"
            } else {
                "done in Stripe"
            };
            ("decision carried out", format!("{}: {how}", decision.how))
        }
        EndResult::NotOpen { status } => {
            decision.outcome = DecisionOutcome::NotCarriedOut;
            decision.note = Some(format!("the invoice is {status} in Stripe"));
            if status == "paid" {
                next.paid_at = Some(next.paid_at.map_or(at, |p| p.min(at)));
            } else {
                next.closure.get_or_insert(Closure {
                    at,
                    reason: format!("invoice is {status} in Stripe"),
                });
            }
            (
                "decision not carried out",
                format!("read right before acting: the invoice is {status}; nothing changed"),
            )
        }
        EndResult::Changed { now } => {
            decision.outcome = DecisionOutcome::NotCarriedOut;
            decision.note = Some(now.clone());
            next.closure.get_or_insert(Closure {
                at,
                reason: format!("{now}: recoup leaves the subscription as it is"),
            });
            (
                "decision not carried out",
                format!("read right before acting: {now}; recoup leaves it as it is"),
            )
        }
        EndResult::Failed { error } => {
            decision.outcome = DecisionOutcome::Failed;
            decision.note = Some(error.clone());
            decision.at = at;
            (
                "decision failed",
                format!(
                    "{error}; tried again {} later with the same idempotency key",
                    plan::human(ending::AFTER_ERROR)
                ),
            )
        }
    };
    next.decision = Some(decision);
    settle(&mut next);
    let (planned, actions) = replan(policy, &mut next, at);
    next.record(Entry {
        at,
        what: what.to_owned(),
        detail: detail + &planned,
        event: None,
    });
    Decision {
        case: Some(next),
        actions,
        refused: None,
    }
}

/// What resuming the paused collection came to.
fn on_resumed(case: &Case, at: Timestamp, result: &EndResult) -> Decision {
    let settled = case
        .resumption
        .as_ref()
        .is_some_and(|r| r.outcome != DecisionOutcome::Failed);
    if settled {
        return Decision::unchanged();
    }
    let mut next = case.clone();
    let (outcome, note, detail) = match result {
        EndResult::Done { .. } => (
            DecisionOutcome::CarriedOut,
            None,
            "collection resumed in Stripe (pause_collection cleared)".to_owned(),
        ),
        EndResult::NotOpen { status } | EndResult::Changed { now: status } => (
            DecisionOutcome::NotCarriedOut,
            Some(status.clone()),
            format!("not resumed: {status}"),
        ),
        EndResult::Failed { error } => (
            DecisionOutcome::Failed,
            Some(error.clone()),
            format!(
                "{error}; tried again {} later",
                plan::human(ending::AFTER_ERROR)
            ),
        ),
    };
    let what = match outcome {
        DecisionOutcome::Failed => "collection not resumed yet",
        DecisionOutcome::NotCarriedOut => "collection left as it is",
        _ => "collection resumed",
    };
    next.resumption = Some(Resumption { at, outcome, note });
    plan_resume(&mut next);
    next.record(Entry {
        at,
        what: what.to_owned(),
        detail,
        event: None,
    });
    Decision::save(next)
}

/// A nudge came due: it is marked as sent before it goes out (so no redo sends it twice), and the
/// plan's next one takes its place.
fn fire_nudge(
    policy: &Policy,
    mut case: Case,
    kind: NudgeKind,
    tier: u32,
    at: Timestamp,
) -> Decision {
    case.nudged.push(Nudged { kind, tier, at });
    let next = plan_nudge(policy, &mut case) + &plan_decision(policy, &mut case);
    case.record(Entry {
        at,
        what: "nudge due".to_owned(),
        detail: format!("{} tier {tier}{next}", kind.as_str()),
        event: None,
    });
    Decision {
        case: Some(case),
        actions: vec![Action::Nudge { kind, tier }],
        refused: None,
    }
}

/// What became of a nudge: each channel it went out on joins `nudges`, and the timeline says how
/// every channel fared.
fn on_nudged(
    case: &Case,
    (kind, tier): (NudgeKind, u32),
    at: Timestamp,
    template: &str,
    results: &[NudgeResult],
) -> Decision {
    let heading = format!("{} tier {tier} ({template}):", kind.as_str());
    let told = case
        .timeline
        .iter()
        .any(|e| e.what == "nudge delivered" && e.at == at && e.detail.starts_with(&heading));
    if told {
        return Decision::unchanged();
    }
    let mut case = case.clone();
    for result in results.iter().filter(|r| r.sent) {
        case.nudges.push(Nudge {
            at,
            channel: result.channel,
            kind,
            tier,
        });
    }
    let outcomes: Vec<String> = results
        .iter()
        .map(|r| match (r.sent, r.note.as_str()) {
            (true, _) => format!("{} sent", r.channel.as_str()),
            (false, note) => format!("{} not sent ({note})", r.channel.as_str()),
        })
        .collect();
    let outcomes = if outcomes.is_empty() {
        "no channel is set up".to_owned()
    } else {
        outcomes.join(", ")
    };
    case.record(Entry {
        at,
        what: "nudge delivered".to_owned(),
        detail: format!("{heading} {outcomes}"),
        event: None,
    });
    Decision::save(case)
}

/// The customer already had their day's nudges: the nudge waits for `until` and goes out then.
fn on_nudge_held(
    policy: &Policy,
    case: &Case,
    kind: NudgeKind,
    tier: u32,
    until: Timestamp,
) -> Decision {
    let Some(position) = case
        .nudged
        .iter()
        .position(|n| n.kind == kind && n.tier == tier)
    else {
        return Decision::unchanged();
    };
    let mut case = case.clone();
    let held_at = case.nudged.remove(position).at;
    case.nudges_held_until = Some(until);
    let next = plan_nudge(policy, &mut case) + &plan_decision(policy, &mut case);
    case.record(Entry {
        at: held_at,
        what: "nudge held back".to_owned(),
        detail: format!(
            "{} tier {tier}: the customer already had {} nudge(s) today{next}",
            kind.as_str(),
            policy.nudges_for(&case).per_customer_per_day
        ),
        event: None,
    });
    Decision::save(case)
}

/// The card's tries that count against attempt `attempt`: all but the attempt's own, which an
/// earlier run of it may have recorded before it was interrupted.
fn others(case: &Case, attempt: u32, card: &[budget::Try]) -> Vec<budget::Try> {
    card.iter()
        .filter(|t| t.invoice_id != case.invoice_id || t.attempt != attempt)
        .cloned()
        .collect()
}

/// Why the networks do not allow the try at `now` on a card of `brand`: `Ok` with the earliest
/// time they do, `Err` when they never will; `None` when they allow it.
fn network_refusal(
    policy: &Policy,
    case: &Case,
    brand: &str,
    tries: &[budget::Try],
    now: Timestamp,
) -> Option<Result<budget::Deferral, String>> {
    match budget::earliest_allowed(&policy.networks, brand, tries, &case.invoice_id, now) {
        Ok(Ok(_)) => None,
        Ok(Err(deferral)) => Some(Ok(deferral)),
        Err(never) => Some(Err(never)),
    }
}

/// What an invoice event establishes about the case, independent of when it arrived.
enum Fact {
    Failed { needs_customer: bool },
    Paid,
    Closed(&'static str),
}

impl Fact {
    fn opening_state(&self) -> State {
        match self {
            Fact::Failed {
                needs_customer: true,
            } => State::AwaitingCustomer,
            _ => State::Retrying,
        }
    }
}

/// A new case for `invoice`, whose first event happened `at`.
fn open(
    policy: &Policy,
    invoice: &Invoice,
    customer: Option<&CustomerFacts>,
    state: State,
    at: Timestamp,
    now: Timestamp,
) -> Case {
    let unknown = CustomerFacts::default();
    let customer = customer.unwrap_or(&unknown);
    let timezone = timing::zone_name(
        customer.metadata.get("timezone").map(String::as_str),
        customer
            .country
            .as_deref()
            .or(invoice.customer_country.as_deref()),
    );
    Case {
        invoice_id: invoice.id.clone().unwrap_or_default(),
        customer_id: invoice.customer.clone(),
        subscription_id: invoice.subscription.clone(),
        amount_due: invoice.amount_due,
        currency: invoice.currency.clone(),
        state,
        customer_timezone: timezone,
        decline: None,
        attempts: Vec::new(),
        next_attempt_at: None,
        nudges: Vec::new(),
        recovered_by: None,
        decision: None,
        timers: Vec::new(),
        timeline: Vec::new(),
        failed_at: None,
        paid_at: None,
        paid_first: false,
        closure: None,
        new_payment_method: None,
        stripe_retries_at: None,
        retry_under_way: None,
        card: None,
        nudged: Vec::new(),
        billed_to: (invoice.customer_name.is_some() || invoice.customer_email.is_some()).then(
            || BilledTo {
                name: invoice.customer_name.clone(),
                email: invoice.customer_email.clone(),
            },
        ),
        contact_window: customer
            .metadata
            .get("contact_window")
            .and_then(|w| nudge::contact_window(w)),
        holds: Vec::new(),
        held_state: None,
        retry_requested: None,
        lost_dispute: None,
        resumption: None,
        nudges_held_until: None,
        untold: false,
        segment: policy
            .segment_for(invoice, customer, at)
            .map(|s| s.name.clone()),
        opened_at: now,
        version: 0,
    }
}

/// Computes the state from the case's facts; a payment beats a closure, which beats dunning.
fn settle(case: &mut Case) {
    let state = match (case.paid_at, case.failed_at) {
        (Some(paid), Some(failed)) if failed < paid || (failed == paid && !case.paid_first) => {
            State::Recovered
        }
        (Some(_), _) => State::Closed,
        (None, _) if case.closure.is_some() => State::Closed,
        (None, _) => case.state,
    };
    case.state = state;
    case.recovered_by =
        (state == State::Recovered).then(|| case.recovered_by.unwrap_or(RecoveredBy::Unknown));
    if state.is_final() {
        case.timers.clear();
        // Over is over: a hold has nothing left to hold (the timeline keeps its story).
        case.holds.clear();
        case.held_state = None;
    }
}

/// Records an attempt's outcome. Told twice, an attempt keeps its earliest time; a real outcome
/// replaces an `error` (the same attempt made again with the same key), and an `error` never hides
/// a real outcome.
fn record_attempt(
    case: &mut Case,
    number: u32,
    at: Timestamp,
    outcome: Outcome,
    decline_code: Option<String>,
) {
    if let Some(known) = case.attempts.iter_mut().find(|a| a.number == number) {
        if outcome == Outcome::Error {
            return;
        }
        known.at = if known.outcome == Outcome::Error {
            at
        } else {
            known.at.min(at)
        };
        known.outcome = outcome;
        known.decline_code = decline_code.or(known.decline_code.take());
        return;
    }
    let position = case.attempts.partition_point(|a| a.number < number);
    case.attempts.insert(
        position,
        Attempt {
            at,
            number,
            outcome,
            decline_code,
        },
    );
}

/// Keeps exactly one pending retry, the plan's next, while the case is retrying, and none otherwise;
/// the plan depends on the facts, not on their arrival order. Returns what to add to the timeline.
fn plan_retry(policy: &Policy, case: &mut Case) -> String {
    let next = match case.state {
        State::Retrying => Some(policy.plan_for(case).next_retry(case)),
        // A paused customer's new card (or support's request) is tried; nothing else is.
        State::Paused => policy
            .plan_for(case)
            .next_retry(case)
            .ok()
            .filter(|next| next.prompted)
            .map(Ok),
        _ => None,
    };
    let before = case.timers.iter().find(|t| is_retry(t)).cloned();
    case.timers.retain(|t| !is_retry(t));
    case.next_attempt_at = None;
    match next {
        Some(Ok(next)) => {
            let timer = Timer {
                at: next.at,
                kind: TimerKind::Retry {
                    attempt: next.attempt,
                },
            };
            case.timers.push(timer);
            case.next_attempt_at = Some(next.at);
            if before == Some(timer) {
                String::new()
            } else {
                case.words(|| format!("; next retry {}: {}", next.at, next.why))
            }
        }
        Some(Err(none)) => case.words(|| format!("; no retry: {none}")),
        None if case.state == State::AwaitingCustomer && before.is_some() => {
            "; no retry until the customer acts: a new payment method, or confirming the payment"
                .to_owned()
        }
        None => String::new(),
    }
}

fn is_retry(timer: &Timer) -> bool {
    matches!(timer.kind, TimerKind::Retry { .. })
}

/// Re-plans what the case's facts call for: the next retry, the next nudge, and the thank-you
/// once a customer who heard from recoup has paid. Returns what to add to the timeline, and the
/// actions.
fn replan(policy: &Policy, case: &mut Case, at: Timestamp) -> (String, Vec<Action>) {
    // A held case keeps its timers; the plan is made again when the hold ends.
    if case.state == State::OnHold {
        return (String::new(), Vec::new());
    }
    let mut note = plan_retry(policy, case);
    note += &plan_nudge(policy, case);
    note += &plan_decision(policy, case);
    plan_resume(case);
    let mut actions = Vec::new();
    let heard = case.nudged.iter().any(|n| n.kind != NudgeKind::Recovered);
    if case.state == State::Recovered && heard && !case.has_nudged(NudgeKind::Recovered, 1) {
        case.nudged.push(Nudged {
            kind: NudgeKind::Recovered,
            tier: 1,
            at,
        });
        actions.push(Action::Nudge {
            kind: NudgeKind::Recovered,
            tier: 1,
        });
        note += "; thank-you sent";
    }
    (note, actions)
}

/// Keeps one pending decision timer while the end decision is due (or due again after a failed
/// call), and none otherwise.
fn plan_decision(policy: &Policy, case: &mut Case) -> String {
    let due = ending::due(policy, case);
    let before = case
        .timers
        .iter()
        .find(|t| t.kind == TimerKind::Decide)
        .copied();
    case.timers.retain(|t| t.kind != TimerKind::Decide);
    let Some(at) = due else {
        return String::new();
    };
    let timer = Timer {
        at,
        kind: TimerKind::Decide,
    };
    case.timers.push(timer);
    if before == Some(timer) || case.decision.is_some() {
        return String::new();
    }
    case.words(|| {
        let (end, rule, _) = ending::choose(policy, case);
        format!("; decision due {at}: {} ({rule})", end.action().as_str())
    })
}

/// Keeps a timer to resume the collection recoup paused, once the invoice is paid.
fn plan_resume(case: &mut Case) {
    case.timers.retain(|t| t.kind != TimerKind::Resume);
    let paused_by_recoup = case
        .decision
        .as_ref()
        .is_some_and(|d| d.action == EndAction::Pause && d.outcome.done());
    if case.state != State::Recovered || !paused_by_recoup || case.subscription_id.is_none() {
        return;
    }
    let at = match &case.resumption {
        None => case.paid_at.unwrap_or(case.opened_at),
        Some(r) if r.outcome == DecisionOutcome::Failed => r.at + ending::AFTER_ERROR,
        Some(_) => return,
    };
    case.timers.push(Timer {
        at,
        kind: TimerKind::Resume,
    });
}

/// Keeps exactly one pending nudge, the plan's next, and none once nothing more is due.
fn plan_nudge(policy: &Policy, case: &mut Case) -> String {
    let next = policy.nudges_for(case).next(case);
    let before = case
        .timers
        .iter()
        .find(|t| matches!(t.kind, TimerKind::Nudge { .. }))
        .copied();
    case.timers
        .retain(|t| !matches!(t.kind, TimerKind::Nudge { .. }));
    let Some((step, at)) = next else {
        return String::new();
    };
    let timer = Timer {
        at,
        kind: TimerKind::Nudge {
            nudge: step.kind,
            tier: step.tier,
        },
    };
    case.timers.push(timer);
    if before == Some(timer) {
        String::new()
    } else {
        case.words(|| {
            format!(
                "; next nudge {} tier {} at {at}",
                step.kind.as_str(),
                step.tier
            )
        })
    }
}

fn describe(event: &Event, invoice: &Invoice, before: Option<State>, case: &Case) -> String {
    let after = case.state;
    let amount = format!("{} {}", invoice.amount_due, invoice.currency);
    let change = match (before, &case.segment) {
        (None, Some(segment)) => format!("case opened {} in segment {segment:?}", after.as_str()),
        (None, None) => format!("case opened {}", after.as_str()),
        (Some(before), _) if before == after => format!("case stays {}", after.as_str()),
        (Some(before), _) => format!("case {} → {}", before.as_str(), after.as_str()),
    };
    format!("{amount}; {change}")
        + match (event.kind, after) {
            (EventKind::InvoicePaid | EventKind::InvoicePaymentSucceeded, State::Closed) => {
                " (paid before any failure was seen)"
            }
            _ => "",
        }
}

#[cfg(test)]
mod tests;
