//! Test harness: a real `redis-server` per test and the real app on a free port.
//!
//! Nothing is shared between tests: each one starts its own Redis in its own temp dir (with the AOF
//! on, as production should run), its own recoup (in-process, or as the real binary for what only a
//! process shows: exit codes, signals, logs), and stops both when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use recoup::config::{RedisSettings, Settings};
use recoup::event::wire::Parsed;
use recoup::event::{Event, EventObject};
use recoup::policy::{Case, Input, Policy, decide};
use recoup::server::{Application, Role};
use recoup::store::redis::INBOX_STREAM;
use recoup::webhook::signature;
pub use recoup::webhook::signature::unix_now;
use tokio::sync::oneshot;

use crate::fake_stripe::{FakeStripe, Invoice};

pub const SECRET: &str = "whsec_test_primary_5f1c0e";
pub const OLD_SECRET: &str = "whsec_test_retiring_9b2d7a";
/// A support token the API accepts when a test configures `RECOUP_API_TOKENS` with [`API_TOKENS`].
pub const API_TOKEN: &str = "tok_support_ana_0123456789";
pub const API_TOKENS: &str = "support-ana:tok_support_ana_0123456789";
/// The policy every test app runs unless the test names another: the default without nudges.
pub const RETRIES_ONLY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/api/policies/retries-only.toml"
);
/// Where the test apps' customers reach recoup (`RECOUP_PUBLIC_URL`): update links start with it,
/// and a test opens one by asking the app itself for the path after it.
pub const PUBLIC_URL: &str = "https://billing.acme.example";
/// The key update links are signed with (`RECOUP_LINK_SECRET`).
pub const LINK_SECRET: &str = "test-link-key-5f1c0e9b2d7a4e8c1f3a6b9d0c2e4f6a";
/// What a worker with a nudge channel needs besides: where customers reach recoup, and the key its
/// update links are signed with.
pub const LINKS: [(&str, &str); 2] = [
    ("RECOUP_PUBLIC_URL", PUBLIC_URL),
    ("RECOUP_LINK_SECRET", LINK_SECRET),
];
/// The secret key recoup calls the fake Stripe with.
pub const STRIPE_KEY: &str = "sk_test_recoup_fake_4eC39HqLyjWDarjtT1zdp7dc";

/// How long a test waits for a case to get where it is going: three of the worker's default
/// leases (10 s), the time a wake-up put off by a passing failure takes to come back, with room.
pub const SETTLE: Duration = Duration::from_secs(30);

/// Polls `check` until it holds, for at most `limit`; panics with `what` otherwise.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of this test's own.
pub struct TestRedis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
}

impl TestRedis {
    pub fn start() -> Self {
        Self::start_with(Vec::new())
    }

    /// Starts with extra `redis-server` arguments.
    pub fn start_with(extra_args: Vec<String>) -> Self {
        let mut redis = TestRedis {
            child: None,
            port: 0,
            dir: tempfile::tempdir().unwrap(),
            extra_args,
        };
        // A port picked free can be taken before Redis binds it; try a few.
        for _ in 0..5 {
            redis.port = free_port();
            if redis.launch() {
                return redis;
            }
        }
        panic!("could not start redis-server (is it installed? scripts/test installs it)");
    }

