//! A bounded DER reader for the few places where crigate needs the exact bytes of an
//! encoding (the TBS part of a certificate, CMS signed attributes, TSTInfo with
//! fractional seconds), which the typed `der` decoders do not hand back.
//!
//! X.690 (DER) 8.1.2-8.1.3: one identifier octet (low tag numbers only), definite lengths
//! in minimal form. A declared length becomes a sub-slice; bytes left over where a
//! structure should end are an error.
#![deny(clippy::indexing_slicing)]

/// DER tag of a SEQUENCE.
pub(crate) const SEQUENCE: u8 = 0x30;
/// DER tag of a SET.
pub(crate) const SET: u8 = 0x31;
/// DER tag of an INTEGER.
pub(crate) const INTEGER: u8 = 0x02;
/// DER tag of an OCTET STRING.
pub(crate) const OCTET_STRING: u8 = 0x04;
/// DER tag of an OBJECT IDENTIFIER.
pub(crate) const OID: u8 = 0x06;
/// DER tag of a GeneralizedTime.
pub(crate) const GENERALIZED_TIME: u8 = 0x18;

/// Lengths beyond four octets would describe more than 4 GiB, far past every input limit.
const MAX_LENGTH_OCTETS: usize = 4;

/// Why bytes are not the DER crigate expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TlvError {
    #[error("DER input ends inside an element")]
    Truncated,
    #[error("DER high tag numbers are not supported")]
    HighTagNumber,
    #[error("indefinite length is not DER")]
    IndefiniteLength,
    #[error("DER length uses {0} octets")]
    LengthTooLong(usize),
    #[error("DER length is not in minimal form")]
    NonMinimalLength,
    #[error("expected DER tag {expected:#04x}, found {found:#04x}")]
    UnexpectedTag { expected: u8, found: u8 },
    #[error("{0} bytes follow the end of a DER structure")]
    TrailingBytes(usize),
    #[error("BER elements nest more than {MAX_DEPTH} deep")]
    TooDeep,
}

/// Deepest nesting [`minimal_lengths`] descends into: a timestamp token nests about ten
/// deep.
const MAX_DEPTH: usize = 32;

/// One element: its content octets and its whole encoding.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tlv<'a> {
    pub value: &'a [u8],
    pub raw: &'a [u8],
}

/// Reads elements one after another from a slice it never reads past.
#[derive(Clone, Debug)]
pub(crate) struct DerReader<'a> {
    rest: &'a [u8],
    /// Whether a definite length in more octets than it needs is read (BER) rather than
    /// refused (DER).
    lenient: bool,
}

// === impl DerReader ===

impl<'a> DerReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self {
            rest: data,
            lenient: false,
        }
    }

    /// A reader of BER's definite lengths: one in more octets than it needs is read.
    fn lenient(data: &'a [u8]) -> Self {
        Self {
            rest: data,
            lenient: true,
        }
    }

    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads the next element, whatever its tag.
    pub(crate) fn read_any(&mut self) -> Result<Tlv<'a>, TlvError> {
        let all = self.rest;
        let (&tag, after_tag) = all.split_first().ok_or(TlvError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(TlvError::HighTagNumber);
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or(TlvError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else if first == 0x80 {
            return Err(TlvError::IndefiniteLength);
        } else {
            let count = usize::from(first & 0x7f);
            if count > MAX_LENGTH_OCTETS {
                return Err(TlvError::LengthTooLong(count));
            }
            let (octets, rest) = after_len
                .split_at_checked(count)
                .ok_or(TlvError::Truncated)?;
            after_len = rest;
            let mut len = 0usize;
            for &octet in octets {
                len = (len << 8) | usize::from(octet);
            }
            // X.690 10.1: the definite form uses the minimum number of octets.
            if !self.lenient && (len < 0x80 || octets.first() == Some(&0)) {
                return Err(TlvError::NonMinimalLength);
            }
            len
        };
        let (value, rest) = after_len.split_at_checked(len).ok_or(TlvError::Truncated)?;
        let header_len = all.len() - after_len.len();
        let raw = all.get(..header_len + len).ok_or(TlvError::Truncated)?;
        self.rest = rest;
        Ok(Tlv { value, raw })
    }

    /// Reads the next element, which must carry `tag`.
    pub(crate) fn read(&mut self, tag: u8) -> Result<Tlv<'a>, TlvError> {
        match self.peek_tag() {
            Some(found) if found != tag => Err(TlvError::UnexpectedTag {
                expected: tag,
                found,
            }),
            _ => self.read_any(),
        }
    }

    /// Reads the next element if it carries `tag`.
    pub(crate) fn read_optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, TlvError> {
        if self.peek_tag() == Some(tag) {
            self.read_any().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Ends reading: leftover bytes are an error.
    pub(crate) fn finish(self) -> Result<(), TlvError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(TlvError::TrailingBytes(self.rest.len()))
        }
    }
}

