//! `recoup tune` as an engineer runs it: the binary on a synthetic population, the file it writes,
//! its table, Ctrl-C, and its refusals.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::helpers::recoup_command;

fn tune(args: &[&str]) -> Output {
    recoup_command()
        .arg("tune")
        .args(args)
        .output()
        .expect("recoup runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The cells of the table row starting with `label`: training base, tuned, held-out base, tuned.
fn row(table: &str, label: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label} row in\n{table}"));
    line[label.len()..]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

fn number(cell: &str) -> f64 {
    cell.split(['%', ' '])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {cell}"))
}

fn policy(path: &Path) -> recoup::policy::Policy {
    let written = std::fs::read_to_string(path).expect("the tuned file is written");
    recoup::policy::file::parse(&written, "tuned.toml").expect("the tuned file is a valid policy")
}

#[test]
fn tuning_beats_or_keeps_the_base_on_held_out_customers_and_keeps_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tuned.toml");
    let chart = dir.path().join("held-out.svg");
    let output = tune(&[
        "--synthetic",
        "4000",
        "--seed",
        "3",
        // Cut short by a number of candidates, not by time: the same policy on every machine.
        "--max-candidates",
        "24",
        "--budget",
        "10m",
        "--max-attempts-per-invoice",
        "3",
        "--max-lost-to-nagging",
        "0.05",
        "--out",
        out.to_str().unwrap(),
        "--chart",
        chart.to_str().unwrap(),
    ]);
    let table = text(&output.stdout);
    assert!(output.status.success(), "{}\n{table}", text(&output.stderr));
    // At most the candidates asked for: moves are scored two at a time, so one fewer when a pair
    // would have gone past.
    let candidates: u32 = table
        .lines()
        .find_map(|l| l.split_once(" candidates in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no candidate count in\n{table}"));
    assert!(
        (23..=24).contains(&candidates) && table.contains("stopped at the most candidates"),
        "{table}"
    );
    // Plain progress lines when stderr is not a terminal.
    assert!(text(&output.stderr).contains("candidate 1: share "));

    let share = row(&table, "share of the oracle's revenue, net of fees");
    let (held_base, held_tuned) = (number(&share[2]), number(&share[3]));
    // What is written never does worse on the held-out customers than the base: the search's best
    // when it holds there, else the base itself, saying why.
    let kept_base = table.contains("The base policy is kept: the best of the search did worse");
    assert_eq!(held_tuned < held_base, kept_base, "{table}");
    assert!(number(&share[1]) >= number(&share[0]), "{table}");
    assert_eq!(row(&table, "network-rule breaches")[1], "0", "{table}");
    assert!(
        number(&row(&table, "attempts per invoice")[1]) <= 3.0,
        "{table}"
    );
    let lost = row(&table, "customers lost to nagging");
    let lost_share = lost[1].split(['(', '%']).nth(1).unwrap();
    assert!(number(lost_share) <= 5.0, "{table}");

    let tuned = policy(&out);
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(
        written.starts_with("# Tuned by `recoup tune` from config/policy.toml"),
        "{written}"
    );
    assert!(written.contains("# Held-out customers: share of the oracle's revenue"));
    // Every change the table lists is commented in the file, above the value (or, for a step
    // removed, above the first step).
    let changes: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(" → "))
        .collect();
    assert_eq!(
        written.matches("\n# tuned: ").count(),
        changes.len(),
        "{table}\n{written}"
    );
    if changes.is_empty() {
        assert_eq!(tuned, recoup::policy::Policy::shipped());
        assert_eq!(
            written.contains("# The base policy is kept"),
            kept_base,
            "{written}"
        );
    } else {
        assert_ne!(tuned, recoup::policy::Policy::shipped());
    }
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.contains("tuned") && svg.contains("base (policy.toml)"));
}

#[test]
fn ctrl_c_stops_the_search_and_writes_the_best_policy_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tuned.toml");
    let mut child = recoup_command()
        .args(["tune", "--synthetic", "4000", "--budget", "10m", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupted once the base and one candidate are scored (each a progress line).
    let stderr = child.stderr.take().unwrap();
    let (lines, heard) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let started = Instant::now();
    loop {
        let line = heard
            .recv_timeout(Duration::from_secs(120))
            .expect("a candidate is scored within two minutes");
        if line.starts_with("candidate 2:") {
            break;
        }
    }
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "recoup tune did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(130), "{stdout}");
    assert!(
        stdout.contains("stopped by Ctrl-C: the best policy so far is written"),
        "{stdout}"
    );
    policy(&out);
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .contains("stopped by Ctrl-C")
    );
}

#[test]
fn bad_input_and_limits_no_policy_keeps_are_one_line_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tuned.toml");
    let bad_policy = dir.path().join("bad.toml");
    std::fs::write(&bad_policy, "version = 1\n[retries]\nsoft = [\"3x\"]\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--synthetic", "500", "--max-lost-to-nagging", "1.5"],
            "expected a share from 0 to 1",
        ),
        (vec!["--synthetic", "500", "--holdout", "1"], "--holdout"),
        (vec!["--synthetic", "500", "--budget", "soon"], "--budget"),
        (
            vec!["--population", "no/such.jsonl"],
            "cannot read the population no/such.jsonl",
        ),
        (
            vec![
                "--synthetic",
                "500",
                "--policy",
                bad_policy.to_str().unwrap(),
            ],
            "retries.soft",
        ),
        (
            vec![
                "--synthetic",
                "1000",
                "--budget",
                "5s",
                "--max-attempts-per-invoice",
                "0.001",
            ],
            "no policy tried keeps the constraints",
        ),
    ];
    for (args, wanted) in cases {
        let mut all = args.clone();
        all.extend(["--out", out.to_str().unwrap()]);
        let output = tune(&all);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{all:?}: {stderr}");
        assert!(stderr.contains(wanted), "{all:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{all:?}");
        assert!(!out.exists(), "{all:?} wrote {}", out.display());
    }
}

#[test]
fn a_base_over_the_limits_is_no_fallback_and_what_keeps_them_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tuned.toml");
    let output = tune(&[
        "--synthetic",
        "2000",
        "--seed",
        "5",
        "--max-candidates",
        "12",
        "--max-attempts-per-invoice",
        "2.2",
        "--out",
        out.to_str().unwrap(),
    ]);
    let table = text(&output.stdout);
    assert!(output.status.success(), "{}\n{table}", text(&output.stderr));
    let attempts = row(&table, "attempts per invoice");
    assert!(
        number(&attempts[0]) > 2.2,
        "the shipped policy spends more: {table}"
    );
    assert!(number(&attempts[1]) <= 2.2, "{table}");
    assert!(
        table.contains("The base policy breaks the limits asked for (")
            && table.contains("(at most 2.2)"),
        "{table}"
    );
    assert!(!table.contains("The base policy is kept"), "{table}");
    assert_ne!(policy(&out), recoup::policy::Policy::shipped());
}
