use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::load(None, env(pairs))
}

fn load_err(pairs: &[(&str, &str)]) -> String {
    load(pairs).unwrap_err().to_string()
}

#[test]
fn defaults_follow_the_contract() {
    let s = load(&[]).unwrap();
    assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.server.body_limit_bytes, 1_048_576);
    assert_eq!(s.webhook.tolerance_secs, 300);
    assert_eq!(s.redis.url, "redis://127.0.0.1:6379");
    assert_eq!(s.log.format, LogFormat::Text);
    assert!(s.secrets.webhook_secrets.is_empty());
}

#[test]
fn the_shipped_file_is_valid_and_matches_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
    let s = Settings::load(Some(&path), env(&[])).unwrap();
    let d = load(&[]).unwrap();
    assert_eq!(s.server.listen, d.server.listen);
    assert_eq!(s.server.body_limit_bytes, d.server.body_limit_bytes);
    assert_eq!(s.server.request_timeout_secs, d.server.request_timeout_secs);
    assert_eq!(s.webhook.tolerance_secs, d.webhook.tolerance_secs);
    assert_eq!(s.redis.url, d.redis.url);
    assert_eq!(s.redis.cluster, d.redis.cluster);
    assert_eq!(s.redis.timeout_ms, d.redis.timeout_ms);
    assert_eq!(s.redis.dedupe_ttl_secs, d.redis.dedupe_ttl_secs);
    assert_eq!(s.log.format, d.log.format);
    assert_eq!(s.stripe, d.stripe);
    assert_eq!(s.notify, d.notify);
    assert_eq!(s.links, d.links);
}

#[test]
fn named_variables_win_over_the_generic_form() {
    let s = load(&[
        ("RECOUP_SERVER__LISTEN", "127.0.0.1:9000"),
        ("RECOUP_LISTEN", "127.0.0.1:9001"),
        ("RECOUP_REDIS__URL", "redis://10.0.0.1:6379"),
        ("REDIS_URL", "redis://10.0.0.2:6379"),
        ("RECOUP_LOG_FORMAT", "json"),
        ("RECOUP_WEBHOOK__TOLERANCE_SECS", "60"),
    ])
    .unwrap();
    assert_eq!(s.server.listen.to_string(), "127.0.0.1:9001");
    assert_eq!(s.redis.url, "redis://10.0.0.2:6379");
    assert_eq!(s.log.format, LogFormat::Json);
    assert_eq!(s.webhook.tolerance_secs, 60);
}

#[test]
fn the_file_is_layered_under_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recoup.toml");
    std::fs::write(
        &path,
        "[webhook]\ntolerance_secs = 120\n[server]\nbody_limit_bytes = 4096\n",
    )
    .unwrap();
    let s = Settings::load(
        Some(&path),
        env(&[("RECOUP_WEBHOOK__TOLERANCE_SECS", "90")]),
    )
    .unwrap();
    assert_eq!(s.webhook.tolerance_secs, 90);
    assert_eq!(s.server.body_limit_bytes, 4096);
}

#[test]
fn a_bad_type_names_the_variable_and_value() {
    let err = load_err(&[("RECOUP_SERVER__BODY_LIMIT_BYTES", "lots")]);
    assert!(err.contains("server.body_limit_bytes"), "{err}");
    assert!(err.contains("lots"), "{err}");
    assert!(err.contains("RECOUP_SERVER__BODY_LIMIT_BYTES"), "{err}");
}

#[test]
fn an_unknown_key_is_refused_with_the_allowed_ones() {
    let err = load_err(&[("RECOUP_SERVER__LISTN", "x")]);
    assert!(err.contains("listn"), "{err}");
    assert!(err.contains("listen"), "{err}");
}

#[test]
fn a_bad_enum_lists_what_is_allowed() {
    let err = load_err(&[("RECOUP_LOG_FORMAT", "xml")]);
    assert!(
        err.contains("xml") && err.contains("text") && err.contains("json"),
        "{err}"
    );
    assert!(err.contains("RECOUP_LOG_FORMAT"), "{err}");
}

