//! `recoup reconcile`: Stripe's open invoices against recoup's open cases, and the events that
//! make up the differences ([`crate::reconcile`]).

use std::path::PathBuf;
use std::process::ExitCode;

use jiff::Timestamp;

use super::{Failure, stripe_and_store, user};
use crate::cli::output::outln;
use crate::reconcile;

pub(super) async fn run(dry_run: bool, config: Option<PathBuf>) -> Result<ExitCode, Failure> {
    let (stripe, store) = stripe_and_store(config).await?;
    let report = reconcile::run(&store, &stripe, Timestamp::now(), dry_run)
        .await
        .map_err(user)?;
    outln!(
        "reconcile: Stripe lists {} open invoice(s) it collects automatically, {} of them failed; \
         recoup has {} open case(s)",
        report.open_invoices,
        report.failed_invoices,
        report.open_cases
    );
    for difference in &report.differences {
        let action = match (difference.kind, dry_run) {
            ("opened", true) => "would open",
            ("opened", false) => "opened",
            (_, true) => "would settle",
            (_, false) => "settled",
        };
        let queued = match difference.stored {
            Some(false) => {
                " (its event was stored before: a worker has it, or it is in the dead letters)"
            }
            _ => "",
        };
        outln!(
            "{action:<12} {}: {}{queued}",
            difference.invoice_id,
            difference.found
        );
    }
    for problem in &report.problems {
        outln!("{:<12} {problem}", "not compared");
    }
    let count = report.differences.len();
    match (count, dry_run) {
        (0, _) => outln!("no differences"),
        (_, true) => outln!("{count} difference(s); dry run: nothing changed"),
        (_, false) => outln!(
            "{count} difference(s): their events are in the inbox; the workers open or settle the cases"
        ),
    }
    Ok(ExitCode::SUCCESS)
}
