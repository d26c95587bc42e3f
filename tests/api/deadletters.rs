//! Dead letters that can be replayed: `recoup deadletters list|show|replay`, the cap on entries
//! that keep failing for passing reasons, entries a newer release wrote, and parked wake-ups.

use std::time::Duration;

use recoup::store::redis::{INBOX_STREAM, case_key, due_key};
use recoup::store::{Cases, Inbox, Ingest, RedisStore, Timers, shard_of};

use crate::helpers::{
    RecoupProcess, TestRedis, event, metric_value, recoup_command, redis_settings, wait_until,
};

const LONG: Duration = Duration::from_secs(60);

/// Runs `recoup deadletters <args>` against `redis`: exit code, stdout, stderr.
fn deadletters(redis: &TestRedis, args: &[&str]) -> (i32, String, String) {
    let output = recoup_command()
        .arg("deadletters")
        .args(args)
        .env("REDIS_URL", redis.url())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The wake-up of `invoice` in its due set, if it has one.
async fn due_score(redis: &TestRedis, invoice: &str) -> Option<f64> {
    redis::cmd("ZSCORE")
        .arg(due_key(shard_of(invoice)))
        .arg(invoice)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap()
}

async fn set(redis: &TestRedis, key: &str, value: &str) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_dead_lettered_event_is_listed_shown_and_replayed_once_its_cause_is_fixed() {
    let redis = TestRedis::start();
    let store = RedisStore::connect(&redis_settings(&redis)).await.unwrap();
    // A case that cannot be read makes every attempt at its event fail.
    set(&redis, &case_key("in_dead"), "7:not a case").await;
    store.ingest(&event("evt_dead", "in_dead")).await.unwrap();
    let _worker =
        RecoupProcess::serve_as(&redis, "worker", &[("RECOUP_WORKER__LEASE_SECS", "1")]).await;
    wait_until("the event to be dead-lettered", LONG, || async {
        !store.dead_letters(10).await.unwrap().is_empty()
    })
    .await;

    // Stripe's Resend keeps the event id: recoup has it already.
    assert_eq!(
        store.ingest(&event("evt_dead", "in_dead")).await.unwrap(),
        Ingest::Duplicate
    );

    let (code, listed, _) = deadletters(&redis, &["list"]);
    assert_eq!(code, 0);
    assert!(listed.contains("evt_dead"), "{listed}");
    assert!(listed.contains("invoice.payment_failed"), "{listed}");
    let dead_id = store.dead_letters(1).await.unwrap()[0].id.clone();
    assert!(listed.contains(&dead_id), "{listed}");
    let (code, shown, _) = deadletters(&redis, &["show", "evt_dead"]);
    assert_eq!(code, 0);
    assert!(
        shown.contains("5 (") && shown.contains("unreadable"),
        "{shown}"
    );
    assert!(
        shown.contains("\"in_dead\""),
        "the event as stored: {shown}"
    );

    // The cause fixed, the stored event goes back into the inbox and is applied.
    let _: () = redis::cmd("DEL")
        .arg(case_key("in_dead"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let (code, replayed, stderr) = deadletters(&redis, &["replay", &dead_id]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        replayed.contains("replayed") && replayed.contains("evt_dead"),
        "{replayed}"
    );
    wait_until("the replayed event to open its case", LONG, || async {
        store.load_case("in_dead").await.unwrap().is_some()
    })
    .await;
    assert!(store.dead_letters(10).await.unwrap().is_empty());
    let case = store.load_case("in_dead").await.unwrap().unwrap();
    assert!(case.has_seen("evt_dead"));

    // A name that is neither is a user error.
    let (code, _, stderr) = deadletters(&redis, &["replay", "evt_no_such"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("evt_no_such"), "{stderr}");
    let (code, _, _) = deadletters(&redis, &["replay"]);
    assert_eq!(code, 1, "an id or --all is required");
}

#[tokio::test]
async fn an_entry_failing_for_passing_reasons_is_dead_lettered_after_its_deliveries_run_out() {
    let redis = TestRedis::start();
    let store = RedisStore::connect(&redis_settings(&redis)).await.unwrap();
    // Stripe is unreachable, so the customer behind the failure can never be read: a passing
    // fault, retried without counting, until the entry has been delivered for about 3 s.
    let nowhere = format!("http://127.0.0.1:{}", crate::helpers::free_port());
    let worker = RecoupProcess::serve_as(
        &redis,
        "worker",
        &[
            ("RECOUP_WORKER__LEASE_SECS", "1"),
            ("RECOUP_WORKER__DEAD_LETTER_AFTER_SECS", "3"),
            ("STRIPE_API_BASE", nowhere.as_str()),
            ("RECOUP_STRIPE__RETRIES", "0"),
            ("RECOUP_STRIPE__TIMEOUT_MS", "200"),
        ],
    )
    .await;
    store.ingest(&event("evt_stuck", "in_stuck")).await.unwrap();
    wait_until("the entry to be given up on", LONG, || async {
        !store.dead_letters(10).await.unwrap().is_empty()
    })
    .await;
    let dead = &store.dead_letters(10).await.unwrap()[0];
    assert_eq!(dead.event_id, "evt_stuck");
    assert!(dead.deliveries >= 3, "{dead:?}");
    assert!(dead.error.contains("still failing after"), "{}", dead.error);
    assert_eq!(redis.inbox_len().await, 0);
    let metrics = worker.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"recoup_inbox_entries_total{outcome="dead_lettered"}"#
        ),
        1,
        "{metrics}"
    );
}

#[tokio::test]
async fn an_entry_only_a_newer_release_reads_is_left_for_it_not_dead_lettered() {
    let redis = TestRedis::start();
    let store = RedisStore::connect(&redis_settings(&redis)).await.unwrap();
    let mut conn = redis.conn().await;
    // What a newer receiver stored during a rolling deploy: an entry format this worker does not
    // know, about an event it cannot parse.
    let _: String = redis::cmd("XADD")
        .arg(INBOX_STREAM)
        .arg("*")
        .arg("id")
        .arg("evt_future")
        .arg("type")
        .arg("invoice.overdue")
        .arg("event")
        .arg(r#"{"id":"evt_future","kind":"invoice.overdue","shape":2}"#)
        .arg("v")
        .arg("2")
        .query_async(&mut conn)
        .await
        .unwrap();
    store.ingest(&event("evt_now", "in_now")).await.unwrap();
    let _old =
        RecoupProcess::serve_as(&redis, "worker", &[("RECOUP_WORKER__LEASE_SECS", "1")]).await;
    wait_until("the readable entry to be applied", LONG, || async {
        store.load_case("in_now").await.unwrap().is_some()
    })
    .await;
    // Several leases later the newer entry is still in the inbox, waiting for a newer worker.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(redis.inbox_len().await, 1);
    assert!(store.dead_letters(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_wake_up_that_keeps_failing_is_parked_listed_and_put_back() {
    let redis = TestRedis::start();
    let store = RedisStore::connect(&redis_settings(&redis)).await.unwrap();
    let invoice = "in_parked";
    set(&redis, &case_key(invoice), "7:not a case").await;
    let _: () = redis::cmd("ZADD")
        .arg(due_key(shard_of(invoice)))
        .arg(jiff::Timestamp::now().as_millisecond())
        .arg(invoice)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let worker =
        RecoupProcess::serve_as(&redis, "worker", &[("RECOUP_WORKER__LEASE_SECS", "1")]).await;
    wait_until("the wake-up to be parked", LONG, || async {
        !store.parked().await.unwrap().is_empty()
    })
    .await;
    let parked = &store.parked().await.unwrap()[0];
    assert_eq!(parked.invoice_id, invoice);
    assert_eq!(parked.failures, 5);
    assert!(parked.error.contains("unreadable"), "{}", parked.error);
    let due = due_score(&redis, invoice).await;
    assert_eq!(due, None, "no longer tried every lease");
    assert_eq!(
        worker.counter("recoup_wakeups_parked_total").await,
        1,
        "counted"
    );
    let (code, listed, _) = deadletters(&redis, &["list"]);
    assert_eq!(code, 0);
    assert!(
        listed.contains("parked wake-ups") && listed.contains(invoice),
        "{listed}"
    );

    let (code, replayed, stderr) = deadletters(&redis, &["replay", invoice]);
    assert_eq!(code, 0, "{stderr}");
    assert!(replayed.contains("back on the schedule"), "{replayed}");
    let due = due_score(&redis, invoice).await;
    assert!(due.is_some(), "scheduled again");
    let (code, _, stderr) = deadletters(&redis, &["show", "in_not_parked"]);
    assert_eq!(code, 1, "{stderr}");
}
