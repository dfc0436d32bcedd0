//! [`Cursor`]: bounds-checked reading of Avro binary primitives from a byte slice.
//!
//! Every length or count read from the input is checked against the bytes that are left (and
//! against the configured limits) before anything is allocated, so a hostile length prefix such
//! as 2^60 is an error, never an allocation. Both decoding paths use it: the specialised decoders
//! in `decode.rs` and the schema-driven scan in `resolve.rs`.

use std::borrow::Cow;

use crate::error::DecodeError;

/// Reads Avro primitives from the front of a slice, consuming them.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
}

#[inline]
fn f(field: &'static str) -> Cow<'static, str> {
    Cow::Borrowed(field)
}

impl<'a> Cursor<'a> {
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf }
    }

    /// Bytes not read yet.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn truncated(&self, field: &'static str, needed: u64) -> DecodeError {
        DecodeError::Truncated {
            field: f(field),
            needed,
            remaining: self.buf.len(),
        }
    }

    /// An unsigned LEB128 varint of at most 10 bytes that fits 64 bits.
    #[inline]
    fn varint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let b = self.buf;
        if let Some(&first) = b.first()
            && first < 0x80
        {
            self.buf = &b[1..];
            return Ok(first as u64);
        }
        let mut v: u64 = 0;
        for (i, &byte) in b.iter().enumerate() {
            if i == 9 && byte > 1 {
                return Err(DecodeError::BadVarint { field: f(field) });
            }
            v |= ((byte & 0x7f) as u64) << (7 * i);
            if byte < 0x80 {
                self.buf = &b[i + 1..];
                return Ok(v);
            }
        }
        // every byte left was a continuation byte: the varint needs at least one more
        Err(DecodeError::Truncated {
            field: f(field),
            needed: 1,
            remaining: 0,
        })
    }

    /// An Avro `long` (zigzag varint).
    #[inline]
    pub fn long(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        let z = self.varint(field)?;
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    /// An Avro `int`: a zigzag varint that must fit 32 bits.
    #[inline]
    pub fn int(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        let v = self.long(field)?;
        i32::try_from(v).map_err(|_| DecodeError::IntOutOfRange {
            field: f(field),
            value: v,
        })
    }

    /// An Avro `double` (8 bytes little-endian).
    #[inline]
    pub fn double(&mut self, field: &'static str) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.fixed::<8>(field)?))
    }

    /// `N` raw bytes.
    #[inline]
    pub fn fixed<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        match self.buf.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.buf = rest;
                Ok(*head)
            }
            None => Err(self.truncated(field, N as u64)),
        }
    }

    /// `n` raw bytes, borrowed.
    #[inline]
    pub fn take(&mut self, field: &'static str, n: u64) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() as u64 {
            return Err(self.truncated(field, n));
        }
        let (head, rest) = self.buf.split_at(n as usize);
        self.buf = rest;
        Ok(head)
    }

    /// The length prefix of a string or bytes value: >= 0 and not longer than `max` or than the
    /// bytes left.
    #[inline]
    fn len(&mut self, field: &'static str, max: usize) -> Result<u64, DecodeError> {
        let len = self.long(field)?;
        if len < 0 {
            return Err(DecodeError::NegativeLength {
                field: f(field),
                len,
            });
        }
        let len = len as u64;
        if len > max as u64 {
            return Err(DecodeError::StringTooLong {
                field: f(field),
                len,
                max,
            });
        }
        Ok(len)
    }

    /// An Avro `string`, borrowed, UTF-8 checked, at most `max` bytes.
    #[inline]
    pub fn str(&mut self, field: &'static str, max: usize) -> Result<&'a str, DecodeError> {
        let len = self.len(field, max)?;
        let raw = self.take(field, len)?;
        std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 { field: f(field) })
    }

    /// An Avro `string`, owned.
    #[inline]
    pub fn string(&mut self, field: &'static str, max: usize) -> Result<String, DecodeError> {
        self.str(field, max).map(str::to_owned)
    }

    /// Avro `bytes`, borrowed; only bounded by the bytes left.
    #[inline]
    pub fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.len(field, usize::MAX)?;
        self.take(field, len)
    }

    /// An enum symbol index, checked against the number of symbols.
    #[inline]
    pub fn enum_index(&mut self, field: &'static str, symbols: usize) -> Result<u32, DecodeError> {
        let i = self.long(field)?;
        if i < 0 || i as u64 >= symbols as u64 {
            return Err(DecodeError::InvalidEnumIndex {
                field: f(field),
                index: i,
                symbols,
            });
        }
        Ok(i as u32)
    }

    /// A union branch index, checked against the number of branches.
    #[inline]
    pub fn union_branch(
        &mut self,
        field: &'static str,
        branches: usize,
    ) -> Result<usize, DecodeError> {
        let i = self.long(field)?;
        if i < 0 || i as u64 >= branches as u64 {
            return Err(DecodeError::InvalidUnionBranch {
                field: f(field),
                index: i,
                branches,
            });
        }
        Ok(i as usize)
    }

    /// The `["null", T]` union of an optional field: true when the value follows.
    #[inline]
    pub fn present(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        Ok(self.union_branch(field, 2)? == 1)
    }

    /// The item count of the next map or array block; 0 ends the map. A negative count is
    /// followed by the block's size in bytes, which is read and ignored. `total` is the number of
    /// items read so far; the count is checked so that the new total stays within `max` and within
    /// the bytes left (every item of our maps takes at least one byte).
    #[inline]
    pub fn block(
        &mut self,
        field: &'static str,
        total: u64,
        max: usize,
    ) -> Result<u64, DecodeError> {
        let c = self.long(field)?;
        let count = if c < 0 {
            let size = self.long(field)?;
            if size < 0 || c == i64::MIN {
                return Err(DecodeError::NegativeLength {
                    field: f(field),
                    len: if c == i64::MIN { c } else { size },
                });
            }
            c.unsigned_abs()
        } else {
            c as u64
        };
        let new_total = total.saturating_add(count);
        if new_total > max as u64 {
            return Err(DecodeError::MapTooLong {
                field: f(field),
                count: new_total,
                max,
            });
        }
        if count > self.buf.len() as u64 {
            return Err(self.truncated(field, count));
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long(bytes: &[u8]) -> Result<i64, DecodeError> {
        Cursor::new(bytes).long("x")
    }

    #[test]
    fn zigzag_edges() {
        assert_eq!(long(&[0]), Ok(0));
        assert_eq!(long(&[1]), Ok(-1));
        assert_eq!(long(&[2]), Ok(1));
        assert_eq!(long(&[0x80, 0x01]), Ok(64));
        // i64::MAX and i64::MIN take all 10 bytes, the last one holding a single bit
        let mut max = vec![0xfe];
        max.extend([0xff; 8]);
        max.push(0x01);
        assert_eq!(long(&max), Ok(i64::MAX));
        let mut min = vec![0xff; 9];
        min.push(0x01);
        assert_eq!(long(&min), Ok(i64::MIN));
    }

    #[test]
    fn overlong_and_overflowing_varints_are_malformed() {
        let bad = DecodeError::BadVarint { field: f("x") };
        let mut overflow = vec![0xff; 9];
        overflow.push(0x02);
        assert_eq!(long(&overflow), Err(bad.clone()));
        assert_eq!(long(&[0xff; 11]), Err(bad));
        assert!(matches!(
            long(&[0x80, 0x80]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(long(&[]), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn blocks_are_bounded_by_limit_and_bytes_left() {
        // count 3 with 2 bytes left
        let mut c = Cursor::new(&[6, 0, 0]);
        assert!(matches!(
            c.block("m", 0, 64),
            Err(DecodeError::Truncated { .. })
        ));
        // i64::MIN as a block count cannot be negated
        let mut min = vec![0xff; 9];
        min.extend([0x01, 0x00]);
        let mut c = Cursor::new(&min);
        assert!(matches!(
            c.block("m", 0, usize::MAX),
            Err(DecodeError::NegativeLength { .. })
        ));
    }
}