/// Reads `data` as exactly one element with `tag`.
pub(crate) fn single(data: &[u8], tag: u8) -> Result<Tlv<'_>, TlvError> {
    let mut reader = DerReader::new(data);
    let tlv = reader.read(tag)?;
    reader.finish()?;
    Ok(tlv)
}

/// Re-encodes one BER element, `ber`, with every length in its minimal form, descending
/// into constructed elements (bit 6 of the identifier octet, X.690 8.1.2.5). It is the
/// one BER liberty that notation reads in a timestamp token: its CMS parser converts the
/// token so before reading it (tspclient-go `internal/encoding/asn1/ber`,
/// `ConvertToDER`), since a TSA may send lengths in the long form. Indefinite lengths
/// and high tag numbers stay errors, as there the former does; the content of each
/// primitive element is kept as it is.
///
/// # Errors
///
/// `ber` is not one element of definite lengths, or nests more than [`MAX_DEPTH`] deep.
pub(crate) fn minimal_lengths(ber: &[u8]) -> Result<Vec<u8>, TlvError> {
    let mut reader = DerReader::lenient(ber);
    let element = reader.read_any()?;
    reader.finish()?;
    let mut out = Vec::with_capacity(ber.len());
    write_minimal(element, &mut out, 0)?;
    Ok(out)
}

/// Writes `element` with minimal lengths straight into `out`: each constructed element's
/// length is counted first ([`minimal_len`]), so no level holds a copy of its members
/// and memory stays the size of the output, however deep the nesting.
fn write_minimal(element: Tlv<'_>, out: &mut Vec<u8>, depth: usize) -> Result<(), TlvError> {
    let &tag = element.raw.first().ok_or(TlvError::Truncated)?;
    if tag & 0x20 == 0 {
        push_header(out, tag, element.value.len());
        out.extend_from_slice(element.value);
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        return Err(TlvError::TooDeep);
    }
    push_header(out, tag, members_len(element.value, depth + 1)?);
    let mut reader = DerReader::lenient(element.value);
    while !reader.rest.is_empty() {
        write_minimal(reader.read_any()?, out, depth + 1)?;
    }
    Ok(())
}

/// The length of the members `content` holds, each re-encoded with minimal lengths.
fn members_len(content: &[u8], depth: usize) -> Result<usize, TlvError> {
    let mut reader = DerReader::lenient(content);
    let mut len = 0;
    while !reader.rest.is_empty() {
        len += minimal_len(reader.read_any()?, depth)?;
    }
    Ok(len)
}

/// The length of `element` re-encoded with minimal lengths, header included.
fn minimal_len(element: Tlv<'_>, depth: usize) -> Result<usize, TlvError> {
    let &tag = element.raw.first().ok_or(TlvError::Truncated)?;
    let content = if tag & 0x20 == 0 {
        element.value.len()
    } else if depth >= MAX_DEPTH {
        return Err(TlvError::TooDeep);
    } else {
        members_len(element.value, depth + 1)?
    };
    Ok(header_len(content) + content)
}

/// How many octets follow the first length octet in the minimal form of `len` (X.690
/// 10.1): none in the short form, below 0x80.
fn long_form_octets(len: usize) -> usize {
    if len < 0x80 {
        0
    } else {
        (usize::BITS - len.leading_zeros()).div_ceil(8) as usize
    }
}

/// The length of an identifier octet and a minimal definite length of `len`.
fn header_len(len: usize) -> usize {
    2 + long_form_octets(len)
}

