//! HPACK (RFC 7541) for weir's HTTP/2 connections: a decoder for the header blocks a peer
//! sends (requests on the gRPC listener, answers on the router's gRPC client), and an encoder
//! for the blocks weir sends.
//!
//! The decoder reads blocks from any peer and so is written for hostile input: every length
//! is checked against what is left of the block before it is used, integers are bounded, and
//! nothing is allocated beyond the dynamic table's advertised size and the block's own length.
//! Fields are handed to a callback as slices (of the block, of the table, or of a scratch
//! buffer the decoder keeps for Huffman-coded strings), so decoding a block allocates only for
//! the entries it adds to the dynamic table.
//!
//! The encoder never uses the dynamic table: answers and forwarded calls are a handful of
//! fields, mostly in the static table or short, and not indexing anything means the peer's
//! table size, and the size updates it would require, never matter.

mod huffman;

use std::collections::VecDeque;

use bytes::{BufMut, BytesMut};

/// Why a header block could not be decoded. Any of these is a connection error
/// (COMPRESSION_ERROR): the dynamic table can no longer be trusted to match the peer's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum HpackError {
    #[error("HPACK index 0")]
    ZeroIndex,
    #[error("HPACK index {0} is past the end of the tables")]
    BadIndex(usize),
    #[error("HPACK integer too large")]
    IntegerOverflow,
    #[error("header block ends inside a field")]
    Truncated,
    #[error("HPACK string of {len} bytes, but only {remaining} left in the block")]
    StringTooLong { len: usize, remaining: usize },
    #[error("Huffman string padding is longer than 7 bits or not all ones")]
    HuffmanPadding,
    #[error("Huffman string contains EOS")]
    HuffmanEos,
    #[error("dynamic table size update to {size} is above the advertised {max}")]
    SizeUpdateTooLarge { size: usize, max: usize },
    #[error("dynamic table size update after the first field of a block")]
    SizeUpdateNotAtStart,
}

/// RFC 7541 Appendix A; index `i` of the RFC is element `i - 1`.
const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// RFC 7541 §4.1: what an entry costs beyond its name and value.
const ENTRY_OVERHEAD: usize = 32;

/// Continuation bytes after a full prefix: four carry 28 bits, far past any real index, length
/// or table size, and the sum still fits a 32-bit `usize`. More is an attack or garbage.
const MAX_INTEGER_CONTINUATIONS: u32 = 4;

/// A scratch buffer grown past this by one huge Huffman string is dropped after the block,
/// so a single large request does not pin the memory for the connection's life.
const SCRATCH_KEEP: usize = 16 * 1024;

/// Decodes the request header blocks of one connection; holds that connection's dynamic
/// table, so every block of the connection must pass through the same decoder, in order.
pub(crate) struct Decoder {
    table: DynamicTable,
    /// The SETTINGS_HEADER_TABLE_SIZE the server advertised: the most a size update may ask.
    max_table_size: usize,
    /// Decoded Huffman strings of the field being decoded.
    scratch: Vec<u8>,
}

impl Decoder {
    /// `max_table_size`: the SETTINGS_HEADER_TABLE_SIZE the server advertised (the peer's
    /// encoder starts with a table of that size).
    pub(crate) fn new(max_table_size: usize) -> Decoder {
        Decoder {
            table: DynamicTable::new(max_table_size),
            max_table_size,
            scratch: Vec::new(),
        }
    }

    /// Changes with every change to the dynamic table (an entry added, a size update). A
    /// block decodes to the same fields whenever the table is the same, so a caller may keep
    /// a block's fields and reuse them for the same bytes while this is unchanged, provided
    /// that decoding the block did not change it (see `server::http2::driver`).
    pub(crate) fn generation(&self) -> u64 {
        self.table.generation
    }

