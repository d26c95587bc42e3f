//! The recovery dashboard at `/dashboard?from=YYYY-MM-DD&to=YYYY-MM-DD`: for support and finance,
//! what recovery came to over a period — the figures of [`Api::dashboard`], as
//! `GET /api/v1/dashboard` gives them, written out for people, with two charts
//! ([`super::chart`]) and the experiments' report as `recoup experiments` prints it.
//!
//! Behind the status page's sign-in (the same session; signed out, the sign-in form), under its
//! headers and CSP: no script, every word escaped by the template. A period there is nothing to
//! show of (a date that is not one, `from` after `to`, days older or more than are kept) is a 400
//! page that says why, with the form to ask again; nothing changes anywhere.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;

use super::chart::{self, Chart};
use super::{Caller, Page};
use crate::api::{DashboardError, PeriodQuery, Recovery};
use crate::dashboard::period::{Days, Group, Summary};
use crate::notify::templates::format_amount;
use crate::policy::experiment::report;
use crate::store::{Dashboard, Experiments, Sessions, TestClock};

/// What `dashboard.html` shows.
#[derive(Serialize)]
struct View<'a> {
    signed_in: &'a str,
    csrf: &'a str,
    /// The period form's values: as asked, or as shown.
    from: String,
    to: String,
    /// Why the period cannot be shown.
    problem: Option<String>,
    shown: Option<Shown>,
}

