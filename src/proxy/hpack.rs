//! HPACK (RFC 7541): decoding the header blocks clients send, and encoding header
//! blocks that leave the peer's table alone.
//!
//! The relay decodes every request header block to route it, so the decoder is on the
//! path of every call: strings are borrowed from the block unless Huffman-coded, and the
//! Huffman code (RFC 7541 Appendix B) is decoded four bits at a time through a table.
#![deny(clippy::indexing_slicing)]

use std::collections::VecDeque;
use std::sync::LazyLock;

/// The dynamic table size every peer starts with (RFC 9113 §6.5.2).
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Why a header block cannot be decoded: a COMPRESSION_ERROR (RFC 9113 §4.3).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("header block ends inside a field")]
    Truncated,
    #[error("integer too large")]
    Overflow,
    #[error("index {0} is in neither table")]
    Index(usize),
    #[error("invalid Huffman-coded string")]
    Huffman,
    #[error("table size update after a field, or above the size allowed")]
    SizeUpdate,
    #[error("header list larger than {0} bytes")]
    ListTooLarge(usize),
}

/// A decoder for one direction of one connection: the dynamic table follows every block
/// decoded, in order.
pub struct Decoder {
    /// Newest first.
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    /// The largest size the peer may set: this side's SETTINGS_HEADER_TABLE_SIZE.
    allowed: usize,
    name: Vec<u8>,
    value: Vec<u8>,
}

struct Entry {
    field: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn name(&self) -> &[u8] {
        self.field.get(..self.name_len).unwrap_or_default()
    }

    fn value(&self) -> &[u8] {
        self.field.get(self.name_len..).unwrap_or_default()
    }

    /// Its size as RFC 7541 §4.1 counts it.
    fn size(&self) -> usize {
        self.field.len() + 32
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max_size: DEFAULT_TABLE_SIZE,
            allowed: DEFAULT_TABLE_SIZE,
            name: Vec::new(),
            value: Vec::new(),
        }
    }

    /// Sets the largest table size the encoder may ask for.
    pub fn set_allowed_size(&mut self, allowed: usize) {
        self.allowed = allowed;
    }

    /// Decodes one complete header block, calling `field` with each name and value.
    ///
    /// # Errors
    ///
    /// See [`Error`]; the table is then out of step with the encoder's, and the
    /// connection must end.
    pub fn decode(&mut self, block: &[u8], field: impl FnMut(&[u8], &[u8])) -> Result<(), Error> {
        self.decode_within(block, usize::MAX, field)
    }

    /// Decodes as [`Decoder::decode`] does, stopping with [`Error::ListTooLarge`] as soon
    /// as the fields decoded add up to more than `max_list` bytes, counted as
    /// SETTINGS_MAX_HEADER_LIST_SIZE counts them (RFC 9113 §6.5.2: name, value and 32
    /// per field). A few bytes of block can name a large table entry again and again, so
    /// the work a block costs is bounded here, not only what is kept of it.
    ///
    /// # Errors
    ///
    /// As [`Decoder::decode`].
    pub fn decode_within(
        &mut self,
        block: &[u8],
        max_list: usize,
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), Error> {
        let mut name_buf = std::mem::take(&mut self.name);
        let mut value_buf = std::mem::take(&mut self.value);
        let mut list = 0usize;
        let mut bounded = |name: &[u8], value: &[u8]| {
            list = list.saturating_add(name.len() + value.len() + 32);
            if list > max_list {
                return Err(Error::ListTooLarge(max_list));
            }
            field(name, value);
            Ok(())
        };
        let result = self.decode_into(block, &mut bounded, &mut name_buf, &mut value_buf);
        self.name = name_buf;
        self.value = value_buf;
        result
    }

    fn decode_into(
        &mut self,
        block: &[u8],
        field: &mut impl FnMut(&[u8], &[u8]) -> Result<(), Error>,
        name_buf: &mut Vec<u8>,
        value_buf: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let mut pos = 0;
        let mut fields_seen = false;
        while let Some(&first) = block.get(pos) {
            if first & 0x80 != 0 {
                // Indexed field (§6.1).
                let index = integer(block, &mut pos, 7)?;
                let (name, value) = self.get(index)?;
                field(name, value)?;
                fields_seen = true;
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3), only at the start of a block (§4.2).
                let size = integer(block, &mut pos, 5)?;
                if fields_seen || size > self.allowed {
                    return Err(Error::SizeUpdate);
                }
                self.max_size = size;
                self.evict(0);
            } else {
                // Literal with incremental indexing (§6.2.1), without indexing (§6.2.2)
                // or never indexed (§6.2.3).
                let indexing = first & 0xc0 == 0x40;
                let index = integer(block, &mut pos, if indexing { 6 } else { 4 })?;
                let name: &[u8] = if index == 0 {
                    string(block, &mut pos, name_buf)?
                } else {
                    name_buf.clear();
                    name_buf.extend_from_slice(self.get(index)?.0);
                    name_buf
                };
                let value = string(block, &mut pos, value_buf)?;
                field(name, value)?;
                if indexing {
                    self.insert(name, value);
                }
                fields_seen = true;
            }
        }
        Ok(())
    }

    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), Error> {
        if let Some(&(name, value)) = index.checked_sub(1).and_then(|i| STATIC_TABLE.get(i)) {
            return Ok((name.as_bytes(), value.as_bytes()));
        }
        let entry = index
            .checked_sub(STATIC_TABLE.len() + 1)
            .and_then(|i| self.entries.get(i))
            .ok_or(Error::Index(index))?;
        Ok((entry.name(), entry.value()))
    }

    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let mut field = Vec::with_capacity(name.len() + value.len());
        field.extend_from_slice(name);
        field.extend_from_slice(value);
        let entry = Entry {
            field: field.into_boxed_slice(),
            name_len: name.len(),
        };
        let size = entry.size();
        // An entry larger than the table empties it and is not added (§4.4).
        self.evict(size);
        if size <= self.max_size {
            self.size += size;
            self.entries.push_front(entry);
        }
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.entries.pop_back() {
                Some(entry) => self.size -= entry.size(),
                None => break,
            }
        }
    }
}

