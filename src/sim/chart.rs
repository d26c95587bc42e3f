//! The SVG chart of a simulation: how much revenue each retry policy won back, day by day.
//!
//! This module owns the picture only. The simulator hands it one cumulative curve per policy and
//! currency; it draws them and writes the file, and [`major_units`] is the one place that knows how
//! many of a currency's smallest units make one unit a reader counts in, so the text report and the
//! chart print the same numbers.
//!
//! Why it looks the way it does:
//! - One panel per currency, never one axis for all: there are no exchange rates in a simulation,
//!   and yen next to dollars on one scale would flatten every dollar line. The currency that won back
//!   the most (by what its best policy recovered, in major units) comes first, where the eye starts.
//! - Every y axis starts at zero (a hair below, so a policy that recovered nothing is seen as a
//!   line and not mistaken for the axis): the gap between two lines reads as money, not as a zoom.
//! - A policy keeps its colour in every panel (the order it first appears in), and the legend stands
//!   in a column of its own beside the panels: curves that rise steeply and then level off fill
//!   every corner of a panel sooner or later, so a legend inside one would hide part of a line.
//! - Colours are the Okabe–Ito palette, which stays distinguishable to colour-blind readers.
//! - Text is written as SVG `<text>` in the viewer's sans-serif font. Plotters is built without a
//!   font feature, so it measures text by a rough estimate instead of loading fonts: that needs no
//!   system library and no embedded font, and the viewer lays out the text itself anyway. The label
//!   areas below are sized with room to spare for that reason.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;

use crate::notify::templates::decimals;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One policy's recovered revenue in one currency: `cumulative[d]` is what it recovered by the end
/// of day `d` after the invoices failed (d = 0..=60), in the currency's smallest unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Curve {
    pub policy: String,
    pub currency: String,
    pub cumulative: Vec<i64>,
}

/// Why no chart was written.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("nothing to draw: no curve has a single day of data")]
    Empty,
    #[error("cannot write the chart to {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    /// Plotters failed while drawing into memory; kept as text so its types stay out of this API.
    #[error("cannot draw the chart: {0}")]
    Draw(String),
}

impl From<DrawingAreaErrorKind<io::Error>> for ChartError {
    fn from(error: DrawingAreaErrorKind<io::Error>) -> Self {
        ChartError::Draw(error.to_string())
    }
}

/// How many of `currency`'s smallest units make one major unit: divide a Stripe amount by this to
/// get yen, dollars or dinars ([`decimals`] knows Stripe's lists).
pub fn major_units(currency: &str) -> f64 {
    10f64.powi(i32::try_from(decimals(currency)).unwrap_or(2))
}

/// Writes an SVG of every curve to `path`: one panel per currency (stacked vertically, the
/// currency with the most revenue first), one line per policy in each, x = days since the failure,
/// y = recovered revenue in major units, a legend naming the policies, a title.
pub fn draw(path: &Path, title: &str, curves: &[Curve]) -> Result<(), ChartError> {
    let svg = render(title, curves)?;
    std::fs::write(path, svg).map_err(|source| ChartError::Write {
        path: path.to_owned(),
        source,
    })
}

// Okabe–Ito without its yellow, which is too faint on white; policies past the seventh reuse them.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(86, 180, 233),
    RGBColor(204, 121, 167),
    RGBColor(0, 0, 0),
];

const WIDTH: u32 = 1000;
const TITLE_HEIGHT: u32 = 50;
const PANEL_HEIGHT: u32 = 300;
// Plotters writes a font of size s as font-size s/1.24 in SVG: these give about 21, 16 and 13 px.
const TITLE_SIZE: f64 = 26.0;
const CAPTION_SIZE: f64 = 20.0;
const LABEL_SIZE: f64 = 16.0;

/// The SVG text of the chart, drawn in memory so that writing it is one step with one error.
fn render(title: &str, curves: &[Curve]) -> Result<String, ChartError> {
    let curves: Vec<&Curve> = curves.iter().filter(|c| !c.cumulative.is_empty()).collect();
    if curves.is_empty() {
        return Err(ChartError::Empty);
    }
    let (policies, lines) = colour(&curves);
    let currencies = currencies(&curves);
    // The last day any curve reaches: the simulator's horizon, without this module assuming it.
    let last_day = curves.iter().map(|c| c.cumulative.len() - 1).max();
    let last_day = last_day.unwrap_or(0).max(1);

    let height = TITLE_HEIGHT + PANEL_HEIGHT * currencies.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let body = root.titled(title, ("sans-serif", TITLE_SIZE))?;
        let (panels, legend) = body.split_horizontally(WIDTH - legend_width(&policies));
        draw_legend(&legend, &policies)?;
        for (area, currency) in panels
            .split_evenly((currencies.len(), 1))
            .iter()
            .zip(&currencies)
        {
            let in_currency: Vec<(&Curve, RGBColor)> = lines
                .iter()
                .copied()
                .filter(|(c, _)| &c.currency == currency)
                .collect();
            draw_panel(area, currency, last_day, &in_currency)?;
        }
        root.present()?;
    }
    Ok(svg)
}

