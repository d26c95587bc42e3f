//! The knobs `recoup tune` turns, and how a point of the search becomes a policy file.
//!
//! A candidate policy is the base policy file with some values replaced, edited as text with
//! `toml_edit` (which keeps every comment and blank line) and read back with the same parser
//! `recoup serve` uses, so what the search scores is exactly what the written file says. Each knob
//! is an integer in a unit (days, hours, minutes, a count, a choice from a list) with a range
//! inside what the policy file accepts (`crate::policy::file`), widened only to take in the base
//! policy's own value; a value the file accepts stays accepted, so every point of the search is a
//! valid policy (a property test below checks it).
//!
//! | knob | range searched | the file accepts |
//! | --- | --- | --- |
//! | `retries.soft`, `retries.ambiguous`: how many retries | 1 to `max_attempts` − 1 (soft), 0 to `max_attempts` − 1 (ambiguous) | any number |
//! | each gap of those schedules | 1d to 21d | 1h to 60d |
//! | `retries.within` | 14d to 90d | 1d to 120d |
//! | `timing.window`: opening hour, closing hour | 0 to 12, 13 to 24 | 0 to 23, 1 to 24, opening first |
//! | `timing.paydays` | one of [], [1], [1, 15], [1, 15, 31], [15, 31] (and the base's own) | days 1 to 31 |
//! | `timing.jitter` | 0m to 360m | 0s to 6h |
//! | `nudges.per_case` | 1 to 6 | 0 to 20 |
//! | each `[[nudges.step]]`'s `after` | 0h to 48h when the base's is under 2 days, else 1d to 60d | 0s to 60d |
//! | how many steps of each kind (`payment_failed`, …) are kept, first tiers first | 1 to the base's number | any |
//! | `end.grace` | 0d to 21d | 0s to 60d |
//!
//! A value is written only when it differs from the base's, and a gap the search left alone keeps
//! the base's own spelling: an untuned file is the base file, byte for byte. Steps are tuned only
//! when the base file lists its `[[nudges.step]]` tables, and only dropped (a tier the base has no
//! step for has no text to send in every language the base was written for); the window only when the base's opens by
//! 12:00 and closes after 13:00 (so the two ranges cannot cross). Segments keep their own
//! `[segment.retries]` and `[segment.nudges]`; `[learning]`, the network rules and the end actions
//! are not searched.

use jiff::SignedDuration;
use toml_edit::{Array, DocumentMut, Item, Value};

use super::search::Range;
use crate::policy::file::{self, PolicyError};
use crate::policy::{NudgeKind, Policy};

/// The paydays the search chooses among (the base's own is added when it is none of these).
const PAYDAYS: [&[u8]; 5] = [&[], &[1], &[1, 15], &[1, 15, 31], &[15, 31]];

/// Which retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schedule {
    Soft,
    Ambiguous,
}

impl Schedule {
    fn key(self) -> &'static str {
        match self {
            Schedule::Soft => "soft",
            Schedule::Ambiguous => "ambiguous",
        }
    }
}

/// What a knob sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    Retries(Schedule),
    Gap(Schedule, usize),
    Within,
    WindowOpens,
    WindowCloses,
    Paydays,
    Jitter,
    PerCase,
    StepAfter(usize),
    /// How many of one kind's `[[nudges.step]]` tables are kept, first tiers first.
    Steps(NudgeKind),
    Grace,
}

/// How a duration knob counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Days,
    Hours,
    Minutes,
}

impl Unit {
    fn seconds(self) -> i64 {
        match self {
            Unit::Days => 86_400,
            Unit::Hours => 3_600,
            Unit::Minutes => 60,
        }
    }

    /// `n` of this unit as the policy file writes a duration.
    fn write(self, n: i64) -> String {
        match (self, n) {
            (_, 0) => "0s".to_owned(),
            (Unit::Days, n) => format!("{n}d"),
            (Unit::Hours, n) => format!("{n}h"),
            (Unit::Minutes, n) => format!("{n}m"),
        }
    }

    /// `duration` in this unit, rounded.
    fn count(self, duration: SignedDuration) -> i64 {
        (duration.as_secs() + self.seconds() / 2) / self.seconds()
    }
}