#[test]
fn out_of_range_values_name_key_value_and_range() {
    let err = load_err(&[("RECOUP_WEBHOOK__TOLERANCE_SECS", "0")]);
    assert!(err.contains("webhook.tolerance_secs = \"0\""), "{err}");
    assert!(err.contains("between 1 and 3600"), "{err}");
    let err = load_err(&[("REDIS_URL", "postgres://u:hunter2@db/1")]);
    assert!(err.contains("REDIS_URL"), "{err}");
    assert!(!err.contains("hunter2"), "the password leaked: {err}");
    let err = load_err(&[("REDIS_URL", "redis://a:6379,redis://b:6379")]);
    assert!(err.contains("RECOUP_REDIS__CLUSTER=true"), "{err}");
}

#[test]
fn a_cluster_takes_several_urls_and_redacts_each() {
    let s = load(&[
        (
            "REDIS_URL",
            "redis://:pw1@10.0.0.1:7000, redis://:pw2@10.0.0.2:7000",
        ),
        ("RECOUP_REDIS__CLUSTER", "true"),
    ])
    .unwrap();
    assert!(s.redis.cluster);
    assert_eq!(
        s.redis.urls(),
        vec!["redis://:pw1@10.0.0.1:7000", "redis://:pw2@10.0.0.2:7000"]
    );
    assert_eq!(
        s.redis.redacted_url(),
        "redis://:***@10.0.0.1:7000,redis://:***@10.0.0.2:7000"
    );
    let err = load_err(&[
        ("REDIS_URL", "redis://10.0.0.1:7000,http://10.0.0.2"),
        ("RECOUP_REDIS__CLUSTER", "true"),
    ]);
    assert!(err.contains("http://10.0.0.2"), "{err}");
}

#[test]
fn an_explicit_missing_file_is_an_error() {
    let err = Settings::load(Some(Path::new("/nonexistent/recoup.toml")), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/recoup.toml"), "{err}");
}

#[test]
fn secrets_come_from_the_environment_and_never_show() {
    let s = load(&[("STRIPE_WEBHOOK_SECRETS", "whsec_one, whsec_two")]).unwrap();
    let secrets: Vec<&[u8]> = s.secrets.webhook_secret_bytes().collect();
    assert_eq!(secrets, vec![&b"whsec_one"[..], &b"whsec_two"[..]]);
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("whsec_one") && !debug.contains("whsec_two"),
        "{debug}"
    );
}

#[test]
fn nudge_settings_come_from_the_environment_and_their_secrets_never_show() {
    let s = load(&[
        ("RECOUP_EMAIL_FROM", "Acme <billing@acme.example>"),
        ("RECOUP_SMTP_URL", "smtp://mailer:hunter2@127.0.0.1:2525"),
        ("RECOUP_NUDGE_WEBHOOK_URL", "https://acme.example/nudges"),
        ("RECOUP_NUDGE_WEBHOOK_SECRET", "nudge_secret_9f8e"),
        ("RECOUP_SMS_AUTH_TOKEN", "sms_token_1a2b"),
        ("RECOUP_NOTIFY__RETRIES", "1"),
    ])
    .unwrap();
    assert_eq!(
        s.notify.email_from.as_deref(),
        Some("Acme <billing@acme.example>")
    );
    assert_eq!(
        s.notify.webhook_url.as_deref(),
        Some("https://acme.example/nudges")
    );
    assert_eq!(s.notify.retries, 1);
    assert!(s.secrets.smtp_url.is_some() && s.secrets.sms_auth_token.is_some());
    let debug = format!("{s:?}");
    for secret in ["hunter2", "nudge_secret_9f8e", "sms_token_1a2b"] {
        assert!(!debug.contains(secret), "{debug}");
    }
}

#[test]
fn a_malformed_secret_is_named_by_position_not_value() {
    let err = load_err(&[("STRIPE_WEBHOOK_SECRETS", "whsec_ok,sk_live_oops")]);
    assert!(err.contains("entry 2"), "{err}");
    assert!(!err.contains("sk_live_oops"), "{err}");
}

