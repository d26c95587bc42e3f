//! Sending the nudges a saved decision asks for.
//!
//! A nudge is marked on the case, with a try planned an hour on, before it goes out: a worker that
//! dies mid-send, or a send that fails before any channel is asked (the store did not answer),
//! leaves it to be tried again rather than lost — and the end decision waits for a final notice
//! until its result is in. A try made again after a lost result may reach the customer twice, so
//! every try carries the nudge's id ([`crate::notify::Nudge::id_for`]: the webhook's `id`, the
//! email's Message-ID). Then the customer's count for their local day is taken — atomically, in the store, so a
//! burst of failures across a customer's invoices cannot get past the daily cap; a retry is not
//! counted again — the customer is read from Stripe for their name, address and language, the
//! update link is made (recoup's own `/fix/…` link, see [`crate::links`]) and the feedback link
//! (`/feedback/…`, "What's in the way?", see [`crate::links::feedback`]), and the message is
//! rendered and delivered on the plan's channels. What became of this try goes back into the case
//! as `Input::Nudged` (or `Input::NudgeHeld` when the customer's day is used up); when no channel
//! took it for a passing reason, the policy plans the next try, and it comes back here as the same
//! nudge, with the same id.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use super::{ApplyError, Inputs, Worker};
use crate::links::Purpose;
use crate::notify::templates::{Context, format_amount, format_date, format_time};
use crate::notify::{Delivery, Nudge, Recipient};
use crate::policy::{
    Action, BilledTo, Case, Channel, Cover, Input, NudgeKind, NudgePlan, NudgeResult,
};
use crate::policy::{ending, timing};
use crate::processor::InvoicePage;
use crate::store::Store;

/// Sends every nudge among `actions` for the saved `case`.
pub(super) async fn send<S: Store>(worker: &Worker<S>, case: &Case, actions: &[Action]) {
    for action in actions {
        if let Action::Nudge { kind, tier } = *action
            && let Err(e) = send_one(worker, case, kind, tier).await
        {
            tracing::warn!(invoice = %case.invoice_id, kind = kind.as_str(), tier, "nudge: {e}");
        }
    }
}

async fn send_one<S: Store>(
    worker: &Worker<S>,
    case: &Case,
    kind: NudgeKind,
    tier: u32,
) -> Result<(), String> {
    let Some(marked) = case
        .nudged
        .iter()
        .find(|n| n.kind == kind && n.tier == tier)
    else {
        return Ok(());
    };
    let policy = worker.policy();
    let plan = policy.nudges_for(case);
    let zone = timing::zone(&case.customer_timezone);
    let not_sent = |e: &dyn std::fmt::Display| format!("not sent: {e}");
    let now = worker.clock.now().await.map_err(|e| not_sent(&e))?;
    // A retry reaches a customer whom the first try did not, and a try made again after a lost
    // result may have reached them already: either was counted with the first try.
    let first_try = marked.tries <= 1 && marked.failed_tries == 0;
    if first_try && let Some(cover) = covered(worker, case, (kind, tier), now).await {
        let covered = Input::NudgeCovered {
            kind,
            tier,
            at: now,
            cover,
        };
        return apply(worker, case, &covered).await;
    }
    if let Some(today) = NudgePlan::capped_day(kind, &zone, now).filter(|_| first_try) {
        let count = worker
            .store
            .count_nudge(&case.customer_id, &today.to_string())
            .await
            .map_err(|e| not_sent(&e))?;
        if let Some(until) = plan.held_by_day_cap(&zone, now, count) {
            let held = Input::NudgeHeld { kind, tier, until };
            return apply(worker, case, &held).await;
        }
    }
    // The date the final notice names counts from this try, which is the one that may deliver it.
    let (end, consequence_at) = ending::announced(&policy, case, now);
    let about = About {
        customer_id: &case.customer_id,
        invoice_id: Some(&case.invoice_id),
        amount_due: case.still_due(),
        currency: &case.currency,
        zone: &zone,
        next_attempt: case.next_attempt_at,
        consequence: end.consequence(),
        consequence_at: Some(consequence_at),
        card: String::new(),
        channels: &plan.channels,
        billed_to: case.billed_to.as_ref(),
    };
    let (template, results) = deliver(worker, kind, tier, &about)
        .await
        .map_err(|e| not_sent(&e))?;
    let delivered = Input::Nudged {
        kind,
        tier,
        at: now,
        template,
        results,
    };
    apply(worker, case, &delivered).await
}

