//! What a document key, a lease name and a lease holder may be: short printable ASCII without
//! spaces (`routes/iris`, `rollout/iris`, `router-7f9c-1234`), so they read well in logs and
//! errors and cannot smuggle control characters into either.

use crate::CoordinationError;

/// Longest key, lease name or holder.
pub(crate) const MAX_NAME: usize = 200;

/// `text` as a name for `field`, or a refusal naming the field and the value.
pub(crate) fn check(field: &str, text: &str) -> Result<(), CoordinationError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if text.is_empty() || text.len() > MAX_NAME || !text.chars().all(allowed) {
        let shown: String = text.chars().take(MAX_NAME).collect();
        return Err(CoordinationError::Invalid(format!(
            "'{field}' must be 1 to {MAX_NAME} characters of letters, digits and . _ - / : @, got {shown:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_printable_and_refused_by_field() {
        for good in ["routes/iris", "rollout/iris-v2", "router@pod-1:8001", "a"] {
            assert!(check("key", good).is_ok(), "{good}");
        }
        let long = "x".repeat(MAX_NAME + 1);
        for bad in ["", "has space", "new\nline", "ünï", long.as_str()] {
            let refused = check("holder", bad).unwrap_err().to_string();
            assert!(refused.contains("'holder'"), "{refused}");
        }
    }
}
