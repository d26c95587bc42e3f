//! The recovery dashboard's daily counters in Redis: one hash per day, `recoup:{dash}:day:<date>`
//! (the UTC date, `2026-12-06`), from each counter's name ([`crate::dashboard::day::Field`]) to its
//! value. A day's hash holds one field per counter that day saw — a fixed few, plus one or two per
//! final state, currency, decline class, segment, nudge, end action and card brand, and one per
//! whole day of the recovery histogram — so its size is bounded by the policy and by Stripe, not by
//! the number of invoices. It is forgotten at the end of its last kept day
//! (`redis.dashboard_days` after it).
//!
//! Beside them, per counted invoice, two marks (`recoup:{dash}:final:<invoice>`,
//! `…:recovered:<invoice>`) make counting idempotent, as for the experiments' counters: kept for
//! the case retention and a day more, renewed whenever the case is counted again. Every key shares
//! the hash tag `{dash}`, so the counting script also runs on Redis Cluster (where all of them live
//! on one node: a few MiB for a busy year).

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;

// keys, scripts and helpers of `mod.rs` in scope.
use super::*;
use crate::dashboard::day::{Contribution, DayCounts};
use crate::dashboard::period::Period;

/// The hash of a day's counters.
pub fn day_key(day: Date) -> String {
    format!("recoup:{{dash}}:day:{day}")
}

impl Dashboard for RedisStore {
    async fn count_day(
        &self,
        day: Date,
        invoice_id: &str,
        contribution: &Contribution,
    ) -> Result<bool, StoreError> {
        let keep = self.mark_keep_ms();
        // The first midnight after the day's last kept day, in UTC.
        let forget_at = day
            .checked_add(jiff::Span::new().days(i64::from(self.days_kept())))
            .ok()
            .and_then(|end| end.to_zoned(TimeZone::UTC).ok())
            .map_or(i64::MAX, |end| end.timestamp().as_millisecond());
        let mut invocation = self.scripts.count_day.prepare_invoke();
        invocation
            .key(day_key(day))
            .key(format!("recoup:{{dash}}:final:{invoice_id}"))
            .key(format!("recoup:{{dash}}:recovered:{invoice_id}"))
            .arg(keep)
            .arg(forget_at)
            .arg(contribution.outcome.len());
        for (field, n) in contribution.outcome.iter().chain(&contribution.recovery) {
            invocation.arg(field.name()).arg(*n);
        }
        let mut conn = self.conn.get();
        let counted: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(counted == 1)
    }

    async fn days(&self, period: &Period) -> Result<BTreeMap<Date, DayCounts>, StoreError> {
        // One read a day, concurrently: the multiplexed connection pipelines them.
        let read = period.days().map(|day| async move {
            let fields: Vec<(String, String)> =
                self.query(redis::cmd("HGETALL").arg(day_key(day))).await?;
            Ok::<_, StoreError>((day, DayCounts::read(fields)))
        });
        Ok(try_join_all(read)
            .await?
            .into_iter()
            .filter(|(_, counts)| !counts.is_empty())
            .collect())
    }

    fn days_kept(&self) -> u32 {
        self.settings.dashboard_days
    }
}