    /// Decodes one complete header block (every HEADERS and CONTINUATION fragment, joined),
    /// calling `field(name, value)` for each field in order. Names come exactly as sent:
    /// checking them (lowercase, pseudo-headers first) is the caller's. A field the caller
    /// rejects must still be decoded, so the callback cannot stop the block: the rest of it
    /// may change the dynamic table, and later blocks depend on that.
    ///
    /// On an error the connection has to end; the decoder's state after it is unspecified
    /// (but still safe to use).
    pub(crate) fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let result = self.decode_fields(block, &mut field);
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
        result
    }

    fn decode_fields(
        &mut self,
        block: &[u8],
        field: &mut impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let mut rest = block;
        // Size updates may only come before the first field (RFC 7541 §4.2).
        let mut at_start = true;
        while let Some((&first, tail)) = rest.split_first() {
            rest = tail;
            match first {
                // 1xxxxxxx: indexed field.
                0x80..=0xff => {
                    let index = decode_int(first, 7, &mut rest)?;
                    let (name, value) = self.table.get(index)?;
                    field(name, value);
                }
                // 01xxxxxx: literal, added to the table.
                0x40..=0x7f => self.literal(first, 6, &mut rest, true, field)?,
                // 001xxxxx: dynamic table size update.
                0x20..=0x3f if at_start => {
                    self.size_update(first, &mut rest)?;
                    continue;
                }
                0x20..=0x3f => return Err(HpackError::SizeUpdateNotAtStart),
                // 0001xxxx never indexed, 0000xxxx without indexing: the same to a server,
                // which forwards nothing.
                0x00..=0x1f => self.literal(first, 4, &mut rest, false, field)?,
            }
            at_start = false;
        }
        Ok(())
    }

    fn size_update(&mut self, first: u8, rest: &mut &[u8]) -> Result<(), HpackError> {
        let size = decode_int(first, 5, rest)?;
        if size > self.max_table_size {
            return Err(HpackError::SizeUpdateTooLarge {
                size,
                max: self.max_table_size,
            });
        }
        self.table.set_max_size(size);
        Ok(())
    }

    /// A literal field whose first byte is `first`, its name index in the low `prefix` bits
    /// (0 for a name that follows as a string).
    fn literal(
        &mut self,
        first: u8,
        prefix: u32,
        rest: &mut &[u8],
        add_to_table: bool,
        field: &mut impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let name_index = decode_int(first, prefix, rest)?;
        self.scratch.clear();
        let name = match name_index {
            0 => read_string(rest, &mut self.scratch)?,
            index => Str::Bytes(self.table.get(index)?.0),
        };
        let value = read_string(rest, &mut self.scratch)?;
        let name = name.resolve(&self.scratch);
        let value = value.resolve(&self.scratch);
        field(name, value);
        if add_to_table {
            // Copied before anything is evicted: the name may be an entry the insertion evicts
            // (RFC 7541 §4.4). An entry larger than the table is never allocated.
            let size = entry_size(name, value);
            let entry = (size <= self.table.max_size).then(|| Entry::new(name, value));
            self.table.insert(entry, size);
        }
        Ok(())
    }

    /// The dynamic table's current size in the RFC's terms, for the tests.
    #[cfg(test)]
    fn table_size(&self) -> usize {
        self.table.size
    }

    /// The dynamic table's entries, newest first, for the tests.
    #[cfg(test)]
    fn table_entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.table
            .entries
            .iter()
            .map(|e| {
                let (name, value) = e.parts();
                (name.to_vec(), value.to_vec())
            })
            .collect()
    }
}

/// Sizes only: entries are header values, which may be credentials.
impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("entries", &self.table.entries.len())
            .field("table_size", &self.table.size)
            .field("table_max_size", &self.table.max_size)
            .field("max_table_size", &self.max_table_size)
            .finish_non_exhaustive()
    }
}

fn entry_size(name: &[u8], value: &[u8]) -> usize {
    name.len()
        .saturating_add(value.len())
        .saturating_add(ENTRY_OVERHEAD)
}

/// The dynamic table: newest entry at the front, so HPACK index 62 is element 0 and lookup is
/// O(1); eviction pops from the back.
struct DynamicTable {
    entries: VecDeque<Entry>,
    /// The sum of the entries' sizes (RFC 7541 §4.1).
    size: usize,
    /// The limit in force: the last size update's, or the advertised size.
    max_size: usize,
    /// Counts the table's changes (`Decoder::generation`).
    generation: u64,
}

/// One entry, name and value in a single allocation.
struct Entry {
    bytes: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn new(name: &[u8], value: &[u8]) -> Entry {
        let mut bytes = Vec::with_capacity(name.len().saturating_add(value.len()));
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        Entry {
            bytes: bytes.into_boxed_slice(),
            name_len: name.len(),
        }
    }

    fn parts(&self) -> (&[u8], &[u8]) {
        self.bytes
            .split_at_checked(self.name_len)
            .unwrap_or((&[], &[]))
    }

    fn size(&self) -> usize {
        self.bytes.len().saturating_add(ENTRY_OVERHEAD)
    }
}

impl DynamicTable {
    fn new(max_size: usize) -> DynamicTable {
        DynamicTable {
            entries: VecDeque::new(),
            size: 0,
            max_size,
            generation: 0,
        }
    }

