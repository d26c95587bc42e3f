//! The recovery dashboard end to end: invoices driven by the real worker to known final outcomes —
//! recovered by recoup's retry, paid by the customer, canceled, paused — counted once each in
//! Redis on the day their outcome became final, and the figures checked exactly through
//! `GET /api/v1/dashboard` and the signed-in `/dashboard` page; the periods there is nothing to
//! show of; and what a busy day's counters cost Redis.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use recoup::dashboard::day::{Contribution, Field, LONGEST_DAY, Money, NudgeKey, Of, Payer};
use recoup::store::redis::day_key;
use recoup::store::{Dashboard, RedisStore};
use serde_json::{Value, json};

use crate::decisions::{customer, fail_on};
use crate::fake_stripe::{Decline, Outcome};
use crate::helpers::{
    API_TOKEN, Recoup, SETTLE, TestApp, TestRedis, invoice_event, plain_http, redis_settings,
    unix_now, wait_until,
};
use crate::page::session_at;

const DAY: i64 = 86_400;

/// One retry a day after an ambiguous decline, at any hour; no nudges, no learning; two days'
/// grace, then cancel — or pause, for customers whose metadata says `end = "pause"`.
const POLICY: &str = r#"version = 1
[retries]
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
[end]
exhausted = { action = "cancel", at_period_end = false }
no_new_card = { action = "cancel", at_period_end = false }
grace = "2d"
[[segment]]
name = "pausing"
customer_metadata = { end = "pause" }
[segment.end]
exhausted = { action = "pause", behavior = "keep_as_draft" }
no_new_card = { action = "pause", behavior = "keep_as_draft" }
"#;

/// The UTC date of an instant on the scheduler's clock.
fn date_of(at: jiff::Timestamp) -> Date {
    at.to_zoned(TimeZone::UTC).date()
}

/// `invoice.paid` for `invoice_id`, created now by the wall clock (Stripe's).
fn paid(event_id: &str, invoice_id: &str) -> Vec<u8> {
    invoice_event("invoice.paid", event_id, invoice_id, unix_now(), 2)
}

async fn dashboard(app: &TestApp, query: &str) -> Value {
    let answer = app.api_get(&format!("/api/v1/dashboard{query}")).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()
}

