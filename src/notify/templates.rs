//! Message templates: one per kind and tier and language, text and HTML, in `config/templates/`.
//!
//! `<language>/<kind>-<tier>.txt` starts with a `Subject: …` line and a blank line, then the text
//! body; `<language>/<kind>-<tier>.html` is the same message as HTML (everything inserted into it is
//! HTML-escaped). Templates are minijinja with strict variables: a template that names a variable
//! recoup does not provide, or is missing in a language, stops start-up with the file named —
//! never a blank email. English (`en`) is the default language and must have every template; a
//! customer gets the first of their Stripe `preferred_locales` whose language has a folder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// The language every template must exist in, and the one used when a customer's is not there.
pub const DEFAULT_LANGUAGE: &str = "en";

/// What a template can say. Every field is always there (an absent date is an empty string), so a
/// template can be checked against it at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Context {
    pub customer_name: String,
    /// The amount due, formatted for its currency and the message's language: `$49.00`, `49,00 €`.
    pub amount: String,
    /// What the customer pays for (the invoice line's description), or empty.
    pub plan: String,
    /// The one-click fix: the billing portal or the hosted invoice page.
    pub update_url: String,
    /// "What's in the way?": the page where the customer can say why they have not paid
    /// (`<RECOUP_PUBLIC_URL>/feedback/…`), or empty: a thank-you, an expiring card, the update
    /// link they asked for, or feedback off in the policy (`[feedback] enabled`).
    pub feedback_url: String,
    /// The business, as the From address names it.
    pub business: String,
    /// The next retry, in the customer's time zone, or empty.
    pub next_attempt: String,
    /// For a final notice, what happens if the customer does nothing: `paused`, `canceled`,
    /// `ends_at_period_end` (not renewed) or `overdue` (written off or left past due); and from
    /// when (local date).
    pub consequence: String,
    pub consequence_date: String,
    /// For an expiring card: its brand, last four digits and expiry (`12/2026`).
    pub card: String,
}

/// A message ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// `<language>/<kind>-<tier>`.
    pub template: String,
    pub locale: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The short form for SMS: the subject and the link (and the feedback link, when there is one).
    pub sms: String,
}

/// A template that cannot be used, named by its file.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("templates: {0}: {1}")]
    File(PathBuf, String),
}

/// Every template, parsed and checked.
pub struct Templates {
    env: Environment<'static>,
    languages: BTreeSet<String>,
}

/// Where recoup looks for the templates unless told otherwise.
pub const DEFAULT_DIR: &str = "config/templates";

/// The templates of `config/templates/`, built into recoup: what applies when that folder is not
/// there (recoup run outside its checkout, a container without it), as for the policy file.
/// Every file of the folder must be listed (a test says so).
macro_rules! built_in {
    ([$($language:literal),* $(,)?], $templates:tt) => {
        &[$(($language, built_in!(@files $language, $templates))),*]
    };
    (@files $language:literal, [$($template:literal),* $(,)?]) => {
        &[$(
            (
                concat!($template, ".txt"),
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"), "/config/templates/", $language, "/", $template, ".txt"
                )),
            ),
            (
                concat!($template, ".html"),
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"), "/config/templates/", $language, "/", $template, ".html"
                )),
            ),
        )*]
    };
}

/// Every built-in template: `(language, [(file, source)])`. The names are also the templates
/// recoup sends — every kind with the tiers the default nudge plan uses — so a folder of one's own
/// must have each of them in the default language ([`required`]).
const BUILT_IN: &[(&str, &[(&str, &str)])] = built_in!(
    ["en", "de"],
    [
        "payment_failed-1",
        "payment_failed-2",
        "payment_failed-3",
        "action_required-1",
        "action_required-2",
        "card_expiring-1",
        "final_notice-1",
        "recovered-1",
        "update_link-1",
    ]
);

/// `<kind>-<tier>` of every template recoup sends.
fn required() -> impl Iterator<Item = &'static str> {
    BUILT_IN
        .iter()
        .filter(|&&(language, _)| language == DEFAULT_LANGUAGE)
        .flat_map(|&(_, files)| files.iter())
        .filter_map(|&(file, _)| file.strip_suffix(".txt"))
}

impl Templates {
    /// The templates of `dir`; when `dir` is left at [`DEFAULT_DIR`] and no such folder exists,
    /// the ones built into recoup. A folder someone set and got wrong is an error, not a silent
    /// fallback.
    pub fn for_service(dir: &Path) -> Result<Self, TemplateError> {
        if dir == Path::new(DEFAULT_DIR) && !dir.exists() {
            tracing::info!("no templates at {DEFAULT_DIR}; the ones built into recoup apply");
            return Self::built_in();
        }
        Self::load(dir)
    }

