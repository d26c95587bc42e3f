//! `recoup simulate` as an engineer runs it: the binary, real files, its table, JSON and chart.

use std::process::Output;

use serde_json::Value;

use crate::helpers::recoup_command;

const RULES: &str = "fixtures/simulate/rules.jsonl";

fn simulate(args: &[&str]) -> Output {
    recoup_command()
        .arg("simulate")
        .args(args)
        .output()
        .expect("recoup runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(args: &[&str]) -> Value {
    let output = simulate(&[args, &["--json"]].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("the report is JSON")
}

#[test]
fn the_table_sets_the_policy_beside_the_baseline_with_the_difference() {
    let output = simulate(&[
        "--policy",
        "config/policy.toml",
        "--learn",
        "off",
        "--population",
        RULES,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    let heading = table.lines().nth(2).unwrap();
    let columns: Vec<&str> = heading
        .split("  ")
        .filter(|c| !c.trim().is_empty())
        .collect();
    assert_eq!(
        columns.iter().map(|c| c.trim()).collect::<Vec<_>>(),
        ["policy.toml", "baseline 3/5/7", "difference"]
    );
    let row = |label: &str| -> Vec<String> {
        let line = table
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label} row in\n{table}"));
        line[label.len()..]
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("recovered invoices"), ["4", "3", "+1"]);
    assert_eq!(
        row("recovered revenue, usd"),
        ["$196.00", "$147.00", "+$49.00"]
    );
    assert_eq!(
        row("share of the oracle's revenue"),
        ["80.0%", "60.0%", "+20.0", "pt"]
    );
    assert_eq!(row("network-rule breaches"), ["0", "0", "0"]);
    assert!(
        table.starts_with(
            "Population: fixtures/simulate/rules.jsonl (7 invoices of 7 customers, $343.00); \
             the oracle recovers 5 invoices ($245.00)."
        ),
        "{table}"
    );
}

#[test]
fn the_json_holds_what_the_contract_names_for_every_policy() {
    let report = json(&[
        "--policy",
        "config/policy.toml",
        "--vs",
        "config/baseline-3-5-7.toml",
        "--population",
        RULES,
    ]);
    assert_eq!(report["oracle"]["invoices"], 5);
    assert_eq!(report["oracle"]["revenue"]["usd"], 24500);
    let policies = report["policies"].as_array().unwrap();
    // The --vs policy comes second, then the learning policy's static twin; the baseline is the
    // --vs policy here: it is not run a second time.
    let names: Vec<&str> = policies
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["policy.toml", "baseline-3-5-7.toml", "policy.toml (static)"]
    );
    for key in [
        "name",
        "path",
        "recovered_invoices",
        "recovered_revenue",
        "oracle_share",
        "recovered_by",
        "lost_to_nagging",
        "breaches",
        "attempts_per_invoice",
        "nudges_per_invoice",
        "days_to_recover",
    ] {
        assert!(policies[0].get(key).is_some(), "no {key}");
    }
    assert_eq!(policies[0]["recovered_revenue"]["usd"], 19600);
    assert_eq!(policies[0]["recovered_by"]["retry"], 3);
    assert_eq!(policies[0]["recovered_by"]["customer"], 1);
    assert_eq!(policies[1]["recovered_invoices"], 3);
    // Seven invoices are no evidence: learning leaves the plan as it is.
    assert_eq!(
        policies[2]["recovered_invoices"],
        policies[0]["recovered_invoices"]
    );
    assert!(policies[0]["days_to_recover"]["p90"].as_f64().unwrap() > 11.0);
}

#[test]
fn a_synthetic_population_written_out_simulates_the_same_when_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let written = dir.path().join("population.jsonl");
    let written = written.to_str().unwrap();
    let chart = dir.path().join("chart.svg");
    let chart = chart.to_str().unwrap();
    let synthetic = json(&[
        "--policy",
        "config/policy.toml",
        "--synthetic",
        "3000",
        "--seed",
        "7",
        "--write-population",
        written,
        "--chart",
        chart,
    ]);
    let lines = std::fs::read_to_string(written).unwrap().lines().count();
    assert_eq!(lines, 3000);
    let svg = std::fs::read_to_string(chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("policy.toml") && svg.contains("baseline"));
    let read_back = json(&["--policy", "config/policy.toml", "--population", written]);
    assert_eq!(synthetic["policies"], read_back["policies"]);
    assert_eq!(synthetic["oracle"], read_back["oracle"]);
    assert_eq!(synthetic["population"]["invoices"], 3000);
    // The same seed again: the same numbers.
    let again = json(&[
        "--policy",
        "config/policy.toml",
        "--synthetic",
        "3000",
        "--seed",
        "7",
    ]);
    assert_eq!(synthetic["policies"], again["policies"]);
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    let rules = std::fs::read_to_string(RULES).unwrap();
    std::fs::write(&bad, format!("{rules}{{\"invoice_id\": \"in_9\"}}\n")).unwrap();
    let written = dir.path().join("out.jsonl");
    let chart = dir.path().join("chart.svg");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--population".into(),
                bad.display().to_string(),
                "--write-population".into(),
                written.display().to_string(),
                "--chart".into(),
                chart.display().to_string(),
            ],
            "population line 8: missing field `customer_id`",
        ),
        (
            vec!["--population".into(), "no/such.jsonl".into()],
            "cannot read the population no/such.jsonl",
        ),
        (
            vec![
                "--population".into(),
                RULES.into(),
                "--synthetic".into(),
                "5".into(),
            ],
            "cannot be used with",
        ),
        (vec![], "--population <FILE>"),
        (vec!["--synthetic".into(), "0".into()], "invalid value '0'"),
    ];
    for (args, wanted) in cases {
        let mut all = vec!["--policy".to_owned(), "config/policy.toml".to_owned()];
        all.extend(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let output = simulate(&all);
        assert_eq!(output.status.code(), Some(1), "{all:?}");
        assert!(
            stderr(&output).contains(wanted),
            "{all:?}: {}",
            stderr(&output)
        );
        assert!(stdout(&output).is_empty());
    }
    assert!(!written.exists(), "a half-written population was left");
    assert!(!chart.exists());

    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "version = 1\n[retries]\nsoft = [\"3x\"]\n").unwrap();
    let output = simulate(&["--policy", policy.to_str().unwrap(), "--population", RULES]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("retries.soft"),
        "{}",
        stderr(&output)
    );
}
