//! Who may use the admin API: one bearer token, checked in constant time, and the start-up rule
//! that an admin listener reachable from other machines has one.
//!
//! The admin API changes where traffic goes, so a mistake here is silent and costly: an empty
//! token that quietly meant "no check" once left it open. Tokens are therefore validated when
//! the router starts, never when the first call comes in.

pub use weir_http::admin_token::{AdminToken, TokenError};

/// Whether `authorization` (the header's value, if any) carries `Bearer TOKEN` for `token`.
pub fn bearer_matches(token: &AdminToken, authorization: Option<&[u8]>) -> bool {
    authorization
        .and_then(|value| value.strip_prefix(b"Bearer "))
        .is_some_and(|given| token.matches(given))
}

/// The secure default: an admin listener other machines can reach needs a token, unless the
/// operator says `--allow-anonymous` (then a loud warning says what that gives up). Judged on
/// the address actually bound, so `localhost` counts as loopback and a name that resolves to
/// `0.0.0.0` does not; loopback is 127.0.0.0/8 and ::1 (an IPv4-mapped ::ffff:127.x is not
/// treated as loopback: refusing is the safe side).
pub fn check_exposure(
    address: std::net::SocketAddr,
    token: Option<&AdminToken>,
    allow_anonymous: bool,
) -> Result<(), TokenError> {
    if token.is_some() || address.ip().is_loopback() {
        return Ok(());
    }
    if allow_anonymous {
        tracing::warn!(
            %address,
            "the admin API listens on a non-loopback address WITHOUT a token (--allow-anonymous): \
             anyone who can reach the admin port can change weights, promote, roll back and add replicas"
        );
        return Ok(());
    }
    Err(TokenError::ExposedWithoutToken {
        address: address.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let token = AdminToken::new("s3cret", "--admin-token").unwrap();
        assert!(token.matches(b"s3cret"));
        for wrong in [
            &b""[..],
            b"s3cre",
            b"s3cret2",
            b"S3cret",
            b"s3creu",
            b" s3cret",
        ] {
            assert!(
                !token.matches(wrong),
                "{:?}",
                String::from_utf8_lossy(wrong)
            );
        }
        assert!(bearer_matches(&token, Some(b"Bearer s3cret")));
        assert!(!bearer_matches(&token, Some(b"bearer s3cret")));
        assert!(!bearer_matches(&token, Some(b"Basic s3cret")));
        assert!(!bearer_matches(&token, Some(b"Bearer ")));
        assert!(!bearer_matches(&token, None));
    }

    #[test]
    fn only_loopback_listeners_may_go_without_a_token() {
        let token = AdminToken::new("t", "x").unwrap();
        for loopback in ["127.0.0.1:8001", "127.3.2.1:1", "[::1]:8001"] {
            assert_eq!(
                check_exposure(loopback.parse().unwrap(), None, false),
                Ok(())
            );
        }
        for exposed in [
            "0.0.0.0:8001",
            "10.0.0.5:8001",
            "[::]:8001",
            "[::ffff:127.0.0.1]:1",
        ] {
            let address = exposed.parse().unwrap();
            let err = check_exposure(address, None, false).unwrap_err();
            assert!(err.to_string().contains("--allow-anonymous"), "{err}");
            assert_eq!(check_exposure(address, Some(&token), false), Ok(()));
            assert_eq!(check_exposure(address, None, true), Ok(()));
        }
    }
}
