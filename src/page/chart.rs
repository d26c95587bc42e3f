//! The dashboard's charts as plain geometry, which `dashboard.html` writes out as inline SVG.
//!
//! Drawn on the server because the page runs no script, and drawn as data rather than as markup
//! so that the template's auto-escaping covers every word on a chart (a segment's name, say) like
//! everything else on the page. Colours come from classes in `page.css`, the one stylesheet the
//! page's CSP allows; an element carries no `style`.

use serde::Serialize;

use crate::dashboard::period::{Daily, Group};

/// A chart: a `width` × `height` SVG view box and what is drawn in it.
#[derive(Debug, Serialize)]
pub struct Chart {
    /// What the chart shows, for screen readers and as its tooltip.
    pub title: String,
    pub width: u32,
    pub height: u32,
    pub bars: Vec<Bar>,
    pub labels: Vec<Label>,
    pub rules: Vec<Rule>,
}

/// A rectangle with a tooltip.
#[derive(Debug, Serialize)]
pub struct Bar {
    /// `final` or `recovered`: which colour of `page.css`.
    pub class: &'static str,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub tip: String,
}

#[derive(Debug, Serialize)]
pub struct Label {
    pub x: f64,
    pub y: f64,
    /// `start`, `middle` or `end`.
    pub anchor: &'static str,
    pub text: String,
}

/// A straight line: an axis.
#[derive(Debug, Serialize)]
pub struct Rule {
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
}