/// The page at `path` as the signed-in browser of `session` gets it: status and HTML.
async fn page(app: &TestApp, path: &str, session: Option<&str>) -> (u16, String) {
    let mut request = plain_http().get(app.url(path));
    if let Some(session) = session {
        request = request.header("cookie", session);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn final_outcomes_are_counted_once_on_their_day_and_the_api_and_the_page_agree() {
    let (app, _policy) = crate::decisions::app_with(POLICY, &[]).await;
    app.stripe.add_customer("cus_dash_pause", customer("pause"));
    let declined = || (0..3).map(|_| Outcome::Decline(Decline::visa("do_not_honor")));
    let invoices = [
        ("in_dash_retry", "cus_dash_retry", "sub_dash_retry"),
        ("in_dash_customer", "cus_dash_customer", "sub_dash_customer"),
        ("in_dash_cancel", "cus_dash_cancel", "sub_dash_cancel"),
        ("in_dash_pause", "cus_dash_pause", "sub_dash_pause"),
    ];
    for (invoice, customer, subscription) in invoices {
        // The first invoice's retry pays; the others' are declined.
        let retries: Vec<Outcome> = match invoice {
            "in_dash_retry" => Vec::new(),
            _ => declined().collect(),
        };
        fail_on(
            &app,
            invoice,
            (customer, subscription),
            "do_not_honor",
            retries,
        )
        .await;
        app.case_when(invoice, |c| c["decline"]["class"] == "ambiguous")
            .await;
    }
    let opened = app.advance_clock(1).await;
    // Nothing is final yet: nothing is counted.
    let empty = dashboard(&app, "").await;
    assert_eq!(empty["figures"]["invoices"], 0, "{empty}");
    assert_eq!(empty["figures"]["recovery_rate"], Value::Null);

    // The customer pays one invoice themselves, in Stripe, before any retry.
    app.deliver(paid("evt_dash_paid", "in_dash_customer")).await;
    app.case_when("in_dash_customer", |c| c["state"] == "recovered")
        .await;
    // A day later the retries: one pays, two are declined; two days' grace later, the ends.
    let retried = app.advance_clock(DAY + 3_600).await;
    app.case_when("in_dash_retry", |c| c["recovered_by"] == "retry")
        .await;
    for invoice in ["in_dash_cancel", "in_dash_pause"] {
        app.case_when(invoice, |c| c["attempts"].as_array().unwrap().len() == 2)
            .await;
    }
    let ended = app.advance_clock(2 * DAY + 3_600).await;
    app.case_when("in_dash_cancel", |c| c["state"] == "canceled")
        .await;
    app.case_when("in_dash_pause", |c| c["state"] == "paused")
        .await;
    // Later events save final cases again: each is still counted once.
    app.deliver(paid("evt_dash_paid_again", "in_dash_retry"))
        .await;
    app.deliver(paid("evt_dash_paid_twice", "in_dash_customer"))
        .await;
    for (invoice, event) in [
        ("in_dash_retry", "evt_dash_paid_again"),
        ("in_dash_customer", "evt_dash_paid_twice"),
    ] {
        app.case_when(invoice, |c| c["timeline"].to_string().contains(event))
            .await;
    }

    // An outcome is counted just after its case is saved: wait for the four to be counted.
    wait_until("the four final invoices to be counted", SETTLE, || async {
        dashboard(&app, "").await["figures"]["invoices"] == 4
    })
    .await;
    let answer = dashboard(&app, "").await;
    let f = &answer["figures"];
    // The default period: the last 30 days by the scheduler's clock, today included.
    let today = date_of(ended);
    assert_eq!(f["to"], today.to_string());
    assert_eq!(
        f["from"],
        today
            .checked_sub(jiff::Span::new().days(29))
            .unwrap()
            .to_string()
    );
    assert_eq!(
        (&f["invoices"], &f["recovered"]),
        (&json!(4), &json!(2)),
        "{f}"
    );
    assert_eq!(f["recovery_rate"], 0.5);
    assert_eq!(
        f["recovered_by"],
        json!({"retry": 1, "customer_link": 0, "customer_other": 1})
    );
    assert_eq!(
        f["revenue"],
        json!([{"currency": "usd", "invoices": 4, "due": 4 * 4900, "recovered": 2 * 4900}])
    );
    // Paid in Stripe the moment it failed (0 whole days), and by the retry a day after (1).
    assert_eq!(
        f["days_to_recover"],
        json!({"recoveries": 2, "median": {"days": 0, "more": false}, "p90": {"days": 1, "more": false}})
    );
    assert_eq!(
        f["by_decline_class"],
        json!([{"name": "ambiguous", "invoices": 4, "recovered": 2, "recovery_rate": 0.5}])
    );
    assert_eq!(
        f["by_segment"],
        json!([
            {"name": "", "invoices": 3, "recovered": 2, "recovery_rate": 2.0 / 3.0},
            {"name": "pausing", "invoices": 1, "recovered": 0, "recovery_rate": 0.0}
        ])
    );
    assert_eq!(
        f["final_states"],
        json!([
            {"name": "recovered", "count": 2},
            {"name": "canceled", "count": 1},
            {"name": "paused", "count": 1}
        ])
    );
    assert_eq!(
        f["end_decisions"],
        json!([{"name": "cancel", "count": 1}, {"name": "pause", "count": 1}])
    );
    assert_eq!(f["by_nudge"], json!([]));
    assert_eq!(f["network_refusals"], json!([]));
    assert_eq!(answer["experiments"], json!([]));
    // Each invoice on the day its outcome became final by the scheduler's clock.
    let daily = f["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 30);
    let on = |date: Date| {
        daily
            .iter()
            .filter(|d| d["date"] == date.to_string())
            .map(|d| {
                (
                    d["invoices"].as_u64().unwrap(),
                    d["recovered"].as_u64().unwrap(),
                )
            })
            .fold((0, 0), |(i, r), (di, dr)| (i + di, r + dr))
    };
    let mut expected = std::collections::BTreeMap::new();
    for (at, outcomes) in [(opened, (1, 1)), (retried, (1, 1)), (ended, (2, 0))] {
        let day: &mut (u64, u64) = expected.entry(date_of(at)).or_default();
        *day = (day.0 + outcomes.0, day.1 + outcomes.1);
    }
    for (date, outcomes) in &expected {
        assert_eq!(on(*date), *outcomes, "{date}: {f}");
    }
    let total = daily
        .iter()
        .map(|d| d["invoices"].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(total, 4);

    // In Redis: one hash per day, forgotten after the 400 days kept.
    let mut redis = app.redis.conn().await;
    let key = day_key(date_of(ended));
    let invoices: i64 = redis::cmd("HGET")
        .arg(&key)
        .arg("invoices")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(invoices, expected[&date_of(ended)].0 as i64);
    let expires: i64 = redis::cmd("EXPIRETIME")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    let forgotten = date_of(ended)
        .checked_add(jiff::Span::new().days(400))
        .unwrap()
        .to_zoned(TimeZone::UTC)
        .unwrap()
        .timestamp();
    assert_eq!(
        expires,
        forgotten.as_second(),
        "kept to the end of its 400th day"
    );

    // The page shows the same figures to a signed-in agent.
    let session = session_at(&format!("http://{}", app.addr), API_TOKEN).await;
    let (status, html) = page(&app, "/dashboard", Some(&session)).await;
    assert_eq!(status, 200, "{html}");
    for shown in [
        "50.0% (2 recovered of 4 final invoices)",
        "$98.00 of $196.00 due",
        "recoup&#x27;s retry 1; the customer after an update link 0; the customer otherwise 1",
        "median 0 days, 90th percentile 1 day (of 2 recoveries)",
        "<tr><td>ambiguous</td><td>4</td><td>2</td><td>50.0%</td></tr>",
        "<tr><td>pausing</td><td>1</td><td>0</td><td>0.0%</td></tr>",
        "<tr><td>cancel</td><td>1</td></tr>",
        "<tr><td>canceled</td><td>1</td></tr>",
        "The policy runs no experiment.",
    ] {
        assert!(html.contains(shown), "{shown:?} in {html}");
    }
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(html.contains(&format!(r#"name="to" type="date" value="{today}""#)));

    // Signed out, the dashboard is the sign-in form and shows nothing.
    let (status, html) = page(&app, "/dashboard", None).await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"action="/signin""#), "{html}");
    assert!(!html.contains("final invoices"), "{html}");
    // The API needs its token.
    assert_eq!(app.get("/api/v1/dashboard").await.status, 401);
}

#[tokio::test]
async fn a_period_there_is_nothing_to_show_of_is_refused_with_the_reason() {
    let (app, _policy) = crate::decisions::app_with(POLICY, &[]).await;
    let today = date_of(app.advance_clock(1).await);
    let back = |days: i64| {
        today
            .checked_sub(jiff::Span::new().days(days))
            .unwrap()
            .to_string()
    };
    let session = session_at(&format!("http://{}", app.addr), API_TOKEN).await;
    let refused = [
        ("?from=2026-13-01", "2026-13-01&quot; is not a date"),
        (
            "?to=<b>soon</b>",
            "&lt;b&gt;soon&lt;&#x2f;b&gt;&quot; is not a date",
        ),
        (
            &format!("?from={}&to={}", back(1), back(2)),
            "after it ends",
        ),
        (
            &format!("?from={}", back(400)),
            "only the last 400 days are kept",
        ),
    ];
    for (query, says) in refused {
        let (status, html) = page(&app, &format!("/dashboard{query}"), Some(&session)).await;
        assert_eq!(status, 400, "{query}: {html}");
        assert!(html.contains(says), "{query}: {says:?} in {html}");
        assert!(!html.contains("<svg"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        let answer = app.api_get(&format!("/api/v1/dashboard{query}")).await;
        assert_eq!(answer.status, 400, "{query}");
        assert!(answer.json()["error"].is_string(), "{}", answer.text);
    }
    // The oldest day kept is still there to show; so is one day.
    for query in [
        format!("?from={}", back(399)),
        format!("?from={today}&to={today}"),
    ] {
        let (status, _) = page(&app, &format!("/dashboard{query}"), Some(&session)).await;
        assert_eq!(status, 200, "{query}");
    }
}

/// The contribution of an invoice of a busy day: `n` picks its currency, decline class, segment,
/// nudges, end and days to recover from realistic spreads.
fn busy(n: usize) -> Contribution {
    let pick = |options: &[&str]| options[n % options.len()].to_owned();
    let currency = pick(&["usd", "usd", "eur", "gbp", "cad", "aud"]);
    let class = pick(&[
        "soft",
        "soft",
        "ambiguous",
        "card_data",
        "action_required",
        "hard",
    ]);
    let segment = pick(&["", "", "annual", "enterprise", "monthly small"]);
    let recovered = !n.is_multiple_of(3);
    let state = if recovered {
        "recovered".to_owned()
    } else {
        pick(&["canceled", "paused", "closed"])
    };
    let mut outcome = vec![
        (Field::Invoices, 1),
        (Field::State(state), 1),
        (Field::Currency(currency.clone(), Money::Invoices), 1),
        (
            Field::Currency(currency.clone(), Money::Due),
            4_900 + n as i64,
        ),
        (Field::Class(class.clone(), Of::Invoices), 1),
        (Field::Segment(segment.clone(), Of::Invoices), 1),
    ];
    let nudges: Vec<NudgeKey> = (1..=(n % 4) as u32)
        .flat_map(|tier| {
            ["email", "sms"].map(|channel| NudgeKey {
                channel: channel.to_owned(),
                kind: (if tier == 3 {
                    "final_notice"
                } else {
                    "payment_failed"
                })
                .to_owned(),
                tier,
            })
        })
        .collect();
    outcome.extend(
        nudges
            .iter()
            .map(|k| (Field::Nudge(k.clone(), Of::Invoices), 1)),
    );
    if !recovered {
        outcome.push((
            Field::End(pick(&["cancel", "pause", "mark_uncollectible"])),
            1,
        ));
    }
    if n.is_multiple_of(7) {
        outcome.push((Field::Refused(pick(&["visa", "mastercard"])), 1));
    }
    // One customer in five answered the feedback link.
    let answer = n.is_multiple_of(5).then(|| {
        pick(&[
            "card_changed",
            "cant_pay_now",
            "want_to_cancel",
            "something_else",
        ])
    });
    outcome.extend(
        answer
            .iter()
            .map(|a| (Field::Answer(a.clone(), Of::Invoices), 1)),
    );
    let recovery = if recovered {
        let mut recovery = vec![
            (Field::Recovered, 1),
            (
                Field::By([Payer::Retry, Payer::Link, Payer::Other][n / 3 % 3]),
                1,
            ),
            (Field::Currency(currency, Money::Recovered), 4_900),
            (Field::Class(class, Of::Recovered), 1),
            (Field::Segment(segment, Of::Recovered), 1),
            (Field::Days((n as u32 * 7) % (LONGEST_DAY + 2)), 1),
        ];
        recovery.extend(
            nudges
                .into_iter()
                .map(|k| (Field::Nudge(k, Of::Recovered), 1)),
        );
        recovery.extend(answer.map(|a| (Field::Answer(a, Of::Recovered), 1)));
        recovery
    } else {
        Vec::new()
    };
    Contribution { outcome, recovery }
}

/// Counts `invoices` busy invoices on `day` in the store.
pub(crate) async fn count_busy_day(store: &RedisStore, day: Date, invoices: usize, tag: &str) {
    for n in 0..invoices {
        let counted = store
            .count_day(day, &format!("in_{tag}_{day}_{n}"), &busy(n))
            .await
            .unwrap();
        assert!(counted);
    }
}

#[tokio::test]
async fn a_busy_days_counters_cost_redis_a_few_kib_however_many_invoices_it_had() {
    let redis = TestRedis::start();
    let store = RedisStore::connect(&redis_settings(&redis)).await.unwrap();
    let mut conn = redis.conn().await;
    let day = jiff::civil::date(2026, 12, 1);
    let mut sizes = Vec::new();
    for invoices in [1_000, 4_000] {
        count_busy_day(&store, day, invoices, &invoices.to_string()).await;
        let fields: i64 = redis::cmd("HLEN")
            .arg(day_key(day))
            .query_async(&mut conn)
            .await
            .unwrap();
        let bytes: i64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(day_key(day))
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut conn)
            .await
            .unwrap();
        println!("a day of {invoices} final invoices: {fields} fields, {bytes} bytes");
        sizes.push((fields, bytes));
    }
    // Beside the days, each counted invoice's mark, until its case is forgotten.
    let mark: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(format!("recoup:{{dash}}:final:in_1000_{day}_999"))
        .query_async(&mut conn)
        .await
        .unwrap();
    println!("an invoice's mark: {mark} bytes");
    assert!((40..200).contains(&mark), "{mark}");
    // Every realistic field is there after the first thousand; four times the invoices add none.
    assert_eq!(sizes[0].0, sizes[1].0, "{sizes:?}");
    assert!(sizes[0].0 > 100, "a realistically full day: {sizes:?}");
    assert!(sizes[1].1 < 12 * 1024, "{sizes:?}");
    // The figures the day's counters come to are the ones counted.
    let read = store
        .days(&recoup::dashboard::period::Period { from: day, to: day })
        .await
        .unwrap();
    assert_eq!(read[&day].get(&Field::Invoices), 5_000);
}
