//! Experiments end to end: customers split into a holdout and a treated arm by the real worker,
//! each customer in one arm for every invoice and across a restart of the recoup process, their
//! final outcomes counted in Redis, and the report — through the API and `recoup experiments` —
//! with its numbers and intervals checked on hand-built outcomes.

use recoup::policy::experiment::outcome::Contribution;
use recoup::policy::file::parse;
use recoup::policy::{Assignment, Experiment};
use recoup::server::Role;
use recoup::store::{Experiments, RedisStore};
use serde_json::Value;

use crate::fake_stripe::{Decline, FakeStripe, Invoice};
use crate::helpers::{
    API_TOKENS, Recoup, RecoupProcess, SETTLE, TestApp, TestRedis, failure_of, invoice_event,
    output_of, recoup_command, redis_settings, unix_now, wait_until,
};

/// A retry a day after an ambiguous decline, at any hour, no nudges, no learning; half the
/// customers held out on the baseline plan.
const POLICY: &str = r#"version = 1
[retries]
soft = ["1d"]
ambiguous = ["1d"]
max_attempts = 2
[timing]
window = [0, 24]
paydays = []
jitter = "0s"
[nudges]
step = []
[learning]
enabled = false

[[experiment]]
name = "proof"
key = "proof-2026"

[[experiment.arm]]
name = "holdout"
share = 0.5
holdout = true

[[experiment.arm]]
name = "quick"
share = 0.5
"#;

fn experiment() -> Experiment {
    parse(POLICY, "policy.toml").unwrap().experiment.unwrap()
}

/// A customer id the experiment puts in `arm`.
fn customer_in(arm: &str) -> String {
    let experiment = experiment();
    (0..)
        .map(|n| format!("cus_exp{n}"))
        .find(|c| experiment.assign(c).name == arm)
        .unwrap()
}

/// Stripe's failure of `invoice_id`'s first attempt for `customer`.
fn failure_for(invoice_id: &str, customer: &str) -> Vec<u8> {
    let mut event: Value = serde_json::from_slice(&failure_of(invoice_id)).unwrap();
    event["data"]["object"]["customer"] = customer.into();
    serde_json::to_vec(&event).unwrap()
}

fn hours_between(case: &Value, from: &str, to: &str) -> i64 {
    let at = |field: &str| -> jiff::Timestamp { case[field].as_str().unwrap().parse().unwrap() };
    at(to).duration_since(at(from)).as_hours()
}

