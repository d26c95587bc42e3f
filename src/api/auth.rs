//! Bearer tokens for `/api/v1`: `RECOUP_API_TOKENS`, compared in constant time as SHA-256 digests
//! (so not even their length leaks). The status page ([`crate::page`]) signs support in with the
//! same tokens.
//!
//! With no tokens configured every request is refused (401): a support API that answered anyone
//! would leak every customer's payment history. The name of the token that was used travels with
//! the request as a [`Caller`], so support actions can record who did them.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ApiToken;
use crate::http::error_response;

/// Who called, by the name of their token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// The configured tokens, as their names and SHA-256 digests: the tokens themselves are not kept.
#[derive(Clone)]
pub struct Tokens(Arc<Vec<(String, [u8; 32])>>);

/// A token's SHA-256: what is compared, so every comparison is of 32 bytes with 32 bytes.
fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Tokens {
    pub fn new(tokens: Vec<ApiToken>) -> Self {
        Self(Arc::new(
            tokens
                .into_iter()
                .map(|t| (t.name, digest(t.token.expose_secret().as_bytes())))
                .collect(),
        ))
    }

    /// The caller a presented token belongs to.
    ///
    /// Digests are compared, not the tokens: a byte-wise comparison of two strings ends early on a
    /// length mismatch (`subtle`'s too), which tells a prober how long the configured tokens are;
    /// two SHA-256 digests are always 32 bytes, compared in constant time. Every configured token
    /// is compared, whether or not an earlier one matched, so the time taken says nothing about
    /// which one (or how much of one) matched either.
    pub fn caller(&self, presented: &str) -> Option<Caller> {
        let presented = digest(presented.as_bytes());
        let mut found = None;
        for (name, token) in self.0.iter() {
            let same: bool = token.ct_eq(&presented).into();
            if same && found.is_none() {
                found = Some(Caller(name.clone()));
            }
        }
        found
    }

    /// Whether a token of this name is still configured (a status page session ends when its
    /// token is taken out of `RECOUP_API_TOKENS`).
    pub fn named(&self, name: &str) -> Option<Caller> {
        self.0
            .iter()
            .any(|(configured, _)| configured == name)
            .then(|| Caller(name.to_owned()))
    }
}

/// Middleware: lets a request through with its [`Caller`] when it bears a valid token.
pub async fn require_token(
    State(tokens): State<Tokens>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match presented.and_then(|token| tokens.caller(token)) {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => {
            let mut response = error_response(
                StatusCode::UNAUTHORIZED,
                "missing or invalid API token: send Authorization: Bearer <token> with a token \
                 from RECOUP_API_TOKENS",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="recoup""#),
            );
            response.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    #[test]
    fn only_a_configured_token_names_its_caller() {
        let tokens = Tokens::new(vec![
            ApiToken {
                name: "ana".into(),
                token: SecretString::from("aaaaaaaaaaaaaaaaaaaa"),
            },
            ApiToken {
                name: "bo".into(),
                token: SecretString::from("bbbbbbbbbbbbbbbbbbbb"),
            },
        ]);
        assert_eq!(
            tokens.caller("bbbbbbbbbbbbbbbbbbbb"),
            Some(Caller("bo".into()))
        );
        assert_eq!(tokens.caller("bbbbbbbbbbbbbbbbbbb"), None);
        assert_eq!(tokens.caller("bbbbbbbbbbbbbbbbbbbbb"), None);
        assert_eq!(tokens.caller(""), None);
        assert_eq!(Tokens::new(Vec::new()).caller("anything"), None);
        assert_eq!(tokens.named("ana"), Some(Caller("ana".into())));
        assert_eq!(tokens.named("cy"), None);
    }

    #[test]
    fn only_fixed_length_digests_are_kept_and_compared() {
        let secret = "cccccccccccccccccccccccccccccccccc";
        let tokens = Tokens::new(vec![ApiToken {
            name: "cy".into(),
            token: SecretString::from(secret),
        }]);
        // What is held is a 32-byte digest per token, whatever the token's length: no comparison
        // made against it can end early on a length that differs.
        for (_, held) in tokens.0.iter() {
            assert_eq!(held.len(), 32);
            assert_ne!(&held[..], secret.as_bytes());
        }
        for presented in ["c", "cccccccccccccccccccccccccccccccccc", &"c".repeat(500)] {
            assert_eq!(digest(presented.as_bytes()).len(), 32);
        }
        assert_eq!(tokens.caller(secret), Some(Caller("cy".into())));
    }
}
