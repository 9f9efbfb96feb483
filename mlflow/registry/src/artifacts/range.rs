//! HTTP `Range` requests on downloads (one range of bytes), so a client can resume a large
//! download or read part of a file; both backends serve them without reading the rest.

/// One range a `Range: bytes=…` header asks for, before the file's size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=START-` or `bytes=START-END` (END inclusive).
    From { start: u64, end: Option<u64> },
    /// `bytes=-N`: the last N bytes.
    Suffix(u64),
}

/// What a download serves of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The whole file (no range asked, or a header weir does not serve: several ranges).
    Whole,
    /// Bytes `start..end` (end exclusive) of the file: a 206.
    Part { start: u64, end: u64 },
    /// A range outside the file: a 416 naming the size.
    Unsatisfiable,
}

impl RangeSpec {
    /// Reads a `Range` header; `None` for anything but one well-formed byte range, which the
    /// download then ignores (RFC 9110 lets a server send the whole file instead).
    pub fn parse(header: &str) -> Option<RangeSpec> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (start, end) = spec.split_once('-')?;
        let (start, end) = (start.trim(), end.trim());
        if start.is_empty() {
            return end.parse().ok().map(RangeSpec::Suffix);
        }
        let start = start.parse().ok()?;
        let end = if end.is_empty() {
            None
        } else {
            Some(end.parse().ok()?)
        };
        if end.is_some_and(|end| end < start) {
            return None;
        }
        Some(RangeSpec::From { start, end })
    }

    /// The bytes this range names in a file of `size` bytes.
    pub fn resolve(&self, size: u64) -> Served {
        match *self {
            RangeSpec::From { start, .. } if start >= size => Served::Unsatisfiable,
            RangeSpec::From { start, end } => Served::Part {
                start,
                end: end.map_or(size, |end| end.saturating_add(1).min(size)),
            },
            RangeSpec::Suffix(0) => Served::Unsatisfiable,
            RangeSpec::Suffix(_) if size == 0 => Served::Unsatisfiable,
            RangeSpec::Suffix(length) => Served::Part {
                start: size.saturating_sub(length),
                end: size,
            },
        }
    }
}

/// What to serve of a file of `size` bytes for an optional range.
pub fn served(range: Option<RangeSpec>, size: u64) -> Served {
    range.map_or(Served::Whole, |range| range.resolve(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_byte_range_is_read_and_resolved_against_the_size() {
        let from = |start, end| Some(RangeSpec::From { start, end });
        assert_eq!(RangeSpec::parse("bytes=0-99"), from(0, Some(99)));
        assert_eq!(RangeSpec::parse("bytes=10-"), from(10, None));
        assert_eq!(RangeSpec::parse("bytes=-5"), Some(RangeSpec::Suffix(5)));
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-2",
            "bytes=x-",
            "bytes=-",
        ] {
            assert_eq!(RangeSpec::parse(ignored), None, "{ignored}");
        }
        let part = |start, end| Served::Part { start, end };
        assert_eq!(
            RangeSpec::parse("bytes=0-99").unwrap().resolve(50),
            part(0, 50)
        );
        assert_eq!(
            RangeSpec::parse("bytes=10-").unwrap().resolve(50),
            part(10, 50)
        );
        assert_eq!(
            RangeSpec::parse("bytes=-5").unwrap().resolve(50),
            part(45, 50)
        );
        assert_eq!(
            RangeSpec::parse("bytes=-500").unwrap().resolve(50),
            part(0, 50)
        );
        assert_eq!(
            RangeSpec::parse("bytes=50-").unwrap().resolve(50),
            Served::Unsatisfiable
        );
        assert_eq!(
            RangeSpec::parse("bytes=-1").unwrap().resolve(0),
            Served::Unsatisfiable
        );
        assert_eq!(served(None, 7), Served::Whole);
    }
}
