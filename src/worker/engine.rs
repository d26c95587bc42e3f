//! Applying inputs to one case: load it, `decide`, make the Stripe calls the decision asks for
//! (saved as under way first, the claim on the case renewed while they last), and save with
//! compare-and-set — again on fresh state after a conflict, feeding in any result already had so
//! none is lost. The worker's loops and the support API both apply inputs through an [`Engine`].

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use jiff::{SignedDuration, Timestamp};

use crate::clock::Clock;
use crate::dashboard::day;
use crate::policy::budget::{self, CardHistory, Try};
use crate::policy::experiment::outcome::Contribution;
use crate::policy::learning::Observation;
use crate::policy::networks::Charged;
use crate::policy::{
    self, Action, Case, Charge, ChargeResult, End, EndOrder, EndResult, Input, Networks, Policy,
    RecoveredBy, State, TimerKind, await_results, decide,
};
use crate::processor::Processor;
use crate::store::{Cards, Cases, Dashboard, Experiments, Outcomes, Saved, TestClock, Timers};
use crate::telemetry::metric;

use super::{Applied, ApplyError, MAX_CONFLICTS, renewing};

/// Which inputs to feed a case: one given input, or every timer of the case that is due.
#[derive(Debug)]
pub enum Inputs<'a> {
    One(&'a Input),
    /// With the case as the claim read it, if it did (`Some(None)`: there is no case), handed
    /// over so the firing decides on it without a copy.
    DueTimers(Option<Option<Box<Case>>>),
}

/// What [`Engine::apply`] works with: of the store, cases, card histories and the clock.
#[derive(Clone, Copy)]
pub struct Engine<'a, S> {
    pub store: &'a S,
    pub policy: &'a Policy,
    /// `None` where no Stripe call is made: the support API's inputs only plan them (a support
    /// retry is a timer due now, which a worker fires).
    pub processor: Option<&'a dyn Processor>,
    pub clock: &'a Clock<S>,
    /// The lease of the worker's claim on the case, renewed while Stripe calls are made; `None`
    /// where no call is made (the support API).
    pub lease: Option<Duration>,
}

/// A Stripe call made for an action, and its result as the input that feeds it back.
struct Made {
    action: Action,
    input: Input,
    at: Timestamp,
}

/// A decision on a case before anything is charged or saved.
struct Decided {
    case: Option<Case>,
    actions: Vec<Action>,
    refused: Option<String>,
    /// When each fired timer was due.
    fired: Vec<Timestamp>,
    /// The case's card history as the decision saw it, when the case names its card.
    card: Option<CardHistory>,
}

/// What applying an input to a case needs of the store: the case and its card, the evidence, the
/// final outcome's counters, the clock and the wake-ups. Whatever records something on a case from
/// outside the worker (an update link opened, a customer's answer) asks for this.
pub trait Decides: Cases + Cards + Outcomes + Experiments + Dashboard + TestClock + Timers {}

impl<S: Cases + Cards + Outcomes + Experiments + Dashboard + TestClock + Timers> Decides for S {}

