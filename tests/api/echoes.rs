//! Stripe reports recoup's own changes back as events, and a report can be applied — by another
//! worker — before the call that made the change has returned and its answer is saved. These tests
//! force that interleaving at its worst point: the processor applies Stripe's echo of the change to
//! the stored case right after Stripe made it, before the worker saves the decision's answer. Each
//! end decision must still end as recoup's own (paused, canceled, written off), not as a change made
//! in the dashboard, and a paused customer who pays must still have collection resumed.

use std::sync::Mutex;

use futures_util::future::BoxFuture;
use jiff::Timestamp;
use recoup::clock::Clock;
use recoup::config::StripeSettings;
use recoup::event::Event;
use recoup::event::wire::{Parsed, parse};
use recoup::policy::{
    Case, ChargeResult, CustomerFacts, DecisionOutcome, Declined, EndAction, EndOrder, EndResult,
    Input, Policy, State,
};
use recoup::processor::stripe::Stripe;
use recoup::processor::{DisputedCharge, InvoicePage, Processor, ProcessorError};
use recoup::store::{Cases, MemoryStore, TestClock};
use recoup::worker::{Engine, Inputs};
use serde_json::{Value, json};

use crate::fake_stripe::{Decline, FakeStripe, Invoice, Subscription};
use crate::helpers::{STRIPE_KEY, failure_of, fixture, unix_now};

const INVOICE: &str = "in_echo";
const CUSTOMER: &str = "cus_echo";
const SUBSCRIPTION: &str = "sub_echo";

/// A stolen card, no retries, no nudges: the end decision comes a day after the failure.
fn policy(end: &str) -> Policy {
    let text =
        format!("version = 1\n[nudges]\nstep = []\n[end]\ngrace = \"1d\"\nno_new_card = {end}\n");
    recoup::policy::file::parse(&text, "echo.toml").expect("the test policy is valid")
}

/// Stripe, with one twist: right after it answers the end decision's call, the echo of that change
/// is applied to the stored case, as a worker handling the webhook would.
struct Echoing {
    stripe: Stripe,
    store: MemoryStore,
    policy: Policy,
    clock: Clock<MemoryStore>,
    echo: Mutex<Option<Event>>,
}

impl Echoing {
    async fn apply_echo(&self) {
        let Some(echo) = self.echo.lock().unwrap().take() else {
            return;
        };
        let other_worker = Engine {
            store: &self.store,
            policy: &self.policy,
            processor: None,
            clock: &self.clock,
            lease: None,
        };
        other_worker
            .apply(INVOICE, Inputs::One(&Input::Event(Box::new(echo))))
            .await
            .expect("the echo is applied");
    }
}

impl Processor for Echoing {
    fn charge<'a>(
        &'a self,
        invoice_id: &'a str,
        attempt: u32,
        payment_method: Option<&'a str>,
    ) -> BoxFuture<'a, ChargeResult> {
        self.stripe.charge(invoice_id, attempt, payment_method)
    }

    fn last_decline<'a>(
        &'a self,
        invoice_id: &'a str,
        payment_intent: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Declined>, ProcessorError>> {
        self.stripe.last_decline(invoice_id, payment_intent)
    }

    fn customer<'a>(
        &'a self,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CustomerFacts>, ProcessorError>> {
        self.stripe.customer(customer_id)
    }

    fn card_holder<'a>(
        &'a self,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<recoup::policy::expiring::CardHolder>, ProcessorError>> {
        self.stripe.card_holder(customer_id)
    }

    fn invoice_page<'a>(
        &'a self,
        invoice_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<InvoicePage>, ProcessorError>> {
        self.stripe.invoice_page(invoice_id)
    }

    fn portal_session<'a>(
        &'a self,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<String, ProcessorError>> {
        self.stripe.portal_session(customer_id)
    }

    fn end<'a>(&'a self, order: &'a EndOrder) -> BoxFuture<'a, EndResult> {
        Box::pin(async move {
            let result = self.stripe.end(order).await;
            self.apply_echo().await;
            result
        })
    }

    fn resume<'a>(
        &'a self,
        invoice_id: &'a str,
        subscription_id: &'a str,
    ) -> BoxFuture<'a, EndResult> {
        self.stripe.resume(invoice_id, subscription_id)
    }

    fn disputed_charge<'a>(
        &'a self,
        charge_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<DisputedCharge>, ProcessorError>> {
        self.stripe.disputed_charge(charge_id)
    }
}

