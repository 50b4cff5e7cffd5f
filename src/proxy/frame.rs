//! HTTP/2 frames, as far as the relay ([`super::relay`]) reads and writes them: the
//! frame layout of RFC 9113 §4.1 and §6.
#![deny(clippy::indexing_slicing)]

use bytes::{BufMut, Bytes, BytesMut};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Length of a frame header (RFC 9113 §4.1).
pub const HEAD_LEN: usize = 9;

/// The largest frame size any peer may allow (RFC 9113 §4.2): 2^24 - 1.
pub const MAX_FRAME_SIZE_LIMIT: u32 = (1 << 24) - 1;

/// The frame size every peer accepts until its SETTINGS say otherwise (RFC 9113 §6.5.2).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;

/// The flow-control window every stream and connection starts with (RFC 9113 §6.9.2).
pub const DEFAULT_WINDOW: i64 = 65_535;

/// The largest flow-control window (RFC 9113 §6.9.1): 2^31 - 1.
pub const MAX_WINDOW: i64 = (1 << 31) - 1;

/// Frame types (RFC 9113 §6).
pub mod kind {
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

/// Frame flags (RFC 9113 §6).
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// Error codes (RFC 9113 §7).
pub mod code {
    pub const NO_ERROR: u32 = 0x0;
    pub const PROTOCOL_ERROR: u32 = 0x1;
    pub const INTERNAL_ERROR: u32 = 0x2;
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const CANCEL: u32 = 0x8;
    pub const COMPRESSION_ERROR: u32 = 0x9;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
}

/// SETTINGS parameters (RFC 9113 §6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

// === impl Head ===

impl Head {
    /// Reads the header at the start of `buf`, if `buf` holds one.
    pub fn parse(buf: &[u8]) -> Option<Head> {
        let b: &[u8; HEAD_LEN] = buf.get(..HEAD_LEN)?.try_into().ok()?;
        Some(Head {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            // The reserved bit is ignored on receipt (RFC 9113 §4.1).
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        })
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Takes the first whole frame off `buf`. With only part of one there, returns `None`
/// and makes room for the rest: the 24-bit length bounds what is buffered.
pub fn next(buf: &mut BytesMut) -> Option<(Head, Bytes)> {
    let head = Head::parse(buf)?;
    let len = HEAD_LEN + head.len;
    if buf.len() < len {
        buf.reserve(len - buf.len());
        return None;
    }
    Some((head, buf.split_to(len).freeze()))
}

/// Appends a frame with `payload` to `out`. `payload` must fit a frame (checked by the
/// callers against the peer's maximum frame size).
pub fn put(out: &mut BytesMut, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.reserve(HEAD_LEN + payload.len());
    let len = payload.len() as u32;
    out.put_slice(&len.to_be_bytes()[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream & 0x7fff_ffff);
    out.put_slice(payload);
}

pub fn put_window_update(out: &mut BytesMut, stream: u32, increment: u32) {
    put(
        out,
        kind::WINDOW_UPDATE,
        0,
        stream,
        &increment.to_be_bytes(),
    );
}

pub fn put_rst_stream(out: &mut BytesMut, stream: u32, error: u32) {
    put(out, kind::RST_STREAM, 0, stream, &error.to_be_bytes());
}

pub fn put_goaway(out: &mut BytesMut, last_stream: u32, error: u32) {
    let mut payload = [0; 8];
    payload[..4].copy_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    payload[4..].copy_from_slice(&error.to_be_bytes());
    put(out, kind::GOAWAY, 0, 0, &payload);
}

pub fn put_ping(out: &mut BytesMut, ack: bool, opaque: [u8; 8]) {
    put(out, kind::PING, if ack { flag::ACK } else { 0 }, 0, &opaque);
}

pub fn put_settings_ack(out: &mut BytesMut) {
    put(out, kind::SETTINGS, flag::ACK, 0, &[]);
}

pub fn put_settings(out: &mut BytesMut, params: &[(u16, u32)]) {
    let mut payload = Vec::with_capacity(params.len() * 6);
    for (id, value) in params {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    put(out, kind::SETTINGS, 0, 0, &payload);
}

/// Appends a header block as one HEADERS frame and as many CONTINUATION frames as
/// `max_frame` requires (RFC 9113 §6.2, §6.10).
pub fn put_header_block(
    out: &mut BytesMut,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame: usize,
) {
    let max_frame = max_frame.max(1);
    let mut chunks = block.chunks(max_frame).peekable();
    let first = chunks.next().unwrap_or(&[]);
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if chunks.peek().is_none() {
        flags |= flag::END_HEADERS;
    }
    put(out, kind::HEADERS, flags, stream, first);
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            flag::END_HEADERS
        } else {
            0
        };
        put(out, kind::CONTINUATION, flags, stream, chunk);
    }
}

/// Why a frame's payload does not have the layout its type and flags say.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// A DATA or HEADERS payload without its padding (RFC 9113 §6.1, §6.2).
pub fn unpadded(head: &Head, payload: &[u8]) -> Result<(usize, usize), Malformed> {
    if !head.has(flag::PADDED) {
        return Ok((0, payload.len()));
    }
    let pad = usize::from(*payload.first().ok_or(Malformed)?);
    let end = payload.len().checked_sub(pad).ok_or(Malformed)?;
    if end < 1 {
        return Err(Malformed);
    }
    Ok((1, end))
}

/// The header block fragment of a HEADERS payload: without padding and priority fields.
pub fn header_fragment<'a>(head: &Head, payload: &'a [u8]) -> Result<&'a [u8], Malformed> {
    let (start, end) = unpadded(head, payload)?;
    let start = if head.has(flag::PRIORITY) {
        start + 5
    } else {
        start
    };
    payload.get(start..end).ok_or(Malformed)
}

/// The parameters of a SETTINGS payload (RFC 9113 §6.5.1).
pub fn settings(payload: &[u8]) -> Result<impl Iterator<Item = (u16, u32)> + '_, Malformed> {
    if !payload.len().is_multiple_of(6) {
        return Err(Malformed);
    }
    Ok(payload.chunks_exact(6).filter_map(|p| {
        let (id, value) = p.split_first_chunk::<2>()?;
        Some((
            u16::from_be_bytes(*id),
            u32::from_be_bytes(value.try_into().ok()?),
        ))
    }))
}

