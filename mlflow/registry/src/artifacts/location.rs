//! Where `--artifacts` puts the artifacts: a folder (a plain path or `file://PATH`) or a bucket
//! prefix (`s3://BUCKET/PREFIX`). Any other scheme is refused, naming it: an unknown scheme once
//! silently became a local folder named `s3:`.

use std::path::{Path, PathBuf};

use crate::error::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactLocation {
    Folder(PathBuf),
    Bucket { bucket: String, prefix: String },
}

impl ArtifactLocation {
    /// Reads a location. A path that is not UTF-8 can only be a folder.
    pub fn parse(location: &Path) -> Result<ArtifactLocation, StoreError> {
        let Some(text) = location.to_str() else {
            return Ok(ArtifactLocation::Folder(location.to_path_buf()));
        };
        let Some((scheme, rest)) = text
            .split_once("://")
            .filter(|(scheme, _)| is_scheme(scheme))
        else {
            return Ok(ArtifactLocation::Folder(location.to_path_buf()));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" if !rest.is_empty() => Ok(ArtifactLocation::Folder(PathBuf::from(rest))),
            "s3" => s3(text, rest),
            _ => Err(StoreError::InvalidParameter(format!(
                "unsupported artifact location '{text}' (--artifacts): scheme '{scheme}' is not supported; use a folder, file://PATH or s3://BUCKET/PREFIX"
            ))),
        }
    }
}

/// A bucket named `rest`'s first segment, the prefix the rest.
fn s3(text: &str, rest: &str) -> Result<ArtifactLocation, StoreError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = !bucket.is_empty()
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if !valid_bucket {
        return Err(StoreError::InvalidParameter(format!(
            "invalid artifact location '{text}' (--artifacts): use s3://BUCKET/PREFIX with a bucket name of letters, digits, '-', '.' or '_'"
        )));
    }
    if crate::artifacts::paths::segments(prefix).is_err() {
        return Err(StoreError::InvalidParameter(format!(
            "invalid artifact location '{text}' (--artifacts): the prefix must be plain segments, without '..'"
        )));
    }
    Ok(ArtifactLocation::Bucket {
        bucket: bucket.to_owned(),
        prefix: prefix.trim_matches('/').to_owned(),
    })
}

/// RFC 3986's scheme: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ArtifactLocation, StoreError> {
        ArtifactLocation::parse(Path::new(text))
    }

    #[test]
    fn folders_buckets_and_refused_schemes() {
        let folder = |p: &str| Ok(ArtifactLocation::Folder(PathBuf::from(p)));
        assert_eq!(parse("weir-artifacts"), folder("weir-artifacts"));
        assert_eq!(parse("/var/lib/weir"), folder("/var/lib/weir"));
        assert_eq!(parse("file:///var/lib/weir"), folder("/var/lib/weir"));
        assert_eq!(parse("odd:name"), folder("odd:name"));
        let bucket = |b: &str, p: &str| {
            Ok(ArtifactLocation::Bucket {
                bucket: b.to_owned(),
                prefix: p.to_owned(),
            })
        };
        assert_eq!(
            parse("s3://models/weir/prod/"),
            bucket("models", "weir/prod")
        );
        assert_eq!(parse("s3://models"), bucket("models", ""));
        assert_eq!(parse("S3://models/x"), bucket("models", "x"));
        for refused in ["ftp://x", "gs://bucket/p", "https://s3.example/b"] {
            let Err(StoreError::InvalidParameter(message)) = parse(refused) else {
                panic!("{refused} was accepted");
            };
            let scheme = refused.split("://").next().unwrap();
            assert!(message.contains(&format!("scheme '{scheme}'")), "{message}");
        }
        for invalid in ["s3://", "s3:///prefix", "s3://b/../x", "s3://bad bucket/x"] {
            assert!(
                matches!(parse(invalid), Err(StoreError::InvalidParameter(_))),
                "{invalid}"
            );
        }
    }
}
