//! One message at a time over a stream: a 4-byte big-endian length, then
//! that many bytes. A reader names its limit, so a peer cannot make it
//! allocate more than it is willing to receive.
//!
//! A request stream ([`crate::Node::request`]) starts with the serving
//! side writing one byte, [`ACCEPTED`] ([`accept`]), before it reads the
//! request: libp2p-stream drops an inbound stream it cannot hand over at
//! once (a burst of streams), and a stream dropped that way never sees
//! its request, so a requester that got no [`ACCEPTED`] may safely ask
//! again.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Error, Result};

/// The byte a serving side writes when it takes a request stream.
pub const ACCEPTED: u8 = 0x06;

/// Tells the requester this stream was taken (see the module notes):
/// the first thing a request server writes.
pub async fn accept<W: AsyncWrite + Unpin>(stream: &mut W) -> Result<()> {
    stream.write_all(&[ACCEPTED]).await?;
    stream.flush().await?;
    Ok(())
}

/// Writes one message.
pub async fn write<W: AsyncWrite + Unpin>(stream: &mut W, message: &[u8]) -> Result<()> {
    write_parts(stream, &[message]).await
}

/// Writes one message made of `parts`, in order, without joining them
/// first: a message that carries megabytes of blocks is not copied into
/// one buffer on the way out.
pub async fn write_parts<W: AsyncWrite + Unpin>(stream: &mut W, parts: &[&[u8]]) -> Result<()> {
    let size: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(size).map_err(|_| Error::TooLarge {
        size,
        limit: u32::MAX as usize,
    })?;
    stream.write_all(&len.to_be_bytes()).await?;
    for part in parts {
        stream.write_all(part).await?;
    }
    stream.flush().await?;
    Ok(())
}

/// Writes the last message of a stream and closes the writing half, so
/// the message is delivered before the stream ends (dropping a stream
/// without closing it may reset it and lose what was still queued).
pub async fn write_last<W: AsyncWrite + Unpin>(stream: &mut W, message: &[u8]) -> Result<()> {
    write_last_parts(stream, &[message]).await
}

/// [`write_last`] for a message made of `parts` ([`write_parts`]).
pub async fn write_last_parts<W: AsyncWrite + Unpin>(
    stream: &mut W,
    parts: &[&[u8]],
) -> Result<()> {
    write_parts(stream, parts).await?;
    stream.close().await?;
    Ok(())
}

/// Reads one message of at most `limit` bytes.
pub async fn read<R: AsyncRead + Unpin>(stream: &mut R, limit: usize) -> Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let size = u32::from_be_bytes(len) as usize;
    if size > limit {
        return Err(Error::TooLarge { size, limit });
    }
    let mut message = vec![0u8; size];
    stream.read_exact(&mut message).await?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[tokio::test]
    async fn messages_round_trip_and_limits_hold() {
        let mut buffer = Cursor::new(Vec::new());
        write(&mut buffer, b"hello").await.unwrap();
        write(&mut buffer, &[9u8; 300]).await.unwrap();
        write(&mut buffer, b"").await.unwrap();
        let mut reader = Cursor::new(buffer.into_inner());
        assert_eq!(read(&mut reader, 10).await.unwrap(), b"hello");
        assert!(matches!(
            read(&mut reader, 100).await,
            Err(Error::TooLarge {
                size: 300,
                limit: 100
            })
        ));
    }

    #[tokio::test]
    async fn a_message_in_parts_reads_as_one() {
        let mut buffer = Cursor::new(Vec::new());
        write_parts(&mut buffer, &[b"he", b"", b"llo"])
            .await
            .unwrap();
        let mut reader = Cursor::new(buffer.into_inner());
        assert_eq!(read(&mut reader, 10).await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn a_truncated_message_is_an_error() {
        let mut buffer = Cursor::new(Vec::new());
        write(&mut buffer, b"hello world").await.unwrap();
        let mut bytes = buffer.into_inner();
        bytes.truncate(8);
        assert!(matches!(
            read(&mut Cursor::new(bytes), 100).await,
            Err(Error::Io(_))
        ));
    }
}