impl<S: Decides> Engine<'_, S> {
    /// Loads the case, decides, charges what the decision asks for, and saves with compare-and-set,
    /// again on fresh state after a conflict.
    ///
    /// A decision that asks for Stripe calls (a retry, an end decision, resuming collection) is
    /// saved *before* the calls, as under way — attempt N handed to Stripe, the decision made — with
    /// a timer that makes them again one lease later (see [`await_results`]); then the calls are
    /// made, the claim on the case renewed while they last, and their results saved with the case.
    /// So a worker that dies mid-call leaves its calls to be made again under the same idempotency
    /// keys, and every other input meanwhile sees what is under way (a new card's retry takes the
    /// next attempt number, support cannot ask for the same retry twice).
    ///
    /// For [`Inputs::DueTimers`] the case is saved even when nothing was due, so that its wake-up
    /// entry (pushed a lease ahead by the claim) is set back to the case's real next wake-up.
    pub async fn apply(&self, invoice_id: &str, inputs: Inputs<'_>) -> Result<Applied, ApplyError> {
        let mut pauses = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(1))
            .with_max_delay(Duration::from_millis(50))
            .with_jitter()
            .without_max_times()
            .build();
        // What the caller already read serves the first try; after a conflict only a fresh read will.
        let (input, mut known) = match inputs {
            Inputs::One(input) => (Some(input), None),
            Inputs::DueTimers(known) => (None, known.map(|case| case.map(|case| *case))),
        };
        let mut made = Vec::new();
        for _ in 0..MAX_CONFLICTS {
            let stored = match known.take() {
                Some(case) => case,
                None => self.store.load_case(invoice_id).await?,
            };
            let before = stored.as_ref().map(|c| (c.state, c.failed_at.is_some()));
            let now = self.clock.now().await?;
            let decided = match input {
                Some(input) => {
                    let decision = decide(self.policy, stored, input, now);
                    Decided {
                        case: decision.case,
                        actions: decision.actions,
                        refused: decision.refused,
                        fired: Vec::new(),
                        card: None,
                    }
                }
                None => match stored {
                    Some(stored) => self.fire_due(stored, now).await?,
                    None => {
                        return Ok(Applied {
                            case: None,
                            actions: Vec::new(),
                            refused: None,
                        });
                    }
                },
            };
            let Some(mut case) = decided.case else {
                return Ok(Applied {
                    case: None,
                    actions: decided.actions,
                    refused: decided.refused,
                });
            };
            let mut card = decided.card;
            if self
                .under_way(&mut case, &decided.actions, &mut card, &made, now)
                .await?
            {
                let charged = self
                    .carry_out(case, &decided.actions, card, &mut made)
                    .await?;
                let (mut case, then) = charged;
                match self.store.save_case(&case).await? {
                    Saved::Saved { version } => {
                        case.version = version;
                        record_firings(&decided.fired, now);
                        record_progress(before, &case);
                        self.count_final(&case, now).await;
                        let mut actions = decided.actions;
                        actions.extend(then);
                        return Ok(Applied {
                            case: Some(case),
                            actions,
                            refused: None,
                        });
                    }
                    Saved::Conflict => {}
                }
            }
            metrics::counter!(metric::CASE_CONFLICTS).increment(1);
            tokio::time::sleep(pauses.next().unwrap_or(Duration::from_millis(50))).await;
        }
        Err(ApplyError::Contended(invoice_id.to_owned()))
    }

    /// Before the Stripe calls `actions` ask for (those not `made` already): reserves each retry's
    /// try on the card's history, then saves the case as under way, with a timer that makes the
    /// calls again once this worker's claim runs out (see [`await_results`]). `false` when the
    /// card's history or the case changed since they were read: the decision is made again.
    async fn under_way(
        &self,
        case: &mut Case,
        actions: &[Action],
        card: &mut Option<CardHistory>,
        made: &[Made],
        now: Timestamp,
    ) -> Result<bool, ApplyError> {
        let calls: Vec<Action> = actions
            .iter()
            .copied()
            .filter(|a| !matches!(a, Action::Nudge { .. }))
            .filter(|a| !made.iter().any(|m| m.action == *a))
            .collect();
        let (Some(_), Some(lease)) = (self.processor, self.lease) else {
            return Ok(true);
        };
        if calls.is_empty() {
            return Ok(true);
        }
        let rules = &self.policy.networks;
        for call in &calls {
            if let (Action::Retry { attempt }, Some(card)) = (call, card.as_mut()) {
                let reserved = Try::of_case(case, *attempt, now);
                if card.record(reserved, rules, now) {
                    match self.store.save_card(card, CardHistory::keep(rules)).await? {
                        Saved::Saved { version } => card.version = version,
                        Saved::Conflict => return Ok(false),
                    }
                }
            }
        }
        let mut guarded = case.clone();
        let redo_at = policy::time::later(
            now,
            SignedDuration::try_from(lease).unwrap_or(SignedDuration::MAX),
        );
        await_results(&mut guarded, &calls, redo_at);
        match self.store.save_case(&guarded).await? {
            Saved::Saved { version } => {
                case.version = version;
                Ok(true)
            }
            Saved::Conflict => Ok(false),
        }
    }

    /// Counts a saved case once its outcome is final: in its experiment arm, and in the dashboard's
    /// counters of the day, `now`'s UTC date on the scheduler's clock. Asked on every save of a
    /// final case, not only the one that made it final: the store counts an invoice once, so a
    /// count a store error lost is made by the case's next save instead of never (on that save's
    /// day). Best effort: a count never holds up the case.
    async fn count_final(&self, case: &Case, now: Timestamp) {
        if let (Some(arm), Some(contribution)) = (&case.arm, Contribution::of(case))
            && let Err(e) = self
                .store
                .count_final(arm, &case.invoice_id, &contribution)
                .await
        {
            tracing::warn!(
                invoice = %case.invoice_id,
                experiment = %arm.experiment,
                "cannot count the case's outcome in its experiment arm (counted on its next save): {e}"
            );
        }
        if let Some(contribution) = day::Contribution::of(case) {
            let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
            if let Err(e) = self
                .store
                .count_day(today, &case.invoice_id, &contribution)
                .await
            {
                tracing::warn!(
                    invoice = %case.invoice_id,
                    "cannot count the case's outcome on the dashboard (counted on its next save): {e}"
                );
            }
        }
    }

    /// Runs a Stripe call, renewing this worker's claim on the case every third of a lease while
    /// it lasts (a call with its retries can take longer than a lease), so no other worker takes
    /// the case over and makes the call a second time.
    async fn leased<T>(&self, invoice_id: &str, call: impl Future<Output = T>) -> T {
        let Some(lease) = self.lease else {
            return call.await;
        };
        let lease_ahead = SignedDuration::try_from(lease).unwrap_or(SignedDuration::MAX);
        renewing(lease, call, || async move {
            let renewed = match self.clock.now().await {
                Ok(now) => {
                    let until = policy::time::later(now, lease_ahead);
                    self.store.renew_claim(invoice_id, until).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = renewed {
                tracing::warn!(
                    invoice = invoice_id,
                    "cannot renew the claim on the case: {e}"
                );
            }
        })
        .await
    }

    /// Feeds every due timer of `case` into `decide`, earliest first, with the history of the
    /// case's card for the networks' budgets.
    async fn fire_due(&self, case: Case, now: Timestamp) -> Result<Decided, ApplyError> {
        let card = match &case.card {
            Some(card) => Some(self.store.load_card(&card.fingerprint).await?),
            None => None,
        };
        let tries = card.as_ref().map(|c| c.tries.clone()).unwrap_or_default();
        let due = case.due_timers(now);
        let mut fired = Vec::new();
        let mut actions = Vec::new();
        let mut current = case;
        for timer in due {
            let input = Input::Timer {
                timer,
                card: tries.clone(),
            };
            // A due retry that asks for no charge on a case not held was refused by a network:
            // counted by the card's brand as it was when the retry came due.
            let brand = (matches!(timer.kind, TimerKind::Retry { .. })
                && current.state != State::OnHold)
                .then(|| current.card.as_ref().map(|c| c.brand.clone()))
                .flatten();
            let decision = decide(self.policy, Some(current), &input, now);
            let refused = !decision
                .actions
                .iter()
                .any(|a| matches!(a, Action::Retry { .. }));
            let changed = decision.case.is_some();
            if let (true, true, Some(brand)) = (changed, refused, brand) {
                metrics::counter!(metric::NETWORK_REFUSALS, "brand" => brand).increment(1);
            }
            if changed {
                fired.push(timer.at);
                actions.extend(decision.actions.iter().copied());
            }
            current = decision
                .into_case()
                .expect("a case given to decide comes back");
        }
        if fired.is_empty() {
            metrics::counter!(metric::STALE_WAKEUPS).increment(1);
        }
        Ok(Decided {
            case: Some(current),
            actions,
            refused: None,
            fired,
            card,
        })
    }

    /// Makes the Stripe calls `actions` ask for — charges, the end decision, resuming collection —
    /// and feeds each result back into the case, with the actions the results ask for (the
    /// thank-you after a paid retry). A call already `made` by an earlier round of this apply
    /// (whose save met a conflict) is not made again: its result is fed into the fresh case,
    /// whether or not that case still asks for it, so no result is lost to a conflict.
    async fn carry_out(
        &self,
        mut case: Case,
        actions: &[Action],
        card: Option<CardHistory>,
        made: &mut Vec<Made>,
    ) -> Result<(Case, Vec<Action>), ApplyError> {
        let Some(processor) = self.processor else {
            return Ok((case, Vec::new()));
        };
        for &action in actions {
            if made.iter().any(|m| m.action == action) {
                continue;
            }
            let input = match action {
                Action::Retry { attempt } => {
                    let charge = self
                        .leased(
                            &case.invoice_id,
                            self.charge(processor, &case, attempt, card.as_ref()),
                        )
                        .await?;
                    Input::Charge(Box::new(charge))
                }
                Action::End(end) => {
                    metrics::counter!(metric::ACTIONS, "action" => end.action().as_str())
                        .increment(1);
                    let result = match end {
                        End::LeavePastDue => EndResult::Done { already: false },
                        _ => {
                            let order = EndOrder {
                                invoice_id: case.invoice_id.clone(),
                                subscription_id: case.subscription_id.clone(),
                                end,
                                resumes_at: case.decision.as_ref().and_then(|d| d.resumes_at),
                            };
                            self.leased(&case.invoice_id, processor.end(&order)).await
                        }
                    };
                    metrics::counter!(metric::DECISIONS, "action" => end.action().as_str(), "result" => result.as_str()).increment(1);
                    tracing::info!(invoice = %case.invoice_id, action = end.action().as_str(), result = result.as_str(), "end decision");
                    Input::Ended {
                        at: self.clock.now().await?,
                        result,
                    }
                }
                Action::Resume => {
                    let Some(subscription) = case.subscription_id.as_deref() else {
                        continue;
                    };
                    metrics::counter!(metric::ACTIONS, "action" => "resume").increment(1);
                    let result = self
                        .leased(
                            &case.invoice_id,
                            processor.resume(&case.invoice_id, subscription),
                        )
                        .await;
                    metrics::counter!(metric::RESUMPTIONS, "result" => result.as_str())
                        .increment(1);
                    Input::Resumed {
                        at: self.clock.now().await?,
                        result,
                    }
                }
                Action::Nudge { .. } => continue,
            };
            let at = match &input {
                Input::Charge(charge) => charge.at,
                Input::Ended { at, .. } | Input::Resumed { at, .. } => *at,
                _ => self.clock.now().await?,
            };
            made.push(Made { action, input, at });
        }
        let mut then = Vec::new();
        for made in made.iter() {
            let decision = decide(self.policy, Some(case), &made.input, made.at);
            then.extend(decision.actions.iter().copied());
            case = decision
                .into_case()
                .expect("a case given to decide comes back");
        }
        Ok((case, then))
    }

    /// Charges attempt `attempt`, whose try is already reserved on the card's history (see
    /// [`Engine::under_way`]), and notes the try's result on the card it was made on.
    async fn charge(
        &self,
        processor: &dyn Processor,
        case: &Case,
        attempt: u32,
        card: Option<&CardHistory>,
    ) -> Result<Charge, ApplyError> {
        let rules = &self.policy.networks;
        let now = self.clock.now().await?;
        let invoice_id = case.invoice_id.clone();
        let tried = |at, declined| {
            Try::new(at, &invoice_id, attempt, declined).of(case.still_due(), &case.currency)
        };
        metrics::counter!(metric::ACTIONS, "action" => "retry").increment(1);
        // The customer's newest card, when they gave one for this invoice: it may not be the
        // subscription's default, which Stripe would charge otherwise.
        let method = case.new_payment_method.as_ref().map(|m| m.id.as_str());
        let result = processor.charge(&case.invoice_id, attempt, method).await;
        metrics::counter!(metric::CHARGES, "result" => result.as_str()).increment(1);
        tracing::info!(invoice = %case.invoice_id, attempt, result = result.as_str(), "charge attempt");
        // The try is recorded on the card it was made on (the decline names it; otherwise the
        // one reserved), unless the reservation already says all there is to say.
        let reserved = card.map(|c| c.fingerprint.as_str());
        let declined_on = match &result {
            ChargeResult::Declined(d) => d.card.as_ref().map(|c| c.fingerprint.as_str()),
            _ => None,
        };
        // A decline is noted even on the reserved card: what it asks of the card (a wait, or never
        // again) binds every invoice on it.
        let noted = match &result {
            ChargeResult::Paid => reserved.map(|on| (on, tried(now, false))),
            ChargeResult::Declined(d) => declined_on
                .or(reserved)
                .map(|on| (on, tried(now, true).declined_as(d, rules))),
            ChargeResult::NotOpen { .. } | ChargeResult::Failed { .. } => None,
        };
        if let Some((fingerprint, tried)) = noted {
            note_try(self.store, rules, fingerprint, tried).await;
        }
        // A paid or declined answer is evidence for later plans (an error, or an invoice no longer
        // open, says nothing about the moment). Best effort: a lost count only teaches less.
        let paid = match &result {
            ChargeResult::Paid => Some(true),
            ChargeResult::Declined(_) => Some(false),
            ChargeResult::NotOpen { .. } | ChargeResult::Failed { .. } => None,
        };
        if let Some(observation) = paid.and_then(|paid| Observation::of(case, now, paid))
            && let Err(e) = self.store.record_outcome(&observation).await
        {
            tracing::warn!(invoice = %case.invoice_id, attempt, "outcome not counted as evidence: {e}");
        }
        let made = tried(now, matches!(result, ChargeResult::Declined(_)));
        let fees = estimated_fees(rules, case, card, &made, &result);
        for fee in fees.iter().filter(|f| !f.fee.is_zero()) {
            metrics::gauge!(metric::NETWORK_FEES, "brand" => fee.brand.clone(), "rule" => fee.rule.clone())
                .increment(fee.fee.usd());
        }
        Ok(Charge {
            attempt,
            at: self.clock.now().await?,
            result,
            fees,
        })
    }
}

/// What the card's network is estimated to charge for the try `made`, counted over the tries on
/// the card before it (none when the decline names another card than the one reserved).
fn estimated_fees(
    networks: &Networks,
    case: &Case,
    card: Option<&CardHistory>,
    made: &Try,
    result: &ChargeResult,
) -> Vec<Charged> {
    let (declined, on) = match result {
        ChargeResult::Paid => (None, case.card.as_ref()),
        ChargeResult::Declined(d) => (Some(d.signals()), d.card.as_ref().or(case.card.as_ref())),
        ChargeResult::NotOpen { .. } | ChargeResult::Failed { .. } => return Vec::new(),
    };
    let Some(on) = on else {
        return Vec::new();
    };
    let earlier: Vec<Try> = card
        .filter(|c| c.fingerprint == on.fingerprint)
        .map(|c| {
            c.tries
                .iter()
                .filter(|t| t.invoice_id != made.invoice_id || t.attempt != made.attempt)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    budget::fees(networks, &on.brand, &earlier, made, declined.as_ref())
}

/// Adds a try with its known result to a card's history, for the budgets of later retries. Best
/// effort: the history already holds the try as a decline when it was reserved, which only errs on
/// the side of the networks' rules.
pub(crate) async fn note_try<S: Cards>(
    store: &S,
    networks: &Networks,
    fingerprint: &str,
    try_: Try,
) {
    for _ in 0..3 {
        let mut card = match store.load_card(fingerprint).await {
            Ok(card) => card,
            Err(e) => {
                tracing::warn!(fingerprint, "cannot read the card's history: {e}");
                return;
            }
        };
        if !card.record(try_.clone(), networks, try_.at) {
            return;
        }
        match store.save_card(&card, CardHistory::keep(networks)).await {
            Ok(Saved::Saved { .. }) => return,
            Ok(Saved::Conflict) => continue,
            Err(e) => {
                tracing::warn!(fingerprint, "cannot record a try on the card: {e}");
                return;
            }
        }
    }
}

/// Counts what a save did for recovery: dunning begun, an invoice recovered (how much, how soon,
/// after how many attempts). `before` is the stored case's state and whether it had failed.
fn record_progress(before: Option<(State, bool)>, case: &Case) {
    let (was, had_failed) = before.map_or((None, false), |(state, failed)| (Some(state), failed));
    if !had_failed && case.failed_at.is_some() {
        let segment = case.segment.clone().unwrap_or_default();
        metrics::counter!(metric::CASES_OPENED, "segment" => segment).increment(1);
    }
    if case.state == State::Recovered && was != Some(State::Recovered) {
        let by = match case.recovered_by {
            Some(RecoveredBy::Retry) => "retry",
            Some(RecoveredBy::Customer) => "customer",
            _ => "unknown",
        };
        let currency = case.currency.clone();
        metrics::counter!(metric::CASES_RECOVERED, "currency" => currency.clone(), "by" => by)
            .increment(1);
        metrics::counter!(metric::RECOVERED_AMOUNT, "currency" => currency)
            .increment(u64::try_from(case.still_due()).unwrap_or(0));
        if let (Some(failed), Some(paid)) = (case.failed_at, case.paid_at) {
            let seconds = paid.duration_since(failed).as_secs_f64().max(0.0);
            metrics::histogram!(metric::TIME_TO_RECOVER_SECONDS).record(seconds);
        }
        metrics::histogram!(metric::ATTEMPTS_PER_RECOVERY).record(case.attempts.len() as f64);
    }
}

fn record_firings(fired: &[Timestamp], now: Timestamp) {
    for due in fired {
        metrics::counter!(metric::TIMERS_FIRED).increment(1);
        let late = now.duration_since(*due).as_secs_f64().max(0.0);
        metrics::histogram!(metric::TIMER_LATENESS_SECONDS).record(late);
    }
}
