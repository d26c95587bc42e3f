//! The simulated world: a virtual Stripe and the customer behind each failed invoice.
//!
//! [`simulate`] runs one customer's invoices through the real [`decide`] on a virtual clock that
//! jumps from one moment to the next: an invoice failing, a timer of a case coming due, the customer
//! adding a card or paying by themselves. Every action the policy asks for is answered the way
//! Stripe and the customer would answer it, and only that way:
//!
//! - a retry is charged on the customer's current card: it goes through when the card is alive, not
//!   expired, and the moment falls in one of the customer's `funds` windows; otherwise it declines
//!   with the codes Stripe would give (`expired_card` past the expiry month);
//! - a nudge reaches the customer, who may add a card after enough of them (the ones sent in their
//!   quiet hours, 21:00–08:00 local, are read and resented but do not persuade) or give up after too
//!   many; the daily cap per customer is the policy's own ([`NudgePlan::held_by_day_cap`]), as the
//!   worker applies it, and so is one conversation per subscription ([`NudgePlan::covered_by`]);
//! - an end decision is carried out as asked; a write-off stops the customer paying by themselves.
//!
//! The policy never sees the truth behind these answers; it sees the events, charges and nudge
//! deliveries the worker would feed it. So what is simulated is exactly what runs in production,
//! minus the I/O. Each attempt is also checked against the card networks' real rules (the built-in
//! `config/networks.toml`, whatever rules the policy was given), counted as a breach when it breaks
//! one, and charged the networks' estimated fees.
//!
//! One file (some 640 lines) on purpose: it is one event loop over one customer's state, and its
//! parts — charging, nudging, the customer's replies — share that state at every step.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

use super::population::{DeclineTruth, FailedInvoice};
use crate::event::{CardDetails, Event, EventKind, EventObject, Invoice, PaymentMethod};
use crate::policy::budget::{self, Try};
use crate::policy::decline::{self, Signals};
use crate::policy::learning::Observation;
use crate::policy::networks::{Charged, Networks};
use crate::policy::{
    Action, Card, Case, Channel, Charge, ChargeResult, CustomerFacts, DeclineClass, Declined, End,
    EndResult, Input, NudgeKind, NudgePlan, NudgeResult, Policy, RecoveredBy, State, Timer,
    card_expired, card_expires_at, decide, newer_card, timing,
};

/// How long after its failure an invoice is followed; nothing later counts.
pub const HORIZON: SignedDuration = SignedDuration::from_hours(60 * 24);

/// The customer's quiet hours, local, from 21:00 to 08:00: a nudge read at night annoys and
/// persuades nobody.
const QUIET_FROM: i8 = 21;
const QUIET_UNTIL: i8 = 8;

/// More moments than any policy can make of one customer in 60 days; reaching it means a policy
/// that reschedules itself forever, which is a bug to report, not a result.
const MAX_MOMENTS: u32 = 100_000;

/// What became of one invoice under one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceResult {
    /// The class the policy gave the first decline.
    pub class: DeclineClass,
    /// The policy's segment for the invoice (an index into `policy.segments`).
    pub segment: Option<usize>,
    /// The customer's arm of the policy's experiment (an index into its arms), assigned by the
    /// same function as in `serve`.
    pub arm: Option<usize>,
    /// Dunning ended with the subscription canceled (the end decision).
    pub canceled: bool,
    /// Paid within the horizon: by whom and how long after the failure.
    pub recovered: Option<(RecoveredBy, SignedDuration)>,
    /// recoup's own charge attempts (Stripe's failed first attempt not counted).
    pub attempts: u32,
    /// Nudges delivered, the thank-you not counted.
    pub nudges: u32,
    /// Attempts that broke a card-network rule: which rule, and the story of each.
    pub breaches: Vec<Breach>,
    /// The networks' estimated fees for recoup's attempts, by rule.
    pub fees: Vec<Charged>,
}

/// An attempt that broke a card-network rule: the rule, and the attempt with the tries that
/// made it break the rule, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    pub rule: String,
    pub story: String,
}

/// What became of one customer's invoices under one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerResult {
    pub invoices: Vec<InvoiceResult>,
    /// The customer cancelled after one nudge too many.
    pub gave_up: bool,
}

