//! Bodies that carry blocks: `u32 BE header length ‖ CBOR header ‖ the
//! blocks' bytes, in order`. A put body and a block-exchange answer both
//! have this shape. The blocks are not CBOR, so megabytes of ciphertext
//! are neither re-encoded nor copied: a writer appends (or streams) them
//! after the header; [`Blocks`] slices them out of an exchange answer held
//! whole, and [`crate::read_put`] reads a put body as it streams in.

use bytes::Bytes;

/// The 4-byte length prefix and `header`: what precedes the blocks.
pub fn prefixed(header: &[u8], capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + header.len() + capacity);
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(header);
    out
}

/// Reads the blocks of a body after its header, checking that the
/// lengths the header names add up to exactly the rest of the body.
pub struct Blocks<'a> {
    body: &'a Bytes,
    offset: usize,
    what: &'static str,
}

impl<'a> Blocks<'a> {
    /// Splits `body` (a `what`, for messages) into its CBOR header, of at
    /// most `max_header` bytes, and a reader of the blocks after it.
    pub fn open(
        body: &'a Bytes,
        max_header: usize,
        what: &'static str,
    ) -> Result<(&'a [u8], Blocks<'a>), String> {
        let prefix: [u8; 4] = body
            .get(..4)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| format!("a {what} starts with a 4-byte header length"))?;
        let header_len = u32::from_be_bytes(prefix) as usize;
        if header_len > max_header {
            return Err(format!(
                "a {what} header of {header_len} bytes (at most {max_header})"
            ));
        }
        let header = body
            .get(4..4 + header_len)
            .ok_or_else(|| format!("the {what} is shorter than its header length"))?;
        let blocks = Blocks {
            body,
            offset: 4 + header_len,
            what,
        };
        Ok((header, blocks))
    }

    /// The next `len` bytes, as a slice of the body (no copy).
    pub fn take(&mut self, len: u64) -> Result<Bytes, String> {
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| self.offset.checked_add(len))
            .filter(|&end| end <= self.body.len())
            .ok_or_else(|| format!("the {} is shorter than its blocks' lengths", self.what))?;
        let block = self.body.slice(self.offset..end);
        self.offset = end;
        Ok(block)
    }

    /// Checks that nothing follows the last block.
    pub fn finish(self) -> Result<(), String> {
        match self.body.len() - self.offset {
            0 => Ok(()),
            extra => Err(format!(
                "{extra} bytes after the last block of the {}",
                self.what
            )),
        }
    }
}