/// A bundled event of `kind` with its own id, made now, with `object` merged into its object.
fn echo_of(kind: &str, object: Value) -> Event {
    let mut event: Value = serde_json::from_slice(&fixture(kind)).unwrap();
    event["id"] = format!("evt_echo_{kind}").into();
    event["created"] = unix_now().into();
    for (key, value) in object.as_object().unwrap() {
        event["data"]["object"][key] = value.clone();
    }
    let Ok(Parsed::Acted(event)) = parse(&serde_json::to_vec(&event).unwrap()) else {
        panic!("{kind} is an event recoup acts on");
    };
    *event
}

/// A failed invoice on a stolen card, its end decision `end` carried out with `echo` applied in
/// between; the case as it stands afterwards, and the fake Stripe. `failures` mutations fail first
/// (after backon's retries run out, the decision is made again ten minutes later).
async fn decided(end: &str, echo: Event, failures: &[u16]) -> (Case, FakeStripe, Setup) {
    let fake = FakeStripe::start();
    fake.add_invoice(
        INVOICE,
        Invoice::failed(CUSTOMER, Decline::visa("stolen_card")),
    );
    fake.add_subscription(SUBSCRIPTION, Subscription::active(CUSTOMER));
    let settings = StripeSettings {
        api_base: format!("http://{}", fake.addr),
        backoff_ms: 1,
        ..StripeSettings::default()
    };
    let store = MemoryStore::new();
    let setup = Setup {
        processor: Echoing {
            stripe: Stripe::new(&STRIPE_KEY.into(), &settings).unwrap(),
            store: store.clone(),
            policy: policy(end),
            clock: Clock::new(store.clone(), true),
            echo: Mutex::new(Some(echo)),
        },
    };
    let engine = setup.engine();
    let mut failure: Value = serde_json::from_slice(&failure_of(INVOICE)).unwrap();
    failure["data"]["object"]["customer"] = CUSTOMER.into();
    failure["data"]["object"]["parent"]["subscription_details"]["subscription"] =
        SUBSCRIPTION.into();
    let Ok(Parsed::Acted(failure)) = parse(&serde_json::to_vec(&failure).unwrap()) else {
        panic!("a failure is acted on");
    };
    engine
        .apply(INVOICE, Inputs::One(&Input::Event(failure)))
        .await
        .unwrap();
    let declined = setup
        .processor
        .stripe
        .last_decline(INVOICE, Some(&format!("pi_for_{INVOICE}")))
        .await
        .unwrap()
        .expect("the fake shows the decline");
    let charge = recoup::policy::Charge {
        attempt: 1,
        at: Timestamp::now(),
        result: ChargeResult::Declined(declined),
        fees: Vec::new(),
    };
    engine
        .apply(INVOICE, Inputs::One(&Input::Charge(Box::new(charge))))
        .await
        .unwrap();
    fake.fail_next_mutations(failures);
    let case = setup
        .run_timers(|case| case.decision.as_ref().is_some_and(|d| !d.outcome.to_redo()))
        .await;
    (case, fake, setup)
}

struct Setup {
    processor: Echoing,
}

impl Setup {
    fn engine(&self) -> Engine<'_, MemoryStore> {
        Engine {
            store: &self.processor.store,
            policy: &self.processor.policy,
            processor: Some(&self.processor),
            clock: &self.processor.clock,
            // As a worker runs it: calls saved as under way first, the claim renewed meanwhile.
            lease: Some(std::time::Duration::from_secs(10)),
        }
    }

    async fn case(&self) -> Case {
        self.processor
            .store
            .load_case(INVOICE)
            .await
            .unwrap()
            .unwrap()
    }

    /// Moves the test clock to each next timer of the case and fires it, until `done` holds.
    async fn run_timers(&self, done: impl Fn(&Case) -> bool) -> Case {
        for _ in 0..20 {
            let case = self.case().await;
            if done(&case) {
                return case;
            }
            let next = case
                .timers
                .iter()
                .map(|t| t.at)
                .min()
                .unwrap_or_else(|| panic!("the case waits for nothing: {case:#?}"));
            let now = self.processor.clock.now().await.unwrap();
            let ahead = (next - now).get_seconds().max(0) + 1;
            self.processor.store.advance_clock(ahead).await.unwrap();
            self.engine()
                .apply(INVOICE, Inputs::DueTimers(None))
                .await
                .unwrap();
        }
        panic!("never done: {:#?}", self.case().await);
    }
}

