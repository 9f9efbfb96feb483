//! The digest that ties a served model to what the registry approved.
//!
//! A model version is a folder of files; its digest is sha256 over `path NUL sha256(file) LF`
//! for each file in path order. The registry computes it when a version is registered; a
//! server recomputes it over what it downloaded and refuses a mismatch.

use sha2::{Digest, Sha256};

/// The digest of files given as (relative path, contents), sorted by path by the caller.
pub fn artifact_digest<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut outer = Sha256::new();
    for (path, bytes) in files {
        outer.update(path.as_bytes());
        outer.update([0]);
        outer.update(hex(&Sha256::digest(bytes)));
        outer.update(b"\n");
    }
    String::from_utf8_lossy(&hex(&outer.finalize())).into_owned()
}

fn hex(bytes: &[u8]) -> Vec<u8> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[(b >> 4) as usize], DIGITS[(b & 15) as usize]])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_depends_on_names_order_and_bytes() {
        let one = artifact_digest([("a", &b"x"[..]), ("b", &b"y"[..])]);
        assert_eq!(one.len(), 64);
        assert_eq!(one, artifact_digest([("a", &b"x"[..]), ("b", &b"y"[..])]));
        assert_ne!(one, artifact_digest([("a", &b"x"[..]), ("c", &b"y"[..])]));
        assert_ne!(one, artifact_digest([("a", &b"x"[..]), ("b", &b"z"[..])]));
        // sha256("") is well known; a single file named "" digests to a fixed value.
        assert_eq!(
            hex(&Sha256::digest(b"")),
            b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
