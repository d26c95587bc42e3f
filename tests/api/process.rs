//! What only the real binary shows: exit codes, signals, logs, and the `webhook send` and `status`
//! commands.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use recoup::server::Role;
use recoup::webhook::signature::sign;

use crate::fake_stripe::{Decline, Invoice};
use crate::helpers::*;

/// Waits (bounded) for the process to exit.
fn wait_exit(process: &mut RecoupProcess, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = process.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "recoup did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn metrics_count_events_by_type_and_outcome_and_failures_by_reason() {
    let redis = TestRedis::start();
    let process = RecoupProcess::serve(&redis, &[]).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/webhooks/stripe", process.addr);
    let post = |body: Vec<u8>, secret: &'static str| {
        let header = sign(secret.as_bytes(), unix_now(), &body);
        http.post(&url)
            .header("stripe-signature", header)
            .body(body)
            .send()
    };
    let failed = fixture("invoice.payment_failed");
    assert_eq!(post(failed.clone(), SECRET).await.unwrap().status(), 200);
    assert_eq!(post(failed, SECRET).await.unwrap().status(), 200);
    assert_eq!(
        post(event_body("evt_x", "plan.created"), SECRET)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post(fixture("invoice.paid"), "whsec_wrong")
            .await
            .unwrap()
            .status(),
        400
    );

    let metrics = http
        .get(format!("http://{}/metrics", process.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"recoup_webhook_events_total{type="invoice.payment_failed",outcome="stored"} 1"#,
        r#"recoup_webhook_events_total{type="invoice.payment_failed",outcome="duplicate"} 1"#,
        r#"recoup_webhook_events_total{type="other",outcome="ignored"} 1"#,
        r#"recoup_webhook_events_total{type="unknown",outcome="refused"} 1"#,
        r#"recoup_webhook_verification_failures_total{reason="no_matching_signature"} 1"#,
        "recoup_webhook_ingest_seconds_count 4",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_and_exits_0() {
    let redis = TestRedis::start();
    let mut process = RecoupProcess::serve(&redis, &[]).await;
    let body = fixture("invoice.payment_failed");
    let header = sign(SECRET.as_bytes(), unix_now(), &body);

    // Start a request and send only half of its body.
    let mut stream = TcpStream::connect(process.addr).unwrap();
    write!(
        stream,
        "POST /webhooks/stripe HTTP/1.1\r\nHost: recoup\r\nContent-Type: application/json\r\n\
         Stripe-Signature: {header}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let half = body.len() / 2;
    stream.write_all(&body[..half]).unwrap();
    stream.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    process.signal("TERM");
    // The listener closes first: new connections are refused while the old one is still served.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(process.addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        process.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );

    stream.write_all(&body[half..]).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"received":true}"#), "{response}");

    let status = wait_exit(&mut process, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert_eq!(redis.inbox_len().await, 1);
}

#[tokio::test]
async fn sigint_exits_0() {
    let redis = TestRedis::start();
    let mut process = RecoupProcess::serve(&redis, &[]).await;
    process.signal("INT");
    assert_eq!(
        wait_exit(&mut process, Duration::from_secs(10)).code(),
        Some(0)
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_request_id() {
    let redis = TestRedis::start();
    let mut process = RecoupProcess::serve(&redis, &[("RECOUP_LOG_FORMAT", "json")]).await;
    let answer = reqwest::Client::new()
        .post(format!("http://{}/webhooks/stripe", process.addr))
        .header("stripe-signature", "t=1,v1=00")
        .header("x-request-id", "req-for-the-log")
        .body(fixture("invoice.paid"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    process.signal("TERM");
    wait_exit(&mut process, Duration::from_secs(10));
    let stdout = process.stdout();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{stdout}");
    let refused = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("signature refused"))
        })
        .unwrap_or_else(|| panic!("no signature log line in {stdout}"));
    assert_eq!(refused["level"], "WARN");
    assert_eq!(
        refused["span"]["request_id"], "req-for-the-log",
        "{refused}"
    );
    assert!(!stdout.contains(SECRET), "a secret reached the log");
}

/// Runs `recoup` with `args` and `env` and returns (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    output_of(recoup_command().args(args).envs(env.iter().copied()))
}

#[test]
fn bad_configuration_exits_1_with_a_one_line_reason_naming_the_key() {
    let (code, _, stderr) = run(
        &["serve"],
        &[
            ("STRIPE_WEBHOOK_SECRETS", SECRET),
            ("RECOUP_SERVER__BODY_LIMIT_BYTES", "12"),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("server.body_limit_bytes = \"12\""),
        "{stderr}"
    );
    assert!(stderr.contains("between 1024"), "{stderr}");
}

#[test]
fn serve_without_webhook_secrets_exits_1() {
    let (code, _, stderr) = run(&["serve"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("STRIPE_WEBHOOK_SECRETS"), "{stderr}");
}

#[test]
fn a_worker_without_a_stripe_key_exits_1_and_says_which() {
    for role in ["worker", "all"] {
        let (code, _, stderr) = run(
            &["serve", "--role", role],
            &[("STRIPE_WEBHOOK_SECRETS", SECRET)],
        );
        assert_eq!(code, Some(1), "{role}: {stderr}");
        assert!(stderr.contains("STRIPE_API_KEY is not set"), "{stderr}");
    }
}

#[test]
fn a_nudge_channel_set_up_halfway_stops_the_worker_naming_the_setting() {
    let (code, _, stderr) = run(
        &["serve", "--role", "worker"],
        &[
            ("STRIPE_API_KEY", STRIPE_KEY),
            ("RECOUP_SMTP_URL", "smtp://user:hunter2@127.0.0.1:2525"),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("RECOUP_EMAIL_FROM: required"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn unreachable_redis_exits_1_without_leaking_the_password() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let (code, _, stderr) = run(
        &["serve"],
        &[
            ("STRIPE_WEBHOOK_SECRETS", SECRET),
            ("STRIPE_API_KEY", STRIPE_KEY),
            ("REDIS_URL", &url),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach Redis"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn bad_arguments_exit_1_with_a_one_line_reason_and_help_exits_0() {
    for (args, reason) in [
        (
            &["serve", "--no-such-flag"][..],
            "unexpected argument '--no-such-flag'",
        ),
        (
            &[],
            "a command is required (usage: recoup <COMMAND>; see --help)",
        ),
        (
            &["clock"],
            "a command is required (usage: recoup clock <COMMAND>",
        ),
        (
            &["status"],
            "not provided: <ID> (usage: recoup status <ID>; see --help)",
        ),
        (&["clock", "advance", "0"], "0 needs a unit"),
        (
            &["backfill", "--since", "-1d"],
            "a duration is never negative",
        ),
        (
            &["serve", "--role", "bogus"],
            "possible values: all, receiver, worker",
        ),
    ] {
        let (code, _, stderr) = run(args, &[]);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("recoup: ") && stderr.contains(reason),
            "{args:?}: {stderr}"
        );
    }
    let (code, stdout, _) = run(&["--help"], &[]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("serve") && stdout.contains("webhook"),
        "{stdout}"
    );
}

#[tokio::test]
async fn webhook_send_delivers_a_fixture_as_stripe_would() {
    let app = TestApp::spawn().await;
    let url = app.url("/webhooks/stripe");
    let file = fixtures_dir().join("invoice.payment_failed.json");
    let file = file.to_str().unwrap();
    let send = |extra: &'static [&'static str], secret: &'static str| {
        let url = url.clone();
        let file = file.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["webhook", "send", &file, "--url", &url, "--secret", secret];
            args.extend(extra);
            run(&args, &[])
        })
    };

    let (code, stdout, stderr) = send(&[], SECRET).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), r#"200 {"received":true}"#);

    let (code, stdout, _) = send(&[], SECRET).await.unwrap();
    assert_eq!(code, Some(0));
    assert_eq!(stdout.trim(), r#"200 {"received":true,"duplicate":true}"#);

    let (code, stdout, _) = send(&["--new-id"], SECRET).await.unwrap();
    assert_eq!(code, Some(0));
    assert_eq!(stdout.trim(), r#"200 {"received":true}"#);

    let (code, _, stderr) = send(&[], "whsec_wrong").await.unwrap();
    assert_eq!(code, Some(1));
    assert!(stderr.contains("400"), "{stderr}");

    let inbox = app.redis.inbox().await;
    assert_eq!(inbox.len(), 2);
    assert_ne!(inbox[0]["id"], inbox[1]["id"]);
    assert_eq!(inbox[0]["type"], "invoice.payment_failed");
}

#[test]
fn webhook_send_refuses_a_file_that_is_not_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-an-event.json");
    std::fs::write(&path, r#"{"hello":"world"}"#).unwrap();
    let (code, _, stderr) = run(
        &[
            "webhook",
            "send",
            path.to_str().unwrap(),
            "--secret",
            SECRET,
        ],
        &[],
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is not a Stripe event"), "{stderr}");
    let (code, _, stderr) = run(
        &["webhook", "send", "/no/such/file.json"],
        &[("STRIPE_WEBHOOK_SECRETS", SECRET)],
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("cannot read /no/such/file.json"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_worker_needs_no_signing_secret_and_serves_only_operations() {
    let redis = TestRedis::start();
    let worker = RecoupProcess::serve_as(&redis, "worker", &[("STRIPE_WEBHOOK_SECRETS", "")]).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", worker.addr);
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    for path in ["/webhooks/stripe", "/api/v1/clock/advance"] {
        let answer = http.post(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(answer.status(), 404, "{path} belongs to the receiver");
    }
}

#[tokio::test]
async fn a_receiver_stores_events_and_leaves_them_for_the_workers() {
    let redis = TestRedis::start();
    let receiver = RecoupProcess::serve_as(&redis, "receiver", &[]).await;
    let body = fixture("invoice.payment_failed");
    let answer = reqwest::Client::new()
        .post(format!("http://{}/webhooks/stripe", receiver.addr))
        .header(
            "stripe-signature",
            sign(SECRET.as_bytes(), unix_now(), &body),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let _worker = RecoupProcess::serve_as(&redis, "worker", &[]).await;
    wait_until("the worker to take the entry", SETTLE, || async {
        redis.inbox_len().await == 0
    })
    .await;
}

#[test]
fn clock_commands_explain_what_is_wrong() {
    let (code, _, stderr) = run(&["clock", "advance", "3w"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("3d, 12h, 90m"), "{stderr}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let redis = TestRedis::start();
    let (code, _, stderr) = run(&["clock", "advance", "3d"], &[("REDIS_URL", &redis.url())]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("RECOUP_TEST_CLOCK=1"), "{stderr}");
    let (code, stdout, _) = run(&["clock", "show"], &[("REDIS_URL", &redis.url())]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("test clock is off"), "{stdout}");
    let (code, _, stderr) = run(
        &["clock", "show"],
        &[("REDIS_URL", &url), ("RECOUP_TEST_CLOCK", "1")],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach Redis"), "{stderr}");
    let (code, _, stderr) = run(
        &["clock", "show"],
        &[
            ("RECOUP_TEST_CLOCK", "1"),
            ("STRIPE_API_KEY", "sk_live_123"),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("sk_live_"), "{stderr}");

    // A restricted live key is as live as a secret one.
    for args in [&["clock", "show"][..], &["serve", "--role", "worker"]] {
        let (code, _, stderr) = run(
            args,
            &[
                ("REDIS_URL", &redis.url()),
                ("RECOUP_TEST_CLOCK", "1"),
                ("STRIPE_API_KEY", "rk_live_51Hrestricted"),
            ],
        );
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("rk_live_"), "{stderr}");
        assert!(!stderr.contains("51Hrestricted"), "never echoed: {stderr}");
    }

    // One advance moves the clock 1 s to 400 days, no further.
    let clock = [
        ("REDIS_URL", redis.url()),
        ("RECOUP_TEST_CLOCK", "1".to_owned()),
    ];
    let clock: Vec<(&str, &str)> = clock.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for too_far in ["401d", "9999999d", "0s"] {
        let (code, _, stderr) = run(&["clock", "advance", too_far], &clock);
        assert_eq!(code, Some(1), "{too_far}: {stderr}");
        assert!(stderr.contains("400 days"), "{stderr}");
    }
    let (code, stdout, _) = run(&["clock", "show"], &clock);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("offset 0 s"), "nothing moved: {stdout}");
}

#[tokio::test]
async fn a_test_clock_moved_past_the_end_of_time_panics_no_process() {
    let redis = TestRedis::start();
    // However the offset got there (an old release, a hand edit), reading the clock must not panic.
    let _: () = redis::cmd("SET")
        .arg(recoup::store::redis::CLOCK_OFFSET)
        .arg(300_000_000_000_i64)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let env = [
        ("REDIS_URL", redis.url()),
        ("RECOUP_TEST_CLOCK", "1".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, stdout, stderr) = run(&["clock", "show"], &env);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("offset 300000000000 s"), "{stdout}");

    // A whole service on that clock: a case opens and its timers fire at the end of time.
    let mut extra = env.clone();
    extra.push(("RECOUP_API_TOKENS", crate::helpers::API_TOKENS));
    let mut app = RecoupProcess::serve_as(&redis, "all", &extra).await;
    assert_eq!(
        app.deliver(fixture("invoice.payment_failed")).await.status,
        200
    );
    wait_until("the event to be applied", SETTLE, || async {
        redis.inbox_len().await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(app.child.try_wait().unwrap().is_none(), "the process died");
    // Every loop still runs (a loop that died would turn readiness red).
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text);
}

#[test]
fn output_to_a_reader_that_has_gone_ends_quietly() {
    // A pipe whose reader is closed before the command starts: its first write meets a broken
    // pipe, whatever the timing (`recoup simulate … | head` once head has its lines).
    for args in [
        &["policy", "check"][..],
        &[
            "simulate",
            "--policy",
            "config/policy.toml",
            "--synthetic",
            "200",
        ][..],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = recoup_command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn policy_check_confirms_a_good_file_and_points_at_the_bad_value() {
    let (code, stdout, stderr) = run(&["policy", "check"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("config/policy.toml: ok — format 1; soft declines retried after 3 days"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("policy.toml");
    std::fs::write(&bad, "version = 1\n\n[retries]\nsoft = [\"3d\", \"2x\"]\n").unwrap();
    let bad = bad.to_str().unwrap();
    let expected = format!(
        "recoup: {bad}:4: retries.soft[1]: \"2x\": unknown unit 'x'; expected a duration such as \
         3d, 12h, 90m, 45s or 1d12h"
    );
    let (code, stdout, stderr) = run(&["policy", "check", bad], &[]);
    assert_eq!((code, stdout.as_str()), (Some(1), ""), "{stderr}");
    assert_eq!(stderr.trim(), expected);
    // RECOUP_POLICY names the file when no path is given, as it does for `serve`.
    let (code, _, stderr) = run(&["policy", "check"], &[("RECOUP_POLICY", bad)]);
    assert_eq!(code, Some(1));
    assert_eq!(stderr.trim(), expected);
}

#[test]
fn policy_check_shows_the_network_rules_in_force_and_those_about_to_change() {
    let (code, stdout, stderr) = run(&["policy", "check", "--on", "2026-10-01"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("network rules in force on 2026-10-01 (from config/networks.toml):"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "  visa reattempts: at most 20 reattempts per card, amount and initiator in 30 days"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("  2026-10-25 starts: visa response 57 (category 1): never retry the card"),
        "{stdout}"
    );
    // On the day itself the change is in force, and nothing else is due within 90 days.
    let (_, stdout, _) = run(&["policy", "check", "--on", "2026-10-25"], &[]);
    assert!(
        stdout.contains("  visa response 57 (category 1)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("no network rule starts or ends in the next 90 days"),
        "{stdout}"
    );

    // A networks file of one's own is validated the same way, line and key named.
    let dir = tempfile::tempdir().unwrap();
    let networks = dir.path().join("networks.toml");
    std::fs::write(
        &networks,
        "version = 1\n[[rule]]\nname = \"x\"\nbrand = \"visa\"\ncounts = \"retries\"\n\
         key = []\nmax = 3\nper = \"1d\"\nresets = \"never\"\nsource = \"mine\"\n",
    )
    .unwrap();
    let networks = networks.to_str().unwrap();
    let (code, stdout, stderr) = run(&["policy", "check"], &[("RECOUP_NETWORKS", networks)]);
    assert_eq!((code, stdout.as_str()), (Some(1), ""), "{stderr}");
    assert!(
        stderr.starts_with(&format!("recoup: {networks}:5: rule[0].counts: ")),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["policy", "check", "--on", "someday"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn serve_refuses_a_bad_or_missing_policy_file_before_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("policy.toml");
    std::fs::write(&bad, "version = 7\n").unwrap();
    let missing = dir.path().join("missing.toml");
    for (path, problem) in [
        (
            &bad,
            "version: 7 is not a policy format this release reads; allowed: 1",
        ),
        (&missing, "cannot read the policy file"),
    ] {
        let (code, _, stderr) = run(
            &["serve"],
            &[
                ("STRIPE_WEBHOOK_SECRETS", SECRET),
                ("RECOUP_POLICY", path.to_str().unwrap()),
                ("RECOUP_LISTEN", "127.0.0.1:0"),
            ],
        );
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(problem), "{stderr}");
    }
}

#[tokio::test]
async fn status_tells_a_case_and_what_happens_next_or_says_why_it_cannot() {
    let app = TestApp::spawn_as(
        Role::All,
        &[
            ("RECOUP_API_TOKENS", API_TOKENS),
            ("RECOUP_TEST_CLOCK", "1"),
        ],
    )
    .await;
    let invoice = "in_status_cli";
    app.fail(
        invoice,
        Invoice::failed("cus_R3cvP0qK8yWm2d", Decline::visa("insufficient_funds")),
    )
    .await;
    let redis = app.redis.url();
    let env = [("REDIS_URL", redis.as_str())];

    let (code, stdout, stderr) = run(&["status", invoice], &env);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with(&format!("{invoice} · $49.00 · retrying")),
        "{stdout}"
    );
    assert!(
        stdout.contains("insufficient_funds (soft): time fixes it"),
        "{stdout}"
    );
    assert!(stdout.contains("Next: Next retry "), "{stdout}");
    assert!(stdout.contains("on the next payday"), "{stdout}");
    assert!(
        stdout.contains(" UTC)"),
        "times in the customer's zone and UTC: {stdout}"
    );

    let (code, json, _) = run(&["status", invoice, "--json"], &env);
    assert_eq!(code, Some(0));
    let api = app
        .api_get(&format!("/api/v1/invoices/{invoice}"))
        .await
        .json();
    let printed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(printed, api, "--json prints the API's case");

    let (code, stdout, _) = run(&["status", "cus_R3cvP0qK8yWm2d"], &env);
    assert_eq!(code, Some(0));
    assert!(stdout.contains(invoice), "{stdout}");

    let (code, _, stderr) = run(&["status", "in_nobody"], &env);
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.trim(),
        "recoup: recoup has no case for invoice in_nobody"
    );
    let (code, _, stderr) = run(&["status", "pi_123"], &env);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("is not an invoice (in_…), customer (cus_…) or subscription (sub_…) id"),
        "{stderr}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (code, _, stderr) = run(
        &["status", invoice],
        &[("REDIS_URL", &format!("redis://127.0.0.1:{port}"))],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach Redis"), "{stderr}");
}

#[test]
fn a_reason_names_its_cause_once_on_one_line() {
    let missing = tempfile::tempdir().unwrap().path().join("recoup.toml");
    let (code, _, stderr) = run(
        &["status", "in_x", "--config", missing.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
}

#[test]
fn the_demo_runs_every_story_to_its_end_without_redis_or_stripe() {
    // No REDIS_URL, no Stripe key, no secrets, and run outside the checkout, with no config/
    // folder to read: the demo brings its own, and the templates are built in.
    let elsewhere = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) =
        output_of(recoup_command().arg("demo").current_dir(elsewhere.path()));
    assert_eq!(code, Some(0), "{stderr}\n{stdout}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("Summary: "))
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    assert!(
        summary.starts_with(
            "Summary: 4 invoices, $196.00 due; recovered 3 of 4 ($97.00); in_demo_payday \
             recovered, in_demo_expired recovered, in_demo_stolen paused, in_demo_3ds recovered;"
        ),
        "{summary}"
    );
    for told in [
        "in_demo_payday · $49.00 · recovered",
        "in_demo_expired · $19.00 · recovered",
        "in_demo_stolen · $99.00 · paused",
        "in_demo_3ds · $29.00 · recovered",
        "Ben Okafor: reads the nudge and adds a new card",
        "Final notice: your subscription will be paused on",
        "segment \"long tenure\": a decline no retry fixes, and no new card",
    ] {
        assert!(
            stdout.contains(told),
            "{told:?} missing from the demo:\n{stdout}"
        );
    }
}