    /// Starts redis-server on `self.port` and waits until it answers; false if it exited.
    fn launch(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--dir", &self.dir.path().to_string_lossy()])
            .args(["--save", ""])
            .args(["--appendonly", "yes"])
            .args(["--enable-debug-command", "yes"])
            .args(["--logfile", "redis.log"])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return false;
            }
            if ping(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server on port {} did not answer in 10 s", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether Redis answers a PING within half a second.
    pub fn answers(&self) -> bool {
        ping(self.port)
    }

    /// Stops Redis the way an operator would (SIGTERM: the AOF is flushed).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts Redis again on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(self.launch(), "redis-server did not come back on its port");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// How many entries the inbox stream holds.
    pub async fn inbox_len(&self) -> usize {
        redis::cmd("XLEN")
            .arg(INBOX_STREAM)
            .query_async(&mut self.conn().await)
            .await
            .unwrap()
    }

    /// The inbox entries' `event` fields, parsed.
    pub async fn inbox(&self) -> Vec<serde_json::Value> {
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(INBOX_STREAM)
            .arg("-")
            .arg("+")
            .query_async(&mut self.conn().await)
            .await
            .unwrap();
        entries
            .into_iter()
            .map(|(_, fields)| {
                let event = fields
                    .into_iter()
                    .find(|(k, _)| k == "event")
                    .expect("every entry has an event field")
                    .1;
                serde_json::from_str(&event).unwrap()
            })
            .collect()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut buf).is_ok()
        && &buf == b"+PONG\r\n"
}

/// A TCP proxy in front of a Redis that can black-hole the traffic, the way a failover or a dropped
/// NAT entry does: while the hole is open nothing passes in either direction, yet no connection is
/// closed; and a connection that lived through a hole stays dead for good (the half-open socket of
/// a real network never comes back), while those opened after it ends work.
pub struct BlackHoleProxy {
    pub port: u16,
    /// Bumped at every hole: a connection older than the latest one is dead.
    holes: Arc<std::sync::atomic::AtomicU64>,
    open: Arc<std::sync::atomic::AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

impl BlackHoleProxy {
    pub async fn start(target_port: u16) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let holes = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicBool::new(false));
        let (h, o) = (holes.clone(), open.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                else {
                    continue;
                };
                // Born inside a hole: dead from the start.
                let born = if o.load(Ordering::SeqCst) {
                    u64::MAX
                } else {
                    h.load(Ordering::SeqCst)
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (mut from, mut to) in [(client_read, server_write), (server_read, client_write)]
                {
                    let (h, o) = (h.clone(), o.clone());
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut chunk = vec![0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut chunk).await {
                            if n == 0 {
                                break;
                            }
                            let dead = o.load(Ordering::SeqCst) || h.load(Ordering::SeqCst) != born;
                            if !dead && to.write_all(&chunk[..n]).await.is_err() {
                                break;
                            }
                        }
                        // Keep the other half open: a half-open socket never closes by itself.
                        std::future::pending::<()>().await;
                    });
                }
            }
        });
        Self {
            port,
            holes,
            open,
            accept,
        }
    }

    /// `redis://` through the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Opens a hole: from now on no byte passes, and every connection open now is dead for good.
    pub fn open_hole(&self) {
        use std::sync::atomic::Ordering;
        self.holes.fetch_add(1, Ordering::SeqCst);
        self.open.store(true, Ordering::SeqCst);
    }

    /// Closes the hole: new connections work again.
    pub fn close_hole(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for BlackHoleProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A three-node Redis Cluster (no replicas) of this test's own.
pub struct TestCluster {
    pub nodes: Vec<TestRedis>,
}

impl TestCluster {
    pub async fn start() -> Self {
        let nodes: Vec<TestRedis> = (0..3)
            .map(|_| {
                let bus = free_port().to_string();
                TestRedis::start_with(
                    ["--cluster-enabled", "yes", "--cluster-port", &bus]
                        .map(String::from)
                        .to_vec(),
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is installed with redis-server");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = TestCluster { nodes };
        wait_until("the cluster to be ok", Duration::from_secs(20), || {
            let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
            async move {
                ports.iter().all(|port| {
                    Command::new("redis-cli")
                        .args(["-p", &port.to_string(), "cluster", "info"])
                        .output()
                        .is_ok_and(|o| {
                            String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok")
                        })
                })
            }
        })
        .await;
        cluster
    }

    /// `REDIS_URL` for recoup: every node, comma-separated.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(TestRedis::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How many entries the inbox stream holds, wherever its slot lives.
    pub async fn inbox_len(&self) -> usize {
        let client = redis::cluster::ClusterClient::new(
            self.nodes.iter().map(TestRedis::url).collect::<Vec<_>>(),
        )
        .unwrap();
        let mut conn = client.get_async_connection().await.unwrap();
        redis::cmd("XLEN")
            .arg(INBOX_STREAM)
            .query_async(&mut conn)
            .await
            .unwrap()
    }
}

/// The base environment every test app gets.
pub fn base_env(redis: &TestRedis) -> Vec<(String, String)> {
    [
        ("REDIS_URL", redis.url()),
        ("RECOUP_LISTEN", "127.0.0.1:0".to_owned()),
        ("STRIPE_WEBHOOK_SECRETS", SECRET.to_owned()),
        ("STRIPE_API_KEY", STRIPE_KEY.to_owned()),
        ("RECOUP_POLICY", RETRIES_ONLY.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Talking to a running recoup over HTTP, in-process or as a process, the way clients do.
#[allow(async_fn_in_trait)]
pub trait Recoup {
    fn addr(&self) -> SocketAddr;

    fn http(&self) -> &reqwest::Client;

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// Waits for the invoice's case to satisfy `ready`, and returns it.
    ///
    /// Waits up to [`SETTLE`]: a firing that a passing store failure (a Redis command timed out on a
    /// loaded machine) put off comes back one lease later, and must still be seen.
    async fn case_when(
        &self,
        invoice_id: &str,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let path = format!("/api/v1/invoices/{invoice_id}");
        let mut case = serde_json::Value::Null;
        let deadline = std::time::Instant::now() + SETTLE;
        loop {
            let answer = self.api_get(&path).await;
            if answer.status == 200 {
                case = answer.json();
                if ready(&case) {
                    return case;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "case {invoice_id} never got ready; last seen: {case}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POSTs `body` to the webhook route with this exact `Stripe-Signature` (or none).
    async fn post_webhook(&self, body: Vec<u8>, signature: Option<String>) -> Answer {
        let mut request = self
            .http()
            .post(self.url("/webhooks/stripe"))
            .header("content-type", "application/json");
        if let Some(signature) = signature {
            request = request.header("stripe-signature", signature);
        }
        Answer::from(request.body(body).send().await.expect("request completes")).await
    }

    /// POSTs `body` signed with [`SECRET`] at the current time, as Stripe would.
    async fn deliver(&self, body: Vec<u8>) -> Answer {
        let header = signature::sign(SECRET.as_bytes(), unix_now(), &body);
        self.post_webhook(body, Some(header)).await
    }

    async fn get(&self, path: &str) -> Answer {
        Answer::from(self.http().get(self.url(path)).send().await.unwrap()).await
    }

    /// GETs an API path with the support [`API_TOKEN`].
    async fn api_get(&self, path: &str) -> Answer {
        let request = self.http().get(self.url(path)).bearer_auth(API_TOKEN);
        Answer::from(request.send().await.unwrap()).await
    }

    /// POSTs a JSON body to an API path with the support [`API_TOKEN`].
    async fn api_post(&self, path: &str, body: &str) -> Answer {
        let request = self
            .http()
            .post(self.url(path))
            .bearer_auth(API_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_owned());
        Answer::from(request.send().await.unwrap()).await
    }

    /// Moves the test clock forward through the API and waits for the due timers to be claimed;
    /// returns the clock's new "now".
    async fn advance_clock(&self, seconds: i64) -> jiff::Timestamp {
        let body = format!(r#"{{"seconds":{seconds}}}"#);
        let moved = self.api_post("/api/v1/clock/advance", &body).await;
        assert_eq!(moved.status, 200, "{}", moved.text);
        moved.json()["now"].as_str().unwrap().parse().unwrap()
    }

    /// Moves the test clock forward at least `seconds`, on to local noon in `zone` unless that lands
    /// between 10:00 and 18:00 there: nudges go out only in the customer's daytime, whatever time
    /// of day the test runs at. Returns the clock's new "now".
    /// One jump, so that no timer fires on the way at a time of night that depends on when the
    /// test runs.
    async fn advance_into_daytime(&self, seconds: i64, zone: &str) -> jiff::Timestamp {
        // The clock's now, by the smallest move it allows.
        let now = self.advance_clock(1).await;
        let wanted = now + jiff::SignedDuration::from_secs(seconds - 1);
        let zone = jiff::tz::TimeZone::get(zone).unwrap();
        let local = wanted.to_zoned(zone.clone());
        let target = if (10..18).contains(&local.hour()) {
            wanted
        } else {
            let day = if local.hour() < 10 {
                local.date()
            } else {
                local.date().tomorrow().unwrap()
            };
            day.at(12, 0, 0, 0).to_zoned(zone).unwrap().timestamp()
        };
        // Already there (a one-second move in the zone's daytime): the clock moves no further, as
        // it refuses a move of nothing.
        let step = target.as_second() - now.as_second();
        if step < 1 {
            return now;
        }
        self.advance_clock(step).await
    }
}

/// recoup running in-process against its own Redis.
pub struct TestApp {
    pub addr: SocketAddr,
    pub redis: TestRedis,
    /// The Stripe the app's worker charges through (unused by a receiver).
    pub stripe: FakeStripe,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// A receiver (webhook and API, no worker), so tests can look at the inbox as it was stored.
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// A receiver with extra environment, which overrides the base.
    pub async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        Self::spawn_as(Role::Receiver, extra).await
    }

    /// Spawns in `role` with extra environment, which overrides the base.
    pub async fn spawn_as(role: Role, extra: &[(&str, &str)]) -> Self {
        let redis = TestRedis::start();
        let stripe = FakeStripe::start();
        let mut env = base_env(&redis);
        env.extend(stripe.env().map(|(k, v)| (k.to_owned(), v)));
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let settings = Settings::load(None, env).expect("test settings are valid");
        let app = Application::build(&settings, role)
            .await
            .expect("app starts");
        let addr = app.local_addr();
        let (tx, rx) = oneshot::channel();
        let served = tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            redis,
            stripe,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            shutdown: Some(tx),
            served: Some(served),
        }
    }
}

impl TestApp {
    /// Sets up `stripe_invoice` in the fake Stripe, delivers the failure of its first attempt, and
    /// returns the case once recoup has read the decline behind it.
    pub async fn fail(&self, invoice_id: &str, stripe_invoice: Invoice) -> serde_json::Value {
        self.fail_at(invoice_id, stripe_invoice, unix_now()).await
    }

    /// As [`Self::fail`], the failure made at `created` (Unix seconds): the test clock's now, for a
    /// failure whose plan must lie ahead of a clock already moved on.
    pub async fn fail_at(
        &self,
        invoice_id: &str,
        stripe_invoice: Invoice,
        created: i64,
    ) -> serde_json::Value {
        self.stripe.add_invoice(invoice_id, stripe_invoice);
        self.deliver(failure_at(invoice_id, created)).await;
        self.case_when(invoice_id, |c| c["decline"]["class"].is_string())
            .await
    }
}

impl Recoup for TestApp {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(served) = self.served.take() {
            served.abort();
        }
    }
}

/// A client that shows redirects instead of following them, and keeps no cookies: a browser's
/// requests one at a time, for a test to look at each answer.
pub fn plain_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The value of a response's header, which must be there.
pub fn header<'r>(response: &'r reqwest::Response, name: &str) -> &'r str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub async fn from(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Answer {
            status,
            headers,
            text,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/events")
}

/// A fixture's bytes, e.g. `fixture("invoice.payment_failed")` or `fixture("legacy/invoice.paid")`.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(format!("{name}.json")))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// Every fixture file, as (name, bytes), in a stable order.
pub fn all_fixtures() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in [fixtures_dir(), fixtures_dir().join("legacy")] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        for path in paths {
            let name = path
                .strip_prefix(fixtures_dir())
                .unwrap()
                .with_extension("")
                .to_string_lossy()
                .into_owned();
            out.push((name, std::fs::read(&path).unwrap()));
        }
    }
    out
}

/// A bundled invoice event with its own event id, invoice id, creation time and attempt number.
pub fn invoice_event(
    kind: &str,
    event_id: &str,
    invoice_id: &str,
    created: i64,
    attempt: u64,
) -> Vec<u8> {
    let mut event: serde_json::Value = serde_json::from_slice(&fixture(kind)).unwrap();
    event["id"] = event_id.into();
    event["created"] = created.into();
    event["data"]["object"]["id"] = invoice_id.into();
    event["data"]["object"]["attempt_count"] = attempt.into();
    serde_json::to_vec(&event).unwrap()
}

/// Stripe's failure of the invoice's first attempt, just now, naming the payment intent the fake
/// shows the decline on.
pub fn failure_of(invoice_id: &str) -> Vec<u8> {
    failure_at(invoice_id, unix_now())
}

/// As [`failure_of`], made at `created` (Unix seconds).
pub fn failure_at(invoice_id: &str, created: i64) -> Vec<u8> {
    let mut event: serde_json::Value = serde_json::from_slice(&invoice_event(
        "invoice.payment_failed",
        &format!("evt_failed_{invoice_id}"),
        invoice_id,
        created,
        1,
    ))
    .unwrap();
    let payment = &mut event["data"]["object"]["payments"]["data"][0];
    payment["invoice"] = invoice_id.into();
    payment["payment"]["payment_intent"] = format!("pi_for_{invoice_id}").into();
    serde_json::to_vec(&event).unwrap()
}

/// A small, valid event of any type with the given id.
pub fn event_body(id: &str, event_type: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id, "object": "event", "type": event_type, "api_version": "2026-09-30.endive",
        "created": unix_now(), "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "data": {"object": {
            "id": "in_test", "object": "invoice", "customer": "cus_test", "amount_due": 4900,
            "currency": "usd", "status": "open"
        }}
    }))
    .unwrap()
}

