//! Update links: the `update_url` a nudge carries for a card problem, `<RECOUP_PUBLIC_URL>/fix/<token>`,
//! and the page that opens it ([`route`]). Feedback links, `<RECOUP_PUBLIC_URL>/feedback/<token>`
//! ("What's in the way?", [`feedback`]), are tokens of the same kind for another [`Purpose`].
//!
//! Stripe's billing portal sessions are short-lived and expire when not visited soon ("create
//! sessions on demand"), so a nudge read the next morning must not carry one. It carries recoup's
//! own link instead; opening it verifies the token, creates the portal session at that moment and
//! sends the customer there (303). The token is what makes the link safe to put in an email:
//!
//! - **signed**: HMAC-SHA256 under `RECOUP_LINK_SECRET`, so nobody can make a link for another
//!   customer or invoice, or change the one they have. Several comma-separated keys may be set,
//!   newest first: the newest signs, every one verifies, so a key is rotated by putting a new one in
//!   front and dropping the old one once the links it signed have expired;
//! - **expiring**: it says when it stops working (`links.expire_days`, 30 by default), checked
//!   against the scheduler's clock that also signed it;
//! - **opaque**: nothing personal is in the URL — no name, no email address, no amount — only the
//!   Stripe customer and invoice ids, which mean nothing without the account's API key. They are
//!   packed into a compact binary payload and the whole token is base64url (`[A-Za-z0-9_-]`, no
//!   padding), rather than written out as `?customer=cus_…&invoice=in_…`: the ids are then not in
//!   plain sight in a proxy's or mail scanner's logs, the link is short enough for an SMS, and it
//!   survives any mail client's line wrapping and URL escaping. They are not encrypted — they are
//!   not secrets, and an encryption key would be one more thing to rotate for no protection the
//!   signature does not already give.
//!
//! The token, before base64url: a version byte (`1`), the expiry (unix seconds, 8 bytes big-endian),
//! the customer id and the invoice id (each one length byte and its bytes; an empty invoice id for
//! a link about no invoice, such as an expiring card's), then the first 16 bytes of
//! HMAC-SHA256(key, `"recoup update link\0"` ‖ everything before). 128 bits of MAC cannot be
//! guessed, and the context string keeps a key reused elsewhere from vouching for anything here.
//!
//! Anyone holding a link can open the customer's billing portal until it expires, as with every
//! emailed sign-in link; that is why it expires, why it is never logged (the request log shows
//! `/fix/…`), and why the page answers with `Referrer-Policy: no-referrer` so the token does not
//! follow the customer to Stripe.

pub mod feedback;
pub mod limit;
pub mod route;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::clock::Clock;
use crate::store::TestClock;

pub use self::feedback::Feedback;
pub use self::route::{Fix, routes};

/// Bytes of the MAC kept in a token.
const MAC_LEN: usize = 16;
const VERSION: u8 = 1;
/// No token recoup makes is longer (two ids of at most 255 bytes, base64url): anything longer is
/// refused before any work is done on it.
const MAX_TOKEN: usize = 720;

/// What a link is for. Each purpose has its own path and its own context string, which every MAC
/// is computed over first: a key used for something else proves nothing here, and a token made
/// for one purpose is refused (as invalid) for the other — an update link does not answer the
/// feedback page, nor a feedback link open the billing portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `/fix/…`: opens the billing portal to update the payment method.
    Update,
    /// `/feedback/…`: "What's in the way?" ([`feedback`]).
    Feedback,
}

impl Purpose {
    fn context(self) -> &'static [u8] {
        match self {
            Purpose::Update => b"recoup update link\0",
            Purpose::Feedback => b"recoup feedback link\0",
        }
    }

    /// The path the link's token is appended to.
    fn path(self) -> &'static str {
        match self {
            Purpose::Update => "fix",
            Purpose::Feedback => "feedback",
        }
    }
}

