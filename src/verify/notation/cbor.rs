//! A bounded CBOR decoder (RFC 8949) for COSE_Sign1 envelopes: definite lengths only,
//! no floats, a depth limit and a limit on the number of items, so a hostile envelope
//! cannot make crigate recurse or allocate without bound.
#![deny(clippy::indexing_slicing)]

/// Deepest nesting accepted. A Notary Project COSE envelope nests four levels (tag,
/// array, header map, certificate array); 16 leaves room for extended attributes.
pub(crate) const MAX_CBOR_DEPTH: usize = 16;
/// Most data items decoded from one input (every array element, map key and value
/// counts). An envelope with a ten-certificate chain has well under a hundred.
pub(crate) const MAX_CBOR_ITEMS: usize = 4096;

/// A decoded CBOR data item, borrowing strings from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Unsigned(u64),
    /// A negative integer `-1 - n`, stored as `n` (RFC 8949 3.1, major type 1).
    Negative(u64),
    Bytes(&'a [u8]),
    Text(&'a str),
    Array(Vec<Value<'a>>),
    Map(Vec<(Value<'a>, Value<'a>)>),
    Tag(u64, Box<Value<'a>>),
    Bool(bool),
    Null,
    Undefined,
}

/// Why bytes are not CBOR crigate accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CborError {
    #[error("CBOR input ends inside a data item")]
    Truncated,
    #[error("indefinite-length CBOR items are not accepted")]
    IndefiniteLength,
    #[error("CBOR additional information {0} is reserved")]
    Reserved(u8),
    #[error("CBOR floating-point and simple values are not accepted")]
    FloatOrSimple,
    #[error("CBOR nesting deeper than {MAX_CBOR_DEPTH}")]
    TooDeep,
    #[error("more than {MAX_CBOR_ITEMS} CBOR data items")]
    TooManyItems,
    #[error("CBOR text string is not UTF-8")]
    InvalidUtf8,
    #[error("{0} bytes follow the CBOR data item")]
    TrailingBytes(usize),
}

/// Decodes `data` as exactly one data item.
pub(crate) fn decode(data: &[u8]) -> Result<Value<'_>, CborError> {
    let mut decoder = Decoder {
        rest: data,
        items: 0,
    };
    let value = decoder.item(0)?;
    if decoder.rest.is_empty() {
        Ok(value)
    } else {
        Err(CborError::TrailingBytes(decoder.rest.len()))
    }
}

/// Encodes the head of a data item (RFC 8949 3.1) in its shortest form, as COSE's
/// deterministic encoding requires for Sig_structure (RFC 9052 9).
pub(crate) fn encode_head(major: u8, argument: u64, out: &mut Vec<u8>) {
    let major = major << 5;
    if argument < 24 {
        out.push(major | argument as u8);
    } else if let Ok(small) = u8::try_from(argument) {
        out.extend([major | 24, small]);
    } else if let Ok(short) = u16::try_from(argument) {
        out.push(major | 25);
        out.extend(short.to_be_bytes());
    } else if let Ok(word) = u32::try_from(argument) {
        out.push(major | 26);
        out.extend(word.to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend(argument.to_be_bytes());
    }
}

struct Decoder<'a> {
    rest: &'a [u8],
    items: usize,
}

// === impl Decoder ===

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        let (head, rest) = self.rest.split_at_checked(n).ok_or(CborError::Truncated)?;
        self.rest = rest;
        Ok(head)
    }

    fn argument(&mut self, info: u8) -> Result<u64, CborError> {
        let width = match info {
            0..=23 => return Ok(u64::from(info)),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            28..=30 => return Err(CborError::Reserved(info)),
            _ => return Err(CborError::IndefiniteLength),
        };
        let bytes = self.take(width)?;
        Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// A length that must fit in what is left of the input (each element takes at
    /// least one byte), so a declared count never drives an allocation by itself.
    fn length(&mut self, info: u8, per_element: usize) -> Result<usize, CborError> {
        let declared = self.argument(info)?;
        let len = usize::try_from(declared).map_err(|_| CborError::Truncated)?;
        if len.saturating_mul(per_element) > self.rest.len() {
            return Err(CborError::Truncated);
        }
        Ok(len)
    }

    fn item(&mut self, depth: usize) -> Result<Value<'a>, CborError> {
        if depth > MAX_CBOR_DEPTH {
            return Err(CborError::TooDeep);
        }
        self.items += 1;
        if self.items > MAX_CBOR_ITEMS {
            return Err(CborError::TooManyItems);
        }
        let initial = *self.take(1)?.first().ok_or(CborError::Truncated)?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        match major {
            0 => Ok(Value::Unsigned(self.argument(info)?)),
            1 => Ok(Value::Negative(self.argument(info)?)),
            2 => {
                let len = self.length(info, 1)?;
                Ok(Value::Bytes(self.take(len)?))
            }
            3 => {
                let len = self.length(info, 1)?;
                let bytes = self.take(len)?;
                std::str::from_utf8(bytes)
                    .map(Value::Text)
                    .map_err(|_| CborError::InvalidUtf8)
            }
            4 => {
                let len = self.length(info, 1)?;
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    items.push(self.item(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            5 => {
                let len = self.length(info, 2)?;
                let mut entries = Vec::with_capacity(len);
                for _ in 0..len {
                    let key = self.item(depth + 1)?;
                    let value = self.item(depth + 1)?;
                    entries.push((key, value));
                }
                Ok(Value::Map(entries))
            }
            6 => {
                let tag = self.argument(info)?;
                Ok(Value::Tag(tag, Box::new(self.item(depth + 1)?)))
            }
            _ => match info {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                22 => Ok(Value::Null),
                23 => Ok(Value::Undefined),
                31 => Err(CborError::IndefiniteLength),
                _ => Err(CborError::FloatOrSimple),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_shapes_cose_uses() {
        // 18([h'a10126', {}, h'00', h'01'])
        let data = [
            0xd2, 0x84, 0x43, 0xa1, 0x01, 0x26, 0xa0, 0x41, 0x00, 0x41, 0x01,
        ];
        let value = decode(&data).unwrap();
        let Value::Tag(18, inner) = value else {
            panic!("not a tag")
        };
        let Value::Array(items) = *inner else {
            panic!("not an array")
        };
        assert_eq!(items.len(), 4);
        assert_eq!(decode(&[0x26]).unwrap(), Value::Negative(6));
        assert_eq!(decode(&[0x38, 0x24]).unwrap(), Value::Negative(36));
        assert_eq!(
            decode(&[0x63, b'a', b'b', b'c']).unwrap(),
            Value::Text("abc")
        );
    }

    #[test]
    fn refuses_unbounded_or_odd_input() {
        assert_eq!(decode(&[0x5f]).unwrap_err(), CborError::IndefiniteLength);
        assert_eq!(decode(&[0xf9, 0, 0]).unwrap_err(), CborError::FloatOrSimple);
        assert_eq!(decode(&[0x1c]).unwrap_err(), CborError::Reserved(28));
        assert_eq!(
            decode(&[0x01, 0x01]).unwrap_err(),
            CborError::TrailingBytes(1)
        );
        assert_eq!(
            decode(&[0x62, 0xff, 0xfe]).unwrap_err(),
            CborError::InvalidUtf8
        );
        // An array declaring 2^32 elements in a 6-byte input.
        assert_eq!(
            decode(&[0x9a, 0xff, 0xff, 0xff, 0xff, 0x00]).unwrap_err(),
            CborError::Truncated
        );
        assert_eq!(
            decode(&[0x5a, 0x00, 0x00, 0x10, 0x00]).unwrap_err(),
            CborError::Truncated
        );
    }

    #[test]
    fn depth_limit_holds_at_its_edge() {
        let nested = |depth: usize| {
            let mut data = vec![0x81; depth];
            data.push(0x00);
            data
        };
        // `depth` arrays around an integer put the integer at depth `depth`.
        assert!(decode(&nested(MAX_CBOR_DEPTH - 1)).is_ok());
        assert!(decode(&nested(MAX_CBOR_DEPTH)).is_ok());
        assert_eq!(
            decode(&nested(MAX_CBOR_DEPTH + 1)).unwrap_err(),
            CborError::TooDeep
        );
    }

    #[test]
    fn item_limit_holds_at_its_edge() {
        let array = |items: usize| {
            let mut data = Vec::new();
            encode_head(4, items as u64, &mut data);
            data.extend(std::iter::repeat_n(0u8, items));
            data
        };
        // The array itself counts as one item.
        assert!(decode(&array(MAX_CBOR_ITEMS - 2)).is_ok());
        assert!(decode(&array(MAX_CBOR_ITEMS - 1)).is_ok());
        assert_eq!(
            decode(&array(MAX_CBOR_ITEMS)).unwrap_err(),
            CborError::TooManyItems
        );
    }

    #[test]
    fn heads_are_shortest_form() {
        for (argument, expected) in [
            (0u64, vec![0x40]),
            (23, vec![0x57]),
            (24, vec![0x58, 24]),
            (256, vec![0x59, 1, 0]),
            (65536, vec![0x5a, 0, 1, 0, 0]),
        ] {
            let mut out = Vec::new();
            encode_head(2, argument, &mut out);
            assert_eq!(out, expected, "{argument}");
        }
    }
}
