//! The inbox loop: new entries as they arrive, and every lease the entries a dead worker left.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use jiff::Timestamp;
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::fault::Fault;
use super::{Worker, expiring, note_try, store_backoff};
use crate::event::{Event, EventKind, EventObject, Invoice};
use crate::policy::budget::Try;
use crate::policy::{Case, Charge, ChargeResult, Input, State};
use crate::store::{Failure, InboxEntry, Store};
use crate::telemetry::metric;

/// How many entries one read takes at most.
const READ_BATCH: usize = 64;

/// How long one read waits for new entries before the loop looks at reclaiming and stopping.
const READ_WAIT: Duration = Duration::from_secs(1);

pub(super) async fn run<S: Store>(worker: Arc<Worker<S>>, mut stopped: watch::Receiver<bool>) {
    let lease = worker.settings.lease();
    let mut next_reclaim = tokio::time::Instant::now();
    let mut backoff = store_backoff();
    // While the inbox is quiet the loop waits for the next entry holding a single slot; a read
    // may only take as many entries as it holds slots, and holding the whole budget through a
    // one-second wait would leave the timer loop one slot to fire with. Once entries flow, reads
    // take a full batch without waiting, until one comes back empty.
    let mut quiet = true;
    while !*stopped.borrow() {
        let want = if quiet { 1 } else { READ_BATCH };
        let slots = worker.slots(1, want, &mut stopped).await;
        if slots.is_empty() {
            break;
        }
        let read = if tokio::time::Instant::now() >= next_reclaim {
            next_reclaim = tokio::time::Instant::now() + lease / 2;
            worker
                .store
                .reclaim_inbox(
                    &worker.consumer,
                    lease,
                    slots.len(),
                    worker.settings.give_up_deliveries(),
                )
                .await
                .inspect(|reclaimed| {
                    if !reclaimed.is_empty() {
                        tracing::info!(
                            count = reclaimed.len(),
                            "took over inbox entries whose lease ran out"
                        );
                    }
                })
        } else {
            let wait = if quiet { READ_WAIT } else { Duration::ZERO };
            worker
                .store
                .read_inbox(&worker.consumer, slots.len(), wait)
                .await
        };
        match read {
            Ok(entries) => {
                backoff = store_backoff();
                quiet = entries.is_empty();
                for (entry, slot) in entries.into_iter().zip(slots) {
                    tokio::spawn(handle(worker.clone(), entry, slot));
                }
            }
            Err(e) => {
                tracing::warn!("cannot read the inbox: {e}");
                drop(slots);
                let pause = backoff.next().unwrap_or(Duration::from_secs(2));
                tokio::select! {
                    () = tokio::time::sleep(pause) => {},
                    _ = stopped.wait_for(|s| *s) => {},
                }
            }
        }
    }
}

/// Applies one entry to its case and acknowledges it, or counts the failure.
async fn handle<S: Store>(worker: Arc<Worker<S>>, entry: InboxEntry, _slot: OwnedSemaphorePermit) {
    let kind = entry.event.kind.as_str();
    // A panic in one entry's handling must count as a failure of that entry (so a poison event ends
    // in the dead letters), not take the worker down or vanish.
    let processing = std::panic::AssertUnwindSafe(process(&worker, &entry)).catch_unwind();
    let outcome = kept_claimed(&worker, &entry.entry_id, processing)
        .await
        .unwrap_or_else(|panic| {
            Err(Fault::Entry(format!(
                "panicked: {}",
                super::panic_message(panic.as_ref())
            )))
        });
    let error = match outcome {
        Ok(()) => {
            match worker.store.ack(&entry.entry_id).await {
                Ok(()) => {
                    metrics::counter!(metric::INBOX_ENTRIES, "outcome" => "done").increment(1)
                }
                // The case is saved; the entry comes back after its lease and changes nothing twice.
                Err(e) => tracing::warn!(entry = %entry.entry_id, "cannot acknowledge: {e}"),
            }
            return;
        }
        Err(Fault::Passing(error)) if entry.deliveries < worker.settings.give_up_deliveries() => {
            metrics::counter!(metric::INBOX_ENTRIES, "outcome" => "deferred").increment(1);
            tracing::warn!(entry = %entry.entry_id, event = %entry.event.id, kind, %error, "inbox entry deferred; retried after the lease");
            return;
        }
        Err(Fault::Passing(error)) => {
            // Passing, they said, for `dead_letter_after_secs`: an entry that never gets through
            // stops looping, kept with its last error for `recoup deadletters replay`.
            let error = format!(
                "{error} (still failing after {} deliveries)",
                entry.deliveries
            );
            match worker.store.give_up(&entry, &error, Timestamp::now()).await {
                Ok(()) => {
                    metrics::counter!(metric::INBOX_ENTRIES, "outcome" => "dead_lettered")
                        .increment(1);
                    metrics::counter!(metric::DEAD_LETTERS, "type" => kind).increment(1);
                    tracing::error!(entry = %entry.entry_id, event = %entry.event.id, %error, "moved to the dead letters");
                }
                Err(e) => {
                    tracing::warn!(entry = %entry.entry_id, "cannot dead-letter the entry: {e}")
                }
            }
            return;
        }
        Err(Fault::Entry(error)) => error,
    };
    tracing::warn!(entry = %entry.entry_id, event = %entry.event.id, kind, %error, "inbox entry failed");
    match worker.store.fail(&entry, &error, Timestamp::now()).await {
        Ok(Failure::WillRetry { failures }) => {
            metrics::counter!(metric::INBOX_ENTRIES, "outcome" => "failed").increment(1);
            tracing::info!(entry = %entry.entry_id, failures, "will retry after the lease");
        }
        Ok(Failure::DeadLettered) => {
            metrics::counter!(metric::INBOX_ENTRIES, "outcome" => "dead_lettered").increment(1);
            metrics::counter!(metric::DEAD_LETTERS, "type" => kind).increment(1);
            tracing::error!(entry = %entry.entry_id, event = %entry.event.id, %error, "moved to the dead letters");
        }
        Err(e) => tracing::warn!(entry = %entry.entry_id, "cannot record the failure: {e}"),
    }
}