/// One decimal is finer than a pixel, and keeps the markup short.
fn px(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

const WIDTH: u32 = 720;
const DAILY_HEIGHT: u32 = 220;
/// Room for the axis labels.
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 10.0;

/// Final invoices (behind) and recoveries (in front) per day: a bar pair a day.
pub fn daily(days: &[Daily]) -> Chart {
    let (width, height) = (f64::from(WIDTH), f64::from(DAILY_HEIGHT));
    let plot = height - BOTTOM - TOP;
    let most = days
        .iter()
        .map(|d| d.invoices.max(d.recovered))
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = (width - LEFT) / days.len().max(1) as f64;
    let scale = |n: u64| plot * n as f64 / most as f64;
    let mut bars = Vec::new();
    for (i, day) in days.iter().enumerate() {
        let x = LEFT + slot * i as f64;
        for (class, n, inset) in [
            ("final", day.invoices, 0.1),
            ("recovered", day.recovered, 0.25),
        ] {
            if n == 0 {
                continue;
            }
            let h = scale(n);
            bars.push(Bar {
                class,
                x: px(x + slot * inset),
                y: px(TOP + plot - h),
                width: px(slot * (1.0 - 2.0 * inset)),
                height: px(h),
                tip: format!(
                    "{}: {} final, {} recovered",
                    day.date, day.invoices, day.recovered
                ),
            });
        }
    }
    let base = TOP + plot;
    let mut labels = vec![
        Label {
            x: LEFT - 6.0,
            y: px(base),
            anchor: "end",
            text: "0".to_owned(),
        },
        Label {
            x: LEFT - 6.0,
            y: px(TOP + 10.0),
            anchor: "end",
            text: most.to_string(),
        },
    ];
    // The first and the last day under the axis, flush with the plot's edges so neither is cut
    // off, and one between on a long period.
    let last = days.len().saturating_sub(1);
    let mut marked = vec![(0, LEFT, "start")];
    if days.len() > 14 {
        marked.push((
            days.len() / 2,
            LEFT + slot * (days.len() / 2) as f64 + slot / 2.0,
            "middle",
        ));
    }
    if last > 0 {
        marked.push((last, width, "end"));
    }
    for (i, x, anchor) in marked {
        if let Some(day) = days.get(i) {
            labels.push(Label {
                x: px(x),
                y: height - 6.0,
                anchor,
                text: day.date.to_string(),
            });
        }
    }
    Chart {
        title: "Final invoices and recoveries per day".to_owned(),
        width: WIDTH,
        height: DAILY_HEIGHT,
        bars,
        labels,
        rules: vec![
            Rule {
                x1: LEFT,
                y1: px(base),
                x2: width,
                y2: px(base),
            },
            Rule {
                x1: LEFT,
                y1: TOP,
                x2: LEFT,
                y2: px(base),
            },
        ],
    }
}

/// Each group's final invoices as a bar, with its recovered share in front: the recovery rate of
/// each decline class, say, at a glance.
pub fn groups(title: &str, groups: &[Group], name: impl Fn(&str) -> String) -> Chart {
    const ROW: f64 = 26.0;
    const NAMES: f64 = 150.0;
    const FIGURES: f64 = 130.0;
    let width = f64::from(WIDTH);
    let most = groups.iter().map(|g| g.invoices).max().unwrap_or(0).max(1);
    let room = width - NAMES - FIGURES;
    let mut bars = Vec::new();
    let mut labels = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let named = name(&group.name);
        let rate = group
            .recovery_rate
            .map_or("—".to_owned(), |r| format!("{:.0}%", r * 100.0));
        let figures = format!("{} of {} ({rate})", group.recovered, group.invoices);
        for (class, n) in [("final", group.invoices), ("recovered", group.recovered)] {
            if n > 0 {
                bars.push(Bar {
                    class,
                    x: NAMES,
                    y: px(y),
                    width: px(room * n as f64 / most as f64),
                    height: ROW - 8.0,
                    tip: format!("{named}: {figures} recovered"),
                });
            }
        }
        labels.push(Label {
            x: NAMES - 8.0,
            y: px(y + 13.0),
            anchor: "end",
            text: named,
        });
        labels.push(Label {
            x: width - FIGURES + 8.0,
            y: px(y + 13.0),
            anchor: "start",
            text: figures,
        });
    }
    let height = (TOP * 2.0 + ROW * groups.len().max(1) as f64) as u32;
    Chart {
        title: title.to_owned(),
        width: WIDTH,
        height,
        bars,
        labels,
        rules: vec![Rule {
            x1: NAMES,
            y1: TOP - 4.0,
            x2: NAMES,
            y2: px(f64::from(height) - TOP + 4.0),
        }],
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    #[test]
    fn the_tallest_day_fills_the_plot_and_an_empty_day_draws_nothing() {
        let days = [
            Daily {
                date: date(2026, 12, 1),
                invoices: 4,
                recovered: 2,
            },
            Daily {
                date: date(2026, 12, 2),
                invoices: 0,
                recovered: 0,
            },
        ];
        let chart = daily(&days);
        assert_eq!(chart.bars.len(), 2);
        let plot = f64::from(DAILY_HEIGHT) - BOTTOM - TOP;
        assert_eq!(chart.bars[0].height, px(plot));
        assert_eq!(chart.bars[1].height, px(plot / 2.0));
        assert_eq!(chart.bars[0].y + chart.bars[0].height, TOP + plot);
        let texts: Vec<&str> = chart.labels.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["0", "4", "2026-12-01", "2026-12-02"]);
        assert_eq!(chart.bars[1].tip, "2026-12-01: 4 final, 2 recovered");
    }

    #[test]
    fn each_group_is_a_row_scaled_to_the_largest() {
        let group = |name: &str, invoices, recovered| Group {
            name: name.to_owned(),
            invoices,
            recovered,
            recovery_rate: Some(recovered as f64 / invoices as f64),
        };
        let chart = groups(
            "by class",
            &[group("soft", 4, 3), group("hard", 2, 0)],
            str::to_owned,
        );
        assert_eq!(chart.bars.len(), 3, "no bar for nothing recovered");
        assert_eq!(chart.bars[0].width, px(2.0 * chart.bars[2].width));
        assert!(chart.labels.iter().any(|l| l.text == "3 of 4 (75%)"));
        assert!(chart.labels.iter().any(|l| l.text == "0 of 2 (0%)"));
    }
}