#[test]
fn a_secret_cannot_be_put_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recoup.toml");
    std::fs::write(&path, "stripe_webhook_secrets = \"whsec_x\"\n").unwrap();
    let err = Settings::load(Some(&path), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("stripe_webhook_secrets"), "{err}");
}

#[test]
fn worker_and_clock_settings_come_from_the_environment() {
    let settings = load(&[
        ("RECOUP_WORKER__LEASE_SECS", "3"),
        ("RECOUP_TEST_CLOCK", "1"),
        ("STRIPE_API_KEY", "sk_test_abc"),
    ])
    .unwrap();
    assert_eq!(settings.worker.lease_secs, 3);
    assert!(settings.clock.test);
    assert!(!load(&[("RECOUP_TEST_CLOCK", "0")]).unwrap().clock.test);
    let err = load_err(&[("RECOUP_TEST_CLOCK", "yes")]);
    assert!(err.contains("RECOUP_TEST_CLOCK"), "{err}");
    let err = load_err(&[("RECOUP_WORKER__LEASE_SECS", "0")]);
    assert!(err.contains("RECOUP_WORKER__LEASE_SECS"), "{err}");
    let err = load_err(&[("RECOUP_WORKER__SCAN_INTERVAL_SECS", "0")]);
    assert!(err.contains("worker.scan_interval_secs"), "{err}");
}

#[test]
fn backfill_and_reconcile_run_hourly_and_daily_unless_told_otherwise_and_0_turns_them_off() {
    let defaults = load(&[]).unwrap().worker;
    assert_eq!(
        defaults.backfill_interval(),
        Some(std::time::Duration::from_secs(3600))
    );
    assert_eq!(
        defaults.reconcile_interval(),
        Some(std::time::Duration::from_secs(86_400))
    );
    let off = load(&[
        ("RECOUP_WORKER__BACKFILL_SECS", "0"),
        ("RECOUP_WORKER__RECONCILE_SECS", "0"),
    ])
    .unwrap()
    .worker;
    assert_eq!(
        (off.backfill_interval(), off.reconcile_interval()),
        (None, None)
    );
    let err = load_err(&[("RECOUP_WORKER__BACKFILL_SECS", "604801")]);
    assert!(err.contains("RECOUP_WORKER__BACKFILL_SECS"), "{err}");
    assert!(err.contains("0 (never)"), "{err}");
}

#[test]
fn stripe_settings_come_from_the_file_or_environment_and_are_checked() {
    let s = load(&[
        ("STRIPE_API_BASE", "http://127.0.0.1:12111"),
        ("RECOUP_STRIPE__TIMEOUT_MS", "1500"),
    ])
    .unwrap();
    assert_eq!(s.stripe.api_base, "http://127.0.0.1:12111");
    assert_eq!(s.stripe.timeout_ms, 1500);
    assert_eq!(load(&[]).unwrap().stripe.api_base, "https://api.stripe.com");
    let err = load_err(&[("STRIPE_API_BASE", "api.stripe.com")]);
    assert!(
        err.contains("STRIPE_API_BASE") && err.contains("https://"),
        "{err}"
    );
    let err = load_err(&[("RECOUP_STRIPE__RETRIES", "11")]);
    assert!(err.contains("stripe.retries"), "{err}");
}

#[test]
fn the_test_clock_is_refused_with_a_live_key() {
    let err = load_err(&[
        ("RECOUP_TEST_CLOCK", "1"),
        ("STRIPE_API_KEY", "sk_live_51Habc"),
    ]);
    assert!(
        err.contains("RECOUP_TEST_CLOCK") && err.contains("sk_live_"),
        "{err}"
    );
    assert!(
        !err.contains("51Habc"),
        "the key itself is never echoed: {err}"
    );
    let restricted = load_err(&[
        ("RECOUP_TEST_CLOCK", "1"),
        ("STRIPE_API_KEY", "rk_live_51Hrestricted"),
    ]);
    assert!(restricted.contains("rk_live_"), "{restricted}");
    assert!(!restricted.contains("51Hrestricted"), "{restricted}");
}

