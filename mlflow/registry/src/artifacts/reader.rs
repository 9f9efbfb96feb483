//! A source of bytes read a chunk at a time, whichever store it comes from (a file on disk, an
//! object's streamed body), so copying a version's files into the blob store never holds a file
//! in memory.

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::AsyncReadExt;

/// Bytes read from disk at a time.
const FILE_CHUNK: usize = 256 * 1024;

pub struct ByteReader(Inner);

enum Inner {
    File {
        file: tokio::fs::File,
        buffer: Vec<u8>,
    },
    Body(axum::body::Body),
}

impl ByteReader {
    pub async fn file(path: &std::path::Path) -> std::io::Result<ByteReader> {
        Ok(ByteReader(Inner::File {
            file: tokio::fs::File::open(path).await?,
            buffer: vec![0; FILE_CHUNK],
        }))
    }

    /// A streamed body (an object read from a bucket).
    pub fn body(body: axum::body::Body) -> ByteReader {
        ByteReader(Inner::Body(body))
    }

    /// The next chunk; `None` at the end.
    pub async fn chunk(&mut self) -> std::io::Result<Option<Bytes>> {
        match &mut self.0 {
            Inner::File { file, buffer } => {
                let read = file.read(buffer).await?;
                Ok((read > 0).then(|| Bytes::copy_from_slice(&buffer[..read])))
            }
            Inner::Body(body) => loop {
                match body.frame().await {
                    None => return Ok(None),
                    Some(Err(err)) => return Err(std::io::Error::other(err)),
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            if !data.is_empty() {
                                return Ok(Some(data));
                            }
                        }
                    }
                }
            },
        }
    }
}
