//! Carrying out end decisions in Stripe — pause or cancel the subscription, mark the invoice
//! uncollectible — and resuming a paused collection. Each reads the invoice and the subscription
//! right before acting, so a payment or a dashboard change that came first wins and nothing is
//! changed under it; each change is sent under the decision's own idempotency key.
//!
//! Resuming is the one call async-stripe's typed builders cannot make: Stripe clears
//! `pause_collection` when it is sent empty (`pause_collection=`), and the typed parameter is a
//! struct that can only set it. That request goes through async-stripe's own `RequestBuilder`, with
//! the same client, version header, idempotency key and retries as every other call.

use stripe::{IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_billing::InvoiceStatus;
use stripe_billing::invoice::{MarkUncollectibleInvoice, RetrieveInvoice};
use stripe_billing::subscription::{
    CancelSubscription, RetrieveSubscription, UpdateSubscription,
    UpdateSubscriptionPauseCollection, UpdateSubscriptionPauseCollectionBehavior,
};
use stripe_client_core::{RequestBuilder, StripeMethod};
use stripe_shared::{Subscription, SubscriptionStatus};

use super::{Stripe, brief};
use crate::policy::{End, EndOrder, EndResult, PauseBehavior};
use crate::processor::{decision_key, resume_key};

impl Stripe {
    pub(super) async fn carry_out(&self, order: &EndOrder) -> EndResult {
        let failed = |what: &str, e: &StripeError| EndResult::Failed {
            error: format!("{what}: {}", brief(e)),
        };
        let invoice_id = order.invoice_id.as_str();
        let invoice = match self
            .call("read invoice", || async {
                RetrieveInvoice::new(invoice_id).send(&self.client).await
            })
            .await
        {
            Ok(invoice) => invoice,
            Err(e) => return failed("reading the invoice", &e),
        };
        if invoice.status != Some(InvoiceStatus::Open) {
            return EndResult::NotOpen {
                status: invoice
                    .status
                    .as_ref()
                    .map_or("unknown", |s| s.as_str())
                    .to_owned(),
            };
        }
        let key = match IdempotencyKey::new(decision_key(invoice_id, order.end.action())) {
            Ok(key) => RequestStrategy::Idempotent(key),
            Err(e) => {
                return EndResult::Failed {
                    error: e.to_string(),
                };
            }
        };
        if let Some(subscription_id) = order.subscription_id.as_deref() {
            let subscription = match self.subscription(subscription_id).await {
                Ok(subscription) => subscription,
                Err(StripeError::Stripe(_, 404)) => return gone(subscription_id),
                Err(e) => return failed("reading the subscription", &e),
            };
            if let Some(settled) = compare(&subscription, order.end) {
                return settled;
            }
        }
        let sub = order.subscription_id.as_deref().unwrap_or_default();
        let made = match order.end {
            End::Pause { behavior, .. } => {
                let mut pause = UpdateSubscriptionPauseCollection::new(match behavior {
                    PauseBehavior::KeepAsDraft => {
                        UpdateSubscriptionPauseCollectionBehavior::KeepAsDraft
                    }
                    PauseBehavior::MarkUncollectible => {
                        UpdateSubscriptionPauseCollectionBehavior::MarkUncollectible
                    }
                    PauseBehavior::Void => UpdateSubscriptionPauseCollectionBehavior::Void,
                });
                pause.resumes_at = order.resumes_at.map(|at| at.as_second());
                let request = UpdateSubscription::new(sub).pause_collection(pause);
                self.change("pause collection", &request, &key).await
            }
            End::Cancel {
                at_period_end: true,
            } => {
                let request = UpdateSubscription::new(sub).cancel_at_period_end(true);
                self.change("cancel at period end", &request, &key).await
            }
            End::Cancel {
                at_period_end: false,
            } => {
                let request = CancelSubscription::new(sub);
                self.change("cancel subscription", &request, &key).await
            }
            End::MarkUncollectible => {
                let request = MarkUncollectibleInvoice::new(invoice_id);
                self.change("mark invoice uncollectible", &request, &key)
                    .await
            }
            // Nothing to change in Stripe; the policy does not hand this one over.
            End::LeavePastDue => Ok(()),
        };
        match made {
            Ok(()) => EndResult::Done { already: false },
            Err(e) => failed(&format!("carrying out {}", order.end.how()), &e),
        }
    }

    pub(super) async fn resume_collection(
        &self,
        invoice_id: &str,
        subscription_id: &str,
    ) -> EndResult {
        let failed = |what: &str, e: &StripeError| EndResult::Failed {
            error: format!("{what}: {}", brief(e)),
        };
        let subscription = match self.subscription(subscription_id).await {
            Ok(subscription) => subscription,
            Err(StripeError::Stripe(_, 404)) => return gone(subscription_id),
            Err(e) => return failed("reading the subscription", &e),
        };
        if ended(&subscription.status) {
            return EndResult::Changed {
                now: format!("the subscription is {}", subscription.status.as_str()),
            };
        }
        if subscription.pause_collection.is_none() {
            return EndResult::Changed {
                now: "collection is not paused any more (resumed in Stripe)".to_owned(),
            };
        }
        let key = match IdempotencyKey::new(resume_key(invoice_id)) {
            Ok(key) => RequestStrategy::Idempotent(key),
            Err(e) => {
                return EndResult::Failed {
                    error: e.to_string(),
                };
            }
        };
        let resumed = self
            .call("resume collection", || async {
                RequestBuilder::new(
                    StripeMethod::Post,
                    format!("/subscriptions/{subscription_id}"),
                )
                .form(&ClearPause {
                    pause_collection: "",
                })
                .customize::<Subscription>()
                .request_strategy(key.clone())
                .send(&self.client)
                .await
            })
            .await;
        match resumed {
            Ok(_) => EndResult::Done { already: false },
            Err(e) => failed("resuming collection", &e),
        }
    }

    /// Makes one change in Stripe under its idempotency key, again after passing failures.
    async fn change<R>(
        &self,
        what: &str,
        request: &R,
        key: &RequestStrategy,
    ) -> Result<(), StripeError>
    where
        R: StripeRequest,
        R::Output: miniserde::Deserialize,
    {
        self.call(what, || async {
            request
                .customize()
                .request_strategy(key.clone())
                .send(&self.client)
                .await
                .map(drop)
        })
        .await
    }

    async fn subscription(&self, id: &str) -> Result<Subscription, StripeError> {
        self.call("read subscription", || async {
            RetrieveSubscription::new(id).send(&self.client).await
        })
        .await
    }
}

/// The form that resumes collection: `pause_collection=`, Stripe's way of unsetting a parameter.
#[derive(serde::Serialize)]
struct ClearPause {
    pause_collection: &'static str,
}

/// A subscription Stripe does not know (any more): nothing to change.
fn gone(subscription_id: &str) -> EndResult {
    EndResult::Changed {
        now: format!("subscription {subscription_id} does not exist in Stripe"),
    }
}

/// Whether a subscription has ended.
fn ended(status: &SubscriptionStatus) -> bool {
    matches!(
        status,
        SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired
    )
}

/// What the subscription as Stripe shows it means for a decision about to be carried out: `None`
/// to go ahead; the decision's own change already there; or a change someone else made, which
/// recoup leaves alone.
fn compare(subscription: &Subscription, end: End) -> Option<EndResult> {
    let done = Some(EndResult::Done { already: true });
    let changed = |now: String| Some(EndResult::Changed { now });
    if ended(&subscription.status) {
        return match end {
            End::Cancel {
                at_period_end: false,
            } => done,
            _ => changed(format!(
                "the subscription is already {}",
                subscription.status.as_str()
            )),
        };
    }
    if let Some(pause) = &subscription.pause_collection {
        return match end {
            End::Pause { behavior, .. } if pause.behavior.as_str() == behavior.as_str() => done,
            _ => changed(format!(
                "collection is already paused in Stripe ({})",
                pause.behavior.as_str()
            )),
        };
    }
    if subscription.cancel_at_period_end || subscription.cancel_at.is_some() {
        return match end {
            End::Cancel {
                at_period_end: true,
            } if subscription.cancel_at_period_end => done,
            _ => changed("the subscription is already set to cancel".to_owned()),
        };
    }
    None
}