/// Runs one customer's invoices under `policy`, whose evidence stays as it is.
pub fn simulate(policy: &Policy, invoices: Arc<[FailedInvoice]>) -> CustomerResult {
    let mut world = World::new(invoices);
    while world.step(policy).is_some() {}
    world.finish()
}

/// One of the customer's cards: the one that failed, and the new one they may add.
struct CardState {
    card: Card,
    tries: Vec<Try>,
}

/// The next thing to happen; at the same instant, in the order listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    Fails(usize),
    NewCard,
    PaysUnprompted(usize),
    Due(usize, Timer),
}

impl Moment {
    fn rank(&self) -> (u8, usize) {
        match self {
            Moment::Fails(i) => (0, *i),
            Moment::NewCard => (1, 0),
            Moment::PaysUnprompted(i) => (2, *i),
            Moment::Due(i, _) => (3, *i),
        }
    }
}

/// One customer's world under one policy, moment by moment: [`World::step`] plays the next
/// moment and says when the one after is, so that many customers' worlds can be played on one
/// virtual timeline (learning policies) or one after another (the rest).
pub struct World {
    /// The networks' rules as they are, whatever the policy file says.
    networks: Arc<Networks>,
    invoices: Arc<[FailedInvoice]>,
    zone: TimeZone,
    cases: Vec<Option<Case>>,
    results: Vec<InvoiceResult>,
    /// Whether each invoice was written off (a customer cannot pay one any more).
    written_off: Vec<bool>,
    /// Whether each invoice's own payment by the customer has happened (or can no longer).
    paid_unprompted: Vec<bool>,
    /// The failed card first, the new one once the customer added it.
    cards: Vec<CardState>,
    new_card_at: Option<Timestamp>,
    /// Stripe's `payment_method.attached` for the card the customer gave, once they gave it.
    card_given: Option<Event>,
    nudges_seen: u32,
    nudges_read: u32,
    /// The customer's local day and how many nudges it brought.
    day: Option<(Date, u64)>,
    gave_up: bool,
    /// What recoup's own attempts came to, as evidence, since the last [`World::observed`].
    observed: Vec<Observation>,
    /// Moments played, to catch a policy that reschedules itself forever.
    moments: u32,
    /// The next moment, worked out once after each step (nothing else changes the world between
    /// steps); `None` once nothing more happens to this customer.
    upcoming: Option<(Timestamp, Moment)>,
}

impl World {
    pub fn new(invoices: Arc<[FailedInvoice]>) -> Self {
        let networks = Networks::built_in();
        let first = &invoices[0];
        let card = CardState {
            card: Card {
                fingerprint: first.card.fingerprint.clone(),
                brand: first.card.brand.clone(),
                funding: first.card.funding.clone(),
                expires_at: first.card.exp_month.zip(first.card.exp_year).and_then(
                    |(month, year)| card_expires_at(u32::from(month), u32::try_from(year).ok()?),
                ),
            },
            tries: Vec::new(),
        };
        let results = invoices
            .iter()
            .map(|invoice| InvoiceResult {
                class: decline::classify(
                    &signals(&invoice.first_decline, &invoice.card.brand),
                    &networks,
                    invoice.failed_at,
                )
                .class,
                segment: None,
                arm: None,
                canceled: false,
                recovered: None,
                attempts: 0,
                nudges: 0,
                breaches: Vec::new(),
                fees: Vec::new(),
            })
            .collect();
        let new_card_at = first
            .updates_card
            .filter(|u| u.after_nudges == 0)
            .map(|u| first.failed_at + reply(u.reply_hours));
        let zone = timing::zone(&first.timezone);
        let count = invoices.len();
        let mut world = Self {
            networks,
            invoices,
            zone,
            cases: vec![None; count],
            results,
            written_off: vec![false; count],
            paid_unprompted: vec![false; count],
            cards: vec![card],
            new_card_at,
            card_given: None,
            nudges_seen: 0,
            nudges_read: 0,
            day: None,
            gave_up: false,
            observed: Vec::new(),
            moments: 0,
            upcoming: None,
        };
        world.upcoming = world.next_moment();
        world
    }

    /// When the next moment is; `None` once nothing more happens to this customer.
    pub fn next_at(&self) -> Option<Timestamp> {
        self.upcoming.map(|(at, _)| at)
    }

