//! Credentials out of URLs, wherever a URL can end up in words that are kept or shown: a log line,
//! an error message, a case's timeline.
//!
//! A URL's user information (`scheme://user:password@host`) is where Redis, SMTP and webhook URLs
//! carry their passwords, a query parameter (`?token=…`, `&sig=…`) where webhook receivers and
//! signed URLs carry theirs, and an error from an HTTP or SMTP client often quotes the URL it
//! failed on (reqwest's does: `error sending request for url (…)`). The user information ends at the **last** `@` before the host — a password may hold an `@`
//! of its own (`redis://user:p@ss@host`), and cutting at the first one would show half of it — so
//! that is where these functions cut, and a password is always replaced whole.
//!
//! Pure string work, so the policy core can apply it to every line it writes on a timeline
//! ([`crate::policy::Case::record`]).

use std::borrow::Cow;

/// What a password (or a user information without one) is shown as.
pub const MASK: &str = "***";

/// Query parameters whose value is a credential when their name holds one of these (`token`,
/// `access_token`, `api_key`, `sig`, `X-Amz-Signature`, …), compared without case.
const SECRET_PARAMETERS: &[&str] = &[
    "token",
    "key",
    "secret",
    "pass",
    "pwd",
    "auth",
    "sig",
    "credential",
];

/// `url` with its credentials replaced by [`MASK`]: the password of its user information
/// (`redis://user:p@ss@host:6379` → `redis://user:***@host:6379`; a user information without a `:`
/// is masked whole, as some services put a token there: `https://token@host`), and the value of
/// every query parameter named like a credential (`?access_token=…`, `&sig=…`). Text without `://`
/// is returned as it is.
pub fn url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let rest = match rest.rfind('@') {
        Some(at) => {
            let (userinfo, host) = (&rest[..at], &rest[at + 1..]);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:{MASK}@{host}"),
                None => format!("{MASK}@{host}"),
            }
        }
        None => rest.to_owned(),
    };
    format!("{scheme}://{}", mask_query(&rest))
}

/// The query of `rest` (after the authority) with credential-named parameters masked.
fn mask_query(rest: &str) -> String {
    let Some((before, query)) = rest.split_once('?') else {
        return rest.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() && secret_name(name) => {
                format!("{name}={MASK}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{before}?{}", masked.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMETERS.iter().any(|secret| name.contains(secret))
}

/// `text` with the credentials of every URL in it masked as [`url`] masks them (the rest of the
/// text is left exactly as it was). A URL runs from its
/// scheme to the next white space (or a quote or closing bracket that ends it in prose), so an
/// `@` inside a password is still part of its URL.
pub fn text(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !(text.contains('@') || text.contains('?')) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        // The scheme: the letters, digits, `+`, `-` and `.` right before `://`.
        let scheme_start = rest[..found]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[found..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .map_or(rest.len(), |i| found + i);
        // Prose often closes a quoted URL with a bracket: `(for url (http://…))`.
        let end = rest[..end]
            .trim_end_matches([')', ']', ',', ';'])
            .len()
            .max(found + 3);
        out.push_str(&rest[..scheme_start]);
        out.push_str(&url(&rest[scheme_start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_with_an_at_sign_is_masked_whole() {
        assert_eq!(
            url("redis://user:p@ss@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(url("redis://:p@ss@host"), "redis://:***@host");
        assert_eq!(
            url("redis://default:hunter2@cache:6379/0"),
            "redis://default:***@cache:6379/0"
        );
        assert_eq!(
            url("smtps://token@smtp.example:465"),
            "smtps://***@smtp.example:465"
        );
        assert_eq!(url("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(url("not a url"), "not a url");
    }

    #[test]
    fn urls_in_prose_lose_their_credentials_and_nothing_else() {
        let said = "nudge webhook: error sending request for url \
                    (https://acme:s3cr@t@hooks.acme.example/recoup?x=1): connection refused";
        assert_eq!(
            text(said),
            "nudge webhook: error sending request for url \
             (https://acme:***@hooks.acme.example/recoup?x=1): connection refused"
        );
        let two = "from smtp://a:b@mail:25 to \"https://c:d@e@f/\" and http://plain/";
        assert_eq!(
            text(two),
            "from smtp://a:***@mail:25 to \"https://c:***@f/\" and http://plain/"
        );
        let query = "error sending request for url \
                     (https://hooks.example/n?access_token=abc123&lang=en&X-Amz-Signature=f00#top)";
        assert_eq!(
            text(query),
            "error sending request for url \
             (https://hooks.example/n?access_token=***&lang=en&X-Amz-Signature=***#top)"
        );
        for untouched in [
            "no urls here",
            "mail ana@example.com",
            "see https://stripe.com/docs",
            "see https://stripe.com/docs?lang=en",
        ] {
            assert!(matches!(text(untouched), Cow::Borrowed(_)) || text(untouched) == untouched);
            assert_eq!(text(untouched), untouched);
        }
    }
}
