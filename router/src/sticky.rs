//! Where a sticky key lands on a route's weight line: FNV-1a (64 bit) of the key's bytes,
//! modulo the total weight.
//!
//! The hash is written out here, not taken from the standard library: `DefaultHasher`'s output
//! may change between Rust releases, and a router built with a newer compiler would then move
//! every keyed user to another point of the line (and, at a split, to another version). FNV-1a
//! is fixed by its definition (offset basis 0xcbf29ce484222325, prime 0x100000001b3), fast on
//! short keys, and spreads user-id-like keys well enough for a weight split; the tests pin a
//! few keys' places so any change to it is noticed.

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

/// The point of a weight line of length `total` (at least 1) where `key` lands.
pub fn point(key: &[u8], total: u32) -> u32 {
    (fnv1a64(key) % u64::from(total.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_hash_is_fnv1a_64() {
        // Published FNV-1a test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    /// Pinned: a change here moves keyed users between versions on upgrade.
    #[test]
    fn keys_keep_their_places() {
        let places: Vec<u32> = ["alice", "bob", "carol", "user-0", "user-1", "user-39"]
            .iter()
            .map(|key| point(key.as_bytes(), 100))
            .collect();
        assert_eq!(places, PINNED);
    }

    const PINNED: [u32; 6] = [83, 92, 62, 19, 8, 89];

    #[test]
    fn user_ids_spread_over_the_line_by_weight() {
        // 10,000 keys at a 70/30 split: binomial σ is 46 keys; 4σ either way.
        let below = (0..10_000)
            .filter(|n| point(format!("user-{n}").as_bytes(), 100) < 70)
            .count();
        assert!((6_816..=7_184).contains(&below), "{below}");
    }

    proptest! {
        #[test]
        fn a_key_lands_on_the_line_and_always_at_the_same_point(
            key in proptest::collection::vec(any::<u8>(), 0..64), total in 1u32..1_000
        ) {
            let first = point(&key, total);
            prop_assert!(first < total);
            prop_assert_eq!(point(&key, total), first);
        }
    }
}