    /// Plays the next moment under `policy`; returns when the one after is, if any.
    pub fn step(&mut self, policy: &Policy) -> Option<Timestamp> {
        let (at, moment) = self.upcoming?;
        self.moments += 1;
        assert!(
            self.moments <= MAX_MOMENTS,
            "customer {} still had moments after {MAX_MOMENTS}: the policy keeps rescheduling",
            self.invoices[0].customer_id
        );
        match moment {
            Moment::Fails(i) => self.fail(policy, i),
            Moment::NewCard => self.add_card(policy, at),
            Moment::PaysUnprompted(i) => self.pay_unprompted(policy, i, at),
            Moment::Due(i, timer) => {
                let card = self
                    .case_card(i)
                    .map(|c| c.tries.clone())
                    .unwrap_or_default();
                self.apply(policy, i, &Input::Timer { timer, card }, at);
            }
        }
        self.upcoming = self.next_moment().filter(|_| !self.gave_up);
        self.next_at()
    }

    /// The evidence gathered since the last call, to fold into a learning policy's.
    pub fn observed(&mut self) -> std::vec::Drain<'_, Observation> {
        self.observed.drain(..)
    }

    /// The customer's invoices.
    pub fn invoices(&self) -> &Arc<[FailedInvoice]> {
        &self.invoices
    }

    /// What became of the customer.
    pub fn finish(mut self) -> CustomerResult {
        for (result, case) in self.results.iter_mut().zip(&self.cases) {
            result.canceled = case.as_ref().is_some_and(|c| c.state == State::Canceled);
        }
        CustomerResult {
            invoices: self.results,
            gave_up: self.gave_up,
        }
    }

    fn horizon(&self, i: usize) -> Timestamp {
        self.invoices[i].failed_at + HORIZON
    }

    /// Whether invoice `i` is open to a new card or a payment: opened, not final (a paused one
    /// comes back with a new card), within its horizon at `at`.
    fn takes_part(&self, i: usize, at: Timestamp) -> bool {
        self.cases[i]
            .as_ref()
            .is_some_and(|c| !c.state.is_final() || c.state == State::Paused)
            && at <= self.horizon(i)
    }

    fn next_moment(&self) -> Option<(Timestamp, Moment)> {
        let mut next: Option<(Timestamp, Moment)> = None;
        let mut consider = |at: Timestamp, moment: Moment| {
            if next.is_none_or(|(t, n)| (at, moment.rank()) < (t, n.rank())) {
                next = Some((at, moment));
            }
        };
        for (i, invoice) in self.invoices.iter().enumerate() {
            let Some(case) = &self.cases[i] else {
                consider(invoice.failed_at, Moment::Fails(i));
                continue;
            };
            let horizon = self.horizon(i);
            if let Some(timer) = case
                .timers
                .iter()
                .filter(|t| t.at <= horizon)
                .min_by_key(|t| t.at)
            {
                consider(timer.at, Moment::Due(i, *timer));
            }
            if let Some(at) = invoice.pays_unprompted_at
                && !self.paid_unprompted[i]
                && at <= horizon
            {
                consider(at.max(invoice.failed_at), Moment::PaysUnprompted(i));
            }
        }
        if let Some(at) = self.new_card_at
            && self.cards.len() == 1
            && (0..self.invoices.len()).any(|i| self.cases[i].is_none() || self.takes_part(i, at))
        {
            consider(at, Moment::NewCard);
        }
        next
    }

    /// Stripe's first attempt fails: the case opens with what Stripe shows of the invoice and the
    /// customer, and the decline is looked up, as the worker does.
    fn fail(&mut self, policy: &Policy, i: usize) {
        let invoices = Arc::clone(&self.invoices);
        let invoice = &invoices[i];
        let at = invoice.failed_at;
        let created = at.as_second();
        let event = Event {
            id: format!("evt_{}_failed", invoice.invoice_id),
            kind: EventKind::InvoicePaymentFailed,
            created,
            livemode: false,
            api_version: None,
            object: EventObject::Invoice(Box::new(stripe_invoice(invoice, false))),
        };
        let customer = CustomerFacts {
            metadata: BTreeMap::from([("timezone".to_owned(), invoice.timezone.clone())]),
            country: invoice.country.clone(),
            created: at
                .to_zoned(TimeZone::UTC)
                .checked_sub(i64::from(invoice.tenure_months).months())
                .ok()
                .map(|z| z.timestamp()),
            past_failures: invoice.past_failures,
            payment_days: self.payment_days(i, at),
            ..CustomerFacts::default()
        };
        self.apply(
            policy,
            i,
            &Input::Opening {
                event: Box::new(event),
                customer: Box::new(customer),
                // Nobody reads a simulated case's story; writing it would be most of the work.
                untold: true,
            },
            at,
        );
        self.results[i].segment = self.cases[i]
            .as_ref()
            .and_then(|c| c.segment.as_deref())
            .and_then(|name| policy.segments.iter().position(|s| s.name == name));
        self.results[i].arm = self.cases[i]
            .as_ref()
            .and_then(|c| policy.arm_of(c))
            .zip(policy.experiment.as_ref())
            .and_then(|(arm, experiment)| experiment.arms.iter().position(|a| a == arm));
        let card = self.cards[0].card.clone();
        self.note_try(0, i, 1, at, Some(&invoice.first_decline));
        let declined = declined(&invoice.first_decline, card);
        let first = Charge {
            attempt: 1,
            at,
            result: ChargeResult::Declined(declined),
            fees: Vec::new(),
        };
        self.apply(policy, i, &Input::Charge(Box::new(first)), at);
        // The worker tells once the decline is read, a moment after the failure, from the events
        // it kept about the customer: here, the card they gave.
        let told = at + SignedDuration::from_secs(1);
        if let Some(newer) = newer_card(&self.card_given, told) {
            self.apply(policy, i, &newer, told);
        }
    }

    /// The local days of the month the customer's earlier invoices were paid on after a failure,
    /// as the worker reads them from Stripe's paid invoices when invoice `i`'s case opens at `at`:
    /// the population's `past_payment_days` and the customer's invoices this run has seen paid.
    fn payment_days(&self, i: usize, at: Timestamp) -> Vec<u8> {
        let mut days = self.invoices[i].past_payment_days.clone();
        let paid = self.cases.iter().flatten().filter_map(|case| {
            let paid = case.paid_at.filter(|paid| *paid <= at)?;
            (case.state == State::Recovered).then_some(paid)
        });
        days.extend(
            paid.filter_map(|paid| u8::try_from(paid.to_zoned(self.zone.clone()).day()).ok()),
        );
        days.sort_unstable();
        days.dedup();
        days
    }

    /// The customer adds a new card: every invoice still open hears of it, as from Stripe's
    /// `payment_method.attached`.
    fn add_card(&mut self, policy: &Policy, at: Timestamp) {
        let old = &self.cards[0].card;
        let card = Card {
            fingerprint: format!("{}:new", old.fingerprint),
            brand: old.brand.clone(),
            funding: None,
            expires_at: None,
        };
        let customer = self.invoices[0].customer_id.clone();
        let event = Event {
            id: format!("evt_{customer}_new_card"),
            kind: EventKind::PaymentMethodAttached,
            created: at.as_second(),
            livemode: false,
            api_version: None,
            object: EventObject::PaymentMethod(PaymentMethod {
                id: format!("pm_{customer}_new"),
                customer: Some(customer),
                method_type: "card".to_owned(),
                card: Some(CardDetails {
                    brand: Some(card.brand.clone()),
                    fingerprint: Some(card.fingerprint.clone()),
                    ..CardDetails::default()
                }),
            }),
        };
        self.cards.push(CardState {
            card,
            tries: Vec::new(),
        });
        self.card_given = Some(event.clone());
        let input = Input::Event(Box::new(event));
        for i in 0..self.invoices.len() {
            if self.takes_part(i, at) {
                self.apply(policy, i, &input, at);
            }
        }
    }

    /// The customer pays the invoice through the portal, as Stripe's `invoice.paid` tells.
    fn pay_unprompted(&mut self, policy: &Policy, i: usize, at: Timestamp) {
        self.paid_unprompted[i] = true;
        let open = self.cases[i]
            .as_ref()
            .is_some_and(|c| c.paid_at.is_none() && c.closure.is_none());
        if !open || self.written_off[i] {
            return;
        }
        let invoices = Arc::clone(&self.invoices);
        let invoice = &invoices[i];
        let event = Event {
            id: format!("evt_{}_paid", invoice.invoice_id),
            kind: EventKind::InvoicePaid,
            created: at.as_second(),
            livemode: false,
            api_version: None,
            object: EventObject::Invoice(Box::new(stripe_invoice(invoice, true))),
        };
        self.apply(policy, i, &Input::Event(Box::new(event)), at);
    }

    /// Decides `input` for invoice `i`'s case and answers every action the decision asks for.
    fn apply(&mut self, policy: &Policy, i: usize, input: &Input, now: Timestamp) {
        let decision = decide(policy, self.cases[i].take(), input, now);
        let changed = decision.case.is_some();
        // Put straight back where it lives: a case is a kilobyte, and each move of it a copy.
        self.cases[i] = if changed {
            decision.case
        } else {
            decision.unchanged
        };
        let Some(case) = self.cases[i].as_ref().filter(|_| changed) else {
            return;
        };
        if case.state == State::Recovered && self.results[i].recovered.is_none() {
            let paid = case.paid_at.unwrap_or(now);
            let after = paid.duration_since(self.invoices[i].failed_at);
            if after <= HORIZON {
                let by = case.recovered_by.unwrap_or(RecoveredBy::Unknown);
                self.results[i].recovered = Some((by, after));
            }
        }
        for action in decision.actions {
            if self.gave_up {
                return;
            }
            match action {
                Action::Retry { attempt } => {
                    let (result, fees) = self.charge(i, attempt, now);
                    // Evidence is for a policy that learns from it; the rest never read it.
                    if let Some(case) = self.cases[i].as_ref().filter(|_| policy.learns()) {
                        let paid = result == ChargeResult::Paid;
                        self.observed.extend(Observation::of(case, now, paid));
                    }
                    let charge = Charge {
                        attempt,
                        at: now,
                        result,
                        fees,
                    };
                    let paid_on = (charge.result == ChargeResult::Paid)
                        .then(|| self.cards.last().map(|c| c.card.fingerprint.clone()))
                        .flatten();
                    self.apply(policy, i, &Input::Charge(Box::new(charge)), now);
                    if let Some(fingerprint) = paid_on {
                        self.tell_card_paid(policy, i, fingerprint, now);
                    }
                }
                Action::Nudge { kind, tier } => self.nudge(policy, i, kind, tier, now),
                Action::End(end) => {
                    if end == End::MarkUncollectible {
                        self.written_off[i] = true;
                    }
                    let result = EndResult::Done { already: false };
                    self.apply(policy, i, &Input::Ended { at: now, result }, now);
                }
                Action::Resume => {
                    let result = EndResult::Done { already: false };
                    self.apply(policy, i, &Input::Resumed { at: now, result }, now);
                }
            }
        }
    }

    /// A retry of invoice `i` went through on the card `fingerprint`: the customer's other open
    /// invoices hear of it, as the worker tells them ([`Input::CardPaid`]).
    fn tell_card_paid(&mut self, policy: &Policy, i: usize, fingerprint: String, at: Timestamp) {
        let input = Input::CardPaid {
            invoice_id: self.invoices[i].invoice_id.clone(),
            fingerprint,
            at,
        };
        for other in 0..self.invoices.len() {
            if other != i && self.takes_part(other, at) {
                self.apply(policy, other, &input, at);
            }
        }
    }

    /// The card a charge of invoice `i` goes to: the newest the customer has.
    fn case_card(&self, i: usize) -> Option<&CardState> {
        let fingerprint = &self.cases[i].as_ref()?.card.as_ref()?.fingerprint;
        self.cards
            .iter()
            .find(|c| &c.card.fingerprint == fingerprint)
    }

    /// Charges invoice `i` on the customer's newest card and says what Stripe would answer, with
    /// the networks' estimated fees for it.
    fn charge(&mut self, i: usize, attempt: u32, now: Timestamp) -> (ChargeResult, Vec<Charged>) {
        let invoices = Arc::clone(&self.invoices);
        let invoice = &invoices[i];
        let on = self.cards.len() - 1;
        self.results[i].attempts += 1;
        if let Some(breach) = self.breaks_a_rule(on, i, attempt, now) {
            self.results[i].breaches.push(breach);
        }
        let expired = match (invoice.card.exp_month, invoice.card.exp_year) {
            (Some(month), Some(year)) => {
                card_expired(u32::from(month), u32::try_from(year).unwrap_or(0), now)
            }
            _ => false,
        };
        let refused = invoice.card_dead
            || self.results[i].class == DeclineClass::Hard
            || !invoice.funds.iter().any(|f| f.contains(now));
        // A new card always pays; the old one only while it works and the money is there.
        let refusal = if on > 0 {
            None
        } else if expired {
            Some(DeclineTruth {
                code: Some("expired_card".to_owned()),
                ..DeclineTruth::default()
            })
        } else if refused {
            Some(
                invoice
                    .outside_funds_decline
                    .clone()
                    .unwrap_or_else(|| invoice.first_decline.clone()),
            )
        } else {
            None
        };
        let card = &self.cards[on];
        let made = self.try_of(i, attempt, now, refusal.is_some());
        let truth = refusal.as_ref().map(|r| signals(r, &card.card.brand));
        let fees = budget::fees(
            &self.networks,
            &card.card.brand,
            &card.tries,
            &made,
            truth.as_ref(),
        );
        self.results[i].fees.extend(fees.iter().cloned());
        self.note_try(on, i, attempt, now, refusal.as_ref());
        let result = match refusal {
            None => ChargeResult::Paid,
            Some(refusal) => {
                ChargeResult::Declined(declined(&refusal, self.cards[on].card.clone()))
            }
        };
        (result, fees)
    }

    /// Invoice `i`'s try `attempt` at `at`, of its amount.
    fn try_of(&self, i: usize, attempt: u32, at: Timestamp, declined: bool) -> Try {
        let invoice = &self.invoices[i];
        Try::new(at, &invoice.invoice_id, attempt, declined)
            .of(invoice.amount_due, &invoice.currency)
    }

    /// The rule one more try on card `on` for invoice `i` at `now` breaks, if any: a budget of
    /// the networks' own figures (whatever rules the policy was given), a wait a decline of the card
    /// asked for, or any try after a decline of the card that forbids one — whichever invoice on
    /// the card those declines were for.
    fn breaks_a_rule(&self, on: usize, i: usize, attempt: u32, now: Timestamp) -> Option<Breach> {
        let card = &self.cards[on];
        let invoice_id = &self.invoices[i].invoice_id;
        let mut earlier = card.tries.iter().filter(|t| t.at <= now);
        let rule = if let Some(stop) = earlier.clone().find(|t| t.never) {
            Some((
                "retry after a never-retry decline".to_owned(),
                vec![stop.clone()],
            ))
        } else if let Some(wait) = earlier.find(|t| t.wait.is_some_and(|w| now < w)) {
            Some((
                "retry before the network's advised wait".to_owned(),
                vec![wait.clone()],
            ))
        } else {
            let made = self.try_of(i, attempt, now, true);
            match budget::earliest_allowed(&self.networks, &card.card.brand, &card.tries, &made) {
                Ok(Ok(_)) => None,
                Ok(Err(deferral)) => Some((deferral.because, self.window(on, now))),
                Err(never) => Some((never, Vec::new())),
            }
        };
        rule.map(|(rule, tries)| Breach {
            rule,
            story: format!(
                "{invoice_id} attempt {attempt} at {now} on {} card {}; the tries that made it: {}",
                card.card.brand,
                card.card.fingerprint,
                tries
                    .iter()
                    .map(|t| format!(
                        "{} #{} at {}{}",
                        t.invoice_id,
                        t.attempt,
                        t.at,
                        if t.declined { " declined" } else { "" }
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }

    /// The card's tries in the 30 days before `now`: the longest window any network counts.
    fn window(&self, on: usize, now: Timestamp) -> Vec<Try> {
        let from = now - SignedDuration::from_hours(30 * 24);
        self.cards[on]
            .tries
            .iter()
            .filter(|t| from < t.at && t.at <= now)
            .cloned()
            .collect()
    }

    fn note_try(
        &mut self,
        on: usize,
        i: usize,
        attempt: u32,
        at: Timestamp,
        refusal: Option<&DeclineTruth>,
    ) {
        let mut tried = self.try_of(i, attempt, at, refusal.is_some());
        let card = &mut self.cards[on];
        if let Some(refusal) = refusal {
            tried = tried.declined_as(&declined(refusal, card.card.clone()), &self.networks);
        }
        card.tries.push(tried);
    }

    /// A nudge reaches the customer, unless their day's nudges are spent (the policy's cap, as the
    /// worker applies it). Too many and they give up; enough, read in their waking hours, and they
    /// add a new card.
    fn nudge(&mut self, policy: &Policy, i: usize, kind: NudgeKind, tier: u32, now: Timestamp) {
        let Some(case) = &self.cases[i] else {
            return;
        };
        if !case.has_nudged(kind, tier) {
            return;
        }
        let plan = policy.nudges_for(case);
        // The worker reads the customer's cases from the store; here they are all at hand.
        let others = self.cases.iter().flatten();
        if let Some(cover) = plan.covered_by(case, (kind, tier), others, now) {
            let covered = Input::NudgeCovered {
                kind,
                tier,
                at: now,
                cover,
            };
            self.apply(policy, i, &covered, now);
            return;
        }
        // The thank-you is not a nudge the customer weighs: it counts toward nothing.
        let Some(today) = NudgePlan::capped_day(kind, &self.zone, now) else {
            return;
        };
        let sent_today = match self.day {
            Some((day, count)) if day == today => count + 1,
            _ => 1,
        };
        self.day = Some((today, sent_today));
        if let Some(until) = plan.held_by_day_cap(&self.zone, now, sent_today) {
            self.apply(policy, i, &Input::NudgeHeld { kind, tier, until }, now);
            return;
        }
        self.results[i].nudges += 1;
        self.nudges_seen += 1;
        let invoices = Arc::clone(&self.invoices);
        let truth = &invoices[0];
        if truth
            .gives_up_after_nudges
            .is_some_and(|most| self.nudges_seen > most)
        {
            self.gave_up = true;
            return;
        }
        let hour = now.to_zoned(self.zone.clone()).hour();
        if (QUIET_UNTIL..QUIET_FROM).contains(&hour) {
            self.nudges_read += 1;
            if let Some(update) = truth.updates_card
                && self.nudges_read == update.after_nudges
                && self.new_card_at.is_none()
            {
                self.new_card_at = Some(now + reply(update.reply_hours));
            }
        }
        let delivered = Input::Nudged {
            kind,
            tier,
            at: now,
            template: String::new(),
            results: vec![NudgeResult {
                channel: Channel::Email,
                sent: true,
                passing: false,
                note: String::new(),
            }],
        };
        self.apply(policy, i, &delivered, now);
    }
}

/// The invoice as Stripe shows it in an event: open after the failure, or paid.
fn stripe_invoice(invoice: &FailedInvoice, paid: bool) -> Invoice {
    let (status, amount_paid) = if paid {
        ("paid", invoice.amount_due)
    } else {
        ("open", 0)
    };
    Invoice {
        id: Some(invoice.invoice_id.clone()),
        customer: invoice.customer_id.clone(),
        subscription: invoice.subscription_id.clone(),
        status: Some(status.to_owned()),
        amount_due: invoice.amount_due,
        amount_paid,
        amount_remaining: invoice.amount_due - amount_paid,
        currency: invoice.currency.clone(),
        attempt_count: 1,
        billing_reason: Some("subscription_cycle".to_owned()),
        collection_method: Some("charge_automatically".to_owned()),
        hosted_invoice_url: None,
        // Stripe's own retries are off: recoup retries.
        next_payment_attempt: None,
        payment_intent: None,
        charge: None,
        customer_email: None,
        customer_name: None,
        customer_country: invoice.country.clone(),
        price_ids: Vec::new(),
        created: Some(invoice.failed_at.as_second()),
        due_date: None,
        period_end: None,
        metadata: invoice.metadata.clone(),
    }
}

pub(super) fn reply(hours: f64) -> SignedDuration {
    SignedDuration::from_secs_f64(hours * 3600.0)
}

pub(super) fn signals<'a>(truth: &'a DeclineTruth, brand: &'a str) -> Signals<'a> {
    Signals {
        code: truth.code.as_deref().or(Some("card_declined")),
        decline_code: truth.decline_code.as_deref(),
        advice_code: truth.advice_code.as_deref(),
        network_advice_code: truth.network_advice_code.as_deref(),
        network_decline_code: truth.network_decline_code.as_deref(),
        brand: Some(brand),
    }
}

fn declined(truth: &DeclineTruth, card: Card) -> Declined {
    Declined {
        code: Some(
            truth
                .code
                .clone()
                .unwrap_or_else(|| "card_declined".to_owned()),
        ),
        decline_code: truth.decline_code.clone(),
        advice_code: truth.advice_code.clone(),
        network_advice_code: truth.network_advice_code.clone(),
        network_decline_code: truth.network_decline_code.clone(),
        card: Some(card),
    }
}
