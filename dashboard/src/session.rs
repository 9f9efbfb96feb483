//! A browser's session: the cookie that carries a signed-in token (or, before sign-in and in
//! anonymous mode, a random value), and the CSRF token every form repeats.
//!
//! The CSRF token is derived from the cookie, so it needs no server-side state (any registry
//! replica checks it) and a page on another site cannot produce it: the cookie is `HttpOnly`,
//! `SameSite=Strict`, and never readable outside this origin.

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "weir_session";

/// How long a sign-in lasts in the browser; the token itself stays valid until it is rotated.
const SIGNED_IN_SECONDS: u64 = 12 * 3600;

/// A signed-in cookie holds the token, base64url so that any token fits a cookie value.
const TOKEN_PREFIX: &str = "t.";
/// A cookie that signs nobody in: it only anchors the CSRF token.
const NONCE_PREFIX: &str = "a.";

/// The session cookie a request carries, if it is one of ours.
pub(crate) fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|value| value.starts_with(TOKEN_PREFIX) || value.starts_with(NONCE_PREFIX))
}

/// The token a signed-in cookie carries (the access layer authenticates pages with it).
pub(crate) fn token(headers: &HeaderMap) -> Option<String> {
    let value = cookie_value(headers)?;
    let encoded = value.strip_prefix(TOKEN_PREFIX)?;
    let bytes = base64::decode_config(encoded, base64::URL_SAFE_NO_PAD).ok()?;
    String::from_utf8(bytes).ok()
}

/// A cookie value for a fresh browser: random, so its CSRF token cannot be guessed.
pub(crate) fn new_nonce() -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{NONCE_PREFIX}{}", hex(&bytes))
}

/// The cookie value that signs `token` in.
pub(crate) fn signed_in_value(token: &str) -> String {
    format!(
        "{TOKEN_PREFIX}{}",
        base64::encode_config(token, base64::URL_SAFE_NO_PAD)
    )
}

/// `Set-Cookie` for `value`: never readable by scripts, never sent by another site's page.
/// `Secure` when the browser reached us over HTTPS (through a proxy that says so); a plain
/// loopback registry has no TLS to require.
pub(crate) fn set_cookie(value: &str, signed_in: bool, secure: bool) -> String {
    let mut cookie = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict");
    if signed_in {
        cookie.push_str(&format!("; Max-Age={SIGNED_IN_SECONDS}"));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

/// Whether the browser reached us over HTTPS, as a TLS-terminating proxy reports it.
pub(crate) fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

/// The CSRF token of the session whose cookie is `value`.
pub(crate) fn csrf_token(value: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"weir-dashboard-csrf\0")
        .chain_update(value.as_bytes())
        .finalize();
    hex(&digest[..16])
}

/// Whether `given` is the CSRF token of the session whose cookie is `value`.
pub(crate) fn csrf_matches(value: &str, given: &str) -> bool {
    bool::from(csrf_token(value).as_bytes().ct_eq(given.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    #[test]
    fn a_signed_in_cookie_carries_any_token_and_gives_it_back() {
        let value = signed_in_value("to;ken =with,odd chars");
        let cookie = format!("other=1; {COOKIE}={value}; more=2");
        assert_eq!(
            token(&headers(&cookie)).as_deref(),
            Some("to;ken =with,odd chars")
        );
    }

    #[test]
    fn a_nonce_cookie_or_a_foreign_value_signs_nobody_in() {
        let nonce = new_nonce();
        assert!(token(&headers(&format!("{COOKIE}={nonce}"))).is_none());
        assert_eq!(
            cookie_value(&headers(&format!("{COOKIE}={nonce}"))),
            Some(nonce)
        );
        assert!(cookie_value(&headers(&format!("{COOKIE}=forged"))).is_none());
        assert!(token(&headers("weir_sessionx=t.YQ")).is_none());
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let (a, b) = (new_nonce(), new_nonce());
        assert_ne!(a, b);
        assert!(csrf_matches(&a, &csrf_token(&a)));
        assert!(!csrf_matches(&a, &csrf_token(&b)));
        assert!(!csrf_matches(&a, ""));
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let cookie = set_cookie("a.1", true, true);
        assert!(cookie.contains("HttpOnly"));
        assert!(cookie.contains("SameSite=Strict"));
        assert!(cookie.contains("Max-Age="));
        assert!(cookie.ends_with("; Secure"));
        assert!(!set_cookie("a.1", false, false).contains("Secure"));
    }
}
