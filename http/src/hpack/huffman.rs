//! The Huffman code of RFC 7541 Appendix B, decoding only (answers are sent raw).
//!
//! The code is canonical: codes are handed out in order of (length, symbol), so the 257 code
//! lengths below define it completely. Every decoding table is derived from them by `const`
//! evaluation: there is no generated table to trust and nothing to build at run time. Lengths
//! that do not form a complete code fail the build; the tests check the codes against the RFC's.
//!
//! Decoding keeps up to 64 input bits in a register, refilled eight bytes at a time. The next
//! 12 bits index a table that gives the one or two codes they start with, which covers every
//! character a gRPC header normally holds; longer codes are found by comparing the next 30 bits
//! (the longest code) against the canonical code's per-length limits.

use super::HpackError;

/// The end-of-string symbol: only valid as (a prefix of) padding, never decoded.
const EOS: u16 = 256;
/// The longest code (EOS and three control characters).
const MAX_LEN: u32 = 30;
const MASK: u32 = (1 << MAX_LEN) - 1;

/// Code length in bits of each symbol: bytes 0x00..=0xff, then EOS.
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 0x20
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 0x30
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 0x40
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 0x50
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 0x60
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 0x70
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0
    30, // EOS
];

/// A complete prefix code (Kraft sum exactly 1) is what makes "the first length whose limit
/// the next bits are under" always find a symbol; checked when compiling.
const _: () = {
    let mut sum: u64 = 0;
    let mut s = 0;
    while s < LENGTHS.len() {
        sum += 1 << (MAX_LEN - LENGTHS[s] as u32);
        s += 1;
    }
    assert!(
        sum == 1 << MAX_LEN,
        "the Huffman code lengths are not a complete prefix code"
    );
};

/// Width of the fast table's index: 16 KiB of `u32`, holding every pair of codes that fits in
/// 12 bits (two lowercase letters or digits, mostly) and every single code of up to 12 bits
/// (every letter, digit and the punctuation of paths, content types and user agents).
const FAST_BITS: u32 = 12;
const FAST_SIZE: usize = 1 << FAST_BITS;

struct Tables {
    /// Indexed by the next [`FAST_BITS`] bits: the first symbol (bits 0..8), a second symbol
    /// (8..16), the first code's length (16..24) and the length of both codes (24..32), which
    /// equals the first's when only one code fits. 0 where the first code is longer.
    fast: [u32; FAST_SIZE],
    /// For each length: the first code of that length, and one past its last (as numbers of
    /// that many bits). Any prefix of a longer code is at or above the limit.
    first: [u32; MAX_LEN as usize + 1],
    limit: [u32; MAX_LEN as usize + 1],
    /// For each length: where its symbols start in `sorted`.
    offset: [u16; MAX_LEN as usize + 1],
    /// Symbols in canonical order, (length, symbol).
    sorted: [u16; 257],
    /// Each symbol's code, for the tests' encoder.
    #[cfg(test)]
    codes: [u32; 257],
}

static TABLES: Tables = build();

const fn build() -> Tables {
    const LEN_SLOTS: usize = MAX_LEN as usize + 1;
    let mut count = [0u32; LEN_SLOTS];
    let mut s = 0;
    while s < LENGTHS.len() {
        count[LENGTHS[s] as usize] += 1;
        s += 1;
    }

    let mut first = [0u32; LEN_SLOTS];
    let mut limit = [0u32; LEN_SLOTS];
    let mut offset = [0u16; LEN_SLOTS];
    let mut code = 0u32;
    let mut placed = 0u16;
    let mut len = 1;
    while len < LEN_SLOTS {
        code = (code + count[len - 1]) << 1;
        first[len] = code;
        limit[len] = code + count[len];
        offset[len] = placed;
        placed += count[len] as u16;
        len += 1;
    }

    let mut next = offset;
    let mut sorted = [0u16; 257];
    let mut codes = [0u32; 257];
    s = 0;
    while s < LENGTHS.len() {
        let len = LENGTHS[s] as usize;
        codes[s] = first[len] + (next[len] - offset[len]) as u32;
        sorted[next[len] as usize] = s as u16;
        next[len] += 1;
        s += 1;
    }

    let mut fast = [0u32; FAST_SIZE];
    let mut index = 0;
    while index < FAST_SIZE {
        let bits = index as u32;
        if let Some((one, len1)) = code_at(bits, FAST_BITS, &first, &limit, &offset, &sorted) {
            let rest = (bits << len1) & (FAST_SIZE as u32 - 1);
            let (two, total) =
                match code_at(rest, FAST_BITS - len1, &first, &limit, &offset, &sorted) {
                    Some((two, len2)) => (two, len1 + len2),
                    None => (0, len1),
                };
            fast[index] = one as u32 | (two as u32) << 8 | len1 << 16 | total << 24;
        }
        index += 1;
    }

    Tables {
        fast,
        first,
        limit,
        offset,
        sorted,
        #[cfg(test)]
        codes,
    }
}