/// One knob: its name (the file's dotted key), what it sets, the range searched and the base's value.
#[derive(Debug, Clone)]
pub struct Knob {
    pub name: String,
    setting: Setting,
    unit: Option<Unit>,
    pub range: Range,
    pub base: i64,
}

/// A value the search changed, as the file wrote it before and writes it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The dotted key, `retries.soft` or `nudges.step[1].after`.
    pub key: String,
    pub was: String,
    pub now: String,
    table: Table,
}

/// The knobs of one base policy file, and the file to edit.
#[derive(Debug, Clone)]
pub struct Space {
    pub knobs: Vec<Knob>,
    document: DocumentMut,
    /// The name errors in a candidate are reported under.
    file: String,
    paydays: Vec<Vec<u8>>,
    /// The base file's `[[nudges.step]]` tables, in order: each one's kind, its place among the
    /// steps of its kind, and how the base describes it. Empty when the steps are not tuned.
    steps: Vec<(NudgeKind, usize, String)>,
}

impl Space {
    /// The knobs of the policy file `text` (already parsed as `policy`), named `file` in errors.
    pub fn new(text: &str, policy: &Policy, file: &str) -> Result<Self, toml_edit::TomlError> {
        let document: DocumentMut = text.parse()?;
        let plan = &policy.plan;
        let mut knobs = Vec::new();
        let mut knob = |name: String, setting, unit: Option<Unit>, range: Range, base: i64| {
            let range = Range {
                min: range.min.min(base),
                max: range.max.max(base),
                ..range
            };
            knobs.push(Knob {
                name,
                setting,
                unit,
                range,
                base,
            });
        };
        let most = i64::from(plan.max_attempts).saturating_sub(1).max(1);
        for (schedule, gaps, fewest) in [
            (Schedule::Soft, &plan.soft, 1),
            (Schedule::Ambiguous, &plan.ambiguous, 0),
        ] {
            let key = format!("retries.{}", schedule.key());
            let slots = most.max(gaps.len() as i64);
            knob(
                format!("{key} (retries)"),
                Setting::Retries(schedule),
                None,
                steps(fewest.min(most), most, 1, 1),
                gaps.len() as i64,
            );
            for slot in 0..slots as usize {
                let base = gaps.get(slot).map_or(7, |&g| Unit::Days.count(g).max(1));
                knob(
                    format!("{key}[{slot}]"),
                    Setting::Gap(schedule, slot),
                    Some(Unit::Days),
                    steps(1, 21, 4, 1),
                    base,
                );
            }
        }
        knob(
            "retries.within".into(),
            Setting::Within,
            Some(Unit::Days),
            steps(14, 90, 14, 1),
            Unit::Days.count(plan.within).max(1),
        );
        let window = plan.window;
        if window.start_hour <= 12 && window.end_hour >= 13 {
            knob(
                "timing.window (opens)".into(),
                Setting::WindowOpens,
                None,
                steps(0, 12, 3, 1),
                i64::from(window.start_hour),
            );
            knob(
                "timing.window (closes)".into(),
                Setting::WindowCloses,
                None,
                steps(13, 24, 3, 1),
                i64::from(window.end_hour),
            );
        }
        let mut paydays: Vec<Vec<u8>> = PAYDAYS.iter().map(|d| d.to_vec()).collect();
        if !paydays.contains(&plan.paydays) {
            paydays.push(plan.paydays.clone());
        }
        let chosen = paydays.iter().position(|d| *d == plan.paydays).unwrap_or(0);
        knob(
            "timing.paydays".into(),
            Setting::Paydays,
            None,
            steps(0, paydays.len() as i64 - 1, 1, 1),
            chosen as i64,
        );
        knob(
            "timing.jitter".into(),
            Setting::Jitter,
            Some(Unit::Minutes),
            steps(0, 360, 60, 15),
            Unit::Minutes.count(plan.jitter),
        );
        knob(
            "nudges.per_case".into(),
            Setting::PerCase,
            None,
            steps(1, 6, 1, 1),
            i64::from(policy.nudges.per_case),
        );
        let listed = document
            .get("nudges")
            .and_then(|n| n.get("step"))
            .and_then(Item::as_array_of_tables)
            .map_or(0, |steps| steps.len());
        let mut listed_steps = Vec::new();
        if listed == policy.nudges.steps.len() {
            for (n, step) in policy.nudges.steps.iter().enumerate() {
                let rank = listed_steps
                    .iter()
                    .filter(|(k, _, _)| *k == step.kind)
                    .count();
                let after = document["nudges"]["step"]
                    .get(n)
                    .and_then(|t| t.get("after"))
                    .and_then(Item::as_str)
                    .unwrap_or_default();
                let described = format!(
                    "the {} tier {} step after {after}",
                    step.kind.as_str(),
                    step.tier
                );
                listed_steps.push((step.kind, rank, described));
            }
            // Each kind once, in the order it first appears (its steps need not be neighbours).
            let mut kinds: Vec<NudgeKind> = Vec::new();
            for (kind, _, _) in &listed_steps {
                if !kinds.contains(kind) {
                    kinds.push(*kind);
                }
            }
            for kind in kinds {
                let count = listed_steps.iter().filter(|(k, _, _)| *k == kind).count() as i64;
                if count > 1 {
                    knob(
                        format!("nudges.step ({} steps)", kind.as_str()),
                        Setting::Steps(kind),
                        None,
                        steps(1, count, 1, 1),
                        count,
                    );
                }
            }
            for (n, step) in policy.nudges.steps.iter().enumerate() {
                let (unit, range) = if step.after < SignedDuration::from_hours(48) {
                    (Unit::Hours, steps(0, 48, 12, 1))
                } else {
                    (Unit::Days, steps(1, 60, 4, 1))
                };
                knob(
                    format!("nudges.step[{n}].after"),
                    Setting::StepAfter(n),
                    Some(unit),
                    range,
                    unit.count(step.after),
                );
            }
        }
        knob(
            "end.grace".into(),
            Setting::Grace,
            Some(Unit::Days),
            steps(0, 21, 3, 1),
            Unit::Days.count(policy.ending.grace),
        );
        Ok(Self {
            knobs,
            document,
            file: file.to_owned(),
            paydays,
            steps: listed_steps,
        })
    }

