//! Learning in `serve`: a retry's outcome through the fake Stripe becomes evidence in Redis, the
//! worker reads it back, a later case's retry is chosen by it and its timeline says why; the
//! evidence moves in and out with `recoup learn export|import`, and a bad file changes nothing.

use recoup::server::Role;

use crate::fake_stripe::{Decline, Invoice};
use crate::helpers::{
    API_TOKENS, Recoup, RecoupProcess, SETTLE, TestApp, TestRedis, metric_value, output_of,
    recoup_command, wait_until,
};

const DAY: i64 = 86_400;

/// Learning with no evidence to wait for, and nothing but retries.
const POLICY: &str =
    "version = 1\n\n[learning]\nmin_evidence = 1\nexplore = 0\n\n[nudges]\nstep = []\n";

fn learn(redis: &TestRedis, args: &[&str]) -> (Option<i32>, String, String) {
    output_of(
        recoup_command()
            .arg("learn")
            .args(args)
            .env("REDIS_URL", redis.url()),
    )
}

#[tokio::test]
async fn an_outcome_through_stripe_becomes_evidence_that_times_a_later_retry_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let env = [
        ("RECOUP_API_TOKENS", API_TOKENS),
        ("RECOUP_TEST_CLOCK", "1"),
        ("RECOUP_POLICY", policy.to_str().unwrap()),
        ("RECOUP_WORKER__EVIDENCE_SECS", "1"),
    ];
    let app = TestApp::spawn_as(Role::All, &env).await;

    // Before any outcome, the plan is the static one.
    let first = app
        .fail(
            "in_learn_first",
            Invoice::failed("cus_learn_1", Decline::visa("insufficient_funds")),
        )
        .await;
    let story = first["timeline"].to_string();
    assert!(story.contains("on the next payday"), "{story}");
    assert!(!story.contains("earlier attempts"), "{story}");

    // Its retry is paid: one outcome, counted in Redis and read back by the worker.
    let now = app.advance_clock(20 * DAY).await;
    app.case_when("in_learn_first", |c| c["state"] == "recovered")
        .await;
    wait_until("the worker to read the evidence back", SETTLE, || async {
        metric_value(&app.get("/metrics").await.text, "recoup_evidence_attempts") >= 1
    })
    .await;

    // A later failure's retry is chosen by that evidence, and its timeline says why. It fails at
    // the test clock's now, so its retry lies ahead and is not made (and counted) before the
    // evidence is exported below.
    let later = app
        .fail_at(
            "in_learn_later",
            Invoice::failed("cus_learn_2", Decline::visa("insufficient_funds")),
            now.as_second(),
        )
        .await;
    let story = later["timeline"].to_string();
    assert!(
        story.contains("chosen by what earlier attempts came to"),
        "{story}"
    );
    assert!(
        story.contains("tries of insufficient_funds declines"),
        "{story}"
    );
    assert!(story.contains("the static plan said"), "{story}");
    // A retry was planned at that moment, still ahead.
    assert!(
        story.contains("next retry ") && story.contains("retry 1 chosen by"),
        "{later}"
    );
    let next: jiff::Timestamp = later["next_attempt_at"].as_str().unwrap().parse().unwrap();
    assert!(next > now, "{later}");

    // What was learned leaves with `learn export` and is shown by `learn show`.
    let exported = dir.path().join("evidence.txt");
    let (code, out, err) = learn(&app.redis, &["export", exported.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    let text = std::fs::read_to_string(&exported).unwrap();
    assert!(text.contains("insufficient_funds * * all 0 1 1"), "{text}");
    // Counted on the card's funding too, as Stripe's decline showed it (a credit card).
    assert!(
        text.contains("insufficient_funds * credit all 0 1 1"),
        "{text}"
    );
    let (code, shown, err) = learn(&app.redis, &["show"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(shown.contains("insufficient_funds"), "{shown}");
}

#[tokio::test]
async fn evidence_imported_adds_to_what_redis_holds_and_a_bad_file_changes_nothing() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.txt");
    std::fs::write(
        &good,
        "# from a simulation\nsoft BR * all 0 40 10\nsoft BR * day 5 20 9\nsoft * * all 0 40 10\n\
         soft BR debit all 0 12 3\n",
    )
    .unwrap();
    let (code, out, err) = learn(&redis, &["import", good.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, shown, _) = learn(&redis, &["show", "--country", "br"]);
    assert!(
        shown.contains("soft") && shown.contains("BR") && shown.contains("40"),
        "{shown}"
    );
    let (_, shown, _) = learn(&redis, &["show", "--funding", "debit"]);
    assert!(shown.contains("debit") && !shown.contains("40"), "{shown}");

    // Imported twice: the counts add up.
    learn(&redis, &["import", good.to_str().unwrap()]);
    let back = dir.path().join("back.txt");
    learn(&redis, &["export", back.to_str().unwrap()]);
    let text = std::fs::read_to_string(&back).unwrap();
    assert!(text.contains("soft BR * day 5 40 18"), "{text}");

    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "soft BR * all 0 40 10\nsoft BR * day 40 1 1\n").unwrap();
    let (code, _, err) = learn(&redis, &["import", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("line 2") && err.contains("unknown feature or value"),
        "{err}"
    );
    let again = dir.path().join("again.txt");
    learn(&redis, &["export", again.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&again).unwrap(),
        text,
        "nothing changed"
    );
}

#[tokio::test]
async fn a_worker_started_after_another_was_killed_reads_the_same_evidence() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let evidence = dir.path().join("evidence.txt");
    // The first version's lines, without funding, are read as every card's.
    std::fs::write(&evidence, "soft US all 0 40 10\nsoft * all 0 40 10\n").unwrap();
    let (code, out, err) = learn(&redis, &["import", evidence.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");

    // The evidence lives in Redis, not in the worker: a worker killed mid-run loses none of it.
    let env = [("RECOUP_WORKER__EVIDENCE_SECS", "1")];
    let first = RecoupProcess::serve_as(&redis, "worker", &env).await;
    wait_until("the first worker to read the evidence", SETTLE, || async {
        first.counter("recoup_evidence_attempts").await >= 40
    })
    .await;
    first.signal("KILL");

    let second = RecoupProcess::serve_as(&redis, "worker", &env).await;
    wait_until("a new worker to read the same evidence", SETTLE, || async {
        second.counter("recoup_evidence_attempts").await >= 40
    })
    .await;
    let back = dir.path().join("back.txt");
    learn(&redis, &["export", back.to_str().unwrap()]);
    assert!(
        std::fs::read_to_string(&back)
            .unwrap()
            .contains("soft US * all 0 40 10"),
        "nothing lost"
    );
}