/// What a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub customer_id: String,
    /// `None` for a link about no invoice (an expiring card).
    pub invoice_id: Option<String>,
    pub expires_at: Timestamp,
    /// The token's MAC: what identifies one link (for rate limits) without holding on to it.
    pub mac: [u8; MAC_LEN],
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a token recoup made: damaged, cut short, or forged.
    #[error("the link is not valid")]
    Invalid,
    /// A real token whose time ran out.
    #[error("the link has expired")]
    Expired,
}

/// The keys that sign and verify update-link tokens, newest first.
#[derive(Clone)]
pub struct LinkKeys(Vec<SecretString>);

/// Why a link's page refuses it before anything is done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a token of this purpose recoup made: damaged, cut short, forged, or another purpose's.
    Invalid,
    /// A real token whose time ran out.
    Expired,
    /// The scheduler's clock could not be read (the store did not answer): try again shortly.
    Unavailable,
}

impl LinkKeys {
    /// Verifies `token` for `purpose` against the scheduler's clock, the one that signed it: what
    /// it names and the time read, or why its page refuses it. `what` names the link in the log.
    pub(crate) async fn check<S: TestClock>(
        &self,
        clock: &Clock<S>,
        purpose: Purpose,
        token: &str,
        what: &str,
    ) -> Result<(Claims, Timestamp), Refusal> {
        let now = clock.now().await.map_err(|e| {
            tracing::error!("{what}: cannot read the clock: {e}");
            Refusal::Unavailable
        })?;
        match self.verify(purpose, token, now) {
            Ok(claims) => Ok((claims, now)),
            Err(LinkError::Invalid) => Err(Refusal::Invalid),
            Err(LinkError::Expired) => Err(Refusal::Expired),
        }
    }

    /// `None` without a key (`RECOUP_LINK_SECRET` unset).
    pub fn new(keys: &[SecretString]) -> Option<Self> {
        (!keys.is_empty()).then(|| Self(keys.to_vec()))
    }

    fn mac(key: &SecretString, purpose: Purpose, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(purpose.context());
        mac.update(payload);
        mac
    }

    /// A token for `purpose` naming the customer and invoice, valid until `expires_at`, under the
    /// newest key; `None` for an id longer than 255 bytes (Stripe's are far shorter).
    pub fn sign(
        &self,
        purpose: Purpose,
        customer_id: &str,
        invoice_id: Option<&str>,
        expires_at: Timestamp,
    ) -> Option<String> {
        let invoice_id = invoice_id.unwrap_or_default();
        let mut payload = Vec::with_capacity(11 + customer_id.len() + invoice_id.len() + MAC_LEN);
        payload.push(VERSION);
        payload.extend(expires_at.as_second().to_be_bytes());
        for id in [customer_id, invoice_id] {
            payload.push(u8::try_from(id.len()).ok()?);
            payload.extend(id.as_bytes());
        }
        let mac = Self::mac(&self.0[0], purpose, &payload)
            .finalize()
            .into_bytes();
        payload.extend(&mac[..MAC_LEN]);
        Some(URL_SAFE_NO_PAD.encode(payload))
    }

    /// What `token` names, if one of the keys signed it for `purpose` and it has not expired at
    /// `now`. The MAC is checked (in constant time, under every key) before anything else in the
    /// token is read.
    pub fn verify(
        &self,
        purpose: Purpose,
        token: &str,
        now: Timestamp,
    ) -> Result<Claims, LinkError> {
        if token.len() > MAX_TOKEN {
            return Err(LinkError::Invalid);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| LinkError::Invalid)?;
        let Some(split) = bytes.len().checked_sub(MAC_LEN) else {
            return Err(LinkError::Invalid);
        };
        let (payload, presented) = bytes.split_at(split);
        let signed = self.0.iter().any(|key| {
            Self::mac(key, purpose, payload)
                .verify_truncated_left(presented)
                .is_ok()
        });
        if !signed {
            return Err(LinkError::Invalid);
        }
        let claims = parse(payload, presented).ok_or(LinkError::Invalid)?;
        if now >= claims.expires_at {
            return Err(LinkError::Expired);
        }
        Ok(claims)
    }
}