    /// The base policy's point.
    pub fn base(&self) -> Vec<i64> {
        self.knobs.iter().map(|k| k.base).collect()
    }

    /// The search's ranges, knob by knob.
    pub fn ranges(&self) -> Vec<Range> {
        self.knobs.iter().map(|k| k.range).collect()
    }

    /// Whether knob `n` changes anything at `point`: a gap past the number of retries does not,
    /// nor the `after` of a step removed.
    pub fn matters(&self, point: &[i64], n: usize) -> bool {
        match self.knobs[n].setting {
            Setting::Gap(schedule, slot) => (slot as i64) < point[self.retries(schedule)],
            Setting::StepAfter(step) => self.kept(point, step),
            _ => true,
        }
    }

    /// Whether step `n` of the base file is kept at `point`.
    fn kept(&self, point: &[i64], n: usize) -> bool {
        let Some(&(kind, rank, _)) = self.steps.get(n) else {
            return true;
        };
        self.knobs
            .iter()
            .position(|k| k.setting == Setting::Steps(kind))
            .is_none_or(|knob| (rank as i64) < point[knob])
    }

    fn retries(&self, schedule: Schedule) -> usize {
        self.knobs
            .iter()
            .position(|k| k.setting == Setting::Retries(schedule))
            .expect("every space has both schedules' retries")
    }

