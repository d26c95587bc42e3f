//! Experiment arms' counters in Redis: one hash per experiment, `recoup:{exp:<experiment>}:counts`,
//! whose fields are `<arm>|invoices`, `|recovered`, `|attempts`, `|nudges`, `|lost` and, per
//! currency, `<arm>|<currency>|invoices`, `|sum` and `|squares` — five fields an arm and three per
//! currency, whatever the number of invoices. Beside it, per counted invoice, two marks
//! (`…:final:<invoice>`, `…:recovered:<invoice>`) that make counting idempotent; each is kept for
//! the case retention and a day more, renewed whenever the case is counted again, so it outlives
//! the case it guards (about 100 bytes per final invoice for that long). Every key of an
//! experiment shares its hash tag, so the counting script also runs on Redis Cluster.

use std::collections::BTreeMap;

// keys, scripts and helpers of `mod.rs` in scope.
use super::*;
use crate::policy::Assignment;
use crate::policy::experiment::outcome::{ArmCounts, Contribution};

/// What every key of `experiment` starts with.
fn prefix(experiment: &str) -> String {
    format!("recoup:{{exp:{experiment}}}")
}

/// The hash of an experiment's counters.
pub fn counts_key(experiment: &str) -> String {
    format!("{}:counts", prefix(experiment))
}

impl RedisStore {
    /// How long a "counted" mark is kept, in milliseconds: the case retention and a day more, so
    /// the mark outlives the case it guards and a late save of the case cannot count it twice.
    pub(super) fn mark_keep_ms(&self) -> u64 {
        self.settings
            .case_retention_secs
            .saturating_add(86_400)
            .saturating_mul(1000)
    }
}

impl Experiments for RedisStore {
    async fn count_final(
        &self,
        arm: &Assignment,
        invoice_id: &str,
        contribution: &Contribution,
    ) -> Result<bool, StoreError> {
        let keep = self.mark_keep_ms();
        let prefix = prefix(&arm.experiment);
        let (amount, square) = match contribution.recovered {
            Some(amount) => (amount.to_string(), (amount as f64).powi(2).to_string()),
            None => (String::new(), String::new()),
        };
        let mut invocation = self.scripts.count_final.prepare_invoke();
        invocation
            .key(counts_key(&arm.experiment))
            .key(format!("{prefix}:final:{invoice_id}"))
            .key(format!("{prefix}:recovered:{invoice_id}"))
            .arg(keep)
            .arg(&arm.arm)
            .arg(&contribution.currency)
            .arg(contribution.attempts)
            .arg(contribution.nudges)
            .arg(u8::from(contribution.lost))
            .arg(amount)
            .arg(square);
        let mut conn = self.conn.get();
        let counted: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(counted == 1)
    }

    async fn arm_counts(
        &self,
        experiment: &str,
    ) -> Result<BTreeMap<String, ArmCounts>, StoreError> {
        let fields: Vec<(String, String)> = self
            .query(redis::cmd("HGETALL").arg(counts_key(experiment)))
            .await?;
        let mut arms: BTreeMap<String, ArmCounts> = BTreeMap::new();
        for (name, value) in fields {
            // A field this release cannot read (a later one's) is skipped: the rest still counts.
            let parts: Vec<&str> = name.split('|').collect();
            let whole = || value.parse::<u64>().ok();
            match parts[..] {
                [arm, what] => {
                    let counts = arms.entry(arm.to_owned()).or_default();
                    let Some(n) = whole() else { continue };
                    match what {
                        "invoices" => counts.invoices = n,
                        "recovered" => counts.recovered = n,
                        "attempts" => counts.attempts = n,
                        "nudges" => counts.nudges = n,
                        "lost" => counts.lost = n,
                        _ => {}
                    }
                }
                [arm, currency, what] => {
                    let revenue = arms
                        .entry(arm.to_owned())
                        .or_default()
                        .revenue
                        .entry(currency.to_owned())
                        .or_default();
                    match what {
                        "invoices" => revenue.invoices = whole().unwrap_or_default(),
                        "sum" => revenue.sum = value.parse().unwrap_or_default(),
                        "squares" => revenue.sum_squares = value.parse().unwrap_or_default(),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        Ok(arms)
    }
}
