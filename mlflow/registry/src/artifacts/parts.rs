//! What MLflow's multipart uploads look like on either backend: numbered parts, each known by
//! the ETag its upload answered, listed back at completion.

use crate::error::StoreError;

/// S3's bound, which MLflow's client keeps to as well.
pub const MAX_PARTS: u32 = 10_000;

/// A part as the client lists it at completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartFile {
    pub number: u32,
    pub etag: String,
}

pub fn check_number(number: u32) -> Result<(), StoreError> {
    if number == 0 || number > MAX_PARTS {
        return Err(StoreError::InvalidParameter(format!(
            "part number {number} is outside 1..={MAX_PARTS}"
        )));
    }
    Ok(())
}

/// The listed parts in number order; refuses none at all, a number out of range and a number
/// listed twice.
pub fn sorted(parts: &[PartFile]) -> Result<Vec<PartFile>, StoreError> {
    let mut sorted = parts.to_vec();
    sorted.sort_by_key(|p| p.number);
    if sorted.is_empty() {
        return Err(StoreError::InvalidParameter(
            "a multipart upload needs at least one part".to_owned(),
        ));
    }
    for pair in sorted.windows(2) {
        if pair[0].number == pair[1].number {
            return Err(StoreError::InvalidParameter(format!(
                "part {} is listed twice",
                pair[0].number
            )));
        }
    }
    for part in &sorted {
        check_number(part.number)?;
    }
    Ok(sorted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_sorted_and_bad_lists_refused() {
        let part = |number: u32| PartFile {
            number,
            etag: format!("e{number}"),
        };
        assert_eq!(sorted(&[part(2), part(1)]).unwrap(), [part(1), part(2)]);
        for bad in [
            vec![],
            vec![part(1), part(1)],
            vec![part(0)],
            vec![part(10_001)],
        ] {
            assert!(matches!(sorted(&bad), Err(StoreError::InvalidParameter(_))));
        }
    }
}