/// The figures of a period, in words.
#[derive(Serialize)]
struct Shown {
    period: String,
    headline: Vec<(&'static str, String)>,
    daily: Chart,
    tables: Vec<Table>,
    /// Each experiment's report, as `recoup experiments` prints it.
    experiments: Vec<String>,
}

/// A table of the page: a heading, what its figures count, and rows.
#[derive(Serialize)]
struct Table {
    title: &'static str,
    note: &'static str,
    head: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    /// The table drawn, when a picture says it faster.
    chart: Option<Chart>,
}

pub(super) async fn dashboard<S: Dashboard + Experiments + TestClock + Sessions>(
    State(page): State<Arc<Page<S>>>,
    headers: HeaderMap,
    query: Result<Query<PeriodQuery>, QueryRejection>,
) -> Response {
    let session = match page.session(&headers).await {
        Ok(session) => session,
        Err(response) => return *response,
    };
    let Some((Caller(name), session)) = session else {
        return page.sign_in_form(&headers, StatusCode::OK, None);
    };
    let mut view = View {
        signed_in: &name,
        csrf: &session.csrf,
        from: String::new(),
        to: String::new(),
        problem: None,
        shown: None,
    };
    let (from, to) = match query {
        Ok(Query(PeriodQuery { from, to })) => (from, to),
        Err(rejection) => {
            view.problem = Some(rejection.body_text());
            return page.render_as("dashboard.html", StatusCode::BAD_REQUEST, &view);
        }
    };
    view.from = from.clone().unwrap_or_default();
    view.to = to.clone().unwrap_or_default();
    let status = match page.api.dashboard(from.as_deref(), to.as_deref()).await {
        Ok(recovery) => {
            view.from = recovery.figures.from.to_string();
            view.to = recovery.figures.to.to_string();
            view.shown = Some(shown(&recovery));
            StatusCode::OK
        }
        Err(DashboardError::Period(e)) => {
            view.problem = Some(e.to_string());
            StatusCode::BAD_REQUEST
        }
        Err(DashboardError::Store(e)) => {
            tracing::error!("dashboard: {e}");
            view.problem = Some(format!("the dashboard cannot be shown right now: {e}"));
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    page.render_as("dashboard.html", status, &view)
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("—".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

fn days(days: Option<Days>) -> String {
    match days {
        None => "—".to_owned(),
        Some(Days { days, more: true }) => format!("more than {days} days"),
        Some(Days { days: 1, .. }) => "1 day".to_owned(),
        Some(Days { days, .. }) => format!("{days} days"),
    }
}

/// An answer as the customer saw it on the feedback page.
fn answer(name: &str) -> String {
    crate::policy::Answer::ALL
        .into_iter()
        .find(|a| a.as_str() == name)
        .map_or_else(|| name.to_owned(), |a| a.words().to_owned())
}

/// A segment's name as the page shows it: the empty one is the policy's own plan.
fn segment(name: &str) -> String {
    if name.is_empty() {
        "(no segment: the policy's own plan)".to_owned()
    } else {
        name.to_owned()
    }
}

fn group_rows(groups: &[Group], name: impl Fn(&str) -> String) -> Vec<Vec<String>> {
    groups
        .iter()
        .map(|g| {
            vec![
                name(&g.name),
                g.invoices.to_string(),
                g.recovered.to_string(),
                percent(g.recovery_rate),
            ]
        })
        .collect()
}

fn shown(recovery: &Recovery) -> Shown {
    let f: &Summary = &recovery.figures;
    let length = f.daily.len();
    let revenue = if f.revenue.is_empty() {
        "—".to_owned()
    } else {
        f.revenue
            .iter()
            .map(|r| {
                format!(
                    "{} of {} due",
                    format_amount(r.recovered, &r.currency, "en"),
                    format_amount(r.due, &r.currency, "en")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let by = f.recovered_by;
    let headline = vec![
        (
            "Recovery rate",
            format!(
                "{} ({} recovered of {} final invoices)",
                percent(f.recovery_rate),
                f.recovered,
                f.invoices
            ),
        ),
        ("Revenue recovered", revenue),
        (
            "Recovered by",
            format!(
                "recoup's retry {}; the customer after an update link {}; the customer \
                 otherwise {}",
                by.retry, by.customer_link, by.customer_other
            ),
        ),
        (
            "Days to recover",
            format!(
                "median {}, 90th percentile {} (of {} recoveries)",
                days(f.days_to_recover.median),
                days(f.days_to_recover.p90),
                f.days_to_recover.recoveries
            ),
        ),
    ];
    let counts = |counts: &[crate::dashboard::period::Count]| -> Vec<Vec<String>> {
        counts
            .iter()
            .map(|c| vec![c.name.clone(), c.count.to_string()])
            .collect()
    };
    let tables = vec![
        Table {
            title: "By decline class",
            note: "the class of the invoice's latest decline; unknown when none was read",
            head: vec!["Decline class", "Final invoices", "Recovered", "Rate"],
            rows: group_rows(&f.by_decline_class, str::to_owned),
            chart: Some(chart::groups(
                "Final invoices and recoveries by decline class",
                &f.by_decline_class,
                str::to_owned,
            )),
        },
        Table {
            title: "By segment",
            note: "the policy segment the invoice fell in when its case opened",
            head: vec!["Segment", "Final invoices", "Recovered", "Rate"],
            rows: group_rows(&f.by_segment, segment),
            chart: None,
        },
        Table {
            title: "What customers said",
            note: "final invoices whose customer answered \"What's in the way?\" (their latest answer), and of them recovered",
            head: vec!["Answer", "Final invoices", "Recovered", "Rate"],
            rows: group_rows(&f.by_answer, answer),
            chart: None,
        },
        Table {
            title: "By nudge",
            note: "final invoices that got the nudge, and of them recovered (after it)",
            head: vec![
                "Channel",
                "Nudge",
                "Tier",
                "Final invoices",
                "Recovered",
                "Rate",
            ],
            rows: f
                .by_nudge
                .iter()
                .map(|n| {
                    vec![
                        n.channel.clone(),
                        n.kind.clone(),
                        n.tier.to_string(),
                        n.invoices.to_string(),
                        n.recovered.to_string(),
                        percent(n.recovery_rate),
                    ]
                })
                .collect(),
            chart: None,
        },
        Table {
            title: "Final states",
            note: "how final invoices ended",
            head: vec!["State", "Final invoices"],
            rows: counts(&f.final_states),
            chart: None,
        },
        Table {
            title: "End decisions",
            note: "decisions carried out (or found done in Stripe) when dunning ran out",
            head: vec!["Action", "Final invoices"],
            rows: counts(&f.end_decisions),
            chart: None,
        },
        Table {
            title: "Network refusals",
            note: "retries the card networks' rules held back (moved later or dropped)",
            head: vec!["Card brand", "Retries held back"],
            rows: counts(&f.network_refusals),
            chart: None,
        },
    ];
    Shown {
        period: format!(
            "{} to {} ({length} day{}, UTC)",
            f.from,
            f.to,
            if length == 1 { "" } else { "s" }
        ),
        headline,
        daily: chart::daily(&f.daily),
        tables,
        experiments: recovery.experiments.iter().map(report::render).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use jiff::civil::date;

    use super::super::{render, templates};
    use super::*;
    use crate::dashboard::day::{DayCounts, Field, Of};
    use crate::dashboard::period::Period;

    fn view(shown: Option<Shown>, problem: Option<String>) -> String {
        let view = View {
            signed_in: "support-ana",
            csrf: "token",
            from: "2026-12-01".to_owned(),
            to: "2026-12-02".to_owned(),
            problem,
            shown,
        };
        render(&templates(), "dashboard.html", &view).unwrap()
    }

    #[test]
    fn the_dashboard_draws_its_charts_as_svg_and_every_name_stays_text() {
        let markup = r#"<script>alert("x")</script>"#;
        let mut day = DayCounts::default();
        day.add(Field::Invoices, 2);
        day.add(Field::Recovered, 1);
        day.add(Field::Class(markup.to_owned(), Of::Invoices), 2);
        day.add(Field::Segment(markup.to_owned(), Of::Invoices), 2);
        let period = Period {
            from: date(2026, 12, 1),
            to: date(2026, 12, 2),
        };
        let recovery = Recovery {
            figures: Summary::of(&period, &BTreeMap::from([(period.from, day)])),
            experiments: Vec::new(),
        };
        let html = view(Some(shown(&recovery)), None);
        assert!(!html.contains("<script"), "{html}");
        // The class in its table row and on its chart (label and tooltip), the segment's row.
        assert_eq!(html.matches("&lt;script&gt;").count(), 4, "{html}");
        assert_eq!(html.matches("<svg").count(), 2, "{html}");
        assert!(html.contains(r#"<rect class="final""#), "{html}");
        assert!(
            !html.contains("style="),
            "the CSP allows no inline style: {html}"
        );
        assert!(
            html.contains("50.0% (1 recovered of 2 final invoices)"),
            "{html}"
        );
        assert!(
            html.contains("2026-12-01 to 2026-12-02 (2 days, UTC)"),
            "{html}"
        );
        assert!(html.contains("The policy runs no experiment."), "{html}");
        assert!(html.contains(r#"<a href="/dashboard">Dashboard</a>"#));
    }

    #[test]
    fn a_period_that_cannot_be_shown_says_why_and_shows_nothing() {
        let html = view(
            None,
            Some("the period starts (2026-12-02) after it ends".to_owned()),
        );
        assert!(html.contains(r#"<p class="problem" role="alert">the period starts"#));
        assert!(!html.contains("<svg"), "{html}");
        assert!(html.contains(r#"name="from" type="date" value="2026-12-01""#));
    }
}
