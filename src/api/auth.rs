//! Bearer tokens for `/api/v1`: `RECOUP_API_TOKENS`, compared in constant time. The status page
//! ([`crate::page`]) checks its session cookie against the same tokens.
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
use subtle::ConstantTimeEq;

use crate::config::ApiToken;
use crate::http::error_response;

/// Who called, by the name of their token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// The configured tokens.
#[derive(Clone)]
pub struct Tokens(Arc<Vec<ApiToken>>);

impl Tokens {
    pub fn new(tokens: Vec<ApiToken>) -> Self {
        Self(Arc::new(tokens))
    }

    /// The caller a presented token belongs to. Every configured token is compared, whether or not
    /// an earlier one matched, so the time taken says nothing about which one (or how much) matched.
    pub fn caller(&self, presented: &str) -> Option<Caller> {
        let mut found = None;
        for token in self.0.iter() {
            let same: bool = token
                .token
                .expose_secret()
                .as_bytes()
                .ct_eq(presented.as_bytes())
                .into();
            if same && found.is_none() {
                found = Some(Caller(token.name.clone()));
            }
        }
        found
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
        assert_eq!(tokens.caller(""), None);
        assert_eq!(Tokens::new(Vec::new()).caller("anything"), None);
    }
}