/// A signed payload's parts; `None` for one no release of recoup wrote.
fn parse(payload: &[u8], mac: &[u8]) -> Option<Claims> {
    let (&version, rest) = payload.split_first()?;
    if version != VERSION {
        return None;
    }
    let (expires, mut rest) = rest.split_at_checked(8)?;
    let expires = i64::from_be_bytes(expires.try_into().ok()?);
    let mut id = || {
        let (&len, tail) = rest.split_first()?;
        let (id, tail) = tail.split_at_checked(usize::from(len))?;
        rest = tail;
        String::from_utf8(id.to_vec()).ok()
    };
    let customer_id = id()?;
    let invoice_id = id()?;
    if !rest.is_empty() || customer_id.is_empty() {
        return None;
    }
    Some(Claims {
        customer_id,
        invoice_id: (!invoice_id.is_empty()).then_some(invoice_id),
        expires_at: Timestamp::from_second(expires).ok()?,
        mac: mac.try_into().ok()?,
    })
}

/// Makes the links nudges carry: `<public URL>/fix/<token>` and `<public URL>/feedback/<token>`,
/// valid for `lifetime`.
#[derive(Clone)]
pub struct Links {
    keys: LinkKeys,
    base: String,
    lifetime: SignedDuration,
}

impl Links {
    pub fn new(keys: LinkKeys, public_url: &str, lifetime: SignedDuration) -> Self {
        Self {
            keys,
            base: public_url.trim_end_matches('/').to_owned(),
            lifetime,
        }
    }