    /// The policy file at `point`: the base text with the values that differ replaced (and the
    /// steps dropped removed), and the changes. With `effect`, a comment above each change says
    /// what it was and `effect`, the measured effect of all the changes together. The untouched
    /// base point gives the base text itself.
    pub fn edit(&self, point: &[i64], effect: Option<&str>) -> (DocumentMut, Vec<Change>) {
        let mut document = self.document.clone();
        let mut changes = Vec::new();
        let base = self.values(&self.base());
        for ((table, key, value), (_, _, was)) in self.values(point).into_iter().zip(base) {
            let now = plain(&value);
            if now == plain(&was) {
                continue;
            }
            let base = self.written(table, key);
            let dotted = match table {
                Table::Top(name) => format!("{name}.{key}"),
                Table::Step(n) => format!("nudges.step[{n}].{key}"),
                Table::Steps => "nudges.step".to_owned(),
            };
            changes.push(Change {
                key: dotted,
                was: base.unwrap_or_else(|| "(not set: the default)".into()),
                now,
                table,
            });
            match table {
                Table::Top(name) => document[name][key] = Item::Value(value),
                Table::Step(n) => {
                    if let Some(step) = steps_mut(&mut document).and_then(|steps| steps.get_mut(n))
                    {
                        step[key] = Item::Value(value);
                    }
                }
                Table::Steps => {}
            }
        }
        let dropped: Vec<usize> = (0..self.steps.len())
            .filter(|&n| !self.kept(point, n))
            .collect();
        for &n in &dropped {
            changes.push(Change {
                key: format!("nudges.step[{n}]"),
                was: self.steps[n].2.clone(),
                now: "(removed)".into(),
                table: Table::Steps,
            });
        }
        if let Some(effect) = effect {
            annotate(&mut document, &changes, effect);
        }
        if let Some(steps) = steps_mut(&mut document) {
            for &n in dropped.iter().rev() {
                steps.remove(n);
            }
        }
        (document, changes)
    }

    /// The policy file at `point`, as text and read back.
    pub fn policy(&self, point: &[i64]) -> Result<(String, Policy), PolicyError> {
        let text = self.edit(point, None).0.to_string();
        let policy = file::parse(&text, &self.file)?;
        Ok((text, policy))
    }

    /// Every value the knobs set, where it goes.
    fn values(&self, point: &[i64]) -> Vec<(Table, &'static str, Value)> {
        let at = |setting: Setting| {
            self.knobs
                .iter()
                .position(|k| k.setting == setting)
                .map(|n| point[n])
        };
        let duration = |setting: Setting| {
            let n = self.knobs.iter().position(|k| k.setting == setting)?;
            let unit = self.knobs[n].unit?;
            Some(Value::from(unit.write(point[n])))
        };
        let mut values = Vec::new();
        for schedule in [Schedule::Soft, Schedule::Ambiguous] {
            let count = point[self.retries(schedule)];
            let written = self.written_gaps(schedule);
            let gaps: Array = (0..count as usize)
                .filter_map(|slot| {
                    let n = self
                        .knobs
                        .iter()
                        .position(|k| k.setting == Setting::Gap(schedule, slot))?;
                    let knob = &self.knobs[n];
                    // A gap left alone keeps the base's spelling ("36h" stays "36h").
                    Some(match written.get(slot) {
                        Some(text) if point[n] == knob.base => text.clone(),
                        _ => Unit::Days.write(point[n]),
                    })
                })
                .collect();
            values.push((Table::Top("retries"), schedule.key(), array(gaps)));
        }
        if let Some(v) = duration(Setting::Within) {
            values.push((Table::Top("retries"), "within", v));
        }
        if let (Some(opens), Some(closes)) = (at(Setting::WindowOpens), at(Setting::WindowCloses)) {
            let window: Array = [opens, closes].into_iter().collect();
            values.push((Table::Top("timing"), "window", array(window)));
        }
        if let Some(n) = at(Setting::Paydays) {
            let days: Array = self.paydays[n as usize]
                .iter()
                .map(|&d| i64::from(d))
                .collect();
            values.push((Table::Top("timing"), "paydays", array(days)));
        }
        if let Some(v) = duration(Setting::Jitter) {
            values.push((Table::Top("timing"), "jitter", v));
        }
        if let Some(n) = at(Setting::PerCase) {
            values.push((Table::Top("nudges"), "per_case", Value::from(n)));
        }
        for (n, knob) in self.knobs.iter().enumerate() {
            if let (Setting::StepAfter(step), Some(unit)) = (knob.setting, knob.unit) {
                let after = match self.step_after(step) {
                    Some(text) if point[n] == knob.base => text,
                    _ => unit.write(point[n]),
                };
                values.push((Table::Step(step), "after", Value::from(after)));
            }
        }
        if let Some(v) = duration(Setting::Grace) {
            values.push((Table::Top("end"), "grace", v));
        }
        values
    }