/// What speaks for this nudge so that it is not sent, if anything does ([`NudgePlan::covered_by`]:
/// the same message about another invoice of the subscription, or the customer's spent budget),
/// read from the customer's cases when the nudge's kind can be held back at all. A store that does
/// not answer sends the nudge: one message too many beats none.
async fn covered<S: Store>(
    worker: &Worker<S>,
    case: &Case,
    nudge: (NudgeKind, u32),
    now: jiff::Timestamp,
) -> Option<Cover> {
    let policy = worker.policy();
    let plan = policy.nudges_for(case);
    if !plan.coverable(nudge.0) && !plan.budgeted(nudge.0) {
        return None;
    }
    match worker.store.cases_of_customer(&case.customer_id).await {
        Ok(others) => plan.covered_by(case, nudge, &others, now),
        Err(e) => {
            tracing::warn!(invoice = %case.invoice_id, "the customer's other cases not read, so the nudge goes out: {e}");
            None
        }
    }
}

/// Who and what a nudge is about.
pub(super) struct About<'a> {
    pub customer_id: &'a str,
    /// The unpaid invoice, if the nudge is about one (an expiring card's is not).
    pub invoice_id: Option<&'a str>,
    pub amount_due: i64,
    pub currency: &'a str,
    pub zone: &'a jiff::tz::TimeZone,
    pub next_attempt: Option<jiff::Timestamp>,
    /// What the end decision will do (`End::consequence`) and when, for a final notice.
    pub consequence: &'static str,
    pub consequence_at: Option<jiff::Timestamp>,
    /// The card, in words, for an expiring card's nudge.
    pub card: String,
    /// The channels the plan sends on.
    pub channels: &'a [Channel],
    /// Who the invoice was addressed to, for when Stripe cannot be asked.
    pub billed_to: Option<&'a BilledTo>,
}

/// Reads the customer, makes the fix and feedback links, renders the message in the customer's language and
/// delivers it on the plan's channels; says which template it was and how each channel fared.
pub(super) async fn deliver<S: Store>(
    worker: &Worker<S>,
    kind: NudgeKind,
    tier: u32,
    about: &About<'_>,
) -> Result<(String, Vec<NudgeResult>), String> {
    let mut customer = match worker.processor.customer(about.customer_id).await {
        Ok(customer) => customer.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(
                customer = about.customer_id,
                "customer not read for a nudge: {e}"
            );
            Default::default()
        }
    };
    if let Some(billed) = about.billed_to {
        customer.name = customer.name.or_else(|| billed.name.clone());
        customer.email = customer.email.or_else(|| billed.email.clone());
    }
    let update_url = update_url(worker, kind, about).await;
    let feedback_url = feedback_url(worker, kind, about).await;
    let notifier = &worker.notifier;
    let kind_tier = format!("{}-{tier}", kind.as_str());
    let language = notifier
        .templates
        .language(&kind_tier, &customer.preferred_locales);
    let when = |at: Option<jiff::Timestamp>,
                format: fn(jiff::Timestamp, &jiff::tz::TimeZone, &str) -> String| {
        at.map(|at| format(at, about.zone, &language))
            .unwrap_or_default()
    };
    let context = Context {
        customer_name: customer.name.clone().unwrap_or_default(),
        amount: format_amount(about.amount_due, about.currency, &language),
        plan: String::new(),
        update_url: update_url.clone().unwrap_or_default(),
        feedback_url: feedback_url.clone().unwrap_or_default(),
        business: notifier.business().to_owned(),
        next_attempt: when(about.next_attempt, format_time),
        consequence: about.consequence.to_owned(),
        consequence_date: when(about.consequence_at, format_date),
        card: about.card.clone(),
    };
    let message =
        notifier
            .templates
            .render(&kind_tier, std::slice::from_ref(&language), &context)?;
    let about_what = match about.invoice_id {
        Some(invoice_id) => invoice_id.to_owned(),
        None => format!("{} {}", about.customer_id, about.card),
    };
    let nudge = Nudge {
        id: Nudge::id_for(&about_what, kind, tier),
        kind,
        tier,
        customer_id: about.customer_id.to_owned(),
        invoice_id: about.invoice_id.map(str::to_owned),
        amount_due: about.amount_due,
        currency: about.currency.to_owned(),
        update_url,
        feedback_url,
        to: Recipient {
            name: customer.name.clone(),
            email: customer.email.clone(),
            phone: customer.phone.clone(),
            sms_opt_in: customer
                .metadata
                .get("sms_opt_in")
                .is_some_and(|v| v == "true"),
        },
        message,
    };
    let template = nudge.message.template.clone();
    let results = notifier
        .deliver(&nudge, about.channels)
        .await
        .into_iter()
        .map(|(channel, delivery)| NudgeResult {
            channel,
            sent: delivery == Delivery::Sent,
            passing: matches!(delivery, Delivery::Failed { passing: true, .. }),
            note: match delivery {
                Delivery::Sent => String::new(),
                Delivery::Failed { error, .. } => error,
                Delivery::Skipped { why } => why,
            },
        })
        .collect();
    Ok((template, results))
}

