//! Downloads read chunk by chunk, for files too large to hold whole (a model version's weights):
//! [`HttpClient::send`] collects the answer, this hands it over as it arrives, all of it bounded
//! by one deadline the caller sets for the whole transfer.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::{with_causes, HttpClient};

/// An answer whose body is still arriving. Every read fails once the deadline has passed, so a
/// server that sends headers and then stalls (or trickles) cannot hold the caller past it.
pub struct Download {
    status: u16,
    body: Incoming,
    deadline: Instant,
}

impl HttpClient {
    /// Sends a GET and returns as soon as the answer's head is in; no answer (or no head) by
    /// `deadline` is an error in words for a person, as for [`HttpClient::send`].
    pub async fn download(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        deadline: Instant,
    ) -> Result<Download, String> {
        let mut request = hyper::Request::builder().method("GET").uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("invalid request: {e}"))?;
        let response = tokio::time::timeout_at(deadline, self.inner.request(request))
            .await
            .map_err(|_| "no answer before the download's deadline".to_owned())?
            .map_err(|e| with_causes(&e))?;
        Ok(Download {
            status: response.status().as_u16(),
            body: response.into_body(),
            deadline,
        })
    }
}

impl Download {
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The next piece of the body as the server sent it (bounded by the server's frame size,
    /// not by the file); `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            let frame = tokio::time::timeout_at(self.deadline, self.body.frame())
                .await
                .map_err(|_| "the download did not finish before its deadline".to_owned())?;
            match frame {
                None => return Ok(None),
                Some(Err(err)) => return Err(format!("the download broke off: {err}")),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                }
            }
        }
    }

    /// Hands every chunk to `sink` in order, until the end, the deadline, or the sink's
    /// refusal. Returns the number of bytes.
    pub async fn each_chunk(
        &mut self,
        mut sink: impl FnMut(Bytes) -> Result<(), String>,
    ) -> Result<u64, String> {
        let mut total = 0u64;
        while let Some(chunk) = self.chunk().await? {
            total += chunk.len() as u64;
            sink(chunk)?;
        }
        Ok(total)
    }

    /// At most `limit` bytes of the body, for reading an error answer without trusting its
    /// size; the rest is not read.
    pub async fn text(mut self, limit: usize) -> String {
        let mut text = Vec::new();
        while text.len() < limit {
            match self.chunk().await {
                Ok(Some(chunk)) => {
                    let room = limit - text.len();
                    text.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) | Err(_) => break,
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A one-request server on loopback: answers 200 with `parts` written one at a time (a
    /// chunked body), then stays silent forever when `stall` is set.
    async fn serving(parts: Vec<&'static [u8]>, stall: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            for part in parts {
                let _ = stream
                    .write_all(format!("{:x}\r\n", part.len()).as_bytes())
                    .await;
                let _ = stream.write_all(part).await;
                let _ = stream.write_all(b"\r\n").await;
                let _ = stream.flush().await;
            }
            if stall {
                std::future::pending::<()>().await;
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
            let _ = stream.flush().await;
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
        });
        format!("http://{address}/file")
    }

    #[tokio::test]
    async fn a_download_arrives_in_pieces_and_ends() {
        let url = serving(vec![b"hello ", b"big ", b"world"], false).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut download = HttpClient::default()
            .download(&url, &[("authorization", "Bearer t")], deadline)
            .await
            .unwrap();
        assert_eq!(download.status(), 200);
        let mut received = Vec::new();
        let total = download
            .each_chunk(|chunk| {
                received.extend_from_slice(&chunk);
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(received, b"hello big world");
        assert_eq!(total, 15);
    }

    #[tokio::test]
    async fn a_stalled_download_fails_at_its_deadline() {
        let url = serving(vec![b"first part"], true).await;
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut download = HttpClient::default()
            .download(&url, &[], deadline)
            .await
            .unwrap();
        let mut received = Vec::new();
        let outcome = download
            .each_chunk(|chunk| {
                received.extend_from_slice(&chunk);
                Ok(())
            })
            .await;
        assert_eq!(received, b"first part");
        let err = outcome.unwrap_err();
        assert!(err.contains("deadline"), "{err}");
    }

    #[tokio::test]
    async fn a_sink_that_refuses_stops_the_download() {
        let url = serving(vec![b"one", b"two"], false).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut download = HttpClient::default()
            .download(&url, &[], deadline)
            .await
            .unwrap();
        let err = download
            .each_chunk(|_| Err("disk full".to_owned()))
            .await
            .unwrap_err();
        assert_eq!(err, "disk full");
    }

    #[tokio::test]
    async fn an_error_answer_is_read_up_to_a_limit() {
        let url = serving(vec![b"0123456789", b"abcdef"], false).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let download = HttpClient::default()
            .download(&url, &[], deadline)
            .await
            .unwrap();
        assert_eq!(download.text(12).await, "0123456789ab");
    }
}