/// Appends one field to a header block as a literal that is never indexed, with a literal
/// name and no Huffman coding (RFC 7541 §6.2.3). Such a block leaves the peer's dynamic
/// table untouched, so it can be put in any order among the blocks of another encoder,
/// and "never indexed" keeps any sensitivity the field had (RFC 7541 §7.1.3).
pub fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x10);
    encode_string(out, name);
    encode_string(out, value);
}

/// Appends a dynamic table size update to `size` (RFC 7541 §6.3); it may only begin a
/// header block.
pub fn encode_size_update(out: &mut Vec<u8>, size: u32) {
    encode_integer(out, 5, 0x20, size as usize);
}

fn encode_string(out: &mut Vec<u8>, s: &[u8]) {
    encode_integer(out, 7, 0, s.len());
    out.extend_from_slice(s);
}

/// An integer with an N-bit prefix (RFC 7541 §5.1).
fn encode_integer(out: &mut Vec<u8>, prefix_bits: u8, first: u8, value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128 + 128) as u8);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// Reads an integer with an N-bit prefix (RFC 7541 §5.1).
fn integer(block: &[u8], pos: &mut usize, prefix_bits: u8) -> Result<usize, Error> {
    let max = (1usize << prefix_bits) - 1;
    let first = *block.get(*pos).ok_or(Error::Truncated)?;
    *pos += 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let byte = *block.get(*pos).ok_or(Error::Truncated)?;
        *pos += 1;
        // Four continuation bytes carry 28 bits: more than any length or index here.
        if shift > 21 {
            return Err(Error::Overflow);
        }
        value += usize::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
}

