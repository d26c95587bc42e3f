//! Why an inbox entry was not done, as the inbox and the handlers it calls (expiring cards) report
//! it: the moment (Redis or Stripe briefly away; the entry is read again later, uncounted) or the
//! entry itself (counted toward the dead letters).

use super::ApplyError;
use crate::store::StoreError;

/// Why an entry was not done: the moment (retry later, uncounted) or the entry itself (counted).
pub(super) enum Fault {
    Moment(String),
    Entry(String),
}

impl From<ApplyError> for Fault {
    fn from(e: ApplyError) -> Self {
        if e.is_transient() {
            Fault::Moment(e.to_string())
        } else {
            Fault::Entry(e.to_string())
        }
    }
}

impl Fault {
    /// A store error: Redis down or slow is the moment's fault; data it cannot read, the entry's.
    pub(super) fn from_store(e: StoreError) -> Self {
        ApplyError::from(e).into()
    }
}