    /// The field at HPACK `index`: static table first, then the dynamic one.
    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        let i = index.checked_sub(1).ok_or(HpackError::ZeroIndex)?;
        if let Some(&(name, value)) = STATIC_TABLE.get(i) {
            return Ok((name, value));
        }
        self.entries
            .get(i - STATIC_TABLE.len())
            .map(Entry::parts)
            .ok_or(HpackError::BadIndex(index))
    }

    /// Adds an entry of `size`, evicting the oldest to make room; `None` (the entry did not
    /// fit the table at all) empties the table, as RFC 7541 §4.4 says.
    fn insert(&mut self, entry: Option<Entry>, size: usize) {
        self.generation = self.generation.wrapping_add(1);
        match entry {
            Some(entry) => {
                self.evict_to(self.max_size.saturating_sub(size));
                self.entries.push_front(entry);
                self.size = self.size.saturating_add(size);
            }
            None => {
                self.entries.clear();
                self.size = 0;
            }
        }
    }

    fn set_max_size(&mut self, max_size: usize) {
        self.generation = self.generation.wrapping_add(1);
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    fn evict_to(&mut self, target: usize) {
        while self.size > target {
            match self.entries.pop_back() {
                Some(entry) => self.size = self.size.saturating_sub(entry.size()),
                None => self.size = 0,
            }
        }
    }
}

/// An integer (RFC 7541 §5.1) whose first byte, already read, is `first` with the value's
/// prefix in its low `prefix_bits` bits (4 to 7); continuation bytes are taken from `rest`.
fn decode_int(first: u8, prefix_bits: u32, rest: &mut &[u8]) -> Result<usize, HpackError> {
    let max_prefix = (1u8 << prefix_bits) - 1;
    let mut value = usize::from(first & max_prefix);
    if value < usize::from(max_prefix) {
        return Ok(value);
    }
    for continuation in 0..MAX_INTEGER_CONTINUATIONS {
        let (&byte, tail) = rest.split_first().ok_or(HpackError::Truncated)?;
        *rest = tail;
        value += usize::from(byte & 0x7f) << (7 * continuation);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(HpackError::IntegerOverflow)
}

/// A decoded string: bytes of the block (or a table's), or a range of the decoder's scratch
/// buffer (a range, not a slice, because the name's and the value's Huffman decodings are
/// appended to the same buffer).
enum Str<'a> {
    Bytes(&'a [u8]),
    Scratch(usize, usize),
}

impl<'a> Str<'a> {
    fn resolve<'s>(self, scratch: &'s [u8]) -> &'s [u8]
    where
        'a: 's,
    {
        match self {
            Str::Bytes(bytes) => bytes,
            Str::Scratch(start, end) => scratch.get(start..end).unwrap_or_default(),
        }
    }
}

/// A string literal (RFC 7541 §5.2), Huffman-coded ones decoded onto `scratch`.
fn read_string<'a>(rest: &mut &'a [u8], scratch: &mut Vec<u8>) -> Result<Str<'a>, HpackError> {
    let (&first, tail) = rest.split_first().ok_or(HpackError::Truncated)?;
    *rest = tail;
    let len = decode_int(first, 7, rest)?;
    let Some((bytes, tail)) = rest.split_at_checked(len) else {
        return Err(HpackError::StringTooLong {
            len,
            remaining: rest.len(),
        });
    };
    *rest = tail;
    if first & 0x80 == 0 {
        return Ok(Str::Bytes(bytes));
    }
    let start = scratch.len();
    huffman::decode(bytes, scratch)?;
    Ok(Str::Scratch(start, scratch.len()))
}

/// `:status` of an answer: one byte for the statuses the static table holds (200 above all),
/// else a literal with the static table's `:status` name.
pub(crate) fn encode_status(out: &mut BytesMut, status: u16) {
    let index = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => {
            let mut digits = [0u8; 5];
            let mut start = digits.len();
            let mut rest = status;
            for slot in digits.iter_mut().rev() {
                *slot = b'0' + (rest % 10) as u8;
                rest /= 10;
                start -= 1;
                if rest == 0 {
                    break;
                }
            }
            encode_int(out, 0x00, 4, 8);
            encode_string(out, digits.get(start..).unwrap_or_default());
            return;
        }
    };
    out.put_u8(0x80 | index);
}

/// A field the static table holds whole (`:method POST` is 3, `:scheme http` 6): one byte.
pub(crate) fn encode_indexed(out: &mut BytesMut, index: usize) {
    encode_int(out, 0x80, 7, index);
}

/// A dynamic table size update (RFC 7541 §6.3), due at the start of the first block after the
/// peer changes SETTINGS_HEADER_TABLE_SIZE.
pub(crate) fn encode_table_size_update(out: &mut BytesMut, size: usize) {
    encode_int(out, 0x20, 5, size);
}

