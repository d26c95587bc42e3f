//! Reconciling: Stripe's open invoices against recoup's open cases.
//!
//! Events say what happened; the invoice list says what *is*. [`run`] lists every open invoice
//! Stripe collects automatically (`GET /v1/invoices?status=open&collection_method=charge_automatically`,
//! paged with `starting_after` while `has_more`) and compares:
//!
//! - an invoice Stripe failed to collect (`attempt_count ≥ 1`) that has no case is a failure recoup
//!   never saw — older than the 30 days of events a backfill can reach, or never sent;
//! - an open case whose invoice is not in that list is read (`GET /v1/invoices/{id}`): paid, void
//!   or uncollectible, it is a settlement recoup never saw.
//!
//! Each difference becomes the event recoup missed ([`crate::policy::reconcile`]), stored in the
//! inbox like a delivered one, so a worker opens or settles the case exactly as that event would
//! have — reading the decline behind a failure, recovering or closing by Stripe's own time of the
//! payment. Nothing here writes a case. The same difference found again is the same event id, which
//! the inbox dedupes, so running it twice is harmless. Run by `recoup reconcile` and once a
//! `worker.reconcile_secs` by one worker.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::backfill::Interrupted;
use crate::event::wire::parse_invoice;
use crate::event::{Event, ListedInvoice};
use crate::policy::{Case, reconcile};
use crate::processor::{ListError, Listings};
use crate::store::{Arrival, Cases, Inbox, Ingest, StoreError};
use crate::telemetry::metric;

/// A difference between Stripe and recoup, and the event that makes it up.
#[derive(Debug, Clone)]
pub struct Difference {
    pub invoice_id: String,
    /// What was found, for people.
    pub found: String,
    /// `opened` (a failure never seen) or `settled` (a payment, voiding or write-off never seen).
    pub kind: &'static str,
    pub event: Event,
    /// `Some(true)` once the event is stored, `Some(false)` when the inbox already had it; `None`
    /// on a dry run.
    pub stored: Option<bool>,
}

/// What a reconcile found, and did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Open invoices Stripe listed (collected automatically).
    pub open_invoices: usize,
    /// Of those, the ones Stripe tried to collect at least once.
    pub failed_invoices: usize,
    /// Open cases recoup has.
    pub open_cases: usize,
    pub differences: Vec<Difference>,
    /// What could not be compared, and why (an invoice Stripe lists but recoup cannot read, a
    /// case whose invoice Stripe does not have).
    pub problems: Vec<String>,
}

/// Compares Stripe's open invoices with the open cases, and — unless `dry_run` — stores the event
/// behind each difference in the inbox for the workers.
pub async fn run<S: Inbox + Cases>(
    store: &S,
    stripe: &dyn Listings,
    now: Timestamp,
    dry_run: bool,
) -> Result<Report, Interrupted> {
    let mut report = Report::default();
    let open = open_invoices(stripe, &mut report).await?;
    report.open_invoices = open.len();
    for listed in open.values() {
        let Some(event) = reconcile::missed_failure(listed, now) else {
            continue;
        };
        report.failed_invoices += 1;
        let invoice_id = listed.invoice.id.clone().unwrap_or_default();
        if store.load_case(&invoice_id).await?.is_some() {
            continue;
        }
        let invoice = &listed.invoice;
        report.differences.push(Difference {
            found: format!(
                "{} {} of {} unpaid after {} attempt(s), and recoup has no case",
                invoice.amount_due, invoice.currency, invoice.customer, invoice.attempt_count
            ),
            invoice_id,
            kind: "opened",
            event,
            stored: None,
        });
    }
    for case in open_cases(store).await? {
        report.open_cases += 1;
        if open.contains_key(&case.invoice_id) {
            continue;
        }
        let Some(json) = stripe.invoice(&case.invoice_id).await? else {
            report.problems.push(format!(
                "{}: Stripe has no such invoice (case {})",
                case.invoice_id,
                case.state.as_str()
            ));
            continue;
        };
        let listed = match parse_invoice(&json) {
            Ok(listed) => listed,
            Err(e) => {
                report
                    .problems
                    .push(format!("{}: unreadable invoice: {e}", case.invoice_id));
                continue;
            }
        };
        if let Some(event) = reconcile::missed_settlement(&case, &listed, now) {
            report.differences.push(Difference {
                invoice_id: case.invoice_id.clone(),
                found: format!(
                    "Stripe shows it {} and the case is {}",
                    listed.invoice.status.as_deref().unwrap_or("?"),
                    case.state.as_str()
                ),
                kind: "settled",
                event,
                stored: None,
            });
        }
    }
    if !dry_run {
        for difference in &mut report.differences {
            let stored = store
                .ingest_via(&difference.event, Arrival::Reconcile)
                .await?;
            difference.stored = Some(matches!(stored, Ingest::Stored { .. }));
            metrics::counter!(metric::RECONCILED, "difference" => difference.kind).increment(1);
        }
    }
    Ok(report)
}

/// Every open invoice Stripe collects automatically, by id; one it lists but recoup cannot read is
/// a problem in the report, not a reason to stop.
async fn open_invoices(
    stripe: &dyn Listings,
    report: &mut Report,
) -> Result<BTreeMap<String, ListedInvoice>, ListError> {
    let mut open = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = stripe.open_invoices(after.as_deref()).await?;
        for listed in &page.objects {
            match parse_invoice(&listed.json) {
                Ok(invoice) => {
                    open.insert(listed.id.clone(), invoice);
                }
                Err(e) => report
                    .problems
                    .push(format!("{}: unreadable invoice: {e}", listed.id)),
            }
        }
        match page.objects.last() {
            Some(last) if page.has_more => after = Some(last.id.clone()),
            _ => return Ok(open),
        }
    }
}

/// Every case reconciling compares with Stripe ([`reconcile::is_open`]), read customer by customer.
async fn open_cases<S: Cases>(store: &S) -> Result<Vec<Case>, StoreError> {
    let mut open = Vec::new();
    for customer in store.customers().await? {
        open.extend(
            store
                .cases_of_customer(&customer)
                .await?
                .into_iter()
                .filter(reconcile::is_open),
        );
    }
    Ok(open)
}