/// Where the nudge sends the customer to fix the payment: nowhere for a thank-you; the invoice's
/// hosted page when they must confirm the payment (3-D Secure there; it does not expire); else
/// recoup's own update link, which opens a billing portal session only when it is opened — a
/// session made now would have expired by the time the customer reads the message.
async fn update_url<S: Store>(
    worker: &Worker<S>,
    kind: NudgeKind,
    about: &About<'_>,
) -> Option<String> {
    if kind == NudgeKind::Recovered {
        return None;
    }
    if let (NudgeKind::ActionRequired, Some(invoice_id)) = (kind, about.invoice_id) {
        match worker.processor.invoice_page(invoice_id).await {
            Ok(Some(InvoicePage {
                hosted_invoice_url: Some(url),
                ..
            })) => return Some(url),
            Ok(_) => tracing::warn!(
                invoice = invoice_id,
                "the invoice shows no hosted page: the nudge carries an update link instead"
            ),
            Err(e) => tracing::warn!(
                invoice = invoice_id,
                "the invoice's hosted page not read ({e}): the nudge carries an update link instead"
            ),
        }
    }
    link(worker, Purpose::Update, about).await
}

/// Where the customer can tell what is in the way of paying (recoup's `/feedback/…` page): only in
/// a nudge about an invoice that asks them to pay — not the thank-you, nor the update link they
/// asked for on that page — and only while the policy's `[feedback]` is enabled.
async fn feedback_url<S: Store>(
    worker: &Worker<S>,
    kind: NudgeKind,
    about: &About<'_>,
) -> Option<String> {
    let asks = !matches!(kind, NudgeKind::Recovered | NudgeKind::UpdateLink);
    if !asks || about.invoice_id.is_none() || !worker.policy().feedback.enabled {
        return None;
    }
    link(worker, Purpose::Feedback, about).await
}

/// A link of recoup's own for `purpose`, made now; `None` (and a warning) without a public URL and
/// link secret, or a clock.
async fn link<S: Store>(worker: &Worker<S>, purpose: Purpose, about: &About<'_>) -> Option<String> {
    let Some(links) = &worker.links else {
        tracing::warn!(
            customer = about.customer_id,
            ?purpose,
            "no link for a nudge: RECOUP_PUBLIC_URL and RECOUP_LINK_SECRET are not set"
        );
        return None;
    };
    let now = match worker.clock.now().await {
        Ok(now) => now,
        Err(e) => {
            tracing::warn!(
                customer = about.customer_id,
                ?purpose,
                "no link for a nudge: {e}"
            );
            return None;
        }
    };
    links.url(purpose, about.customer_id, about.invoice_id, now)
}

/// Records what became of a try on its case. A passing fault of the store (Redis slow, failing
/// over) is waited out for up to [`RECORD_FOR`]: the message has gone out, and its result lost
/// would send it again when its try-again time comes, an hour on.
async fn apply<S: Store>(worker: &Worker<S>, case: &Case, input: &Input) -> Result<(), String> {
    (|| worker.apply(&case.invoice_id, Inputs::One(input)))
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(2))
                .with_total_delay(Some(RECORD_FOR))
                .without_max_times()
                .with_jitter(),
        )
        .when(ApplyError::is_passing)
        .await
        .map(drop)
        .map_err(|e| {
            format!(
                "what became of it is not recorded, so it is tried again at its try-again time: {e}"
            )
        })
}

/// How long a nudge's result waits for the store to come back before it is left to the try
/// planned when the nudge went out.
const RECORD_FOR: Duration = Duration::from_secs(15);