    /// The templates built into recoup (the shipped `config/templates/`).
    pub fn built_in() -> Result<Self, TemplateError> {
        let sources = BUILT_IN
            .iter()
            .flat_map(|&(language, files)| {
                files.iter().map(move |&(file, source)| {
                    (language.to_owned(), file.to_owned(), source.to_owned())
                })
            })
            .collect();
        Self::checked(Path::new("built in"), sources)
    }

    /// Loads every template under `dir` and checks each renders with every variable recoup gives.
    pub fn load(dir: &Path) -> Result<Self, TemplateError> {
        let fail = |path: &Path, problem: String| TemplateError::File(path.to_owned(), problem);
        let entries = std::fs::read_dir(dir).map_err(|e| fail(dir, e.to_string()))?;
        let mut sources = Vec::new();
        for entry in entries {
            let language_dir = entry.map_err(|e| fail(dir, e.to_string()))?.path();
            if !language_dir.is_dir() {
                continue;
            }
            let language = name_of(&language_dir);
            for file in
                std::fs::read_dir(&language_dir).map_err(|e| fail(&language_dir, e.to_string()))?
            {
                let path = file.map_err(|e| fail(&language_dir, e.to_string()))?.path();
                if !matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("txt" | "html")
                ) {
                    continue;
                }
                let source =
                    std::fs::read_to_string(&path).map_err(|e| fail(&path, e.to_string()))?;
                sources.push((language.clone(), name_of(&path), source));
            }
        }
        Self::checked(dir, sources)
    }

    /// `(language, file, source)` of every template, parsed and checked; `dir` names the files in
    /// errors.
    fn checked(dir: &Path, sources: Vec<(String, String, String)>) -> Result<Self, TemplateError> {
        let fail = |path: &Path, problem: String| TemplateError::File(path.to_owned(), problem);
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut languages = BTreeSet::new();
        let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (language, file, source) in sources {
            env.add_template_owned(format!("{language}/{file}"), source)
                .map_err(|e| fail(&dir.join(&language).join(&file), e.to_string()))?;
            found.entry(language.clone()).or_default().insert(file);
            languages.insert(language);
        }
        let default = found.get(DEFAULT_LANGUAGE).cloned().unwrap_or_default();
        for required in required() {
            for ext in ["txt", "html"] {
                let file = format!("{required}.{ext}");
                if !default.contains(&file) {
                    return Err(fail(
                        &dir.join(DEFAULT_LANGUAGE).join(&file),
                        "missing: every kind and tier recoup sends needs a template in the default \
                         language"
                            .to_owned(),
                    ));
                }
            }
        }
        let templates = Self { env, languages };
        // Every template of every language must render, with every variable, and have its pair.
        for (language, files) in &found {
            for file in files {
                let (stem, _) = file.rsplit_once('.').unwrap_or((file, ""));
                let path = dir.join(language).join(file);
                for ext in ["txt", "html"] {
                    if !files.contains(&format!("{stem}.{ext}")) {
                        return Err(fail(
                            &dir.join(language).join(format!("{stem}.{ext}")),
                            format!("missing: {file} has no .{ext} twin"),
                        ));
                    }
                }
                templates
                    .render_named(language, stem, &Context::default())
                    .map_err(|problem| fail(&path, problem))?;
            }
        }
        Ok(templates)
    }

    /// The language `<kind>-<tier>` goes out in: the first of `locales` recoup has it in.
    pub fn language(&self, kind_tier: &str, locales: &[String]) -> String {
        locales
            .iter()
            .map(|l| l.split(['-', '_']).next().unwrap_or(l).to_ascii_lowercase())
            .find(|l| {
                self.languages.contains(l)
                    && self
                        .env
                        .get_template(&format!("{l}/{kind_tier}.txt"))
                        .is_ok()
            })
            .unwrap_or_else(|| DEFAULT_LANGUAGE.to_owned())
    }

    /// The message of `<kind>-<tier>` in the first of `locales` recoup has templates for.
    pub fn render(
        &self,
        kind_tier: &str,
        locales: &[String],
        context: &Context,
    ) -> Result<Rendered, String> {
        self.render_named(&self.language(kind_tier, locales), kind_tier, context)
    }

    fn render_named(
        &self,
        language: &str,
        stem: &str,
        context: &Context,
    ) -> Result<Rendered, String> {
        let render = |ext: &str| {
            self.env
                .get_template(&format!("{language}/{stem}.{ext}"))
                .and_then(|t| t.render(minijinja::value::Serde(context)))
                .map_err(|e| format!("{e:#}"))
        };
        let text = render("txt")?;
        let html = render("html")?;
        let (subject, body) = text
            .strip_prefix("Subject:")
            .and_then(|rest| rest.split_once('\n'))
            .ok_or("the text template must start with a \"Subject: …\" line")?;
        let subject = subject.trim().to_owned();
        let mut sms = match context.update_url.as_str() {
            "" => subject.clone(),
            url => format!("{subject} {url}"),
        };
        if !context.feedback_url.is_empty() {
            sms = format!("{sms} Something in the way? {}", context.feedback_url);
        }
        Ok(Rendered {
            template: format!("{language}/{stem}"),
            locale: language.to_owned(),
            subject,
            text: body.trim_start_matches('\n').to_owned(),
            html,
            sms,
        })
    }
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned()
}

