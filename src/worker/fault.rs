//! Why an inbox entry was not done, as the inbox and the handlers it calls (expiring cards) report
//! it: a passing fault (Redis or Stripe briefly away; the entry is read again later, uncounted) or
//! the entry's own (counted toward the dead letters). "Passing" is the one word recoup uses for a
//! failure that goes away by itself, in Stripe's answers, the store's and the nudge channels'.

use super::ApplyError;
use crate::store::StoreError;

/// Why an entry was not done: a passing fault (retry later, uncounted) or the entry's own (counted).
pub(super) enum Fault {
    Passing(String),
    Entry(String),
}

impl From<ApplyError> for Fault {
    fn from(e: ApplyError) -> Self {
        if e.is_passing() {
            Fault::Passing(e.to_string())
        } else {
            Fault::Entry(e.to_string())
        }
    }
}

impl Fault {
    /// A store error: Redis down or slow is a passing fault; data it cannot read, the entry's own.
    pub(super) fn from_store(e: StoreError) -> Self {
        ApplyError::from(e).into()
    }
}