#[test]
fn api_tokens_are_named_or_numbered_and_never_shown() {
    let settings = load(&[(
        "RECOUP_API_TOKENS",
        "support-ana:aaaaaaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbbbbbb",
    )])
    .unwrap();
    let names: Vec<_> = settings
        .secrets
        .api_tokens
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["support-ana", "token-2"]);
    let shown = format!("{settings:?}");
    assert!(
        !shown.contains("aaaaaaaa") && !shown.contains("bbbbbbbb"),
        "{shown}"
    );
    let err = load_err(&[("RECOUP_API_TOKENS", "ana:short")]);
    assert!(err.contains("entry 1") && !err.contains("short"), "{err}");
}

#[test]
fn redis_passwords_are_redacted() {
    assert_eq!(
        crate::redact::url("redis://default:hunter2@cache:6379/0"),
        "redis://default:***@cache:6379/0"
    );
    assert_eq!(
        crate::redact::url("redis://cache:6379"),
        "redis://cache:6379"
    );
    let s = load(&[("REDIS_URL", "redis://:hunter2@cache:6379")]).unwrap();
    assert!(!format!("{s:?}").contains("hunter2"));
    // A password with an `@` of its own is redacted whole, not cut at its first `@`.
    assert_eq!(
        crate::redact::url("redis://user:p@ss@host:6379/0"),
        "redis://user:***@host:6379/0"
    );
    let s = load(&[("REDIS_URL", "redis://user:p@ss@host:6379")]).unwrap();
    let shown = format!("{s:?} {}", s.redis.redacted_url());
    assert!(!shown.contains("ss@") && !shown.contains("p@"), "{shown}");
}

#[test]
fn update_links_come_from_the_environment_and_their_keys_never_show() {
    let key = "0123456789abcdef0123456789abcdef-new";
    let old = "0123456789abcdef0123456789abcdef-old";
    let s = load(&[
        ("RECOUP_PUBLIC_URL", "https://billing.acme.example"),
        ("RECOUP_LINK_SECRET", &format!("{key}, {old}")),
        ("RECOUP_LINKS__EXPIRE_DAYS", "14"),
    ])
    .unwrap();
    assert_eq!(
        s.links.public_url.as_deref(),
        Some("https://billing.acme.example")
    );
    assert_eq!(s.links.expire_days, 14);
    assert_eq!(s.secrets.link_secrets.len(), 2, "newest first, both kept");
    let shown = format!("{s:?}");
    assert!(!shown.contains(key) && !shown.contains(old), "{shown}");
    assert_eq!(load(&[]).unwrap().links.expire_days, 30);

    let err = load_err(&[("RECOUP_LINK_SECRET", &format!("{key},short"))]);
    assert!(
        err.contains("RECOUP_LINK_SECRET") && err.contains("entry 2") && !err.contains("short"),
        "{err}"
    );
    let err = load_err(&[("RECOUP_LINKS__EXPIRE_DAYS", "0")]);
    assert!(err.contains("links.expire_days"), "{err}");
}

#[test]
fn the_public_url_is_an_https_base_url() {
    for good in [
        "https://billing.acme.example",
        "https://acme.example:8443/recoup/",
        "http://127.0.0.1:8080",
        "http://localhost:3000",
    ] {
        assert!(
            load(&[("RECOUP_PUBLIC_URL", good)]).is_ok(),
            "{good}: {}",
            load_err(&[("RECOUP_PUBLIC_URL", good)])
        );
    }
    for bad in [
        "billing.acme.example",
        "http://billing.acme.example",
        "ftp://billing.acme.example",
        "https://",
        "https://user:hunter2@billing.acme.example",
        "https://billing.acme.example/?ref=mail",
        "https://billing.acme.example/#top",
    ] {
        let err = load_err(&[("RECOUP_PUBLIC_URL", bad)]);
        assert!(err.contains("RECOUP_PUBLIC_URL"), "{bad}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