    /// A value as the base file writes it, `None` when the file leaves it to the default.
    fn written(&self, table: Table, key: &str) -> Option<String> {
        let item = match table {
            Table::Top(name) => self.document.get(name)?.get(key)?,
            Table::Step(n) => self.document.get("nudges")?.get("step")?.get(n)?.get(key)?,
            Table::Steps => return None,
        };
        Some(plain(item.as_value()?))
    }

    fn written_gaps(&self, schedule: Schedule) -> Vec<String> {
        self.document
            .get("retries")
            .and_then(|r| r.get(schedule.key()))
            .and_then(Item::as_array)
            .map(|gaps| {
                gaps.iter()
                    .filter_map(|g| g.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn step_after(&self, step: usize) -> Option<String> {
        let steps = self.document.get("nudges")?.get("step")?;
        Some(steps.get(step)?.get("after")?.as_str()?.to_owned())
    }
}

/// Puts `comment` on a line of its own above what `decor` decorates, after the comments there.
fn comment_above(decor: &mut toml_edit::Decor, comment: &str) {
    let before = decor
        .prefix()
        .and_then(|p| p.as_str())
        .unwrap_or_default()
        .to_owned();
    decor.set_prefix(format!("{before}{comment}\n"));
}

/// Adds a comment line above each changed value: what it was, and `effect`. A step removed is told
/// above the first step that stays (which is never one removed: each kind keeps its first).
fn annotate(document: &mut DocumentMut, changes: &[Change], effect: &str) {
    for change in changes {
        if change.table == Table::Steps {
            let Some(stays) = steps_mut(document).and_then(|steps| steps.get_mut(0)) else {
                continue;
            };
            comment_above(
                stays.decor_mut(),
                &format!(
                    "# tuned: removed {} — with the other changes, {effect}",
                    change.was
                ),
            );
            continue;
        }
        let key = change.key.rsplit('.').next().unwrap_or_default();
        let table = match change.table {
            Table::Top(name) => document.get_mut(name).and_then(Item::as_table_like_mut),
            Table::Step(n) => steps_mut(document)
                .and_then(|steps| steps.get_mut(n))
                .map(|t| t as &mut dyn toml_edit::TableLike),
            Table::Steps => None,
        };
        let Some(mut key) = table.and_then(|t| t.key_mut(key)) else {
            continue;
        };
        comment_above(
            key.leaf_decor_mut(),
            &format!(
                "# tuned: was {} — with the other changes, {effect}",
                change.was
            ),
        );
    }
}

/// The file's `[[nudges.step]]` tables, when it has them (without adding them when it has not).
fn steps_mut(document: &mut DocumentMut) -> Option<&mut toml_edit::ArrayOfTables> {
    document
        .get_mut("nudges")?
        .get_mut("step")?
        .as_array_of_tables_mut()
}

/// Where a value goes: a top-level table, one `[[nudges.step]]`, or the list of steps itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Top(&'static str),
    Step(usize),
    Steps,
}

/// A value as the file would write it fresh: without the spaces and comments around it and its
/// elements, so `["3d","4d"]` and `[ "3d", "4d" ]` are the same value.
fn plain(value: &Value) -> String {
    match value {
        Value::Array(array) => {
            let mut bare: Array = array
                .iter()
                .map(|v| {
                    let mut v = v.clone();
                    v.decor_mut().clear();
                    v
                })
                .collect();
            bare.fmt();
            Value::Array(bare).to_string()
        }
        _ => value.clone().decorated("", "").to_string(),
    }
}

/// An array as the policy file writes one: `["3d", "4d"]`.
fn array(mut array: Array) -> Value {
    array.fmt();
    Value::Array(array)
}

fn steps(min: i64, max: i64, first_step: i64, last_step: i64) -> Range {
    Range {
        min,
        max,
        first_step,
        last_step,
    }
}