/// A moment as a reader of `language` writes it, in `zone`: `Tuesday, 1 December 2026, 09:10` or
/// `Dienstag, 1. Dezember 2026, 09:10`.
pub fn format_time(at: jiff::Timestamp, zone: &jiff::tz::TimeZone, language: &str) -> String {
    let local = at.to_zoned(zone.clone());
    let date = format_date(at, zone, language);
    format!("{date}, {:02}:{:02}", local.hour(), local.minute())
}

/// A day as a reader of `language` writes it: `Tuesday, 1 December 2026`.
pub fn format_date(at: jiff::Timestamp, zone: &jiff::tz::TimeZone, language: &str) -> String {
    const EN_DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    const DE_DAYS: [&str; 7] = [
        "Montag",
        "Dienstag",
        "Mittwoch",
        "Donnerstag",
        "Freitag",
        "Samstag",
        "Sonntag",
    ];
    const EN_MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DE_MONTHS: [&str; 12] = [
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ];
    let local = at.to_zoned(zone.clone());
    let weekday = usize::from(local.weekday().to_monday_zero_offset().unsigned_abs());
    let month = usize::from(local.month().unsigned_abs()) - 1;
    if language == "de" {
        format!(
            "{}, {}. {} {}",
            DE_DAYS[weekday],
            local.day(),
            DE_MONTHS[month],
            local.year()
        )
    } else {
        format!(
            "{}, {} {} {}",
            EN_DAYS[weekday],
            local.day(),
            EN_MONTHS[month],
            local.year()
        )
    }
}

/// How many decimals Stripe's amounts in `currency` have (any letter case): none for its
/// zero-decimal currencies, three for its three-decimal ones, two for every other.
pub fn decimals(currency: &str) -> u32 {
    // Stripe's lists (docs, "Supported currencies").
    const ZERO_DECIMAL: &[&str] = &[
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
        "xaf", "xof", "xpf",
    ];
    const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];
    let listed = |list: &[&str]| list.iter().any(|c| c.eq_ignore_ascii_case(currency));
    if listed(ZERO_DECIMAL) {
        0
    } else if listed(THREE_DECIMAL) {
        3
    } else {
        2
    }
}

