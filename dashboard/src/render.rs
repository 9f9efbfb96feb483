//! The templates, compiled once, with the filters every page shares. HTML is auto-escaped:
//! run names, params, tags and comments are user data.

use std::sync::OnceLock;

use minijinja::{AutoEscape, Environment, Value};

/// The layout and the pages that belong to no section.
const CORE: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    (
        "core/csrf.html",
        include_str!("../templates/core/csrf.html"),
    ),
    (
        "core/sign_in.html",
        include_str!("../templates/core/sign_in.html"),
    ),
    (
        "core/error.html",
        include_str!("../templates/core/error.html"),
    ),
    (
        "core/home.html",
        include_str!("../templates/core/home.html"),
    ),
    (
        "core/root.html",
        include_str!("../templates/core/root.html"),
    ),
];

fn environment() -> &'static Environment<'static> {
    static ENVIRONMENT: OnceLock<Environment<'static>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        // A missing variable is a template mistake; rendering it as empty would hide it.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let templates = CORE
            .iter()
            .chain(crate::runs::TEMPLATES)
            .chain(crate::models::TEMPLATES)
            .chain(crate::serving::TEMPLATES);
        for (name, source) in templates {
            if let Err(err) = env.add_template(name, source) {
                // Caught by the tests that render every page; a broken template must not take
                // the registry's API down with it.
                tracing::error!(template = name, error = %err, "dashboard template does not compile");
            }
        }
        env.add_filter("datetime", datetime);
        env.add_filter("short", short);
        env.add_filter("number", number);
        env
    })
}

/// Renders `template` with `context`.
pub(crate) fn render(template: &str, context: Value) -> Result<String, minijinja::Error> {
    environment().get_template(template)?.render(context)
}

/// Milliseconds since the epoch as `2026-11-30 06:40:12 UTC`; empty for a missing time.
fn datetime(epoch_ms: Option<i64>) -> String {
    epoch_ms
        .map(|ms| {
            weir_http::utc::utc_seconds(ms)
                .replace('T', " ")
                .replace('Z', " UTC")
        })
        .unwrap_or_default()
}

/// The first 12 characters: digests and run ids stay recognisable in a narrow column.
fn short(text: String) -> String {
    text.chars().take(12).collect()
}

/// A metric value to six significant digits, without a trailing `.0` for whole numbers.
fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value == value.trunc() && value.abs() < 1e15 {
        return format!("{value:.0}");
    }
    if value.abs() < 1e-4 || value.abs() >= 1e15 {
        return format!("{value:.5e}");
    }
    let digits = (6 - (value.abs().log10().floor() as i32 + 1)).max(0) as usize;
    let formatted = format!("{value:.digits$}");
    formatted
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc() {
        assert_eq!(datetime(Some(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(datetime(None), "");
    }

    #[test]
    fn numbers_keep_six_significant_digits() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.123456789), "0.123457");
        assert_eq!(number(1234.56789), "1234.57");
        assert_eq!(number(-0.5), "-0.5");
        assert_eq!(number(1.5e-9), "1.50000e-9");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[test]
    fn every_template_compiles() {
        for (name, _) in CORE
            .iter()
            .chain(crate::runs::TEMPLATES)
            .chain(crate::models::TEMPLATES)
            .chain(crate::serving::TEMPLATES)
        {
            assert!(
                environment().get_template(name).is_ok(),
                "template {name} does not compile"
            );
        }
    }
}