/// The one experiment's report from `GET /api/v1/experiments`, arms by name.
async fn report(recoup: &impl Recoup) -> (Value, Value, Value) {
    let answer = recoup.api_get("/api/v1/experiments").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let report = answer.json()["experiments"][0].clone();
    let arm = |name: &str| {
        report["arms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["arm"] == name)
            .unwrap()
            .clone()
    };
    (arm("holdout"), arm("quick"), report)
}

#[tokio::test]
async fn an_experiment_with_a_holdout_runs_end_to_end_and_keeps_each_customer_in_one_arm() {
    let redis = TestRedis::start();
    let stripe = FakeStripe::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, POLICY).unwrap();
    let base = format!("http://{}", stripe.addr);
    let env = [
        ("STRIPE_API_BASE", base.as_str()),
        ("RECOUP_API_TOKENS", API_TOKENS),
        ("RECOUP_TEST_CLOCK", "1"),
        ("RECOUP_STRIPE__BACKOFF_MS", "5"),
        ("RECOUP_POLICY", path.to_str().unwrap()),
    ];
    let (quick, held) = (customer_in("quick"), customer_in("holdout"));
    let mut first = RecoupProcess::serve_as(&redis, "all", &env).await;
    for (invoice, customer) in [("in_exp_q1", &quick), ("in_exp_h1", &held)] {
        stripe.add_invoice(
            invoice,
            Invoice::failed(customer, Decline::visa("do_not_honor")),
        );
        first.deliver(failure_for(invoice, customer)).await;
    }
    let treated = first
        .case_when("in_exp_q1", |c| c["next_attempt_at"].is_string())
        .await;
    let holdout = first
        .case_when("in_exp_h1", |c| c["next_attempt_at"].is_string())
        .await;
    // Each case records its customer's arm and says so on its timeline...
    assert_eq!(treated["arm"]["arm"], "quick", "{treated}");
    assert_eq!(
        holdout["arm"],
        serde_json::json!({"experiment": "proof", "arm": "holdout", "holdout": true})
    );
    let opened = treated["timeline"][0]["detail"].as_str().unwrap();
    assert!(
        opened.contains("experiment \"proof\": they are in arm \"quick\""),
        "{opened}"
    );
    // ...and is dunned by it: the policy's retry after a day; the baseline's after three.
    assert_eq!(hours_between(&treated, "failed_at", "next_attempt_at"), 24);
    assert_eq!(hours_between(&holdout, "failed_at", "next_attempt_at"), 72);

    // The treated invoice is paid by its retry; the held-out one is voided in Stripe.
    first.advance_clock(25 * 3600).await;
    first
        .case_when("in_exp_q1", |c| c["state"] == "recovered")
        .await;
    let voided = invoice_event("invoice.voided", "evt_exp_void", "in_exp_h1", unix_now(), 1);
    first.deliver(voided).await;
    first
        .case_when("in_exp_h1", |c| c["state"] == "closed")
        .await;
    // A later event saves the recovered case again: counted once all the same.
    let paid = invoice_event(
        "invoice.paid",
        "evt_exp_paid_again",
        "in_exp_q1",
        unix_now(),
        2,
    );
    first.deliver(paid).await;
    first
        .case_when("in_exp_q1", |c| {
            c["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["event"] == "evt_exp_paid_again")
        })
        .await;

    // A new recoup process, the same Redis: the customer's next invoice lands in the same arm.
    first.signal("TERM");
    first.child.wait().unwrap();
    let second = RecoupProcess::serve_as(&redis, "all", &env).await;
    stripe.add_invoice(
        "in_exp_q2",
        Invoice::failed(&quick, Decline::visa("do_not_honor")),
    );
    second.deliver(failure_for("in_exp_q2", &quick)).await;
    // Its failure is dated by the wall clock, a day behind the test clock the first process moved
    // on: its retry may be due, made and paid before anyone looks, so the arm is what is waited for.
    let again = second
        .case_when("in_exp_q2", |c| c["arm"].is_object())
        .await;
    assert_eq!(again["arm"]["arm"], "quick", "{again}");
    second.advance_clock(25 * 3600).await;
    second
        .case_when("in_exp_q2", |c| c["state"] == "recovered")
        .await;

    // The counters are read as each arm's figures. An outcome is counted just after its case is
    // saved, so the report may trail the case by a moment: wait for the last one to be counted.
    wait_until("every final case to be counted", SETTLE, || async {
        let (holdout, treated, _) = report(&second).await;
        treated["invoices"] == 2 && holdout["invoices"] == 1
    })
    .await;
    let (holdout, treated, whole) = report(&second).await;
    assert_eq!(
        (
            &treated["invoices"],
            &treated["recovered"],
            &treated["recovery_rate"]
        ),
        (&2.into(), &2.into(), &1.0.into()),
        "{whole}"
    );
    assert_eq!(treated["revenue"][0]["currency"], "usd");
    assert_eq!(treated["revenue"][0]["recovered"], 2 * 4900);
    assert_eq!(
        treated["attempts_per_invoice"], 1.0,
        "one retry each after Stripe's failure"
    );
    assert_eq!(
        (
            &holdout["invoices"],
            &holdout["recovered"],
            &holdout["lost_customers"]
        ),
        (&1.into(), &0.into(), &0.into()),
        "{whole}"
    );
    // Three final invoices are far from enough to compare.
    assert_eq!(treated["versus_holdout"]["enough_data"], false);
    assert!(treated["versus_holdout"]["rate_difference"].is_null());

    // `recoup experiments` reads the same counters.
    let (code, stdout, stderr) = output_of(
        recoup_command()
            .args(["experiments", "--json"])
            .env("REDIS_URL", redis.url())
            .env("RECOUP_POLICY", &path),
    );
    assert_eq!(code, Some(0), "{stderr}");
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["experiments"][0], whole);
}

