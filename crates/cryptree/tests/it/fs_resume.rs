//! Resumable uploads: an upload cut off at any point continues from the
//! first missing chunk and produces the same file; its record is removed
//! when it completes.

use std::io::Cursor;
use std::pin::Pin;
use std::task::{Context, Poll};

use peergos_cryptree::node::CHUNK_SIZE;
use peergos_cryptree::{Error, UploadOptions, UPLOADS_DIR};
use peergos_testkit::cryptree::{data, memory_fs, read_all};
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};

/// A seekable input whose reading stops at `cut`: with an error (a lost
/// connection), or for good when `stall` is set (a stuck disk or
/// connection: the read never completes).
struct CutOff {
    inner: Cursor<Vec<u8>>,
    cut: u64,
    stall: bool,
}

impl AsyncRead for CutOff {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let pos = self.inner.position();
        if pos >= self.cut {
            if self.stall {
                return Poll::Pending;
            }
            return Poll::Ready(Err(std::io::Error::other("connection lost")));
        }
        let room = (self.cut - pos).min(buf.remaining() as u64) as usize;
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(room));
        let result = Pin::new(&mut self.inner).poll_read(cx, &mut limited);
        let n = limited.filled().len();
        buf.advance(n);
        result
    }
}

impl AsyncSeek for CutOff {
    fn start_seek(mut self: Pin<&mut Self>, position: std::io::SeekFrom) -> std::io::Result<()> {
        Pin::new(&mut self.inner).start_seek(position)
    }
    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Pin::new(&mut self.inner).poll_complete(cx)
    }
}

#[tokio::test]
async fn interrupted_uploads_resume_from_the_first_missing_chunk() {
    let c = CHUNK_SIZE;
    let content = data(1, 4 * c as usize + 12_345);
    // Cut inside chunk 0, on a chunk boundary, inside a middle chunk and
    // inside the last chunk.
    for cut in [1_000, c, 2 * c + 77, 4 * c + 10] {
        let fs = memory_fs().await;
        fs.mkdir("/in").await.unwrap();
        let input = CutOff {
            inner: Cursor::new(content.clone()),
            cut,
            stall: false,
        };
        let err = fs
            .upload_resumable("/in/file", input, UploadOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Read(_)), "{err}");
        assert!(matches!(
            fs.stat("/in/file").await,
            Err(Error::NotFound { .. })
        ));
        // A cut inside the first chunk comes before anything is stored.
        let records = fs
            .ls_all(&format!("/{UPLOADS_DIR}"))
            .await
            .map_or(0, |l| l.len());
        assert_eq!(records, usize::from(cut >= c), "cut at {cut}");

        let before = fs.blocks_written();
        fs.upload_resumable(
            "/in/file",
            Cursor::new(content.clone()),
            UploadOptions::default(),
        )
        .await
        .unwrap();
        let written = fs.blocks_written() - before;
        assert!(
            read_all(&fs, "/in/file").await == content,
            "cut at {cut}: content differs"
        );
        assert!(fs
            .ls_all(&format!("/{UPLOADS_DIR}"))
            .await
            .map_or(true, |l| l.is_empty()));
        // Chunks committed before the cut were not written again: a whole
        // upload writes 21 fragments and 5 nodes (plus the record and the
        // directory).
        let committed = cut.saturating_sub(c) / c;
        assert!(
            written <= 26 + 10 - 6 * committed,
            "cut at {cut}: wrote {written} blocks, {committed} chunks were already stored"
        );
    }
}

#[tokio::test]
async fn a_different_input_starts_over() {
    let fs = memory_fs().await;
    let first = data(1, 3 * CHUNK_SIZE as usize);
    let input = CutOff {
        inner: Cursor::new(first.clone()),
        cut: 2 * CHUNK_SIZE + 5,
        stall: false,
    };
    assert!(fs
        .upload_resumable("/f", input, UploadOptions::default())
        .await
        .is_err());
    // Same length, different first chunk: not the same file.
    let mut other = first.clone();
    other[0] ^= 0xff;
    fs.upload_resumable("/f", Cursor::new(other.clone()), UploadOptions::default())
        .await
        .unwrap();
    let mut back = Vec::new();
    fs.download("/f", &mut back).await.unwrap();
    assert!(back == other);
    // Uploading again after completion is a fresh upload, not a resume.
    fs.upload_resumable("/f", Cursor::new(first.clone()), UploadOptions::default())
        .await
        .unwrap();
    back.clear();
    fs.download("/f", &mut back).await.unwrap();
    assert!(back == first);
}

#[tokio::test]
async fn inputs_of_one_chunk_need_no_record() {
    let fs = memory_fs().await;
    for len in [0, 10, CHUNK_SIZE as usize] {
        let content = data(1, len);
        fs.upload_resumable(
            "/small",
            Cursor::new(content.clone()),
            UploadOptions::default(),
        )
        .await
        .unwrap();
        let mut back = Vec::new();
        fs.download("/small", &mut back).await.unwrap();
        assert!(back == content, "length {len}");
    }
    assert!(matches!(
        fs.stat(&format!("/{UPLOADS_DIR}")).await,
        Err(Error::NotFound { .. })
    ));
}

/// An upload stopped without an error (its task dropped, as when the
/// process is killed) keeps the chunks it committed while it ran: progress
/// is committed about every second, also while the input is stuck.
#[tokio::test]
async fn a_stopped_upload_keeps_the_chunks_it_committed_as_it_went() {
    let c = CHUNK_SIZE;
    let content = data(2, 5 * c as usize);
    let fs = memory_fs().await;
    let input = CutOff {
        inner: Cursor::new(content.clone()),
        cut: 3 * c,
        stall: true,
    };
    let stopped = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        fs.upload_resumable("/f", input, UploadOptions::default()),
    )
    .await;
    assert!(
        stopped.is_err(),
        "the upload cannot finish: its input stalls"
    );

    let before = fs.blocks_written();
    fs.upload_resumable("/f", Cursor::new(content.clone()), UploadOptions::default())
        .await
        .unwrap();
    let written = fs.blocks_written() - before;
    assert!(read_all(&fs, "/f").await == content);
    // A whole upload writes 25 fragments and 5 nodes (plus the record and
    // the directory); chunks 1 and 2 (6 blocks each) were committed.
    assert!(
        written <= 30 + 10 - 2 * 6,
        "wrote {written} blocks: the chunks stored before the stall were not kept"
    );
}
