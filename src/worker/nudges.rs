//! Sending the nudges a saved decision asks for.
//!
//! A nudge is marked as sent on the case before it goes out, so no redo sends it twice (at most
//! once: a worker that dies right after the save loses that one message, which beats sending it
//! twice). Then the customer's count for their local day is taken — atomically, in the store, so a
//! burst of failures across a customer's invoices cannot get past the daily cap — the customer is
//! read from Stripe for their name, address and language, the fix link is made, and the message is
//! rendered and delivered on the plan's channels. What became of it goes back into the case as
//! `Input::Nudged` (or `Input::NudgeHeld` when the customer's day is used up).

use super::{Inputs, Worker};
use crate::notify::templates::{Context, format_amount, format_date, format_time};
use crate::notify::{Delivery, Nudge, Recipient};
use crate::policy::timing;
use crate::policy::{Action, Case, Input, NudgeKind, NudgeResult};
use crate::store::Store;

/// Sends every nudge among `actions` for the saved `case`.
pub(super) async fn send<S: Store>(worker: &Worker<S>, case: &Case, actions: &[Action]) {
    for action in actions {
        if let Action::Nudge { kind, tier } = *action
            && let Err(e) = send_one(worker, case, kind, tier).await
        {
            tracing::warn!(invoice = %case.invoice_id, kind = kind.as_str(), tier, "nudge not sent: {e}");
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
    let plan = &worker.policy.nudges;
    let zone = timing::zone(&case.customer_timezone);
    let now = worker.clock.now().await.map_err(|e| e.to_string())?;
    if kind != NudgeKind::Recovered {
        let today = now.to_zoned(zone.clone()).date();
        let count = worker
            .store
            .count_nudge(&case.customer_id, &today.to_string())
            .await
            .map_err(|e| e.to_string())?;
        if count > u64::from(plan.per_customer_per_day) {
            let until = today
                .tomorrow()
                .map_err(|e| e.to_string())?
                .to_zoned(zone.clone())
                .map_err(|e| e.to_string())?
                .timestamp();
            let held = Input::NudgeHeld { kind, tier, until };
            return apply(worker, case, &held).await;
        }
    }
    let customer = match worker.processor.customer(&case.customer_id).await {
        Ok(customer) => customer.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(customer = %case.customer_id, "customer not read for a nudge: {e}");
            Default::default()
        }
    };
    let update_url = match kind {
        NudgeKind::Recovered => None,
        _ => worker
            .processor
            .fix_link(
                &case.invoice_id,
                &case.customer_id,
                kind == NudgeKind::ActionRequired,
            )
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(invoice = %case.invoice_id, "no fix link for a nudge: {e}");
                None
            }),
    };
    let notifier = &worker.notifier;
    let kind_tier = format!("{}-{tier}", kind.as_str());
    let language = notifier
        .templates
        .language(&kind_tier, &customer.preferred_locales);
    let within = worker.policy.plan_for(case).within;
    let context = Context {
        customer_name: customer.name.clone().unwrap_or_default(),
        amount: format_amount(case.amount_due, &case.currency, &language),
        plan: String::new(),
        update_url: update_url.clone().unwrap_or_default(),
        business: notifier.business().to_owned(),
        next_attempt: case
            .next_attempt_at
            .map(|at| format_time(at, &zone, &language))
            .unwrap_or_default(),
        consequence: "paused".to_owned(),
        // When the retries run out, the end action follows.
        consequence_date: case
            .failed_at
            .map(|failed| format_date(failed + within, &zone, &language))
            .unwrap_or_default(),
        card: String::new(),
    };
    let message = notifier
        .templates
        .render(&kind_tier, &[language], &context)?;
    let nudge = Nudge {
        kind,
        tier,
        customer_id: case.customer_id.clone(),
        invoice_id: Some(case.invoice_id.clone()),
        amount_due: case.amount_due,
        currency: case.currency.clone(),
        update_url,
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
    let results = notifier
        .deliver(&nudge, &plan.channels)
        .await
        .into_iter()
        .map(|(channel, delivery)| NudgeResult {
            channel,
            sent: delivery == Delivery::Sent,
            note: match delivery {
                Delivery::Sent => String::new(),
                Delivery::Failed { error } => error,
                Delivery::Skipped { why } => why,
            },
        })
        .collect();
    let delivered = Input::Nudged {
        kind,
        tier,
        at: marked.at,
        results,
    };
    apply(worker, case, &delivered).await
}

async fn apply<S: Store>(worker: &Worker<S>, case: &Case, input: &Input) -> Result<(), String> {
    worker
        .apply(&case.invoice_id, Inputs::One(input))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}