type Legend<'a> = Vec<(&'a str, RGBColor)>;

/// Gives each policy the next colour the first time it appears: the legend (policies in that
/// order) and every curve with its policy's colour.
fn colour<'a>(curves: &[&'a Curve]) -> (Legend<'a>, Vec<(&'a Curve, RGBColor)>) {
    let mut legend: Legend<'a> = Vec::new();
    let lines = curves
        .iter()
        .map(|&curve| {
            let known = legend.iter().find(|(name, _)| *name == curve.policy);
            let colour = match known {
                Some(&(_, colour)) => colour,
                None => {
                    let colour = PALETTE[legend.len() % PALETTE.len()];
                    legend.push((&curve.policy, colour));
                    colour
                }
            };
            (curve, colour)
        })
        .collect();
    (legend, lines)
}

/// The currencies, the one whose best policy recovered the most (in major units) first; ties in
/// code order so the same input always gives the same picture.
fn currencies(curves: &[&Curve]) -> Vec<String> {
    let mut best: BTreeMap<&str, f64> = BTreeMap::new();
    for curve in curves {
        let recovered = to_major(*curve.cumulative.last().unwrap_or(&0), &curve.currency);
        let entry = best.entry(&curve.currency).or_insert(recovered);
        *entry = entry.max(recovered);
    }
    let mut ranked: Vec<(&str, f64)> = best.into_iter().collect();
    // Stable sort over the code-ordered map keeps ties in code order.
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked
        .into_iter()
        .map(|(code, _)| code.to_owned())
        .collect()
}

fn to_major(amount: i64, currency: &str) -> f64 {
    amount as f64 / major_units(currency)
}

/// Wide enough for the longest policy name at the estimated 0.6 em a character, but never more
/// than a third of the chart, so a runaway name cannot squeeze the panels away.
fn legend_width(policies: &[(&str, RGBColor)]) -> u32 {
    let longest = policies
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    let text = (longest as f64 * 0.6 * LABEL_SIZE / 1.24).ceil() as u32;
    (text + 60).clamp(120, WIDTH / 3)
}

fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    policies: &[(&str, RGBColor)],
) -> Result<(), ChartError> {
    let row = 24;
    // Level with the first panel's caption, below the title.
    let top = 30;
    area.draw(&Text::new(
        "Policy",
        (10, top),
        ("sans-serif", LABEL_SIZE)
            .into_font()
            .style(FontStyle::Bold),
    ))?;
    for (n, (name, colour)) in policies.iter().enumerate() {
        let y = top + row * (n as i32 + 1) + row / 2;
        area.draw(&PathElement::new(
            vec![(10, y), (38, y)],
            colour.stroke_width(3),
        ))?;
        area.draw(&Text::new(
            name.to_string(),
            (46, y),
            TextStyle::from(("sans-serif", LABEL_SIZE).into_font())
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    currency: &str,
    last_day: usize,
    lines: &[(&Curve, RGBColor)],
) -> Result<(), ChartError> {
    let code = currency.to_uppercase();
    let values = || {
        lines
            .iter()
            .flat_map(|(c, _)| c.cumulative.iter().map(|&v| to_major(v, currency)))
    };
    // Zero (or the lowest point, should a curve ever dip under it) to the highest, and a panel
    // where nothing was recovered still gets a range, or plotters would have none to divide.
    let low = values().fold(0.0, f64::min);
    let high = values().fold(0.0, f64::max).max(low + 1.0);
    // A little room on both sides: on top so the best line does not run along the frame, below
    // so a policy that recovered nothing shows as a line of its own instead of hiding in the axis.
    let pad = (high - low) * 0.03;
    let (low, high) = (low - pad, high + pad);

    let mut chart = ChartBuilder::on(area)
        .caption(&code, ("sans-serif", CAPTION_SIZE))
        .margin(10)
        .margin_right(20)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d(0..last_day, low..high)?;
    let y_format = |v: &f64| compact(*v);
    chart
        .configure_mesh()
        .x_labels(7)
        .y_labels(6)
        .y_label_formatter(&y_format)
        .x_desc("days since the payment failed")
        .y_desc(format!("recovered, {code}"))
        .label_style(("sans-serif", LABEL_SIZE))
        .axis_desc_style(("sans-serif", LABEL_SIZE))
        .light_line_style(TRANSPARENT)
        .bold_line_style(BLACK.mix(0.1))
        .draw()?;

    for (curve, colour) in lines {
        let points = (0..).zip(curve.cumulative.iter().map(|&v| to_major(v, currency)));
        chart.draw_series(LineSeries::new(points, colour.stroke_width(2)))?;
    }
    Ok(())
}

/// A tick value as a reader skims it: `950`, `12.5k`, `3M`, no trailing zeros.
fn compact(value: f64) -> String {
    let (scaled, suffix) = match value.abs() {
        v if v >= 1e9 => (value / 1e9, "B"),
        v if v >= 1e6 => (value / 1e6, "M"),
        v if v >= 1e3 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    // Two decimals tell neighbouring ticks such as 1.25k and 1.5k apart; then drop what is zero.
    let text = format!("{scaled:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    let text = if text == "-0" { "0" } else { text };
    format!("{text}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A curve that recovers `total` minor units, most of it in the first weeks, like retries do.
    fn curve(policy: &str, currency: &str, total: i64, pace: f64) -> Curve {
        let cumulative = (0..=60)
            .map(|day| (total as f64 * (1.0 - (-f64::from(day) / pace).exp())) as i64)
            .collect();
        Curve {
            policy: policy.into(),
            currency: currency.into(),
            cumulative,
        }
    }

    fn sample() -> Vec<Curve> {
        vec![
            curve("stripe-default", "eur", 410_000, 12.0),
            curve("recoup-smart", "eur", 655_000, 8.0),
            curve("stripe-default", "usd", 1_230_000, 12.0),
            curve("recoup-smart", "usd", 1_910_000, 8.0),
        ]
    }

    /// Each `<polyline>`'s stroke colour and number of points.
    fn polylines(svg: &str) -> Vec<(&str, usize)> {
        fn attribute<'a>(element: &'a str, name: &str) -> &'a str {
            let value = element.split(&format!(" {name}=\"")).nth(1).unwrap();
            value.split('"').next().unwrap()
        }
        svg.split("<polyline")
            .skip(1)
            .map(|line| {
                (
                    attribute(line, "stroke"),
                    attribute(line, "points").split_whitespace().count(),
                )
            })
            .collect()
    }

    /// What each `<text>` element says, without the whitespace plotters puts around it.
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("<text")
            .skip(1)
            .map(|t| {
                t.split_once('>')
                    .unwrap()
                    .1
                    .split("</text>")
                    .next()
                    .unwrap()
                    .trim()
            })
            .collect()
    }

    #[test]
    fn draws_every_curve_in_a_panel_per_currency() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.svg");
        draw(&path, "Recovered revenue, 60 days", &sample()).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();

        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        let texts = texts(&svg);
        for text in [
            "Recovered revenue, 60 days",
            "stripe-default",
            "recoup-smart",
        ] {
            assert!(texts.contains(&text), "{text} missing from {texts:?}");
        }
        // A panel per currency, the one with more revenue first.
        let panels: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| ["USD", "EUR"].contains(t))
            .collect();
        assert_eq!(panels, ["USD", "EUR"]);
        assert!(texts.contains(&"recovered, USD") && texts.contains(&"recovered, EUR"));
        // One 61-point line per curve; the legend's samples and the axes have two points.
        let mut lines: Vec<&str> = polylines(&svg)
            .into_iter()
            .filter(|(_, points)| *points == 61)
            .map(|(stroke, _)| stroke)
            .collect();
        // A policy keeps its colour in both panels: two lines in each of two colours.
        lines.sort_unstable();
        assert_eq!(lines, ["#0072B2", "#0072B2", "#E69F00", "#E69F00"]);
    }

    #[test]
    fn nothing_to_draw() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.svg");
        assert!(matches!(draw(&path, "t", &[]), Err(ChartError::Empty)));
        let no_days = Curve {
            policy: "p".into(),
            currency: "usd".into(),
            cumulative: vec![],
        };
        assert!(matches!(
            draw(&path, "t", &[no_days]),
            Err(ChartError::Empty)
        ));
        assert!(!path.exists());
    }

    #[test]
    fn a_flat_or_one_day_curve_still_draws() {
        // Ranges plotters cannot divide (nothing recovered, a single day) must not panic it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.svg");
        let flat = Curve {
            policy: "never-retry".into(),
            currency: "jpy".into(),
            cumulative: vec![0; 61],
        };
        let one_day = Curve {
            cumulative: vec![500],
            ..flat.clone()
        };
        draw(&path, "t", &[flat, one_day]).unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("never-retry")
        );
    }

    #[test]
    fn an_unwritable_path_is_named() {
        let dir = tempfile::tempdir().unwrap();
        // A missing folder rather than a read-only file: root, as in CI, may write anywhere.
        let path = dir.path().join("missing").join("chart.svg");
        let error = draw(&path, "t", &sample()).unwrap_err();
        assert!(matches!(error, ChartError::Write { .. }));
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn major_units_follow_stripe() {
        assert_eq!(major_units("usd"), 100.0);
        assert_eq!(major_units("JPY"), 1.0);
        assert_eq!(major_units("krw"), 1.0);
        assert_eq!(major_units("kwd"), 1000.0);
    }

    #[test]
    fn ticks_are_compact() {
        assert_eq!(compact(0.0), "0");
        assert_eq!(compact(950.0), "950");
        assert_eq!(compact(1250.0), "1.25k");
        assert_eq!(compact(12_000.0), "12k");
        assert_eq!(compact(3_000_000.0), "3M");
        assert_eq!(compact(-1500.0), "-1.5k");
    }
}
