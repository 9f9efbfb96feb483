//! HTTP/2 frames as weir's gRPC listener and client read and write them (RFC 9113 §4 and §6):
//! the 9-byte header, the types, flags and settings they act on, and writers that append whole
//! frames to a connection's output.

/// The client's first bytes (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub(crate) const HEADER_LEN: usize = 9;
/// The frame size every peer must accept, and the largest the listener accepts: it never
/// advertises more, so a frame is never more than this much buffered.
pub(crate) const DEFAULT_MAX_FRAME: usize = 16_384;
/// The largest flow-control window (RFC 9113 §6.9.1).
pub(crate) const MAX_WINDOW: i64 = (1 << 31) - 1;
/// The window every stream and the connection start with until SETTINGS say otherwise.
pub(crate) const DEFAULT_WINDOW: i64 = 65_535;

pub(crate) mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

pub(crate) mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

pub(crate) mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// Error codes (RFC 9113 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Reason {
    NoError = 0x0,
    ProtocolError = 0x1,
    InternalError = 0x2,
    FlowControlError = 0x3,
    StreamClosed = 0x5,
    FrameSizeError = 0x6,
    RefusedStream = 0x7,
    Cancel = 0x8,
    CompressionError = 0x9,
    EnhanceYourCalm = 0xb,
}

/// A frame's 9-byte header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub(crate) length: usize,
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    pub(crate) stream: u32,
}

impl Head {
    pub(crate) fn parse(bytes: &[u8; HEADER_LEN]) -> Head {
        Head {
            length: usize::from(bytes[0]) << 16
                | usize::from(bytes[1]) << 8
                | usize::from(bytes[2]),
            kind: bytes[3],
            flags: bytes[4],
            // The reserved bit is ignored on receipt.
            stream: u32::from_be_bytes([bytes[5] & 0x7f, bytes[6], bytes[7], bytes[8]]),
        }
    }
}

/// A connection's input: bytes read and not yet handled, taken out a whole frame at a time.
/// Sized for four frames of the largest size weir accepts, so a frame always fits.
#[derive(Default)]
pub(crate) struct Input {
    buffer: Vec<u8>,
    /// Read and not yet handled: `start..end`.
    start: usize,
    end: usize,
}

impl Input {
    pub(crate) fn new() -> Input {
        Input {
            buffer: vec![0; 4 * (DEFAULT_MAX_FRAME + HEADER_LEN)],
            start: 0,
            end: 0,
        }
    }

    /// Reads what `io` has into the room left (moving unhandled bytes to the front first).
    pub(crate) fn poll_read(
        &mut self,
        io: &mut (impl tokio::io::AsyncRead + Unpin),
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buffer.len() {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let mut buf = tokio::io::ReadBuf::new(&mut self.buffer[self.end..]);
        std::pin::Pin::new(io).poll_read(cx, &mut buf).map_ok(|()| {
            let read = buf.filled().len();
            self.end += read;
            read
        })
    }

    /// Takes `prefix` off the input: `Some(true)` when it started with it, `Some(false)` when
    /// not, `None` when too little is read to tell.
    pub(crate) fn strip_prefix(&mut self, prefix: &[u8]) -> Option<bool> {
        let read = &self.buffer[self.start..self.end];
        if read.len() < prefix.len() {
            return None;
        }
        let found = read.starts_with(prefix);
        if found {
            self.start += prefix.len();
        }
        Some(found)
    }

    /// The next whole frame read, `None` until all of it is; a frame longer than
    /// [`DEFAULT_MAX_FRAME`] (weir never advertises more) is a FRAME_SIZE_ERROR.
    pub(crate) fn next_frame(&mut self) -> Result<Option<(Head, &[u8])>, Reason> {
        let Some(header) = self.buffer[self.start..self.end].first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let head = Head::parse(header);
        if head.length > DEFAULT_MAX_FRAME {
            return Err(Reason::FrameSizeError);
        }
        let from = self.start + HEADER_LEN;
        if self.end - from < head.length {
            return Ok(None);
        }
        self.start = from + head.length;
        Ok(Some((head, &self.buffer[from..from + head.length])))
    }
}

/// A SETTINGS frame's entries, checked (RFC 9113 §6.5); `None` for an acknowledgement.
pub(crate) fn settings_entries(
    head: Head,
    payload: &[u8],
) -> Result<Option<impl Iterator<Item = (u16, u32)> + '_>, Reason> {
    if head.stream != 0 {
        return Err(Reason::ProtocolError);
    }
    if head.flags & flag::ACK != 0 {
        return if payload.is_empty() {
            Ok(None)
        } else {
            Err(Reason::FrameSizeError)
        };
    }
    if !payload.len().is_multiple_of(6) {
        return Err(Reason::FrameSizeError);
    }
    Ok(Some(payload.chunks_exact(6).map(|entry| {
        (
            u16::from_be_bytes([entry[0], entry[1]]),
            u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]),
        )
    })))
}