/// An amount in the currency's smallest unit, written as a reader of `language` expects: `$49.00`
/// and `¥4,900` in English, `49,00 $` and `4.900 ¥` in German.
pub fn format_amount(amount: i64, currency: &str, language: &str) -> String {
    let currency = currency.to_ascii_lowercase();
    let decimals = decimals(&currency);
    let german = language == "de";
    let (group, point) = if german { ('.', ',') } else { (',', '.') };
    let scale = 10i64.pow(decimals);
    let whole = (amount.abs() / scale).to_string();
    let mut grouped = String::new();
    for (n, digit) in whole.chars().enumerate() {
        if n > 0 && (whole.len() - n).is_multiple_of(3) {
            grouped.push(group);
        }
        grouped.push(digit);
    }
    let number = match decimals {
        0 => grouped,
        _ => format!(
            "{grouped}{point}{:0width$}",
            amount.abs() % scale,
            width = decimals as usize
        ),
    };
    let sign = if amount < 0 { "-" } else { "" };
    let symbol = match currency.as_str() {
        "usd" => "$",
        "eur" => "€",
        "gbp" => "£",
        "jpy" => "¥",
        _ => "",
    };
    match (symbol, german) {
        ("", _) => format!("{sign}{number} {}", currency.to_ascii_uppercase()),
        (symbol, false) => format!("{sign}{symbol}{number}"),
        (symbol, true) => format!("{sign}{number} {symbol}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Templates {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/templates");
        Templates::load(&dir).unwrap()
    }

    fn context() -> Context {
        Context {
            customer_name: "Dana".into(),
            amount: format_amount(4900, "usd", "en"),
            plan: "Pro monthly".into(),
            update_url: "https://billing.stripe.com/p/session/test_1".into(),
            feedback_url: String::new(),
            business: "Acme".into(),
            next_attempt: "Tuesday, 1 December 2026, 09:10".into(),
            consequence: "paused".into(),
            consequence_date: "15 December 2026".into(),
            card: "Visa ending 4242, expiring 12/2026".into(),
        }
    }

    #[test]
    fn times_are_written_in_the_customers_zone_and_language() {
        let at: jiff::Timestamp = "2026-12-01T15:10:00Z".parse().unwrap();
        let chicago = jiff::tz::TimeZone::get("America/Chicago").unwrap();
        assert_eq!(
            format_time(at, &chicago, "en"),
            "Tuesday, 1 December 2026, 09:10"
        );
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(
            format_time(at, &berlin, "de"),
            "Dienstag, 1. Dezember 2026, 16:10"
        );
    }

    #[test]
    fn amounts_are_written_for_their_currency_and_language() {
        assert_eq!(format_amount(4900, "usd", "en"), "$49.00");
        assert_eq!(format_amount(123_456_789, "eur", "de"), "1.234.567,89 €");
        assert_eq!(format_amount(4900, "jpy", "en"), "¥4,900");
        assert_eq!(format_amount(5, "chf", "en"), "0.05 CHF");
        assert_eq!(format_amount(-1250, "gbp", "en"), "-£12.50");
    }

    #[test]
    fn the_shipped_templates_load_and_speak_the_customers_language() {
        let templates = shipped();
        let english = templates
            .render("payment_failed-1", &[], &context())
            .unwrap();
        assert_eq!(english.template, "en/payment_failed-1");
        assert!(english.text.contains("$49.00"), "{}", english.text);
        assert!(
            english
                .text
                .contains("https://billing.stripe.com/p/session/test_1")
        );
        assert!(
            english
                .sms
                .ends_with("https://billing.stripe.com/p/session/test_1")
        );
        let german = templates
            .render(
                "payment_failed-1",
                &["de-DE".to_owned(), "en".to_owned()],
                &context(),
            )
            .unwrap();
        assert_eq!(german.locale, "de");
        assert_ne!(german.subject, english.subject);
        // A language recoup has no templates for falls back to English.
        let fallback = templates
            .render("recovered-1", &["pt-BR".to_owned()], &context())
            .unwrap();
        assert_eq!(fallback.locale, "en");
    }

    #[test]
    fn a_nudge_with_a_feedback_link_asks_whats_in_the_way_and_one_without_does_not() {
        let templates = shipped();
        let asking = Context {
            feedback_url: "https://billing.acme.example/feedback/AbC-d_e".into(),
            ..context()
        };
        for kind in [
            "payment_failed-1",
            "payment_failed-2",
            "payment_failed-3",
            "action_required-1",
            "action_required-2",
            "final_notice-1",
        ] {
            let english = templates.render(kind, &[], &asking).unwrap();
            assert!(
                english.text.contains(
                    "Something in the way? Tell us: https://billing.acme.example/feedback/AbC-d_e"
                ),
                "{kind}: {}",
                english.text
            );
            assert!(
                english
                    .html
                    .contains("Something in the way? <a href=\"https:&#x2f;&#x2f;billing.acme.example&#x2f;feedback&#x2f;AbC-d_e\""),
                "{kind}: {}",
                english.html
            );
            assert!(
                english.sms.ends_with(
                    "Something in the way? https://billing.acme.example/feedback/AbC-d_e"
                )
            );
            let german = templates.render(kind, &["de".to_owned()], &asking).unwrap();
            assert!(german.text.contains("Steht etwas im Weg?"), "{kind}");
            let silent = templates.render(kind, &[], &context()).unwrap();
            assert!(!silent.text.contains("Something in the way"), "{kind}");
            assert!(!silent.html.contains("feedback"), "{kind}");
            assert!(!silent.sms.contains("Something in the way"), "{kind}");
        }
    }

    #[test]
    fn everything_inserted_into_html_is_escaped() {
        let templates = shipped();
        let hostile = Context {
            customer_name: "<script>alert(1)</script>".into(),
            ..context()
        };
        let rendered = templates.render("recovered-1", &[], &hostile).unwrap();
        assert!(!rendered.html.contains("<script>"), "{}", rendered.html);
        assert!(rendered.html.contains("&lt;script&gt;"));
    }

    #[test]
    fn the_final_notice_states_each_consequence_and_its_date_in_each_language() {
        let templates = shipped();
        let cases = [
            ("paused", "en", "will be paused on 15 December 2026"),
            ("canceled", "en", "will be canceled on 15 December 2026"),
            (
                "ends_at_period_end",
                "en",
                "ends with the current billing period",
            ),
            ("overdue", "en", "remain overdue"),
            ("paused", "de", "am 15 December 2026 pausiert"),
            ("canceled", "de", "am 15 December 2026 gekündigt"),
            (
                "ends_at_period_end",
                "de",
                "endet mit dem laufenden Abrechnungszeitraum",
            ),
            ("overdue", "de", "bleibt im Rückstand"),
        ];
        for (consequence, language, says) in cases {
            let context = Context {
                consequence: consequence.into(),
                ..context()
            };
            let rendered = templates
                .render("final_notice-1", &[language.to_owned()], &context)
                .unwrap();
            assert!(
                rendered.text.contains(says),
                "{consequence} {language}: {}",
                rendered.text
            );
            assert!(
                rendered.html.contains(says),
                "{consequence} {language}: {}",
                rendered.html
            );
            assert!(!rendered.subject.is_empty());
        }
    }

    fn copy_of_shipped() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/templates");
        for language in std::fs::read_dir(&shipped).unwrap() {
            let language = language.unwrap().path();
            let target = dir.path().join(name_of(&language));
            std::fs::create_dir(&target).unwrap();
            for file in std::fs::read_dir(&language).unwrap() {
                let file = file.unwrap().path();
                std::fs::copy(&file, target.join(file.file_name().unwrap())).unwrap();
            }
        }
        dir
    }

    #[test]
    fn a_missing_template_or_variable_is_an_error_naming_the_file() {
        let dir = copy_of_shipped();
        std::fs::remove_file(dir.path().join("en/recovered-1.html")).unwrap();
        let err = Templates::load(dir.path()).err().unwrap().to_string();
        assert!(
            err.contains("en/recovered-1.html") && err.contains("missing"),
            "{err}"
        );

        let dir = copy_of_shipped();
        std::fs::write(
            dir.path().join("de/recovered-1.txt"),
            "Subject: Danke\n\nHallo {{ customer_nmae }}",
        )
        .unwrap();
        let err = Templates::load(dir.path()).err().unwrap().to_string();
        assert!(err.contains("de/recovered-1.txt"), "{err}");
        assert!(err.contains("undefined"), "{err}");
    }

    #[test]
    fn the_built_in_templates_are_every_shipped_file_as_it_is() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_DIR);
        let mut on_disk = Vec::new();
        for language in std::fs::read_dir(&dir).unwrap() {
            let language = language.unwrap().path();
            for file in std::fs::read_dir(&language).unwrap() {
                let file = file.unwrap().path();
                on_disk.push((
                    name_of(&language),
                    name_of(&file),
                    std::fs::read_to_string(&file).unwrap(),
                ));
            }
        }
        let mut built_in: Vec<_> = BUILT_IN
            .iter()
            .flat_map(|&(l, files)| {
                files
                    .iter()
                    .map(move |&(f, s)| (l.to_owned(), f.to_owned(), s.to_owned()))
            })
            .collect();
        on_disk.sort();
        built_in.sort();
        assert_eq!(
            built_in, on_disk,
            "list every file of config/templates in BUILT_IN"
        );
        let required: Vec<_> = required().collect();
        assert!(
            required.contains(&"payment_failed-1") && required.contains(&"final_notice-1"),
            "{required:?}"
        );
        let built_in = Templates::built_in().unwrap();
        assert_eq!(built_in.languages, shipped().languages);
        let locales = ["de-DE".to_owned()];
        assert_eq!(
            built_in.render("final_notice-1", &locales, &context()),
            shipped().render("final_notice-1", &locales, &context())
        );
    }

    #[test]
    fn only_the_default_folder_falls_back_to_the_built_in_templates() {
        let missing = tempfile::tempdir().unwrap().path().join("templates");
        let err = Templates::for_service(&missing).err().unwrap().to_string();
        assert!(err.contains("templates"), "{err}");
        // The tests run in the checkout, where the default folder exists: it is read.
        assert!(Templates::for_service(Path::new(DEFAULT_DIR)).is_ok());
    }
}
