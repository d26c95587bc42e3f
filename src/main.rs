//! The `recoup` command line.
//!
//! Exit codes (CONTRACT.md): 0 success; 1 a user error — bad arguments, bad configuration,
//! unreachable Redis — with a one-line reason on stderr; 2 an internal error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use recoup::clock::Clock;
use recoup::config::{DEFAULT_POLICY_PATH, Settings};
use recoup::server::{Application, Role};
use recoup::store::{self, IdKind, RedisStore};
use recoup::{policy, sim, story, telemetry, webhook};

// A case is decoded, decided and re-encoded in a handful of short-lived buffers a kilobyte or two
// long; glibc's allocator spends a quarter of a worker's time on those (it consolidates its free
// lists on every such request), mimalloc a fraction of that (`scripts/bench-timers`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "recoup",
    version,
    about = "Wins back failed Stripe subscription payments."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: receive Stripe webhooks, keep cases in Redis, fire their timers.
    Serve {
        /// Settings file [default: config/recoup.toml when it exists, else built-in defaults].
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// receiver = webhook + status API, worker = scheduler + executors, all = both.
        #[arg(long, value_enum, default_value_t = Role::All)]
        role: Role,
    },
    /// See recoup work, with nothing to set up: the real receiver, policy and worker in one
    /// process, an in-memory store, a built-in stand-in for Stripe and the test clock; the bundled
    /// fixtures are sent as signed webhooks and each invoice's story is printed.
    Demo,
    /// See what a policy would recover before it touches a real customer: the real policy engine
    /// over a population of failed invoices on a virtual clock, beside a fixed 3/5/7-day baseline.
    Simulate(SimulateArgs),
    /// Work with webhook events.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// The test clock (RECOUP_TEST_CLOCK=1): show it or move it forward.
    #[command(subcommand)]
    Clock(ClockCommand),
    /// The retry policy file.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// What happened to an invoice and what happens next: its case, or every case of a customer
    /// (cus_…) or subscription (sub_…), read from the same Redis as `serve`.
    Status {
        /// An invoice (in_…), customer (cus_…) or subscription (sub_…) id.
        id: String,
        /// Print the API's case JSON instead.
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// The policy file to try.
    #[arg(long, value_name = "PATH")]
    policy: PathBuf,
    /// A policy file to compare it with, side by side (the table's difference column is the
    /// first minus this one).
    #[arg(long, value_name = "PATH")]
    vs: Option<PathBuf>,
    /// A population file: JSON Lines, one failed invoice per line (CONTRACT.md), a customer's
    /// invoices on consecutive lines.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "synthetic",
        conflicts_with = "synthetic"
    )]
    population: Option<PathBuf>,
    /// Simulate a synthetic population of N invoices instead (README, "The synthetic population").
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    synthetic: Option<u64>,
    /// The synthetic population's seed: the same seed gives the same population, and the same
    /// report.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Also write the population simulated to FILE (JSON Lines), so others can run the same.
    #[arg(long, value_name = "FILE")]
    write_population: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Draw each policy's cumulative recovered revenue by day into an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// Simulating threads [default: one per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: Option<u64>,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file: print what it sets, or the file, line, key and what is allowed.
    Check {
        /// The policy file [default: RECOUP_POLICY, else config/policy.toml].
        path: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ClockCommand {
    /// Print the scheduler's now and the test clock's offset.
    Show {
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Move the test clock forward (3d, 12h, 90m, 45s, 1d12h) and wait until every timer that became
    /// due has been claimed by a worker.
    Advance {
        /// How far: a number with d, h, m or s, e.g. 3d.
        #[arg(value_parser = policy::duration::parse_duration, allow_hyphen_values = true)]
        duration: i64,
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Sign an event file with the current time and POST it, exactly as Stripe would.
    Send {
        /// A Stripe event as JSON, e.g. fixtures/events/invoice.payment_failed.json.
        file: PathBuf,
        /// Where recoup receives webhooks.
        #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/stripe")]
        url: String,
        /// Signing secret (whsec_…) [default: the first of STRIPE_WEBHOOK_SECRETS].
        #[arg(long, value_name = "WHSEC")]
        secret: Option<String>,
        /// Give the event a fresh id, so sending the same file again is not a duplicate.
        #[arg(long)]
        new_id: bool,
    },
}

/// How a command failed, which decides the exit code.
enum Failure {
    User(anyhow::Error),
    Internal(anyhow::Error),
}

fn user(e: impl Into<anyhow::Error>) -> Failure {
    Failure::User(e.into())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("recoup: internal error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(Failure::User(e)) => {
            eprintln!("recoup: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Internal(e)) => {
            eprintln!("recoup: internal error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Serve { config, role } => serve(config, role).await,
        Command::Clock(ClockCommand::Show { config }) => clock(config, None).await,
        Command::Clock(ClockCommand::Advance { duration, config }) => {
            clock(config, Some(duration)).await
        }
        Command::Webhook(WebhookCommand::Send {
            file,
            url,
            secret,
            new_id,
        }) => send(file, url, secret, new_id).await,
        Command::Policy(PolicyCommand::Check { path }) => check_policy(path),
        Command::Simulate(args) => simulate(args),
        Command::Status { id, json, config } => status(&id, json, config).await,
        Command::Demo => {
            recoup::demo::run().await.map_err(Failure::Internal)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check_policy(path: Option<PathBuf>) -> Result<ExitCode, Failure> {
    let path = path
        .or_else(|| std::env::var_os("RECOUP_POLICY").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_POLICY_PATH));
    let policy = recoup::config::policy::load(&path).map_err(user)?;
    println!(
        "{}: ok — {}",
        path.display(),
        policy::file::describe(&policy)
    );
    Ok(ExitCode::SUCCESS)
}

fn simulate(args: SimulateArgs) -> Result<ExitCode, Failure> {
    let source = match (args.population, args.synthetic) {
        (Some(path), _) => sim::command::Source::File(path),
        (None, Some(invoices)) => sim::command::Source::Synthetic {
            invoices,
            seed: args.seed,
        },
        (None, None) => unreachable!("clap requires one of --population and --synthetic"),
    };
    let options = sim::command::Options {
        policy: args.policy,
        vs: args.vs,
        source,
        write_population: args.write_population,
        json: args.json,
        chart: args.chart,
        threads: args.threads.and_then(|n| usize::try_from(n).ok()),
    };
    let printed = sim::command::run(&options).map_err(user)?;
    print!("{printed}");
    Ok(ExitCode::SUCCESS)
}

/// The process environment, skipping variables that are not valid Unicode.
fn environment() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

async fn serve(config: Option<PathBuf>, role: Role) -> Result<ExitCode, Failure> {
    let settings = Settings::load(config.as_deref(), environment()).map_err(user)?;
    telemetry::init_logging(settings.log.format);
    tracing::info!(
        ?role,
        listen = %settings.server.listen,
        redis = %settings.redis.redacted_url(),
        secrets = settings.secrets.webhook_secrets.len(),
        test_clock = settings.clock.test,
        "recoup starting"
    );
    let app = Application::build(&settings, role).await.map_err(user)?;
    app.run_until(shutdown_signal())
        .await
        .context("the HTTP server failed")
        .map_err(Failure::Internal)?;
    Ok(ExitCode::SUCCESS)
}

async fn clock(config: Option<PathBuf>, advance: Option<i64>) -> Result<ExitCode, Failure> {
    let settings = Settings::load(config.as_deref(), environment()).map_err(user)?;
    let store = RedisStore::connect(&settings.redis).await.map_err(user)?;
    let clock = Clock::new(store, settings.clock.test);
    let reading = match advance {
        Some(seconds) => clock.advance(seconds).await.map_err(user)?,
        None => clock.read().await.map_err(user)?,
    };
    let kind = if clock.is_test() {
        "test clock"
    } else {
        "wall clock; the test clock is off"
    };
    println!(
        "now {} (offset {} s, {kind})",
        reading.now, reading.offset_seconds
    );
    Ok(ExitCode::SUCCESS)
}

async fn status(id: &str, json: bool, config: Option<PathBuf>) -> Result<ExitCode, Failure> {
    let kind = IdKind::of(id).map_err(user)?;
    let settings = Settings::load(config.as_deref(), environment()).map_err(user)?;
    let policy = recoup::config::policy::for_service(&settings.policy).map_err(user)?;
    let store = RedisStore::connect(&settings.redis).await.map_err(user)?;
    let cases = kind.cases(&store, id).await.map_err(user)?;
    if json {
        let printed = match kind {
            IdKind::Invoice => serde_json::to_string_pretty(&cases[0]),
            _ => serde_json::to_string_pretty(&serde_json::json!({ "cases": cases })),
        }
        .map_err(|e| Failure::Internal(e.into()))?;
        println!("{printed}");
        return Ok(ExitCode::SUCCESS);
    }
    let now = Clock::new(store.clone(), settings.clock.test)
        .now()
        .await
        .map_err(user)?;
    for (n, case) in cases.iter().enumerate() {
        let card = store::card_tries(&store, case).await.map_err(user)?;
        if n > 0 {
            println!();
        }
        print!("{}", story::tell(case, &policy, &card, now));
    }
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what container runtimes send).
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: no new connections, finishing requests in flight");
}

async fn send(
    file: PathBuf,
    url: String,
    secret: Option<String>,
    new_id: bool,
) -> Result<ExitCode, Failure> {
    let secret = match secret {
        Some(secret) => secret,
        None => std::env::var("STRIPE_WEBHOOK_SECRETS")
            .ok()
            .and_then(|all| all.split(',').next().map(|s| s.trim().to_owned()))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                user(anyhow::anyhow!(
                    "no signing secret: pass --secret whsec_… or set STRIPE_WEBHOOK_SECRETS"
                ))
            })?,
    };
    let delivery = webhook::send::send(&file, &url, secret.as_bytes(), new_id)
        .await
        .map_err(user)?;
    println!("{} {}", delivery.status, delivery.body);
    if (200..300).contains(&delivery.status) {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(user(anyhow::anyhow!(
            "{url} answered {}: {}",
            delivery.status,
            delivery.body
        )))
    }
}
