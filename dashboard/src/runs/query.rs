//! Query strings as the runs pages read them: repeated keys (`runs=a&runs=b`, what a form of
//! checkboxes sends) kept in order, and every value checked before it reaches a store.

use axum::extract::RawQuery;

/// The most rows one page shows; the next ones are a link away (`offset=`).
pub(super) const PAGE_SIZE: usize = 100;

/// A query string's `(key, value)` pairs, decoded, in order.
pub(super) struct Pairs(Vec<(String, String)>);

impl Pairs {
    /// Reads the raw query; a string that is not `application/x-www-form-urlencoded` is refused
    /// with the reason.
    pub(super) fn read(raw: &RawQuery) -> Result<Pairs, String> {
        let text = raw.0.as_deref().unwrap_or_default();
        serde_urlencoded::from_str::<Vec<(String, String)>>(text)
            .map(Pairs)
            .map_err(|err| format!("the query string cannot be read: {err}"))
    }

    /// The last value of `key`, trimmed; `None` when absent or blank.
    pub(super) fn one(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Every value of `key`, in order, blanks left out.
    pub(super) fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// Where a page of results starts (`offset=N`, default 0).
    pub(super) fn offset(&self) -> Result<usize, String> {
        match self.one("offset") {
            None => Ok(0),
            Some(text) => text.parse::<usize>().map_err(|_| {
                format!("invalid offset '{text}': use a whole number of rows to skip")
            }),
        }
    }

    /// Whether charts put time rather than the step on x (`x=time`; `x=step` is the default).
    pub(super) fn x_is_time(&self) -> Result<bool, String> {
        match self.one("x") {
            None | Some("step") => Ok(false),
            Some("time") => Ok(true),
            Some(other) => Err(format!("invalid x axis '{other}': use step or time")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Pairs {
        Pairs::read(&RawQuery(Some(text.to_owned()))).unwrap()
    }

    #[test]
    fn repeated_keys_keep_their_order() {
        let q = pairs("runs=b&x=time&runs=a&runs=&filter=metrics.rmse%20%3C%201");
        assert_eq!(q.all("runs"), ["b", "a"]);
        assert_eq!(q.one("filter"), Some("metrics.rmse < 1"));
        assert_eq!(q.one("order"), None);
        assert!(q.x_is_time().unwrap());
    }

    #[test]
    fn bad_values_are_refused_with_the_value() {
        let err = pairs("offset=-3").offset().unwrap_err();
        assert!(err.contains("'-3'"), "{err}");
        let err = pairs("x=epoch").x_is_time().unwrap_err();
        assert!(err.contains("'epoch'"), "{err}");
        assert_eq!(pairs("").offset().unwrap(), 0);
        assert!(!pairs("x=step").x_is_time().unwrap());
        assert!(Pairs::read(&RawQuery(None)).is_ok());
    }
}