/// `count` final invoices of one arm, the first `recovered` of them paid 1000 (cents).
async fn count(store: &RedisStore, arm: &str, recovered: usize, of: usize) {
    let assigned = Assignment {
        experiment: "proof".to_owned(),
        arm: arm.to_owned(),
        holdout: arm == "holdout",
    };
    for n in 0..of {
        let paid = n < recovered;
        let outcome = Contribution {
            currency: "usd".to_owned(),
            recovered: paid.then_some(1000),
            attempts: 2,
            nudges: 1,
            lost: !paid,
        };
        let counted = store
            .count_final(&assigned, &format!("in_{arm}_{n}"), &outcome)
            .await
            .unwrap();
        assert!(counted);
    }
}

#[tokio::test]
async fn the_report_gives_each_arm_and_its_difference_to_the_holdout_with_95_percent_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, POLICY).unwrap();
    let app = TestApp::spawn_as(
        Role::Receiver,
        &[
            ("RECOUP_API_TOKENS", API_TOKENS),
            ("RECOUP_POLICY", path.to_str().unwrap()),
        ],
    )
    .await;
    // Nothing counted yet: both arms empty, nothing to compare.
    let (_, treated, _) = report(&app).await;
    assert_eq!(
        (&treated["invoices"], &treated["recovery_rate"]),
        (&0.into(), &Value::Null)
    );
    // Hand-built outcomes: the holdout recovers 40 of 100, the treated arm 60 of 100, 1000 each.
    let store = RedisStore::connect(&redis_settings(&app.redis))
        .await
        .unwrap();
    count(&store, "holdout", 40, 100).await;
    count(&store, "quick", 60, 100).await;
    let (holdout, treated, whole) = report(&app).await;
    assert_eq!(holdout["recovery_rate"], 0.4);
    assert_eq!(treated["recovery_rate"], 0.6);
    assert_eq!(treated["lost_customers"], 40);
    assert_eq!(treated["nudges_per_invoice"], 1.0);
    assert_eq!(treated["revenue"][0]["per_invoice"], 600.0);
    assert!(holdout["versus_holdout"].is_null());
    let versus = &treated["versus_holdout"];
    assert_eq!(versus["enough_data"], true, "{whole}");
    let near = |seen: &Value, want: f64, within: f64| {
        let seen = seen.as_f64().unwrap();
        assert!((seen - want).abs() < within, "{seen} ≠ {want}: {whole}");
    };
    // Newcombe's interval of 60/100 − 40/100, worked by hand in the core's stats tests:
    // 0.2 − 0.138589 = 0.061411 to 0.2 + 0.128126 = 0.328126.
    let rate = &versus["rate_difference"];
    near(&rate["estimate"], 0.2, 1e-9);
    near(&rate["low"], 0.061_411, 1e-5);
    near(&rate["high"], 0.328_126, 1e-5);
    // Revenue per invoice, 600 − 400 = 200 cents. Each arm's variance from its sums:
    // (60 · 1000² − 60000²/100) / 99 = 242 424.24, and the same for 40 of 100; the standard
    // error √(2 · 242 424.24 / 100) = 69.631, so 200 ± 1.959964 · 69.631 = 63.53 to 336.47.
    let revenue = &versus["revenue_per_invoice"]["usd"];
    near(&revenue["estimate"], 200.0, 1e-9);
    near(&revenue["low"], 63.5256, 1e-3);
    near(&revenue["high"], 336.4744, 1e-3);
    // 60% against 40%: 97 invoices per arm would show the difference at 80% power.
    assert_eq!(versus["invoices_needed"], 97);
    assert_eq!(
        whole["methods"]["enough_data"],
        "at least 30 final invoices in each of the two arms, and in each at least 5 recovered and 5 not recovered"
    );

    // The command's table says the same in words.
    let (code, stdout, stderr) = output_of(
        recoup_command()
            .arg("experiments")
            .env("REDIS_URL", app.redis.url())
            .env("RECOUP_POLICY", &path),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("quick vs holdout: recovery rate +20.0 points (95% CI +6.1 to +32.8)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("revenue per invoice +200 usd (95% CI +64 to +336)"),
        "{stdout}"
    );

    // The report needs a token like the rest of the API.
    let anonymous = app.get("/api/v1/experiments").await;
    assert_eq!(anonymous.status, 401);
}
