//! The rules every artifact path follows, whichever backend stores it: plain relative segments
//! that cannot leave the store, and the reserved folder where registered versions live.

use std::path::{Component, Path};

use crate::error::StoreError;

/// The folder inside the artifact root where registered versions' files are kept
/// (content-addressed blobs); no artifact request may write or delete under it.
pub const RESERVED_DIR: &str = ".weir";

/// Whether a relative artifact path lies in [`RESERVED_DIR`] (or is it), compared on the path's
/// first real segment so `./.weir`, `/.weir/x` and `.WEIR` count too.
pub fn is_reserved(relative: &str) -> bool {
    Path::new(relative.trim_start_matches('/'))
        .components()
        .find_map(|c| match c {
            Component::Normal(segment) => Some(segment),
            _ => None,
        })
        .and_then(|segment| segment.to_str())
        .is_some_and(|segment| segment.eq_ignore_ascii_case(RESERVED_DIR))
}

/// The plain segments of a relative artifact path. No `..`, no backslashes or NUL, so a path
/// cannot reach outside the store; `.` and empty segments are dropped and a leading slash is
/// relative to the store, as in the folder backend. Empty for the store's root.
pub fn segments(relative: &str) -> Result<Vec<&str>, StoreError> {
    if relative.contains(['\\', '\0']) {
        return Err(invalid(relative));
    }
    let mut segments = Vec::new();
    for segment in relative.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(invalid(relative)),
            plain => segments.push(plain),
        }
    }
    Ok(segments)
}

/// The refusal of a path that could leave the store.
pub fn invalid(relative: &str) -> StoreError {
    StoreError::InvalidParameter(format!(
        "invalid artifact path '{relative}': use plain relative segments, without '..'"
    ))
}

/// Refuses a write or delete that would reach the whole store or the versions' storage:
/// `DELETE .` once removed every artifact, and a write under `.weir/` could change a
/// registered version's bytes.
pub fn check_writable(relative: &str) -> Result<Vec<&str>, StoreError> {
    let parts = segments(relative)?;
    if parts.is_empty() {
        return Err(StoreError::InvalidParameter(format!(
            "artifact path '{relative}' names the artifact root, which cannot be written or deleted"
        )));
    }
    if is_reserved(relative) {
        return Err(StoreError::PermissionDenied(format!(
            "artifact path '{relative}' is inside {RESERVED_DIR}/, where registered versions are kept; they cannot be changed"
        )));
    }
    Ok(parts)
}

/// Whether a listed name is hidden: `.weir` and temporary `.*.partial` files never show.
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_stay_inside_and_reserved_paths_are_recognised() {
        assert_eq!(segments("/a//./b/").unwrap(), ["a", "b"]);
        assert!(segments("").unwrap().is_empty());
        for bad in ["..", "a/../b", "a\\b", "a\0b", "/../etc"] {
            assert!(
                matches!(segments(bad), Err(StoreError::InvalidParameter(_))),
                "{bad:?}"
            );
        }
        for reserved in [".weir", "./.weir/x", "/.WEIR/blobs"] {
            assert!(is_reserved(reserved), "{reserved}");
            assert!(matches!(
                check_writable(reserved),
                Err(StoreError::PermissionDenied(_))
            ));
        }
        assert!(!is_reserved("weir/.weir"));
        for root in ["", ".", "/", "./"] {
            assert!(matches!(
                check_writable(root),
                Err(StoreError::InvalidParameter(_))
            ));
        }
        assert_eq!(check_writable("a/b").unwrap(), ["a", "b"]);
    }
}