fn assert_carried_out(case: &Case, action: EndAction, state: State) {
    let decision = case.decision.as_ref().expect("a decision");
    assert_eq!(decision.action, action, "{case:#?}");
    assert!(
        matches!(
            decision.outcome,
            DecisionOutcome::CarriedOut | DecisionOutcome::FoundDone
        ),
        "{case:#?}"
    );
    assert_eq!(case.state, state, "{case:#?}");
    assert!(
        case.holds.is_empty(),
        "recoup's own change held the case: {case:#?}"
    );
}

#[tokio::test]
async fn a_pause_echoed_before_its_answer_is_saved_stays_recoups_and_is_resumed_after_payment() {
    for failures in [&[][..], &[500; 4][..]] {
        let echo = echo_of(
            "customer.subscription.updated",
            json!({"id": SUBSCRIPTION, "customer": CUSTOMER,
                   "pause_collection": {"behavior": "keep_as_draft", "resumes_at": null}}),
        );
        let end = r#"{ action = "pause", behavior = "keep_as_draft" }"#;
        let (case, fake, setup) = decided(end, echo, failures).await;
        assert_carried_out(&case, EndAction::Pause, State::Paused);
        assert!(
            fake.subscription(SUBSCRIPTION)
                .unwrap()
                .pause_collection
                .is_some()
        );

        // The customer pays: collection is resumed, as for any pause of recoup's.
        fake.set_invoice_status(INVOICE, "paid");
        let paid = echo_of(
            "invoice.paid",
            json!({"id": INVOICE, "customer": CUSTOMER,
                   "parent": {"subscription_details": {"subscription": SUBSCRIPTION}}}),
        );
        setup
            .engine()
            .apply(INVOICE, Inputs::One(&Input::Event(Box::new(paid))))
            .await
            .unwrap();
        let resumed = setup
            .run_timers(|case| {
                case.resumption
                    .as_ref()
                    .is_some_and(|r| !r.outcome.to_redo())
            })
            .await;
        assert_eq!(resumed.state, State::Recovered, "{resumed:#?}");
        assert_eq!(
            resumed.resumption.as_ref().unwrap().outcome,
            DecisionOutcome::CarriedOut
        );
        assert_eq!(
            fake.subscription(SUBSCRIPTION).unwrap().pause_collection,
            None
        );
    }
}

#[tokio::test]
async fn a_cancellation_echoed_before_its_answer_is_saved_stays_recoups() {
    for failures in [&[][..], &[500; 4][..]] {
        let echo = echo_of(
            "customer.subscription.deleted",
            json!({"id": SUBSCRIPTION, "customer": CUSTOMER, "status": "canceled"}),
        );
        let end = r#"{ action = "cancel", at_period_end = false }"#;
        let (case, fake, _setup) = decided(end, echo, failures).await;
        assert_carried_out(&case, EndAction::Cancel, State::Canceled);
        assert_eq!(fake.subscription(SUBSCRIPTION).unwrap().status, "canceled");
    }
}

#[tokio::test]
async fn a_write_off_echoed_before_its_answer_is_saved_stays_recoups() {
    for failures in [&[][..], &[500; 4][..]] {
        let echo = echo_of(
            "invoice.marked_uncollectible",
            json!({"id": INVOICE, "customer": CUSTOMER,
                   "parent": {"subscription_details": {"subscription": SUBSCRIPTION}}}),
        );
        let end = r#"{ action = "mark_uncollectible" }"#;
        let (case, _fake, _setup) = decided(end, echo, failures).await;
        assert_carried_out(&case, EndAction::MarkUncollectible, State::Closed);
        let closure = case.closure.as_ref().expect("closed");
        assert!(
            closure.reason.contains("recoup's decision"),
            "the write-off is told as recoup's: {case:#?}"
        );
    }
}