/// Runs `work` on an entry, renewing this worker's claim on it every third of a lease while it
/// lasts: reading a customer or a decline from Stripe, with retries, can take longer than a lease,
/// and another worker would otherwise take the entry over and apply it a second time.
async fn kept_claimed<S: Store, T>(
    worker: &Worker<S>,
    entry_id: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    super::renewing(worker.settings.lease(), work, || async move {
        match worker.store.renew_entry(&worker.consumer, entry_id).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(entry = entry_id, "another worker took the entry over"),
            Err(e) => tracing::warn!(entry = entry_id, "cannot renew the claim on the entry: {e}"),
        }
    })
    .await
}

async fn process<S: Store>(worker: &Worker<S>, entry: &InboxEntry) -> Result<(), Fault> {
    let event = &entry.event;
    if let EventObject::Dispute(dispute) = &event.object {
        return disputed(worker, event, &dispute.charge).await;
    }
    if let Some(customer) = early_customer(event) {
        worker
            .store
            .keep_early_event(customer, event)
            .await
            .map_err(Fault::from_store)?;
    }
    for invoice_id in cases_touched(worker, event).await? {
        let input = input_for(worker, event, &invoice_id).await?;
        let applied = apply(worker, &invoice_id, &input).await?;
        // Stripe's word that a retry paid tells the customer's other cases even when the retry's
        // own firing could not (it is told once more when it did: that changes nothing).
        if event.kind == EventKind::InvoicePaid
            && let Some(case) = case_after(worker, applied.case.clone(), &invoice_id).await?
        {
            super::card_paid::tell(worker, &case).await;
        }
        if let EventObject::Invoice(invoice) = &event.object
            && is_failure(event.kind)
        {
            // Replayed after every failure, not only the one that opened the case: the case knows
            // the events it saw, and an entry retried after a replay cut short completes it.
            replay_early(worker, &invoice.customer, &invoice_id).await?;
            // A redelivered or retried entry changes nothing, but its decline may still be unread.
            if let Some(case) = case_after(worker, applied.case, &invoice_id).await? {
                let case = learn_decline(worker, event, invoice, case).await?;
                super::newer_card::tell(worker, &case).await;
            }
        }
    }
    expiring::handle(worker, event).await?;
    if let EventObject::Invoice(invoice) = &event.object
        && event.kind == EventKind::InvoicePaymentFailed
        && invoice.next_payment_attempt.is_some()
    {
        metrics::counter!(metric::STRIPE_RETRYING).increment(1);
    }
    Ok(())
}

/// A dispute names a charge, not a customer: the charge is read to find the customer, the event is
/// kept for a case the customer's next failure opens, and goes to each of their cases with the
/// disputed card.
async fn disputed<S: Store>(worker: &Worker<S>, event: &Event, charge: &str) -> Result<(), Fault> {
    let Some((customer, input)) = dispute_input(worker, event, charge).await? else {
        return Ok(());
    };
    worker
        .store
        .keep_early_event(&customer, event)
        .await
        .map_err(Fault::from_store)?;
    let cases = worker
        .store
        .cases_of_customer(&customer)
        .await
        .map_err(Fault::from_store)?;
    for case in cases {
        let applied = apply(worker, &case.invoice_id, &input).await?;
        if applied.case.is_some() && event.kind == EventKind::ChargeDisputeCreated {
            metrics::counter!(metric::HOLDS, "by" => "dispute").increment(1);
        }
    }
    Ok(())
}