/// One answer field as a literal without indexing: the static table's index for the name where
/// it has one (`content-type` is 31), else the name as a string. Strings go raw: answers'
/// values are short, and Huffman coding them would cost more CPU than the bytes it saves.
/// `name` must already be lowercase.
pub(crate) fn encode_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    match STATIC_TABLE.iter().position(|&(n, _)| n == name) {
        Some(i) => encode_int(out, 0x00, 4, i + 1),
        None => {
            out.put_u8(0x00);
            encode_string(out, name);
        }
    }
    encode_string(out, value);
}

/// `value` as an RFC 7541 §5.1 integer in the low `prefix_bits` bits of a first byte whose
/// other bits are `flags`.
fn encode_int(out: &mut BytesMut, flags: u8, prefix_bits: u32, value: usize) {
    let max_prefix = (1usize << prefix_bits) - 1;
    if value < max_prefix {
        out.put_u8(flags | value as u8);
        return;
    }
    out.put_u8(flags | max_prefix as u8);
    let mut rest = value - max_prefix;
    while rest >= 0x80 {
        out.put_u8(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.put_u8(rest as u8);
}

/// A raw (not Huffman-coded) string literal.
fn encode_string(out: &mut BytesMut, s: &[u8]) {
    out.reserve(s.len() + 5);
    encode_int(out, 0x00, 7, s.len());
    out.put_slice(s);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    /// Bytes written as hex digits, spaces ignored (as the RFC prints its examples).
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn decode(decoder: &mut Decoder, block: &[u8]) -> Result<Fields, HpackError> {
        let mut fields = Vec::new();
        decoder
            .decode(block, |name, value| {
                fields.push((name.to_vec(), value.to_vec()))
            })
            .map(|()| fields)
    }

    fn decode_fresh(block: &[u8]) -> Result<Fields, HpackError> {
        decode(&mut Decoder::new(4096), block)
    }

    fn fields(list: &[(&str, &str)]) -> Fields {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    /// One block of an RFC example: its hex, the fields, the table after it (newest first)
    /// and the table's size after it.
    struct Step<'a> {
        block: &'a str,
        fields: &'a [(&'a str, &'a str)],
        table: &'a [(&'a str, &'a str)],
        size: usize,
    }

    fn run_steps(max_table_size: usize, steps: &[Step<'_>]) {
        let mut decoder = Decoder::new(max_table_size);
        for (i, step) in steps.iter().enumerate() {
            let got = decode(&mut decoder, &hex(step.block)).unwrap();
            assert_eq!(got, fields(step.fields), "fields of block {i}");
            assert_eq!(
                decoder.table_entries(),
                fields(step.table),
                "table after {i}"
            );
            assert_eq!(decoder.table_size(), step.size, "table size after {i}");
        }
    }

    /// Every cut of every block is decoded by a decoder that has seen the earlier blocks:
    /// truncation never panics, and only a cut between fields can succeed.
    fn check_truncations(max_table_size: usize, steps: &[Step<'_>]) {
        for (i, step) in steps.iter().enumerate() {
            let block = hex(step.block);
            for cut in 0..block.len() {
                let mut decoder = Decoder::new(max_table_size);
                for earlier in &steps[..i] {
                    decode(&mut decoder, &hex(earlier.block)).unwrap();
                }
                if let Ok(got) = decode(&mut decoder, &block[..cut]) {
                    let want = fields(step.fields);
                    assert!(got.len() < want.len() || cut == 0 && want.is_empty());
                    assert_eq!(got, want[..got.len()], "block {i} cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn rfc_c2_1_literal_with_indexing() {
        run_steps(
            4096,
            &[Step {
                block: "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
                fields: &[("custom-key", "custom-header")],
                table: &[("custom-key", "custom-header")],
                size: 55,
            }],
        );
    }

    #[test]
    fn rfc_c2_2_literal_without_indexing() {
        run_steps(
            4096,
            &[Step {
                block: "040c 2f73 616d 706c 652f 7061 7468",
                fields: &[(":path", "/sample/path")],
                table: &[],
                size: 0,
            }],
        );
    }

    #[test]
    fn rfc_c2_3_literal_never_indexed() {
        run_steps(
            4096,
            &[Step {
                block: "1008 7061 7373 776f 7264 0673 6563 7265 74",
                fields: &[("password", "secret")],
                table: &[],
                size: 0,
            }],
        );
    }

    #[test]
    fn rfc_c2_4_indexed() {
        run_steps(
            4096,
            &[Step {
                block: "82",
                fields: &[(":method", "GET")],
                table: &[],
                size: 0,
            }],
        );
    }

    const C3: [Step<'static>; 3] = [
        Step {
            block: "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            fields: &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ],
            table: &[(":authority", "www.example.com")],
            size: 57,
        },
        Step {
            block: "8286 84be 5808 6e6f 2d63 6163 6865",
            fields: &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ],
            table: &[
                ("cache-control", "no-cache"),
                (":authority", "www.example.com"),
            ],
            size: 110,
        },
        Step {
            block: "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            fields: &[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ],
            table: &[
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
                (":authority", "www.example.com"),
            ],
            size: 164,
        },
    ];

    const C4: [Step<'static>; 3] = [
        Step {
            block: "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            ..C3[0]
        },
        Step {
            block: "8286 84be 5886 a8eb 1064 9cbf",
            ..C3[1]
        },
        Step {
            block: "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            ..C3[2]
        },
    ];

    const C5: [Step<'static>; 3] = [
        Step {
            block: "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 \
                    3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 \
                    7777 2e65 7861 6d70 6c65 2e63 6f6d",
            fields: &[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ],
            table: &[
                ("location", "https://www.example.com"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("cache-control", "private"),
                (":status", "302"),
            ],
            size: 222,
        },
        Step {
            block: "4803 3330 37c1 c0bf",
            fields: &[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ],
            table: &[
                (":status", "307"),
                ("location", "https://www.example.com"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("cache-control", "private"),
            ],
            size: 222,
        },
        Step {
            block: "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 \
                    3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a \
                    584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 \
                    3630 303b 2076 6572 7369 6f6e 3d31",
            fields: &[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
                ("location", "https://www.example.com"),
                ("content-encoding", "gzip"),
                (
                    "set-cookie",
                    "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
                ),
            ],
            table: &[
                (
                    "set-cookie",
                    "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
                ),
                ("content-encoding", "gzip"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ],
            size: 215,
        },
    ];

    const C6: [Step<'static>; 3] = [
        Step {
            block: "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 \
                    66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            ..C5[0]
        },
        Step {
            block: "4883 640e ffc1 c0bf",
            ..C5[1]
        },
        Step {
            block: "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a \
                    839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 \
                    72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
            ..C5[2]
        },
    ];

    #[test]
    fn rfc_c3_requests_without_huffman() {
        run_steps(4096, &C3);
    }

    #[test]
    fn rfc_c4_requests_with_huffman() {
        run_steps(4096, &C4);
    }

    #[test]
    fn rfc_c5_responses_without_huffman_evict() {
        run_steps(256, &C5);
    }

    #[test]
    fn rfc_c6_responses_with_huffman_evict() {
        run_steps(256, &C6);
    }

    #[test]
    fn truncated_blocks_never_panic() {
        check_truncations(4096, &C3);
        check_truncations(4096, &C4);
        check_truncations(256, &C5);
        check_truncations(256, &C6);
    }

    /// RFC 7541 C.1.1 and C.1.2, and the edges of the bound.
    #[test]
    fn integers() {
        let int = |bytes: &[u8], prefix| {
            let (&first, mut rest) = bytes.split_first().unwrap();
            let value = decode_int(first, prefix, &mut rest);
            value.map(|v| (v, rest.len()))
        };
        assert_eq!(int(&[0b1110_1010], 5), Ok((10, 0)));
        assert_eq!(int(&[0x1f, 0x9a, 0x0a, 0x00], 5), Ok((1337, 1)));
        assert_eq!(int(&[0x7f, 0x00], 7), Ok((127, 0)));
        assert_eq!(int(&[0x0e], 4), Ok((14, 0)));
        assert_eq!(int(&[0x0f, 0x00], 4), Ok((15, 0)));
        // Four continuation bytes: the largest accepted.
        assert_eq!(
            int(&[0x7f, 0xff, 0xff, 0xff, 0x7f], 7),
            Ok((127 + (1 << 28) - 1, 0))
        );
        assert_eq!(
            int(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0x00], 7),
            Err(HpackError::IntegerOverflow)
        );
        assert_eq!(int(&[0x7f, 0xff], 7), Err(HpackError::Truncated));
        assert_eq!(int(&[0x1f], 5), Err(HpackError::Truncated));

        for prefix in 4..=7 {
            for value in [
                0,
                1,
                14,
                15,
                16,
                30,
                31,
                62,
                63,
                126,
                127,
                128,
                300,
                1337,
                1 << 20,
            ] {
                let mut out = BytesMut::new();
                encode_int(&mut out, 0, prefix, value);
                assert_eq!(
                    int(&out, prefix),
                    Ok((value, 0)),
                    "{value} in {prefix} bits"
                );
            }
        }
    }

    #[test]
    fn index_zero_is_an_error() {
        assert_eq!(decode_fresh(&[0x80]), Err(HpackError::ZeroIndex));
    }

    #[test]
    fn index_past_the_tables_is_an_error() {
        assert_eq!(
            decode_fresh(&[0x80 | 61]).unwrap(),
            fields(&[("www-authenticate", "")])
        );
        assert_eq!(decode_fresh(&[0x80 | 62]), Err(HpackError::BadIndex(62)));
        // An indexed name, too.
        assert_eq!(
            decode_fresh(&[0x40 | 62, 0x01, b'x']),
            Err(HpackError::BadIndex(62))
        );
        assert_eq!(
            decode_fresh(&[0x0f, 0x30, 0x01, b'x']),
            Err(HpackError::BadIndex(63))
        );
        // With one dynamic entry, 62 is it and 63 is past it.
        let mut decoder = Decoder::new(4096);
        decode(&mut decoder, &[0x40, 0x01, b'a', 0x01, b'b']).unwrap();
        assert_eq!(
            decode(&mut decoder, &[0x80 | 62]).unwrap(),
            fields(&[("a", "b")])
        );
        assert_eq!(
            decode(&mut decoder, &[0x80 | 63]),
            Err(HpackError::BadIndex(63))
        );
        // A huge index.
        assert_eq!(
            decode_fresh(&[0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(HpackError::BadIndex(127 + (1 << 28) - 1))
        );
    }

    #[test]
    fn integer_overflow_is_an_error() {
        let mut block = vec![0xff];
        block.extend_from_slice(&[0xff; 64]);
        assert_eq!(decode_fresh(&block), Err(HpackError::IntegerOverflow));
        // In a string length.
        let mut block = vec![0x00, 0x7f];
        block.extend_from_slice(&[0xff; 64]);
        assert_eq!(decode_fresh(&block), Err(HpackError::IntegerOverflow));
        // In a size update.
        let mut block = vec![0x3f];
        block.extend_from_slice(&[0x80; 64]);
        assert_eq!(decode_fresh(&block), Err(HpackError::IntegerOverflow));
    }

    #[test]
    fn string_longer_than_the_block_is_an_error() {
        assert_eq!(
            decode_fresh(&[0x00, 0x05, b'a', b'b']),
            Err(HpackError::StringTooLong {
                len: 5,
                remaining: 2
            })
        );
        assert_eq!(
            decode_fresh(&[0x04, 0x7f, 0xff, 0xff, 0xff, 0x7f, b'a']),
            Err(HpackError::StringTooLong {
                len: 127 + (1 << 28) - 1,
                remaining: 1
            })
        );
        // A Huffman string too.
        assert_eq!(
            decode_fresh(&[0x04, 0x83, 0xff]),
            Err(HpackError::StringTooLong {
                len: 3,
                remaining: 1
            })
        );
        // A literal with no value at all.
        assert_eq!(decode_fresh(&[0x04]), Err(HpackError::Truncated));
        assert_eq!(
            decode_fresh(&[0x00, 0x01, b'a']),
            Err(HpackError::Truncated)
        );
    }

    #[test]
    fn bad_huffman_in_a_field_is_an_error() {
        // :path with a value of one byte of ones.
        assert_eq!(
            decode_fresh(&[0x04, 0x81, 0xff]),
            Err(HpackError::HuffmanPadding)
        );
        assert_eq!(
            decode_fresh(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff]),
            Err(HpackError::HuffmanEos)
        );
    }

    #[test]
    fn size_update_above_the_advertised_size_is_an_error() {
        // 4097 = 31 + 4066 = 31 + 0x62 + 0x1f * 128.
        let mut out = BytesMut::new();
        encode_int(&mut out, 0x20, 5, 4097);
        assert_eq!(
            decode_fresh(&out),
            Err(HpackError::SizeUpdateTooLarge {
                size: 4097,
                max: 4096
            })
        );
        let mut out = BytesMut::new();
        encode_int(&mut out, 0x20, 5, 4096);
        assert_eq!(decode_fresh(&out), Ok(vec![]));
    }

    #[test]
    fn the_generation_moves_with_every_change_to_the_table_and_only_then() {
        let mut decoder = Decoder::new(4096);
        let start = decoder.generation();
        // Indexed fields and literals that are not indexed leave the table alone.
        decode(&mut decoder, &[0x83, 0x86, 0x04, 0x01, b'/']).unwrap();
        assert_eq!(decoder.generation(), start);
        // A literal added to the table changes it, even when the entry replaces nothing.
        decode(&mut decoder, &[0x40, 0x01, b'a', 0x01, b'b']).unwrap();
        let added = decoder.generation();
        assert_ne!(added, start);
        // So does an entry too large for the table (it empties the table) ...
        let mut large = BytesMut::from(&[0x40, 0x01, b'a'][..]);
        encode_string(&mut large, &[b'x'; 5000]);
        decode(&mut decoder, &large).unwrap();
        assert_ne!(decoder.generation(), added);
        let emptied = decoder.generation();
        // ... and a size update, even to the size in force.
        let mut update = BytesMut::new();
        encode_table_size_update(&mut update, 4096);
        decode(&mut decoder, &update).unwrap();
        assert_ne!(decoder.generation(), emptied);
    }

    #[test]
    fn size_update_after_a_field_is_an_error() {
        assert_eq!(
            decode_fresh(&[0x82, 0x20]),
            Err(HpackError::SizeUpdateNotAtStart)
        );
        // Fine at the start of the next block.
        let mut decoder = Decoder::new(4096);
        decode(&mut decoder, &[0x82]).unwrap();
        assert_eq!(
            decode(&mut decoder, &[0x20, 0x82]).unwrap(),
            fields(&[(":method", "GET")])
        );
    }

    #[test]
    fn size_updates_evict_and_limit_the_table() {
        let mut decoder = Decoder::new(4096);
        // Two entries of 34 bytes each.
        decode(
            &mut decoder,
            &[0x40, 0x01, b'a', 0x01, b'b', 0x40, 0x01, b'c', 0x01, b'd'],
        )
        .unwrap();
        assert_eq!(decoder.table_size(), 68);
        // Two updates in a row (RFC 7541 §4.2): down to 40 evicts the older entry, then up
        // to 100 keeps what is left.
        let fields_after = decode(&mut decoder, &[0x3f, 0x09, 0x3f, 0x45, 0xbe]).unwrap();
        assert_eq!(fields_after, fields(&[("c", "d")]));
        assert_eq!(decoder.table_entries(), fields(&[("c", "d")]));
        assert_eq!(decoder.table_size(), 34);
        // A new entry of 34 fits beside it in 100; a third does not, so the oldest goes.
        decode(
            &mut decoder,
            &[0x40, 0x01, b'e', 0x01, b'f', 0x40, 0x01, b'g', 0x01, b'h'],
        )
        .unwrap();
        assert_eq!(decoder.table_entries(), fields(&[("g", "h"), ("e", "f")]));
        assert_eq!(decoder.table_size(), 68);
        // Size 0 empties it.
        decode(&mut decoder, &[0x20]).unwrap();
        assert_eq!(decoder.table_entries(), fields(&[]));
        assert_eq!(decode(&mut decoder, &[0xbe]), Err(HpackError::BadIndex(62)));
        // With the table at 0, an added literal is still delivered but not kept.
        assert_eq!(
            decode(&mut decoder, &[0x40, 0x01, b'x', 0x01, b'y']).unwrap(),
            fields(&[("x", "y")])
        );
        assert_eq!(decoder.table_size(), 0);
    }

    #[test]
    fn entry_larger_than_the_table_empties_it() {
        let mut decoder = Decoder::new(64);
        decode(&mut decoder, &[0x40, 0x01, b'a', 0x01, b'b']).unwrap();
        assert_eq!(decoder.table_size(), 34);
        let mut block = vec![0x40, 0x01, b'k', 0x20];
        block.extend_from_slice(&[b'v'; 32]);
        let got = decode(&mut decoder, &block).unwrap();
        assert_eq!(got[0].1, vec![b'v'; 32]);
        assert_eq!(decoder.table_size(), 0);
        assert_eq!(decoder.table_entries(), fields(&[]));
    }

    /// RFC 7541 §4.4: a new entry may name the entry its own insertion evicts.
    #[test]
    fn entry_may_name_the_entry_it_evicts() {
        let mut decoder = Decoder::new(70);
        decode(
            &mut decoder,
            &[0x40, 0x04, b'n', b'a', b'm', b'e', 0x01, b'1'],
        )
        .unwrap();
        assert_eq!(decoder.table_size(), 37);
        // Name index 62 ("name"), a value of 30: 66 bytes, evicting the first entry.
        let mut block = vec![0x40 | 62, 30];
        block.extend_from_slice(&[b'2'; 30]);
        let got = decode(&mut decoder, &block).unwrap();
        let value = "2".repeat(30);
        assert_eq!(got, fields(&[("name", &value)]));
        assert_eq!(decoder.table_entries(), fields(&[("name", &value)]));
        assert_eq!(decoder.table_size(), 66);
    }

    #[test]
    fn huffman_name_and_value_share_the_scratch_buffer() {
        let mut block = vec![0x40];
        for s in [
            &b"x-custom-name"[..],
            b"Some Value, with ~ rare bytes \x00\xff",
        ] {
            let mut coded = Vec::new();
            huffman::encode(s, &mut coded);
            let mut len = BytesMut::new();
            encode_int(&mut len, 0x80, 7, coded.len());
            block.extend_from_slice(&len);
            block.extend_from_slice(&coded);
        }
        block.push(0xbe);
        let mut decoder = Decoder::new(4096);
        let want = (
            b"x-custom-name".to_vec(),
            b"Some Value, with ~ rare bytes \x00\xff".to_vec(),
        );
        let got = decode(&mut decoder, &block).unwrap();
        assert_eq!(got, vec![want.clone(), want]);
    }

    #[test]
    fn large_scratch_is_not_kept() {
        let mut decoder = Decoder::new(4096);
        let s = vec![b'a'; 40_000];
        let mut coded = Vec::new();
        huffman::encode(&s, &mut coded);
        let mut block = BytesMut::new();
        block.put_u8(0x04);
        encode_int(&mut block, 0x80, 7, coded.len());
        block.put_slice(&coded);
        let got = decode(&mut decoder, &block).unwrap();
        assert_eq!(got, vec![(b":path".to_vec(), s)]);
        assert!(decoder.scratch.capacity() <= SCRATCH_KEEP);
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Random blocks, through long-lived decoders (state carried across blocks and errors)
    /// and fresh ones: decoding must finish with a result, never a panic, and a field never
    /// exceeds what the block could encode.
    #[test]
    fn random_input_never_panics() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut long_lived = [Decoder::new(4096), Decoder::new(64)];
        let mut outcomes = [0usize; 2];
        for i in 0..100_000 {
            let len = (rng.next() % 65) as usize;
            let block: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            for decoder in &mut long_lived {
                let mut total = 0usize;
                let result = decoder.decode(&block, |n, v| total += n.len() + v.len());
                outcomes[usize::from(result.is_ok())] += 1;
                assert!(total <= 4096 * block.len() + 64);
            }
            if i % 8 == 0 {
                let _ = decode_fresh(&block);
            }
        }
        // Both outcomes occur: the loop is not stuck on one early error.
        assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
    }

    /// Random mutations of valid blocks get much further into the decoder than random bytes.
    #[test]
    fn mutated_valid_blocks_never_panic() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let blocks: Vec<Vec<u8>> = C3
            .iter()
            .chain(&C4)
            .chain(&C5)
            .chain(&C6)
            .map(|step| hex(step.block))
            .collect();
        for _ in 0..20_000 {
            let mut block = blocks[(rng.next() % blocks.len() as u64) as usize].clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() % block.len() as u64) as usize;
                match rng.next() % 3 {
                    0 => block[at] = rng.next() as u8,
                    1 => block[at] ^= 1 << (rng.next() % 8),
                    _ => block.truncate(at.max(1)),
                }
            }
            let mut decoder = Decoder::new(256);
            let _ = decode(&mut decoder, &block);
            let _ = decode(&mut decoder, &block);
        }
    }

    #[test]
    fn status_200_is_one_byte() {
        let mut out = BytesMut::new();
        encode_status(&mut out, 200);
        assert_eq!(&out[..], [0x88]);
    }

    #[test]
    fn statuses_round_trip() {
        for status in [200, 204, 206, 304, 400, 404, 500] {
            let mut out = BytesMut::new();
            encode_status(&mut out, status);
            assert_eq!(out.len(), 1);
            let status = status.to_string();
            assert_eq!(decode_fresh(&out).unwrap(), fields(&[(":status", &status)]));
        }
        for status in [0, 9, 100, 302, 401, 418, 429, 503, 999, 65535] {
            let mut out = BytesMut::new();
            encode_status(&mut out, status);
            assert_eq!(out[0], 0x08, "literal without indexing, name :status");
            let status = status.to_string();
            assert_eq!(decode_fresh(&out).unwrap(), fields(&[(":status", &status)]));
        }
    }

    #[test]
    fn fields_round_trip() {
        let mut out = BytesMut::new();
        encode_field(&mut out, b"content-type", b"application/grpc");
        // Name index 31 in a 4-bit prefix: 15, then 16.
        assert_eq!(&out[..3], [0x0f, 0x10, 16]);
        assert_eq!(&out[3..], b"application/grpc");

        let long = "x".repeat(300);
        let list = [
            ("content-type", "application/grpc"),
            ("grpc-status", "0"),
            ("grpc-message", "a%20message"),
            (":path", "/a.B/C"),
            ("date", ""),
            ("x-long", long.as_str()),
            (long.as_str(), "long name"),
        ];
        let mut out = BytesMut::new();
        encode_status(&mut out, 200);
        for (name, value) in list {
            encode_field(&mut out, name.as_bytes(), value.as_bytes());
        }
        let mut decoder = Decoder::new(4096);
        let mut want = fields(&[(":status", "200")]);
        want.extend(fields(&list));
        assert_eq!(decode(&mut decoder, &out).unwrap(), want);
        // Nothing was indexed.
        assert_eq!(decoder.table_size(), 0);
    }
}