/// Reads a string literal (RFC 7541 §5.2): a slice of `block`, or the Huffman decoding
/// of one in `buf`.
fn string<'a>(block: &'a [u8], pos: &mut usize, buf: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
    let huffman = block.get(*pos).ok_or(Error::Truncated)? & 0x80 != 0;
    let len = integer(block, pos, 7)?;
    let end = pos.checked_add(len).ok_or(Error::Truncated)?;
    let raw = block.get(*pos..end).ok_or(Error::Truncated)?;
    *pos = end;
    if !huffman {
        return Ok(raw);
    }
    buf.clear();
    huffman_decode(raw, buf)?;
    Ok(buf)
}

/// One step of the Huffman decoder: where four bits lead from a node of the code's tree.
/// The shortest code has five bits, so four bits complete at most one symbol.
#[derive(Clone, Copy, Default)]
struct Step {
    /// The node reached: the root again once a symbol is complete.
    next: u8,
    /// A symbol completed in these bits.
    emit: bool,
    symbol: u8,
    /// The bits complete EOS, which a string must never contain.
    eos: bool,
}

/// The Huffman code (RFC 7541 Appendix B) as a table driven four bits at a time, in the
/// manner of nghttp2's decoder: a string costs two lookups a byte. A code of 257 symbols
/// has 256 inner nodes, so a node fits a byte; node 0 is the root.
struct Nibbles {
    steps: Vec<[Step; 16]>,
    /// The nodes a string may end on: the root, or at most seven bits of the EOS code's
    /// leading ones, the only padding §5.2 allows.
    ends: [bool; 256],
}

#[derive(Clone, Copy)]
enum Child {
    Empty,
    Node(u8),
    Leaf(u16),
}

// Built from the constant code table alone, whose codes are a complete prefix code: every
// index below stays within the tree and tables it fills.
#[allow(clippy::indexing_slicing)]
static NIBBLES: LazyLock<Nibbles> = LazyLock::new(|| {
    let mut tree: Vec<[Child; 2]> = vec![[Child::Empty; 2]];
    for (symbol, &(code, len)) in (0u16..).zip(HUFFMAN.iter()) {
        let mut node = 0usize;
        for bit in (0..len).rev() {
            let side = (code >> bit & 1) as usize;
            if bit == 0 {
                tree[node][side] = Child::Leaf(symbol);
            } else {
                node = match tree[node][side] {
                    Child::Node(next) => usize::from(next),
                    _ => {
                        tree.push([Child::Empty; 2]);
                        let next = tree.len() - 1;
                        tree[node][side] = Child::Node(next as u8);
                        next
                    }
                };
            }
        }
    }
    let mut steps = vec![[Step::default(); 16]; tree.len()];
    for (node, row) in steps.iter_mut().enumerate() {
        for (nibble, step) in row.iter_mut().enumerate() {
            let mut at = node;
            for bit in (0..4).rev() {
                match tree[at][nibble >> bit & 1] {
                    Child::Node(next) => at = usize::from(next),
                    Child::Leaf(256) | Child::Empty => {
                        step.eos = true;
                        at = 0;
                    }
                    Child::Leaf(symbol) => {
                        step.emit = true;
                        step.symbol = symbol as u8;
                        at = 0;
                    }
                }
            }
            step.next = at as u8;
        }
    }
    let mut ends = [false; 256];
    let mut node = 0usize;
    ends[0] = true;
    for _ in 0..7 {
        let Child::Node(next) = tree[node][1] else {
            break;
        };
        node = usize::from(next);
        ends[node] = true;
    }
    Nibbles { steps, ends }
});

