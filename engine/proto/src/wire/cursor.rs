//! Byte cursors and QUIC variable-length integers (RFC 9000 §16).

use super::WireError;

/// Largest value a varint can carry: 2^62 − 1.
pub const MAX_VARINT: u64 = (1 << 62) - 1;

/// Encoded length of `v` as a minimal varint: 1, 2, 4 or 8 bytes.
///
/// Values above [`MAX_VARINT`] cannot be encoded; for them this returns 8 so
/// that size estimates stay conservative, and [`Writer::put_varint`] fails
/// with [`WireError::VarintOverflow`].
#[inline]
pub const fn varint_len(v: u64) -> usize {
    if v < (1 << 6) {
        1
    } else if v < (1 << 14) {
        2
    } else if v < (1 << 30) {
        4
    } else {
        8
    }
}

/// Write cursor over a caller-provided buffer.
///
/// Every `put_*` either writes its whole value and advances, or returns an
/// error and leaves the position unchanged; bytes past the position are never
/// meaningful, so a failed write leaves nothing the caller must undo.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer that fills `buf` from offset 0.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Number of bytes written so far (the offset of the next write).
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes still available for writing.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        self.buf.get(..self.pos).unwrap_or_default()
    }

    /// Moves the position back to `pos`, discarding what was written after
    /// it. Used to make multi-field encodes all-or-nothing. A `pos` beyond the
    /// current position is ignored: a writer never exposes unwritten bytes.
    #[inline]
    pub fn rewind(&mut self, pos: usize) {
        self.pos = self.pos.min(pos);
    }

    /// Reserves `n` bytes at the position and advances past them.
    #[inline]
    fn take(&mut self, n: usize) -> Result<&mut [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::BufferTooSmall)?;
        let out = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(WireError::BufferTooSmall)?;
        self.pos = end;
        Ok(out)
    }

    /// Writes one byte.
    #[inline]
    pub fn put_u8(&mut self, v: u8) -> Result<(), WireError> {
        self.put_bytes(&[v])
    }

    /// Writes a big-endian u16.
    #[inline]
    pub fn put_u16(&mut self, v: u16) -> Result<(), WireError> {
        self.put_bytes(&v.to_be_bytes())
    }

    /// Writes a big-endian u32.
    #[inline]
    pub fn put_u32(&mut self, v: u32) -> Result<(), WireError> {
        self.put_bytes(&v.to_be_bytes())
    }

    /// Writes a big-endian u64.
    #[inline]
    pub fn put_u64(&mut self, v: u64) -> Result<(), WireError> {
        self.put_bytes(&v.to_be_bytes())
    }

    /// Writes `v` as a minimal varint; fails with
    /// [`WireError::VarintOverflow`] above [`MAX_VARINT`].
    #[inline]
    pub fn put_varint(&mut self, v: u64) -> Result<(), WireError> {
        if v > MAX_VARINT {
            return Err(WireError::VarintOverflow);
        }
        // The length prefix occupies the top two bits of the first byte; the
        // casts below cannot truncate because `v` is below each size's bound.
        match varint_len(v) {
            1 => self.put_bytes(&[v as u8]),
            2 => self.put_bytes(&(v as u16 | 0x4000).to_be_bytes()),
            4 => self.put_bytes(&(v as u32 | 0x8000_0000).to_be_bytes()),
            _ => self.put_bytes(&(v | 0xc000_0000_0000_0000).to_be_bytes()),
        }
    }

    /// Writes `src` verbatim.
    #[inline]
    pub fn put_bytes(&mut self, src: &[u8]) -> Result<(), WireError> {
        self.take(src.len())?.copy_from_slice(src);
        Ok(())
    }

    /// Writes `n` zero bytes (PADDING frames, reserved fields).
    pub fn put_zeros(&mut self, n: usize) -> Result<(), WireError> {
        self.take(n)?.fill(0);
        Ok(())
    }
}