/// A 31-bit value at the start of a payload (a stream id or a window increment).
pub fn u31(payload: &[u8]) -> Option<u32> {
    let b: [u8; 4] = payload.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b) & 0x7fff_ffff)
}

/// The error code of a GOAWAY payload (RFC 9113 §6.8), after its last stream id.
pub fn goaway_error(payload: &[u8]) -> Option<u32> {
    let b: [u8; 4] = payload.get(4..8)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_frames_are_taken_and_a_partial_one_waits() {
        let mut buf = BytesMut::new();
        put_ping(&mut buf, false, [7; 8]);
        let whole = buf.len();
        put_ping(&mut buf, true, [8; 8]);
        buf.truncate(whole + 5);
        let (head, bytes) = next(&mut buf).unwrap();
        assert_eq!((head.kind, head.len, bytes.len()), (kind::PING, 8, whole));
        assert_eq!(next(&mut buf), None);
        assert_eq!(buf.len(), 5);
        assert!(buf.capacity() >= HEAD_LEN + 8);
    }

    #[test]
    fn header_blocks_split_at_the_frame_size() {
        let mut out = BytesMut::new();
        put_header_block(&mut out, 3, &[7; 25], true, 10);
        let heads: Vec<Head> = {
            let mut rest = &out[..];
            let mut heads = Vec::new();
            while let Some(head) = Head::parse(rest) {
                rest = &rest[HEAD_LEN + head.len..];
                heads.push(head);
            }
            heads
        };
        let kinds: Vec<(u8, u8, usize)> = heads.iter().map(|h| (h.kind, h.flags, h.len)).collect();
        assert_eq!(
            kinds,
            [
                (kind::HEADERS, flag::END_STREAM, 10),
                (kind::CONTINUATION, 0, 10),
                (kind::CONTINUATION, flag::END_HEADERS, 5)
            ]
        );
        assert!(heads.iter().all(|h| h.stream == 3));
    }

    #[test]
    fn padding_and_priority_are_removed_from_a_fragment() {
        let head = Head {
            len: 0,
            kind: kind::HEADERS,
            flags: flag::PADDED | flag::PRIORITY,
            stream: 1,
        };
        let payload = [2, 0, 0, 0, 0, 16, 0xaa, 0xbb, 0, 0];
        assert_eq!(header_fragment(&head, &payload), Ok(&[0xaa, 0xbb][..]));
        assert_eq!(header_fragment(&head, &[9, 1, 2]), Err(Malformed));
        assert_eq!(header_fragment(&head, &[]), Err(Malformed));
    }

    #[test]
    fn settings_are_six_byte_pairs() {
        let params: Vec<_> = settings(&[0, 4, 0, 1, 0, 0, 0, 5, 0, 0, 64, 0])
            .unwrap()
            .collect();
        assert_eq!(params, [(4, 65_536), (5, 16_384)]);
        assert!(settings(&[0, 4, 0]).is_err());
    }
}