/// The customer a dispute event is about and the input it is for their cases, the disputed card
/// with it, read from the charge. Stripe being unreachable defers the entry; a charge Stripe does
/// not know, or one without a customer, is about no customer recoup can find.
async fn dispute_input<S: Store>(
    worker: &Worker<S>,
    event: &Event,
    charge: &str,
) -> Result<Option<(String, Input)>, Fault> {
    let found = match worker.processor.disputed_charge(charge).await {
        Ok(found) => found,
        Err(e) if e.passing => return Err(Fault::Passing(e.message)),
        Err(e) => {
            tracing::warn!(charge, event = %event.id, "disputed charge not read: {e}");
            return Ok(None);
        }
    };
    let Some((customer, card)) = found.and_then(|c| Some((c.customer?, c.card))) else {
        tracing::info!(charge, event = %event.id, "the disputed charge has no customer recoup can find");
        return Ok(None);
    };
    let input = Input::Dispute {
        event: Box::new(event.clone()),
        card,
    };
    Ok(Some((customer, input)))
}

/// The customer whose next case must know of `event`, for the events that change a case of theirs
/// but may come before it (see [`crate::store::EarlyEvents`]): a new card, the customer's own
/// settings (a default card, a time zone), their subscription changed in Stripe.
fn early_customer(event: &Event) -> Option<&str> {
    match &event.object {
        EventObject::PaymentMethod(pm) => pm.customer.as_deref(),
        EventObject::Customer(customer) if event.kind == EventKind::CustomerUpdated => {
            Some(&customer.id)
        }
        EventObject::Subscription(subscription) => Some(&subscription.customer),
        _ => None,
    }
}

/// Replays into the case of `invoice_id` the events kept about its customer, some perhaps from
/// before it existed (see [`crate::store::EarlyEvents`]), in the order Stripe created them: a
/// subscription already deleted closes it before any retry is charged, a new card is tried, a
/// dispute holds it, the newest time zone is the one it keeps. An event the case already knows
/// is skipped, so a redelivered failure replays harmlessly.
async fn replay_early<S: Store>(
    worker: &Worker<S>,
    customer_id: &str,
    invoice_id: &str,
) -> Result<(), Fault> {
    let kept = worker
        .store
        .early_events(customer_id)
        .await
        .map_err(Fault::from_store)?;
    if kept.is_empty() {
        return Ok(());
    }
    let Some(case) = worker
        .store
        .load_case(invoice_id)
        .await
        .map_err(Fault::from_store)?
    else {
        return Ok(());
    };
    // What the case already saw is skipped before a dispute's charge is read for nothing.
    for event in kept.into_iter().filter(|e| !case.has_seen(&e.id)) {
        let input = match &event.object {
            // The charge is read again for the disputed card (and to confirm the customer).
            EventObject::Dispute(dispute) => {
                match dispute_input(worker, &event, &dispute.charge).await? {
                    Some((customer, input)) if customer == customer_id => input,
                    _ => continue,
                }
            }
            _ => Input::Event(Box::new(event.clone())),
        };
        apply(worker, invoice_id, &input).await?;
    }
    Ok(())
}

fn is_failure(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::InvoicePaymentFailed | EventKind::InvoicePaymentActionRequired
    )
}

/// The input an event is for a case: a failure that opens the case comes with what Stripe shows of
/// the customer (and how many of their invoices recoup saw fail before), so the case opens in the
/// customer's own time zone and segment. Stripe being unreachable defers the entry; a customer
/// Stripe does not know opens the case from the invoice alone.
async fn input_for<S: Store>(
    worker: &Worker<S>,
    event: &Event,
    invoice_id: &str,
) -> Result<Input, Fault> {
    let plain = Input::Event(Box::new(event.clone()));
    let EventObject::Invoice(invoice) = &event.object else {
        return Ok(plain);
    };
    if !is_failure(event.kind)
        || worker
            .store
            .load_case(invoice_id)
            .await
            .map_err(Fault::from_store)?
            .is_some()
    {
        return Ok(plain);
    }
    let mut customer = match worker.processor.customer(&invoice.customer).await {
        Ok(Some(customer)) => customer,
        Ok(None) => return Ok(plain),
        Err(e) if e.passing => return Err(Fault::Passing(e.message)),
        Err(e) => {
            tracing::warn!(customer = %invoice.customer, "customer not read: {e}");
            return Ok(plain);
        }
    };
    let failed_at = Timestamp::from_second(event.created).unwrap_or(Timestamp::MAX);
    let earlier = worker
        .store
        .cases_of_customer(&invoice.customer)
        .await
        .map_err(Fault::from_store)?
        .into_iter()
        .filter(|c| c.invoice_id != invoice_id && c.failed_at.is_some_and(|f| f <= failed_at))
        .count();
    customer.past_failures = u32::try_from(earlier).unwrap_or(u32::MAX);
    Ok(Input::Opening {
        event: Box::new(event.clone()),
        customer: Box::new(customer),
        untold: false,
    })
}