/// Store settings for a test's own Redis.
pub fn redis_settings(redis: &TestRedis) -> RedisSettings {
    RedisSettings {
        url: redis.url(),
        ..RedisSettings::default()
    }
}

/// The `invoice.payment_failed` fixture as a parsed event, with its own event and invoice ids, failed
/// just now.
pub fn event(event_id: &str, invoice_id: &str) -> Event {
    let Ok(Parsed::Acted(mut event)) =
        recoup::event::wire::parse(&fixture("invoice.payment_failed"))
    else {
        panic!("the fixture is an event recoup acts on");
    };
    event.id = event_id.to_owned();
    // As if it happened now: retries are planned from Stripe's time of the failure.
    event.created = unix_now();
    if let EventObject::Invoice(invoice) = &mut event.object {
        invoice.id = Some(invoice_id.to_owned());
    }
    *event
}

/// A case as the policy opens it on a first failure, without timers, for store tests.
pub fn open_case(
    invoice_id: &str,
    customer_id: &str,
    subscription_id: Option<&str>,
    opened_at: Timestamp,
) -> Case {
    let input = Input::Event(Box::new(event(&format!("evt_{invoice_id}"), invoice_id)));
    let mut case = decide(&Policy::default(), None, &input, opened_at)
        .case
        .expect("a failure opens a case");
    case.customer_id = customer_id.to_owned();
    case.subscription_id = subscription_id.map(str::to_owned);
    case.timers.clear();
    case.next_attempt_at = None;
    case
}

