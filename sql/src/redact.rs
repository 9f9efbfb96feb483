//! Database URLs without their secrets, for every error and log line weir-sql produces. A URL
//! reaches errors in many ways (an unsupported scheme, a connection failure, a driver message
//! quoting a value), so the rule lives here once: the userinfo password and any `…password=`
//! parameter become `***`.

/// `url` with the password of its userinfo and the value of every parameter whose name ends in
/// `password` (`password`, `sslpassword`, any case) replaced by `***`. Anything that is not a
/// URL is treated as libpq's `key=value` form, so its password parameters go too.
pub fn redact_url(url: &str) -> String {
    let without_userinfo = match url.split_once("://") {
        Some((scheme, rest)) => match userinfo_end(rest) {
            Some(at) => {
                let userinfo = &rest[..at];
                match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
                    None => url.to_owned(),
                }
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    redact_parameters(&without_userinfo)
}

/// Where the userinfo ends (the `@`), if there is one. The last `@` before the query wins, so
/// an unescaped `@` in a password still counts as part of it; an `@` only in the query is taken
/// as the userinfo's end too, since hiding too much beats showing a password.
fn userinfo_end(rest: &str) -> Option<usize> {
    let authority_and_path = rest.split('?').next().unwrap_or(rest);
    authority_and_path.rfind('@').or_else(|| rest.rfind('@'))
}

/// Replaces the values of `…password=VALUE` parameters (separated by `?`, `&`, `;` or
/// whitespace) with `***`.
fn redact_parameters(text: &str) -> String {
    let separator = |c: char| matches!(c, '?' | '&' | ';' | '#') || c.is_whitespace();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(separator).unwrap_or(rest.len());
        let (part, tail) = rest.split_at(end);
        match part.split_once('=') {
            Some((key, _value)) if key.trim().to_ascii_lowercase().ends_with("password") => {
                out.push_str(key);
                out.push_str("=***");
            }
            _ => out.push_str(part),
        }
        let mut chars = tail.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// The secrets a URL carries (the userinfo password, raw and percent-decoded, and password
/// parameter values), to scrub from messages written by others (the driver) that might quote
/// them.
pub(crate) fn secrets_of(url: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Some((_, rest)) = url.split_once("://") {
        if let Some(at) = userinfo_end(rest) {
            if let Some((_, password)) = rest[..at].split_once(':') {
                secrets.push(password.to_owned());
                secrets.push(crate::tls::percent_decoded(password));
            }
        }
    }
    for part in url.split(|c: char| matches!(c, '?' | '&' | ';' | '#') || c.is_whitespace()) {
        if let Some((key, value)) = part.split_once('=') {
            if key.trim().to_ascii_lowercase().ends_with("password") {
                secrets.push(value.to_owned());
                secrets.push(crate::tls::percent_decoded(value));
            }
        }
    }
    secrets.retain(|s| !s.is_empty());
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

/// `message` with every secret of `url` replaced by `***`.
pub(crate) fn scrub(message: &str, url: &str) -> String {
    secrets_of(url)
        .iter()
        .fold(message.to_owned(), |text, secret| {
            text.replace(secret.as_str(), "***")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_passwords_are_hidden() {
        assert_eq!(
            redact_url("postgres://weir:secret@db:5432/weir"),
            "postgres://weir:***@db:5432/weir"
        );
        assert_eq!(
            redact_url("postgresql://weir:p%40ss@db/weir?sslmode=require"),
            "postgresql://weir:***@db/weir?sslmode=require"
        );
        // An unescaped @ in the password is still part of it.
        assert_eq!(
            redact_url("postgres://weir:se@cret@db/weir"),
            "postgres://weir:***@db/weir"
        );
        assert_eq!(redact_url("mysql://u:secret@h/db"), "mysql://u:***@h/db");
        // A user with an empty password still hides nothing but the empty part.
        assert_eq!(redact_url("postgres://u:@h/db"), "postgres://u:***@h/db");
    }

    #[test]
    fn password_parameters_are_hidden() {
        assert_eq!(
            redact_url("postgres://weir@db/weir?password=secret"),
            "postgres://weir@db/weir?password=***"
        );
        assert_eq!(
            redact_url("postgres://weir@db/weir?sslmode=require&password=secret&connect_timeout=5"),
            "postgres://weir@db/weir?sslmode=require&password=***&connect_timeout=5"
        );
        assert_eq!(
            redact_url("postgres://weir@db/weir?PASSWORD=secret&sslpassword=other"),
            "postgres://weir@db/weir?PASSWORD=***&sslpassword=***"
        );
        assert_eq!(
            redact_url("postgres://u:one@db/weir?password=two"),
            "postgres://u:***@db/weir?password=***"
        );
    }

    #[test]
    fn urls_without_passwords_are_unchanged() {
        for url in [
            "postgres://weir@db:5432/weir",
            "postgres://db/weir?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
            "sqlite:///var/lib/weir/weir.db",
            "sqlite::memory:",
            "weir.db",
            "",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn garbage_keeps_no_secret() {
        for (garbage, secret) in [
            ("host=db user=weir password=secret", "secret"),
            ("://:secret@", "secret"),
            ("postgres://weir:secret@", "secret"),
            ("postgres://h:5432/db?x=a@b&password=secret", "secret"),
            ("not a url password=secret;x=1", "secret"),
        ] {
            let shown = redact_url(garbage);
            assert!(!shown.contains(secret), "{garbage} -> {shown}");
        }
    }

    #[test]
    fn messages_quoting_a_secret_are_scrubbed() {
        let url = "postgres://weir:p%40ss@db/weir?password=other";
        assert_eq!(
            scrub("bad p@ss and p%40ss and other", url),
            "bad *** and *** and ***"
        );
        assert_eq!(
            scrub("nothing to hide", "postgres://weir@db/weir"),
            "nothing to hide"
        );
    }
}