/// For building the fast table: the symbol whose code of at most `avail` bits starts the
/// [`FAST_BITS`]-bit `bits`, if there is one.
const fn code_at(
    bits: u32,
    avail: u32,
    first: &[u32],
    limit: &[u32],
    offset: &[u16],
    sorted: &[u16],
) -> Option<(u16, u32)> {
    let mut len = 1;
    while len <= avail {
        let code = bits >> (FAST_BITS - len);
        if code < limit[len as usize] {
            let rank = code - first[len as usize];
            return Some((sorted[offset[len as usize] as usize + rank as usize], len));
        }
        len += 1;
    }
    None
}

/// The most bytes `encoded_len` bytes of Huffman code can decode to: the shortest code is 5
/// bits.
pub(super) fn max_decoded_len(encoded_len: usize) -> usize {
    encoded_len.saturating_mul(8) / 5
}

/// Appends the decoding of `src` to `dst`. Per RFC 7541 §5.2 the string must end in at most 7
/// bits of padding that are all ones (a prefix of EOS), and EOS itself must not appear.
pub(super) fn decode(src: &[u8], dst: &mut Vec<u8>) -> Result<(), HpackError> {
    let start = dst.len();
    // Room for the longest possible output, and one more byte: the fast path always stores
    // two symbols, the second only kept when there was one.
    dst.resize(
        start
            .saturating_add(max_decoded_len(src.len()))
            .saturating_add(1),
        0,
    );
    let decoded = decode_into(src, dst.get_mut(start..).unwrap_or_default());
    dst.truncate(start + decoded.as_ref().map_or(0, |&len| len));
    decoded.map(|_| ())
}

/// Decodes `src` into `out`, returning the decoded length. `out` must have room for
/// [`max_decoded_len`] plus one byte; with less, decoding fails (rather than panics) where the
/// room runs out.
fn decode_into(src: &[u8], out: &mut [u8]) -> Result<usize, HpackError> {
    // The unread bits, most significant first, at the top of `acc`; `bits` of them. Below them
    // `acc` holds zeros or the bits of the input that follow, in their place.
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    // Input bytes taken into `acc`.
    let mut taken = 0;
    let mut written = 0;

    // While 8 input bytes can be read at once: top `acc` up to at least 56 bits without a
    // branch (bytes already in it are or-ed in again, in place), then take codes while the
    // fast table has enough bits (one or two codes a lookup), or the slow path does.
    while let Some(&word) = src.get(taken..).and_then(<[u8]>::first_chunk::<8>) {
        acc |= u64::from_be_bytes(word) >> bits;
        let whole_bytes = (63 - bits) / 8;
        taken += whole_bytes as usize;
        bits += whole_bytes * 8;

        while bits >= FAST_BITS {
            let entry = TABLES.fast[(acc >> (64 - FAST_BITS)) as usize & (FAST_SIZE - 1)];
            if entry != 0 {
                let Some([one, two]) = out.get_mut(written..written + 2) else {
                    return Err(HpackError::HuffmanPadding);
                };
                *one = entry as u8;
                *two = (entry >> 8) as u8;
                let len1 = entry >> 16 & 0xff;
                let total = entry >> 24;
                written += if total == len1 { 1 } else { 2 };
                acc <<= total;
                bits -= total;
            } else if bits >= MAX_LEN {
                let (symbol, len) = lookup_long((acc >> (64 - MAX_LEN)) as u32);
                let (Ok(byte), Some(slot)) = (u8::try_from(symbol), out.get_mut(written)) else {
                    return Err(HpackError::HuffmanEos);
                };
                *slot = byte;
                written += 1;
                acc <<= len;
                bits -= len;
            } else {
                // A long code may run past the bits taken so far: refill first.
                break;
            }
        }
    }

    // The last few bytes, one code at a time, then the padding. Where fewer than 30 bits are
    // left, the missing ones are taken as ones, so that all-ones padding looks like the start
    // of EOS and any other tail like a code longer than what is left.
    loop {
        while bits <= 56 {
            let Some(&byte) = src.get(taken) else { break };
            acc |= u64::from(byte) << (56 - bits);
            taken += 1;
            bits += 8;
        }
        if bits == 0 {
            return Ok(written);
        }
        let missing = MAX_LEN.saturating_sub(bits);
        let next = (acc >> (64 - MAX_LEN)) as u32 & !((1 << missing) - 1) | ((1 << missing) - 1);
        if missing > 0 && next == MASK {
            // All that is left is ones: padding, valid only if shorter than a byte.
            return if bits <= 7 {
                Ok(written)
            } else {
                Err(HpackError::HuffmanPadding)
            };
        }
        let (symbol, len) = lookup(next);
        if len > bits {
            return Err(HpackError::HuffmanPadding);
        }
        let (Ok(byte), Some(slot)) = (u8::try_from(symbol), out.get_mut(written)) else {
            return Err(HpackError::HuffmanEos);
        };
        *slot = byte;
        written += 1;
        acc <<= len;
        bits -= len;
    }
}