/// The recoup binary, as a child process with its own environment.
///
/// Its stdout and stderr are drained into buffers as it runs (a busy worker logs more than a pipe
/// holds, and a full pipe would stall it).
pub struct RecoupProcess {
    pub child: Child,
    pub addr: SocketAddr,
    http: reqwest::Client,
    /// The fake Stripe of a worker not given one (`STRIPE_API_BASE`) by its test, held so it
    /// answers for as long as the process runs.
    _stripe: Option<FakeStripe>,
    stdout: Output,
    stderr: Output,
}

/// A child's output stream, collected by a thread.
struct Output {
    text: Arc<Mutex<Vec<u8>>>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Output {
    fn collect(stream: impl Read + Send + 'static) -> Self {
        let text = Arc::new(Mutex::new(Vec::new()));
        let sink = text.clone();
        let drain = std::thread::spawn(move || {
            let mut stream = stream;
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Output {
            text,
            drain: Some(drain),
        }
    }

    /// Everything written, once the stream has closed (the process exited).
    fn finished(&mut self) -> String {
        if let Some(drain) = self.drain.take() {
            drain.join().unwrap();
        }
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }
}

impl RecoupProcess {
    /// Starts `recoup serve --role receiver` on a free port against `redis`, waiting until
    /// `/healthz` answers; without a worker, what was stored stays in the inbox for the test to see.
    pub async fn serve(redis: &TestRedis, extra: &[(&str, &str)]) -> Self {
        Self::serve_as(redis, "receiver", extra).await
    }

    /// Starts `recoup serve --role <role>`.
    pub async fn serve_as(redis: &TestRedis, role: &str, extra: &[(&str, &str)]) -> Self {
        // The port is picked free but bound later by the child; another test may take it first.
        for _ in 0..3 {
            if let Some(process) = Self::try_serve(redis, role, extra).await {
                return process;
            }
        }
        panic!("recoup did not start on any of three ports");
    }

    async fn try_serve(redis: &TestRedis, role: &str, extra: &[(&str, &str)]) -> Option<Self> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let stripe = (role != "receiver" && !extra.iter().any(|(k, _)| *k == "STRIPE_API_BASE"))
            .then(FakeStripe::start);
        let mut child = recoup_command()
            .args(["serve", "--role", role])
            .envs(base_env(redis))
            .envs(stripe.iter().flat_map(FakeStripe::env))
            .env("RECOUP_LISTEN", addr.to_string())
            .envs(extra.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the recoup binary runs");
        let stdout = Output::collect(child.stdout.take().unwrap());
        let stderr = Output::collect(child.stderr.take().unwrap());
        let mut process = RecoupProcess {
            child,
            addr,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            _stripe: stripe,
            stdout,
            stderr,
        };
        let http = reqwest::Client::new();
        let url = format!("http://{addr}/healthz");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(&url).send().await
                && r.status() == 200
            {
                return Some(process);
            }
            if process.child.try_wait().unwrap().is_some() {
                let stderr = process.stderr.finished();
                assert!(stderr.contains("cannot listen"), "recoup exited: {stderr}");
                return None;
            }
            assert!(Instant::now() < deadline, "recoup did not become healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Everything the process wrote to stdout; call after it exited.
    pub fn stdout(&mut self) -> String {
        self.stdout.finished()
    }

    /// The process's `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of an unlabelled counter on `/metrics` (0 when not yet recorded).
    pub async fn counter(&self, name: &str) -> u64 {
        metric_value(&self.metrics().await, name)
    }
}

/// The value of the sample `name` (with its labels, if any) in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

impl Recoup for RecoupProcess {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl Drop for RecoupProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` to the end with no input; (exit code, stdout, stderr).
pub fn output_of(command: &mut Command) -> (Option<i32>, String, String) {
    let output = command.stdin(Stdio::null()).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `recoup` with a clean environment (no inherited RECOUP_* or REDIS_URL) in the crate root.
pub fn recoup_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_recoup"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}