/// Read cursor over a borrowed input.
///
/// Each `get_*` consumes its value only on success; after an error the cursor
/// is where it was before that call. Returned slices borrow from the input, so
/// decoding allocates nothing.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
    start_len: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            rest: buf,
            start_len: buf.len(),
        }
    }

    /// True when every byte has been consumed.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Bytes not yet consumed.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Bytes consumed so far.
    #[inline]
    pub fn position(&self) -> usize {
        self.start_len.saturating_sub(self.rest.len())
    }

    /// The unconsumed input, without consuming it.
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Consumes and returns the next `n` bytes.
    #[inline]
    pub fn get_bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let (head, tail) = self.rest.split_at_checked(n).ok_or(WireError::Truncated)?;
        self.rest = tail;
        Ok(head)
    }

    /// Consumes the next `N` bytes as an array.
    #[inline]
    pub fn get_array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(WireError::Truncated)?;
        self.rest = tail;
        Ok(*head)
    }

    /// Consumes one byte.
    #[inline]
    pub fn get_u8(&mut self) -> Result<u8, WireError> {
        let (&b, tail) = self.rest.split_first().ok_or(WireError::Truncated)?;
        self.rest = tail;
        Ok(b)
    }

    /// Consumes a big-endian u16.
    #[inline]
    pub fn get_u16(&mut self) -> Result<u16, WireError> {
        self.get_array().map(u16::from_be_bytes)
    }

    /// Consumes a big-endian u32.
    #[inline]
    pub fn get_u32(&mut self) -> Result<u32, WireError> {
        self.get_array().map(u32::from_be_bytes)
    }

    /// Consumes a big-endian u64.
    #[inline]
    pub fn get_u64(&mut self) -> Result<u64, WireError> {
        self.get_array().map(u64::from_be_bytes)
    }

    /// Consumes a varint. Non-minimal encodings are accepted (RFC 9000
    /// §16 permits them), so the result is always ≤ [`MAX_VARINT`].
    #[inline(always)]
    pub fn get_varint(&mut self) -> Result<u64, WireError> {
        let first = *self.rest.first().ok_or(WireError::Truncated)?;
        Ok(match first >> 6 {
            0 => {
                self.get_u8()?;
                u64::from(first)
            }
            1 => u64::from(self.get_u16()? & 0x3fff),
            2 => u64::from(self.get_u32()? & 0x3fff_ffff),
            _ => self.get_u64()? & MAX_VARINT,
        })
    }

    /// Consumes a varint length and then that many bytes.
    ///
    /// A length that exceeds the remaining input is [`WireError::Truncated`];
    /// it is never used to size an allocation.
    #[inline]
    pub fn get_len_prefixed(&mut self) -> Result<&'a [u8], WireError> {
        let save = self.rest;
        let len = self.get_varint()?;
        let out = usize::try_from(len)
            .map_err(|_| WireError::Truncated)
            .and_then(|n| self.get_bytes(n));
        if out.is_err() {
            self.rest = save;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: u64) -> Vec<u8> {
        let mut buf = [0u8; 8];
        let mut w = Writer::new(&mut buf);
        w.put_varint(v).unwrap();
        w.written().to_vec()
    }

    #[test]
    fn varint_rfc9000_examples() {
        // RFC 9000 Appendix A.1 sample encodings.
        let cases: [(&[u8], u64); 4] = [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
        ];
        for (bytes, v) in cases {
            assert_eq!(Reader::new(bytes).get_varint(), Ok(v));
            assert_eq!(enc(v), bytes);
        }
        // Non-minimal two-byte encoding of 37 is accepted.
        assert_eq!(Reader::new(&[0x40, 0x25]).get_varint(), Ok(37));
    }

    #[test]
    fn varint_boundaries_round_trip() {
        for v in [
            0,
            63,
            64,
            16_383,
            16_384,
            (1 << 30) - 1,
            1 << 30,
            MAX_VARINT,
        ] {
            let bytes = enc(v);
            assert_eq!(bytes.len(), varint_len(v));
            let mut r = Reader::new(&bytes);
            assert_eq!(r.get_varint(), Ok(v));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn varint_overflow_and_small_buffer_leave_writer_unchanged() {
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf);
        assert_eq!(w.put_varint(MAX_VARINT + 1), Err(WireError::VarintOverflow));
        w.put_u8(7).unwrap();
        assert_eq!(w.put_varint(1 << 20), Err(WireError::BufferTooSmall));
        assert_eq!(w.position(), 1);
        w.put_varint(300).unwrap();
        assert_eq!(w.remaining(), 0);
        assert_eq!(w.put_u8(0), Err(WireError::BufferTooSmall));
    }

    #[test]
    fn truncated_reads_do_not_consume() {
        let mut r = Reader::new(&[0x80, 0x00, 0x01]);
        assert_eq!(r.get_varint(), Err(WireError::Truncated));
        assert_eq!(r.get_u32(), Err(WireError::Truncated));
        assert_eq!(r.remaining(), 3);
        assert_eq!(r.get_u16(), Ok(0x8000));
        assert_eq!(r.position(), 2);
        assert_eq!(r.get_bytes(2), Err(WireError::Truncated));
        assert_eq!(r.get_bytes(1), Ok(&[1u8][..]));
        assert!(r.is_empty());
        assert_eq!(r.get_u8(), Err(WireError::Truncated));
    }

    #[test]
    fn len_prefixed_rejects_lengths_past_the_input() {
        let mut r = Reader::new(&[0x03, 1, 2]);
        assert_eq!(r.get_len_prefixed(), Err(WireError::Truncated));
        assert_eq!(r.remaining(), 3);
        // 2^62-1 as a length must not be trusted for anything.
        let mut r = Reader::new(&[0xff; 8]);
        assert_eq!(r.get_len_prefixed(), Err(WireError::Truncated));
        let mut r = Reader::new(&[0x02, 9, 8, 7]);
        assert_eq!(r.get_len_prefixed(), Ok(&[9u8, 8][..]));
        assert_eq!(r.rest(), &[7]);
    }

    #[test]
    fn fixed_width_integers_are_big_endian() {
        let mut buf = [0u8; 15];
        let mut w = Writer::new(&mut buf);
        w.put_u8(1).unwrap();
        w.put_u16(0x0203).unwrap();
        w.put_u32(0x0405_0607).unwrap();
        w.put_u64(0x0809_0a0b_0c0d_0e0f).unwrap();
        assert_eq!(
            w.written(),
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
        );
        let mut r = Reader::new(&buf);
        assert_eq!(r.get_u8(), Ok(1));
        assert_eq!(r.get_u16(), Ok(0x0203));
        assert_eq!(r.get_u32(), Ok(0x0405_0607));
        assert_eq!(r.get_u64(), Ok(0x0809_0a0b_0c0d_0e0f));
    }
}