/// The symbol whose code starts `next` (30 bits, most significant first) and its length.
fn lookup(next: u32) -> (u16, u32) {
    let entry = TABLES.fast[(next >> (MAX_LEN - FAST_BITS)) as usize & (FAST_SIZE - 1)];
    if entry != 0 {
        ((entry & 0xff) as u16, entry >> 16 & 0xff)
    } else {
        lookup_long(next)
    }
}

/// Codes longer than the fast table's: the first length whose limit the leading bits are
/// under. The fallback to EOS is unreachable for a complete code but keeps this total.
#[inline(never)]
fn lookup_long(next: u32) -> (u16, u32) {
    for len in FAST_BITS + 1..=MAX_LEN {
        let l = len as usize;
        let code = next >> (MAX_LEN - len);
        if code < TABLES.limit[l] {
            let symbol = code.checked_sub(TABLES.first[l]).and_then(|rank| {
                TABLES
                    .sorted
                    .get(usize::from(TABLES.offset[l]) + rank as usize)
            });
            return match symbol {
                Some(&symbol) => (symbol, len),
                None => (EOS, MAX_LEN),
            };
        }
    }
    (EOS, MAX_LEN)
}

/// Test-only encoder: Huffman-codes `src` onto `dst`, padded with ones.
#[cfg(test)]
pub(super) fn encode(src: &[u8], dst: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    for &byte in src {
        let len = u32::from(LENGTHS[usize::from(byte)]);
        acc = acc << len | u64::from(TABLES.codes[usize::from(byte)]);
        bits += len;
        while bits >= 8 {
            bits -= 8;
            dst.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        let pad = 8 - bits;
        dst.push((acc << pad) as u8 | ((1u8 << pad) - 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpack::tests::hex;

    fn decoded(src: &[u8]) -> Result<Vec<u8>, HpackError> {
        let mut out = Vec::new();
        decode(src, &mut out).map(|()| out)
    }

    fn huffman(src: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(src, &mut out);
        out
    }

    #[test]
    fn lengths_form_a_complete_prefix_code() {
        let kraft: u64 = LENGTHS
            .iter()
            .map(|&l| 1u64 << (MAX_LEN - u32::from(l)))
            .sum();
        assert_eq!(kraft, 1 << MAX_LEN);
        assert!(LENGTHS.iter().all(|&l| (5..=30).contains(&l)));
    }

    /// A few codes as printed in RFC 7541 Appendix B: the canonical construction reproduces
    /// the RFC's codes, not just some code with the same lengths.
    #[test]
    fn canonical_codes_match_the_rfc() {
        for (symbol, code, len) in [
            (0usize, 0x1ff8u32, 13u8),
            (10, 0x3fff_fffc, 30),
            (b' ' as usize, 0x14, 6),
            (b'0' as usize, 0x0, 5),
            (b':' as usize, 0x5c, 7),
            (b'a' as usize, 0x3, 5),
            (b'z' as usize, 0x7b, 7),
            (127, 0xfff_fffc, 28),
            (255, 0x3ff_ffee, 26),
            (256, 0x3fff_ffff, 30),
        ] {
            assert_eq!(
                (TABLES.codes[symbol], LENGTHS[symbol]),
                (code, len),
                "symbol {symbol}"
            );
        }
    }

    #[test]
    fn every_byte_round_trips() {
        for byte in 0..=255u8 {
            assert_eq!(
                decoded(&huffman(&[byte])).unwrap(),
                [byte],
                "byte {byte:#04x}"
            );
            let run = [byte; 7];
            assert_eq!(decoded(&huffman(&run)).unwrap(), run, "run of {byte:#04x}");
        }
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        assert_eq!(decoded(&huffman(&all)).unwrap(), all);
        assert_eq!(decoded(&[]).unwrap(), b"");
    }

    /// Strings of the shortest code decode to exactly the bound the output buffer is sized by.
    #[test]
    fn shortest_codes_fill_the_bound() {
        for n in 0..200 {
            let s = vec![b'0'; n];
            let encoded = huffman(&s);
            let mut out = vec![b'x'; 3];
            decode(&encoded, &mut out).unwrap();
            assert_eq!(out[3..], s);
            assert_eq!(&out[..3], b"xxx");
            if n * 5 % 8 == 0 || n * 5 % 8 > 3 {
                assert_eq!(n, max_decoded_len(encoded.len()), "{n}");
            }
        }
    }

    #[test]
    fn random_strings_round_trip() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let len = (next() % 100) as usize;
            // Half the strings mostly printable (short codes), half any byte (long codes).
            let printable = next() % 2 == 0;
            let s: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next() as u8;
                    if printable {
                        b' ' + r % 95
                    } else {
                        r
                    }
                })
                .collect();
            let encoded = huffman(&s);
            let out = decoded(&encoded).unwrap();
            assert_eq!(out, s);
            assert!(out.len() <= max_decoded_len(encoded.len()));
        }
    }

    /// RFC 7541 Appendix C.4 and C.6 strings.
    #[test]
    fn rfc_examples_decode() {
        for (code, text) in [
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
            ("a8eb 1064 9cbf", "no-cache"),
            ("25a8 49e9 5ba9 7d7f", "custom-key"),
            ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
            ("6402", "302"),
            ("aec3 771a 4b", "private"),
            (
                "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
                "Mon, 21 Oct 2013 20:13:21 GMT",
            ),
            (
                "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
                "https://www.example.com",
            ),
            ("9bd9 ab", "gzip"),
            (
                "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f \
                 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            ),
        ] {
            assert_eq!(decoded(&hex(code)).unwrap(), text.as_bytes(), "{text}");
            assert_eq!(huffman(text.as_bytes()), hex(code), "{text}");
        }
    }

    #[test]
    fn padding_of_a_byte_or_more_is_an_error() {
        // A whole byte of ones after a code that ends on a byte boundary.
        let mut s = huffman(b"00000000"); // 8 codes of 5 bits: 40 bits, 5 bytes, no padding
        assert_eq!(s.len(), 5);
        assert_eq!(decoded(&s).unwrap(), b"00000000");
        s.push(0xff);
        assert_eq!(decoded(&s), Err(HpackError::HuffmanPadding));
        // Only ones, one byte and more.
        assert_eq!(decoded(&[0xff]), Err(HpackError::HuffmanPadding));
        assert_eq!(decoded(&[0xff, 0xff]), Err(HpackError::HuffmanPadding));
        // 'a' (00011) then 11 bits of ones.
        assert_eq!(
            decoded(&[0b0001_1111, 0xff]),
            Err(HpackError::HuffmanPadding)
        );
    }

    #[test]
    fn padding_of_up_to_seven_ones_is_accepted() {
        // 'a' is 00011: three bits of padding.
        assert_eq!(decoded(&[0b0001_1111]).unwrap(), b"a");
        // Runs of 5-bit codes end at every bit offset, so every padding length 0..=7 occurs.
        for n in 0..16 {
            let s = vec![b'a'; n];
            assert_eq!(decoded(&huffman(&s)).unwrap(), s);
        }
    }

    #[test]
    fn padding_with_a_zero_bit_is_an_error() {
        // 'a' (00011) then padding 101.
        assert_eq!(decoded(&[0b0001_1101]), Err(HpackError::HuffmanPadding));
        // 'a' then 110.
        assert_eq!(decoded(&[0b0001_1110]), Err(HpackError::HuffmanPadding));
        // Seven bits of padding (five 5-bit codes), the last one zero.
        let mut s = huffman(b"aaaaa");
        assert_eq!(s.last(), Some(&0xff));
        if let Some(last) = s.last_mut() {
            *last = 0xfe;
        }
        assert_eq!(decoded(&s), Err(HpackError::HuffmanPadding));
        // Only zeros: codes of '0' (5 bits) and then three zero bits of "padding".
        assert_eq!(decoded(&[0x00]), Err(HpackError::HuffmanPadding));
    }

    type CodeMap = std::collections::HashMap<(u32, u8), usize>;

    /// The obvious decoder: bits one at a time until they spell a code of the table.
    fn decoded_bit_by_bit(by_code: &CodeMap, src: &[u8]) -> Result<Vec<u8>, HpackError> {
        let mut out = Vec::new();
        let (mut code, mut len) = (0u32, 0u8);
        for i in 0..src.len() * 8 {
            code = code << 1 | u32::from(src[i / 8] >> (7 - i % 8) & 1);
            len += 1;
            match by_code.get(&(code, len)) {
                Some(&256) => return Err(HpackError::HuffmanEos),
                Some(&symbol) => {
                    out.push(symbol as u8);
                    (code, len) = (0, 0);
                }
                None => {}
            }
        }
        if len <= 7 && code == (1 << len) - 1 {
            Ok(out)
        } else {
            Err(HpackError::HuffmanPadding)
        }
    }

    /// Every string of one and two bytes, and random longer ones (biased to ones, where the
    /// long codes, EOS and padding are), decode exactly as the bit-by-bit decoder does.
    #[test]
    fn matches_a_bit_by_bit_decoder() {
        let by_code: CodeMap = (0..257)
            .map(|s| ((TABLES.codes[s], LENGTHS[s]), s))
            .collect();
        let reference = |s: &[u8]| decoded_bit_by_bit(&by_code, s);
        for a in 0..=255u8 {
            assert_eq!(decoded(&[a]), reference(&[a]), "{a:#04x}");
            for b in 0..=255u8 {
                assert_eq!(decoded(&[a, b]), reference(&[a, b]), "{a:#04x} {b:#04x}");
            }
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = 3 + (next() % 14) as usize;
            let s: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    // Mostly set bits: OR-ing random bytes together.
                    (r | r >> 8 | r >> 16) as u8
                })
                .collect();
            assert_eq!(decoded(&s), reference(&s), "{s:02x?}");
        }
    }

    #[test]
    fn eos_inside_a_string_is_an_error() {
        // 30 ones then 'a' (00011) padded: 30 + 5 = 35 bits, 5 bits of padding.
        let eos_then_a = [0xff, 0xff, 0xff, 0xfc, 0x7f];
        assert_eq!(decoded(&eos_then_a), Err(HpackError::HuffmanEos));
        // 'a' then EOS then padding: 5 + 30 = 35 bits.
        let a_then_eos = [0b0001_1111, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decoded(&a_then_eos), Err(HpackError::HuffmanEos));
        // EOS alone with two bits of padding: 32 bits of ones.
        assert_eq!(decoded(&[0xff; 4]), Err(HpackError::HuffmanEos));
        // EOS far into a long string.
        let mut long = huffman(&[b'x'; 40]);
        long.extend_from_slice(&[0xff; 5]);
        assert!(decoded(&long).is_err());
    }
}