/// A PING (RFC 9113 §6.7), checked: a PING is answered with its ACK in `output`; returns
/// whether this was the ACK of one of ours.
pub(crate) fn ping(head: Head, payload: &[u8], output: &mut Vec<u8>) -> Result<bool, Reason> {
    if head.stream != 0 {
        return Err(Reason::ProtocolError);
    }
    if payload.len() != 8 {
        return Err(Reason::FrameSizeError);
    }
    if head.flags & flag::ACK != 0 {
        return Ok(true);
    }
    frame(output, kind::PING, flag::ACK, 0, payload);
    Ok(false)
}

/// SETTINGS_INITIAL_WINDOW_SIZE applied (RFC 9113 §6.9.2): the new initial send window, and
/// every open stream's send window moved by the difference; a window past 2^31−1 is a
/// FLOW_CONTROL_ERROR.
pub(crate) fn apply_initial_window<'a>(
    value: u32,
    initial: &mut i64,
    stream_windows: impl Iterator<Item = &'a mut i64>,
) -> Result<(), Reason> {
    let value = i64::from(value);
    if value > MAX_WINDOW {
        return Err(Reason::FlowControlError);
    }
    let delta = value - *initial;
    *initial = value;
    for window in stream_windows {
        *window += delta;
        if *window > MAX_WINDOW {
            return Err(Reason::FlowControlError);
        }
    }
    Ok(())
}

/// SETTINGS_MAX_FRAME_SIZE, checked (RFC 9113 §6.5.2).
pub(crate) fn max_frame_size(value: u32) -> Result<usize, Reason> {
    if (DEFAULT_MAX_FRAME as u32..1 << 24).contains(&value) {
        Ok(value as usize)
    } else {
        Err(Reason::ProtocolError)
    }
}

/// A WINDOW_UPDATE's increment (RFC 9113 §6.9), the reserved bit ignored; whether 0 is an
/// error depends on the stream, so it is the caller's to judge.
pub(crate) fn window_increment(payload: &[u8]) -> Result<i64, Reason> {
    let increment: [u8; 4] = payload.try_into().map_err(|_| Reason::FrameSizeError)?;
    Ok(i64::from(u32::from_be_bytes(increment) & 0x7fff_ffff))
}