    /// The link for `purpose` of a nudge sent at `now` about the customer's invoice (or about no
    /// invoice).
    pub fn url(
        &self,
        purpose: Purpose,
        customer_id: &str,
        invoice_id: Option<&str>,
        now: Timestamp,
    ) -> Option<String> {
        let expires_at = now.checked_add(self.lifetime).ok()?;
        let token = self
            .keys
            .sign(purpose, customer_id, invoice_id, expires_at)?;
        Some(format!("{}/{}/{token}", self.base, purpose.path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secrets: &[&str]) -> LinkKeys {
        let secrets: Vec<SecretString> = secrets.iter().map(|s| SecretString::from(*s)).collect();
        LinkKeys::new(&secrets).unwrap()
    }

    const NEW: &str = "new-key-0123456789abcdef0123456789abcdef";
    const OLD: &str = "old-key-0123456789abcdef0123456789abcdef";

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn a_token_names_its_customer_and_invoice_until_it_expires() {
        let keys = keys(&[NEW]);
        let token = keys
            .sign(
                Purpose::Update,
                "cus_R3cvP0qK8yWm2d",
                Some("in_1QaZ4rB7WZ01zgkWfT9s8KpM"),
                at(2_000),
            )
            .unwrap();
        let claims = keys.verify(Purpose::Update, &token, at(1_999)).unwrap();
        assert_eq!(claims.customer_id, "cus_R3cvP0qK8yWm2d");
        assert_eq!(
            claims.invoice_id.as_deref(),
            Some("in_1QaZ4rB7WZ01zgkWfT9s8KpM")
        );
        assert_eq!(claims.expires_at, at(2_000));
        assert_eq!(
            keys.verify(Purpose::Update, &token, at(2_000)),
            Err(LinkError::Expired)
        );

        // Opaque and URL-safe: no id in plain sight, nothing to escape, short enough for an SMS.
        assert!(!token.contains("cus_") && !token.contains("in_"), "{token}");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(token.len() < 100, "{} characters", token.len());

        let card = keys
            .sign(Purpose::Update, "cus_1", None, at(2_000))
            .unwrap();
        assert_eq!(
            keys.verify(Purpose::Update, &card, at(0))
                .unwrap()
                .invoice_id,
            None
        );
    }

    #[test]
    fn a_forged_or_damaged_token_is_invalid() {
        let keys = keys(&[NEW]);
        let token = keys
            .sign(Purpose::Update, "cus_1", Some("in_1"), at(2_000))
            .unwrap();
        let other = self::keys(&[OLD])
            .sign(Purpose::Update, "cus_1", Some("in_1"), at(2_000))
            .unwrap();
        assert_eq!(
            keys.verify(Purpose::Update, &other, at(0)),
            Err(LinkError::Invalid)
        );
        // Every single changed character (another customer, another expiry, another MAC) fails.
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            assert_eq!(
                keys.verify(Purpose::Update, &changed, at(0)),
                Err(LinkError::Invalid),
                "{i}"
            );
        }
        for junk in [
            "",
            "x",
            "AAAA",
            &"A".repeat(5000),
            "not base64!",
            &token[..token.len() - 2],
        ] {
            assert_eq!(
                keys.verify(Purpose::Update, junk, at(0)),
                Err(LinkError::Invalid),
                "{junk}"
            );
        }
        // An expired forgery is still a forgery, not an expired link.
        assert_eq!(
            keys.verify(Purpose::Update, &other, at(5_000)),
            Err(LinkError::Invalid)
        );
    }

    #[test]
    fn keys_rotate_newest_first_and_every_one_verifies() {
        let before = keys(&[OLD])
            .sign(Purpose::Update, "cus_1", Some("in_1"), at(2_000))
            .unwrap();
        let rotated = keys(&[NEW, OLD]);
        assert!(
            rotated.verify(Purpose::Update, &before, at(0)).is_ok(),
            "links already sent keep working"
        );
        let after = rotated
            .sign(Purpose::Update, "cus_1", Some("in_1"), at(2_000))
            .unwrap();
        assert!(
            keys(&[NEW]).verify(Purpose::Update, &after, at(0)).is_ok(),
            "the newest key signs"
        );
        assert_eq!(
            keys(&[OLD]).verify(Purpose::Update, &after, at(0)),
            Err(LinkError::Invalid)
        );
    }

    #[test]
    fn a_token_answers_only_the_purpose_it_was_made_for() {
        let keys = keys(&[NEW]);
        for (made, asked) in [
            (Purpose::Update, Purpose::Feedback),
            (Purpose::Feedback, Purpose::Update),
        ] {
            let token = keys.sign(made, "cus_1", Some("in_1"), at(2_000)).unwrap();
            assert!(keys.verify(made, &token, at(0)).is_ok());
            assert_eq!(
                keys.verify(asked, &token, at(0)),
                Err(LinkError::Invalid),
                "a {made:?} token is no {asked:?} token"
            );
        }
    }

    #[test]
    fn a_link_is_the_public_url_and_its_token() {
        let links = Links::new(
            keys(&[NEW]),
            "https://billing.acme.example/",
            SignedDuration::from_hours(30 * 24),
        );
        let url = links
            .url(Purpose::Update, "cus_1", Some("in_1"), at(1_000))
            .unwrap();
        let token = url
            .strip_prefix("https://billing.acme.example/fix/")
            .unwrap();
        let claims = keys(&[NEW])
            .verify(Purpose::Update, token, at(1_000))
            .unwrap();
        assert_eq!(claims.expires_at, at(1_000 + 30 * 86_400));
        let feedback = links
            .url(Purpose::Feedback, "cus_1", Some("in_1"), at(1_000))
            .unwrap();
        let token = feedback
            .strip_prefix("https://billing.acme.example/feedback/")
            .unwrap();
        assert!(
            keys(&[NEW])
                .verify(Purpose::Feedback, token, at(1_000))
                .is_ok()
        );
    }
}
