//! Primitive canonical encoding shared by records and messages.
//!
//! Integers are big-endian and fixed width; byte strings and lists carry a
//! length prefix whose width is part of the field's definition. Every read
//! checks the remaining input (and the field's cap) before allocating, so a
//! hostile length costs nothing. Decoding is strict: the input must be
//! consumed exactly, so every value has one encoding and signing bytes are
//! canonical.

use crate::error::DecodeError;

/// Appends canonical encodings to a buffer.
#[derive(Default, Debug)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Big-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Big-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Big-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Raw bytes, no prefix (fixed-size fields).
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// Bytes with a one-byte length prefix. Callers enforce the cap
    /// (<= 255) through their own validated types; longer input is cut to
    /// 255 bytes rather than silently wrapping the prefix.
    pub fn bytes8(&mut self, v: &[u8]) {
        let v = &v[..v.len().min(u8::MAX as usize)];
        self.u8(v.len() as u8);
        self.raw(v);
    }

    /// Bytes with a two-byte length prefix (cut at 65535 bytes, see `bytes8`).
    pub fn bytes16(&mut self, v: &[u8]) {
        let v = &v[..v.len().min(u16::MAX as usize)];
        self.u16(v.len() as u16);
        self.raw(v);
    }

    /// Bytes with a four-byte length prefix.
    pub fn bytes32(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.raw(v);
    }
}

/// Reads canonical encodings from a byte slice, never past its end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Self { input }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.input.len()
    }

    /// Fails unless every byte was read (strict, canonical decoding).
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }

    /// The next `len` bytes.
    pub fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if len > self.input.len() {
            return Err(DecodeError::UnexpectedEnd);
        }
        let (head, tail) = self.input.split_at(len);
        self.input = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// Big-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Big-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Big-endian u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads a version byte and refuses any other than `expected`.
    pub fn expect_version(&mut self, expected: u8) -> Result<(), DecodeError> {
        match self.u8()? {
            v if v == expected => Ok(()),
            v => Err(DecodeError::Version(v)),
        }
    }

    /// A bool encoded as 0 or 1 (any other byte is an error).
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidValue("bool")),
        }
    }

    /// Bytes behind a one-byte length prefix, at most `cap` long.
    pub fn bytes8(&mut self, cap: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u8()? as usize;
        self.capped(len, cap, field)
    }

    /// Bytes behind a two-byte length prefix, at most `cap` long.
    pub fn bytes16(&mut self, cap: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()? as usize;
        self.capped(len, cap, field)
    }

    /// Bytes behind a four-byte length prefix, at most `cap` long.
    pub fn bytes32(&mut self, cap: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        self.capped(len, cap, field)
    }

    fn capped(
        &mut self,
        len: usize,
        cap: usize,
        field: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        if len > cap {
            return Err(DecodeError::TooLong(field));
        }
        self.take(len)
    }

    /// A list length (u16 prefix) checked against `cap` and against the
    /// input left, assuming each element takes at least `min_element_bytes`:
    /// a hostile count can never make the caller reserve more than the
    /// input could hold.
    pub fn list_len16(
        &mut self,
        cap: usize,
        min_element_bytes: usize,
        field: &'static str,
    ) -> Result<usize, DecodeError> {
        let len = self.u16()? as usize;
        self.check_list(len, cap, min_element_bytes, field)
    }

    /// Like [`Reader::list_len16`] with a one-byte prefix.
    pub fn list_len8(
        &mut self,
        cap: usize,
        min_element_bytes: usize,
        field: &'static str,
    ) -> Result<usize, DecodeError> {
        let len = self.u8()? as usize;
        self.check_list(len, cap, min_element_bytes, field)
    }

    fn check_list(
        &self,
        len: usize,
        cap: usize,
        min_element_bytes: usize,
        field: &'static str,
    ) -> Result<usize, DecodeError> {
        if len > cap {
            return Err(DecodeError::TooLong(field));
        }
        if len.saturating_mul(min_element_bytes.max(1)) > self.remaining() {
            return Err(DecodeError::UnexpectedEnd);
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_lengths_fail_before_allocating() {
        let mut r = Reader::new(&[0xff, 0xff, 1, 2]);
        assert_eq!(
            r.list_len16(100_000, 48, "x"),
            Err(DecodeError::UnexpectedEnd)
        );
        let mut r = Reader::new(&[0x00, 0x05, 1, 2]);
        assert_eq!(r.list_len16(4, 1, "x"), Err(DecodeError::TooLong("x")));
        let mut r = Reader::new(&[3, 1, 2]);
        assert_eq!(r.bytes8(10, "x"), Err(DecodeError::UnexpectedEnd));
        let r = Reader::new(&[0]);
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes));
        assert_eq!(
            Reader::new(&[2]).bool(),
            Err(DecodeError::InvalidValue("bool"))
        );
    }
}
