//! The recovery dashboard's figures: what recovery came to over a period, from counters kept per
//! day, never from scanning cases.
//!
//! **Counting.** An invoice adds to one day's counters ([`day`]) when its case's outcome becomes
//! final — recovered, paused, canceled or closed — on the UTC date of the scheduler's clock at that
//! moment: its outcome (final state, decline class, segment, amount invoiced, nudges sent, end
//! decision, retries the card networks held back). Its recovery adds to the counters of the day it
//! is recovered: the same day for most, a later one for a paused subscription whose customer pays
//! after. Each is counted once per invoice, however often the final case is saved (the store's
//! promise, as for the experiments' counters). Invoices still in dunning count nowhere yet, and a
//! case that never saw a failure (paid before recoup saw it fail) never does.
//!
//! **Bounded.** A day's counters are named by a [`day::Field`]: a fixed set, plus one per final
//! state, currency, decline class, segment, nudge (channel, kind, tier), end action and card brand
//! that occurred that day — bounded by the policy and by Stripe, not by how many invoices there
//! were. Days to recover are kept as a histogram of whole days, 0 to [`day::LONGEST_DAY`] and one
//! bucket for anything longer, which is enough for a median and a 90th percentile over any period.
//!
//! **Summing.** [`period`] checks a requested period and adds its days' counters into the figures
//! the dashboard shows: plain sums and quotients, and percentiles read off the summed histogram.
//! Nothing here touches a clock or the store: the shell reads the days and passes them in.

pub mod day;
pub mod period;