/// Appends an identifier octet and a definite length in its minimal form (X.690 10.1).
fn push_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    match long_form_octets(len) {
        0 => out.push(len as u8),
        count => {
            out.push(0x80 | count as u8);
            let octets = len.to_be_bytes();
            out.extend_from_slice(octets.get(octets.len() - count..).unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let short = [0x04, 0x02, 0xaa, 0xbb];
        let tlv = single(&short, OCTET_STRING).unwrap();
        assert_eq!(tlv.value, &[0xaa, 0xbb]);
        assert_eq!(tlv.raw, &short);

        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([0u8; 0x80]);
        assert_eq!(single(&long, OCTET_STRING).unwrap().value.len(), 0x80);
    }

    #[test]
    fn refuses_what_der_forbids() {
        assert_eq!(
            single(&[0x04, 0x80, 0, 0], OCTET_STRING).unwrap_err(),
            TlvError::IndefiniteLength
        );
        assert_eq!(
            single(&[0x04, 0x81, 0x01, 0], OCTET_STRING).unwrap_err(),
            TlvError::NonMinimalLength
        );
        assert_eq!(
            single(&[0x04, 0x03, 0, 0], OCTET_STRING).unwrap_err(),
            TlvError::Truncated
        );
        assert_eq!(
            single(&[0x04, 0x01, 0, 0], OCTET_STRING).unwrap_err(),
            TlvError::TrailingBytes(1)
        );
        assert_eq!(
            single(&[0x1f, 0x01, 0], OCTET_STRING).unwrap_err(),
            TlvError::UnexpectedTag {
                expected: 4,
                found: 0x1f
            }
        );
        assert_eq!(
            DerReader::new(&[0x1f, 0x01, 0]).read_any().unwrap_err(),
            TlvError::HighTagNumber
        );
        assert_eq!(
            single(&[0x04, 0x85, 1, 0, 0, 0, 0], OCTET_STRING).unwrap_err(),
            TlvError::LengthTooLong(5)
        );
        assert_eq!(single(&[], OCTET_STRING).unwrap_err(), TlvError::Truncated);
    }

    #[test]
    fn long_form_lengths_become_minimal_and_der_stays_as_it_is() {
        // SEQUENCE { OCTET STRING 'aa', SET { INTEGER 1 } } in DER, then with every
        // length in a long form.
        let der = [0x30, 0x08, 0x04, 0x01, 0xaa, 0x31, 0x03, 0x02, 0x01, 0x01];
        assert_eq!(minimal_lengths(&der).unwrap(), der);
        let ber = [
            0x30, 0x84, 0, 0, 0, 0x0b, 0x04, 0x81, 0x01, 0xaa, 0x31, 0x82, 0, 0x03, 0x02, 0x01,
            0x01,
        ];
        assert_eq!(minimal_lengths(&ber).unwrap(), der);
        // A length that needs two octets keeps them.
        let mut long = vec![0x04, 0x82, 0x00, 0x80];
        long.extend([7u8; 0x80]);
        let mut expected = vec![0x04, 0x81, 0x80];
        expected.extend([7u8; 0x80]);
        assert_eq!(minimal_lengths(&long).unwrap(), expected);
    }

    #[test]
    fn minimal_lengths_refuses_what_notation_refuses_and_bounds_nesting() {
        // Indefinite length, truncation, trailing bytes, a member running past its parent.
        assert_eq!(
            minimal_lengths(&[0x30, 0x80, 0x04, 0x00, 0x00, 0x00]).unwrap_err(),
            TlvError::IndefiniteLength
        );
        assert_eq!(
            minimal_lengths(&[0x30, 0x03, 0x04]).unwrap_err(),
            TlvError::Truncated
        );
        assert_eq!(
            minimal_lengths(&[0x04, 0x00, 0x00]).unwrap_err(),
            TlvError::TrailingBytes(1)
        );
        assert_eq!(
            minimal_lengths(&[0x30, 0x02, 0x04, 0x05]).unwrap_err(),
            TlvError::Truncated
        );
        let mut deep = vec![0x04, 0x00];
        for _ in 0..40 {
            let len = deep.len();
            let mut outer = vec![0x30, 0x82, (len >> 8) as u8, len as u8];
            outer.extend(deep);
            deep = outer;
        }
        assert_eq!(minimal_lengths(&deep).unwrap_err(), TlvError::TooDeep);
    }
}