/// The case as an entry left it: the one it saved, or (when it changed nothing, as a redelivered
/// entry does) the one in the store.
async fn case_after<S: Store>(
    worker: &Worker<S>,
    saved: Option<Case>,
    invoice_id: &str,
) -> Result<Option<Case>, Fault> {
    match saved {
        Some(case) => Ok(Some(case)),
        None => worker
            .store
            .load_case(invoice_id)
            .await
            .map_err(Fault::from_store),
    }
}

async fn apply<S: Store>(
    worker: &Worker<S>,
    invoice_id: &str,
    input: &Input,
) -> Result<super::Applied, Fault> {
    worker
        .apply_one(invoice_id, input)
        .await
        .map_err(Fault::from)
}

/// Stripe's failure events (`event`, about `invoice`) say that an attempt failed, not why: the decline (and the card it came
/// from) is read from the payment intent and fed in as that attempt's result, so the plan follows
/// the real decline class from the first failure on. Stripe being unreachable defers the entry; a
/// payment Stripe has no decline for leaves the decline unknown (`ambiguous` to the plan). Returns
/// the case as it left it.
async fn learn_decline<S: Store>(
    worker: &Worker<S>,
    event: &Event,
    invoice: &Invoice,
    case: Case,
) -> Result<Case, Fault> {
    let attempt = invoice.attempt_count.max(1);
    if !case.decline_unread(attempt) || case.state.is_final() {
        return Ok(case);
    }
    let found = worker
        .processor
        .last_decline(&case.invoice_id, invoice.payment_intent.as_deref())
        .await;
    let declined = match found {
        Ok(Some(declined)) => declined,
        Ok(None) => return Ok(case),
        Err(e) if e.passing => return Err(Fault::Passing(e.message)),
        Err(e) => {
            tracing::warn!(invoice = %case.invoice_id, attempt, "no decline details: {e}");
            return Ok(case);
        }
    };
    let at = Timestamp::from_second(event.created).unwrap_or(case.opened_at);
    if let Some(card) = &declined.card {
        let networks = Arc::clone(&worker.policy().networks);
        let tried = Try::of_case(&case, attempt, at).declined_as(&declined, &networks);
        note_try(&worker.store, &networks, &card.fingerprint, tried).await;
    }
    let input = Input::Charge(Box::new(Charge {
        attempt,
        at,
        result: ChargeResult::Declined(declined),
        // Stripe's own attempt: the ledger counts what recoup's attempts cost.
        fees: Vec::new(),
    }));
    let applied = apply(worker, &case.invoice_id, &input).await?;
    Ok(applied.case.unwrap_or(case))
}

/// The cases an event is for: an invoice event's own case; a payment method's or a customer's
/// every open (or paused) case of that customer; a subscription's every case of it. Applying an
/// event twice to a case changes nothing, so a redo after a partial failure is harmless.
async fn cases_touched<S: Store>(worker: &Worker<S>, event: &Event) -> Result<Vec<String>, Fault> {
    let customer = match &event.object {
        EventObject::Invoice(invoice) => return Ok(invoice.id.iter().cloned().collect()),
        EventObject::Subscription(subscription) => {
            let cases = worker
                .store
                .cases_of_subscription(&subscription.id)
                .await
                .map_err(Fault::from_store)?;
            return Ok(cases.into_iter().map(|case| case.invoice_id).collect());
        }
        EventObject::PaymentMethod(pm) => pm.customer.as_deref(),
        EventObject::Customer(customer) => Some(customer.id.as_str()),
        _ => None,
    };
    let Some(customer) = customer else {
        return Ok(Vec::new());
    };
    let cases = worker
        .store
        .cases_of_customer(customer)
        .await
        .map_err(Fault::from_store)?;
    Ok(cases
        .into_iter()
        .filter(|case| !case.state.is_final() || case.state == State::Paused)
        .map(|case| case.invoice_id)
        .collect())
}