/// Appends a frame header; the caller appends `length` bytes of payload after it.
pub(crate) fn head(out: &mut Vec<u8>, length: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(length < 1 << 24);
    let length = (length as u32).to_be_bytes();
    out.extend_from_slice(&[length[1], length[2], length[3], kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

pub(crate) fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    head(out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
}

pub(crate) fn settings(out: &mut Vec<u8>, values: &[(u16, u32)]) {
    head(out, values.len() * 6, kind::SETTINGS, 0, 0);
    for (id, value) in values {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub(crate) fn rst_stream(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    frame(
        out,
        kind::RST_STREAM,
        0,
        stream,
        &(reason as u32).to_be_bytes(),
    );
}

pub(crate) fn window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    frame(
        out,
        kind::WINDOW_UPDATE,
        0,
        stream,
        &increment.to_be_bytes(),
    );
}

pub(crate) fn goaway(out: &mut Vec<u8>, last_stream: u32, reason: Reason) {
    head(out, 8, kind::GOAWAY, 0, 0);
    out.extend_from_slice(&last_stream.to_be_bytes());
    out.extend_from_slice(&(reason as u32).to_be_bytes());
}

/// A header block as HEADERS and, past `max_frame` bytes, CONTINUATION frames.
pub(crate) fn header_block(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame: usize,
) {
    let mut chunks = block.chunks(max_frame.max(1)).peekable();
    let mut kind = kind::HEADERS;
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    loop {
        let chunk = chunks.next().unwrap_or_default();
        let last = chunks.peek().is_none();
        if last {
            flags |= flag::END_HEADERS;
        }
        frame(out, kind, flags, stream, chunk);
        if last {
            return;
        }
        kind = kind::CONTINUATION;
        flags = 0;
    }
}

/// The payload of a frame that may be padded, without its padding; `None` when the padding is
/// longer than the frame (a PROTOCOL_ERROR). `skip`: bytes after the pad length to drop too
/// (a HEADERS frame's priority fields).
pub(crate) fn unpadded(payload: &[u8], flags: u8, skip: usize) -> Option<&[u8]> {
    let (padding, rest) = if flags & flag::PADDED != 0 {
        let (&padding, rest) = payload.split_first()?;
        (usize::from(padding), rest)
    } else {
        (0, payload)
    };
    let end = rest.len().checked_sub(padding)?;
    rest.get(skip..end)
}

/// A regular header field added to `headers`; `false` when its name or value is not valid HTTP
/// (the block is then malformed).
pub(crate) fn append_field(headers: &mut http::HeaderMap, name: &[u8], value: &[u8]) -> bool {
    match (
        http::header::HeaderName::from_bytes(name),
        http::header::HeaderValue::from_bytes(value),
    ) {
        (Ok(name), Ok(value)) => {
            headers.append(name, value);
            true
        }
        _ => false,
    }
}

/// Header fields HTTP/2 forbids (RFC 9113 §8.2.2): in a request they make it malformed, in an
/// answer they are left out.
pub(crate) fn connection_specific(name: &[u8]) -> bool {
    matches!(
        name,
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_and_the_reserved_bit_is_ignored() {
        let mut out = Vec::new();
        head(&mut out, 70_000, kind::DATA, flag::END_STREAM, 7);
        out[5] |= 0x80;
        let parsed = Head::parse(out[..9].try_into().unwrap());
        assert_eq!(
            (parsed.length, parsed.kind, parsed.flags, parsed.stream),
            (70_000, kind::DATA, flag::END_STREAM, 7)
        );
    }

    #[test]
    fn padding_is_removed_and_too_much_of_it_is_refused() {
        assert_eq!(unpadded(b"abc", 0, 0), Some(&b"abc"[..]));
        assert_eq!(unpadded(b"\x02abcxx", flag::PADDED, 0), Some(&b"abc"[..]));
        assert_eq!(unpadded(b"\x05abc", flag::PADDED, 0), None);
        assert_eq!(unpadded(b"", flag::PADDED, 0), None);
        assert_eq!(unpadded(b"\x0012345ab", flag::PADDED, 5), Some(&b"ab"[..]));
        assert_eq!(unpadded(b"1234", 0, 5), None);
    }

    #[test]
    fn a_long_header_block_continues_in_continuation_frames() {
        let mut out = Vec::new();
        header_block(&mut out, 3, &[7u8; 25], true, 10);
        let kinds: Vec<(u8, u8, usize)> = {
            let mut at = 0;
            let mut found = Vec::new();
            while at < out.len() {
                let head = Head::parse(out[at..at + 9].try_into().unwrap());
                found.push((head.kind, head.flags, head.length));
                at += 9 + head.length;
            }
            found
        };
        assert_eq!(
            kinds,
            vec![
                (kind::HEADERS, flag::END_STREAM, 10),
                (kind::CONTINUATION, 0, 10),
                (kind::CONTINUATION, flag::END_HEADERS, 5),
            ]
        );
        let mut empty = Vec::new();
        header_block(&mut empty, 1, &[], false, 10);
        assert_eq!(
            empty,
            [0, 0, 0, kind::HEADERS, flag::END_HEADERS, 0, 0, 0, 1]
        );
    }
}