/// Decodes a Huffman-coded string (RFC 7541 §5.2): padding of at most 7 bits, all ones,
/// and no EOS symbol.
fn huffman_decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let table = &*NIBBLES;
    out.reserve(src.len() * 8 / 5);
    let mut node = 0u8;
    for &byte in src {
        for nibble in [byte >> 4, byte & 0x0f] {
            let step = table
                .steps
                .get(usize::from(node))
                .and_then(|row| row.get(usize::from(nibble)))
                .ok_or(Error::Huffman)?;
            if step.eos {
                return Err(Error::Huffman);
            }
            if step.emit {
                out.push(step.symbol);
            }
            node = step.next;
        }
    }
    if table.ends.get(usize::from(node)).copied().unwrap_or(false) {
        Ok(())
    } else {
        Err(Error::Huffman)
    }
}

/// The static table (RFC 7541 Appendix A).
static STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The Huffman code (RFC 7541 Appendix B): each symbol's code, right-aligned, and its
/// length in bits; symbol 256 is EOS.
static HUFFMAN: [(u32, u8); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    (0x3fffffff, 30),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, Error> {
        let mut fields = Vec::new();
        decoder.decode(block, |n, v| {
            fields.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
        })?;
        Ok(fields)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// A block that names one large table entry again and again: decoding stops at the
    /// first field past the bound, having done no more work than the bound allows.
    #[test]
    fn decoding_stops_as_soon_as_the_list_passes_its_bound() {
        // A 4,000-byte value added to the table under a one-byte name, then 12,000
        // one-byte references to it (index 62): 48 MB of fields in 16 KB.
        let mut block = Vec::new();
        encode_field(&mut block, b"x", &[b'a'; 4000]);
        block[0] = 0x40;
        let mut literal = Vec::new();
        encode_field(&mut literal, b"x", &[b'a'; 4000]);
        block.extend(std::iter::repeat_n(0xbe, 12_000));
        let mut decoder = Decoder::new();
        let mut seen = 0usize;
        let result = decoder.decode_within(&block, 1 << 20, |_, _| seen += 1);
        assert!(
            matches!(result, Err(Error::ListTooLarge(1_048_576))),
            "{result:?}"
        );
        // 4,033 bytes a field as SETTINGS_MAX_HEADER_LIST_SIZE counts it.
        assert_eq!(seen, (1 << 20) / 4033);

        let mut decoder = Decoder::new();
        let mut seen = 0usize;
        decoder
            .decode_within(&literal, 4033, |_, _| seen += 1)
            .unwrap();
        assert_eq!(seen, 1, "a list of exactly the bound is decoded");
    }

    #[test]
    fn integers_use_the_prefix_then_continuation_bytes() {
        // RFC 7541 C.1.1 and C.1.2.
        let mut out = Vec::new();
        encode_integer(&mut out, 5, 0, 10);
        assert_eq!(out, [0x0a]);
        out.clear();
        encode_integer(&mut out, 5, 0, 1337);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
    }

    #[test]
    fn encoded_fields_decode_and_leave_the_table_empty() {
        let mut block = Vec::new();
        encode_field(&mut block, b":path", b"/runtime.v1.RuntimeService/Version");
        encode_field(&mut block, b"x-long", &[b'v'; 300]);
        let mut decoder = Decoder::new();
        let mut decode = |block: &[u8]| {
            let mut fields = Vec::new();
            decoder
                .decode(block, |n, v| fields.push((n.to_vec(), v.to_vec())))
                .unwrap();
            fields
        };
        let fields = decode(&block);
        assert_eq!(fields[0].0, b":path");
        assert_eq!(fields[1].1.len(), 300);
        // The same block decodes the same again: nothing was added to the table.
        assert_eq!(decode(&block), fields);
    }

    #[test]
    fn the_table_has_one_node_per_inner_node_of_the_code() {
        // 257 symbols in a complete prefix code: 256 inner nodes, every one reached.
        let table = &*NIBBLES;
        assert_eq!(table.steps.len(), 256);
        assert_eq!(table.ends.iter().filter(|&&end| end).count(), 8);
    }

    #[test]
    fn padding_is_at_most_seven_ones_and_eos_is_refused() {
        let mut out = Vec::new();
        // 'a' is 00011 (five bits): three ones of padding end the byte.
        assert_eq!(huffman_decode(&[0b0001_1111], &mut out), Ok(()));
        assert_eq!(out, b"a");
        // A whole byte of ones is eight bits of padding.
        out.clear();
        assert_eq!(
            huffman_decode(&[0b0001_1111, 0xff], &mut out),
            Err(Error::Huffman)
        );
        // The 30-bit EOS code, then padding.
        out.clear();
        assert_eq!(
            huffman_decode(&[0xff, 0xff, 0xff, 0xff], &mut out),
            Err(Error::Huffman)
        );
    }

    #[test]
    fn every_octet_round_trips_through_the_code() {
        // A Huffman encoder, for the test only.
        let src: Vec<u8> = (0..=255)
            .chain(b"/runtime.v1.ImageService/PullImage".iter().copied())
            .collect();
        let (mut acc, mut bits, mut out) = (0u64, 0, Vec::new());
        for &b in &src {
            let (code, len) = HUFFMAN[usize::from(b)];
            acc = acc << len | u64::from(code);
            bits += len;
            while bits >= 8 {
                out.push((acc >> (bits - 8)) as u8);
                bits -= 8;
            }
        }
        if bits > 0 {
            out.push((acc << (8 - bits)) as u8 | ((1u8 << (8 - bits)) - 1));
        }
        let mut decoded = Vec::new();
        huffman_decode(&out, &mut decoded).unwrap();
        assert_eq!(decoded, src);
    }

    #[test]
    fn rfc_7541_request_examples_with_huffman_coding() {
        // RFC 7541 C.4.1 to C.4.3: three requests on one connection.
        let mut decoder = Decoder::new();
        let first = hex::decode("828684418cf1e3c2e5f23a6ba0ab90f4ff").unwrap();
        assert_eq!(
            decode_all(&mut decoder, &first).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ])
        );
        let second = hex::decode("828684be5886a8eb10649cbf").unwrap();
        assert_eq!(
            decode_all(&mut decoder, &second).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache")
            ])
        );
        let third = hex::decode("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf").unwrap();
        assert_eq!(
            decode_all(&mut decoder, &third).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value")
            ])
        );
        assert_eq!(decoder.size, 164);
    }

    #[test]
    fn entries_are_evicted_oldest_first() {
        let mut decoder = Decoder::new();
        // Size update to 100 bytes, then three literals with incremental indexing of
        // 40 bytes each (4 + 4 + 32): the third evicts the first.
        let mut block = vec![0x3f, 0x45];
        for name in [b"aaaa", b"bbbb", b"cccc"] {
            block.extend_from_slice(&[0x40, 0x04]);
            block.extend_from_slice(name);
            block.extend_from_slice(&[0x04]);
            block.extend_from_slice(b"vvvv");
        }
        decode_all(&mut decoder, &block).unwrap();
        assert_eq!(decoder.size, 80);
        assert_eq!(
            decode_all(&mut decoder, &[0xbe]).unwrap(),
            pairs(&[("cccc", "vvvv")])
        );
        assert_eq!(
            decode_all(&mut decoder, &[0xbf]).unwrap(),
            pairs(&[("bbbb", "vvvv")])
        );
        assert_eq!(decode_all(&mut decoder, &[0xc0]), Err(Error::Index(64)));
    }

    #[test]
    fn damaged_blocks_are_errors_not_panics() {
        let mut decoder = Decoder::new();
        for block in [
            &[0x80][..],                           // index 0
            &[0xff, 0x80],                         // truncated integer
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0x0f], // integer overflow
            &[0xbe],                               // empty dynamic table
            &[0x40, 0x85, 0xff],                   // truncated string
            &[0x82, 0x3f, 0x01],                   // size update after a field
            &[0x3f, 0xe2, 0x1f],                   // size update above the allowed size
            &[0x40, 0x81, 0x00, 0x00],             // Huffman padding of zeros
        ] {
            assert!(decode_all(&mut decoder, block).is_err(), "{block:02x?}");
        }
    }
}
