//! TLS to PostgreSQL with rustls (the TLS stack weir already carries for Kubernetes), wired
//! into the driver through its `MakeTlsConnect` hooks.
//!
//! libpq's `sslmode` and `sslrootcert` are read from the URL here because the driver knows only
//! `disable | prefer | require` and no certificates. weir is stricter than libpq on purpose:
//! `require`, `verify-ca` and `verify-full` all verify the server's certificate chain *and* name
//! (a password sent over TLS to an unverified server is a password given away), against
//! `sslrootcert` when given, else the system's roots.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::Socket;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, InvalidDnsNameError, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// What a URL asks for, with the parts the driver does not understand taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsRequest {
    /// The URL without `sslmode` and `sslrootcert`.
    pub url: String,
    /// `sslmode` was `require`, `verify-ca` or `verify-full`.
    pub verified: bool,
    /// `sslmode=disable`: not even the driver's opportunistic attempt.
    pub disabled: bool,
    pub root_cert: Option<PathBuf>,
}

/// Splits `sslmode` / `sslrootcert` off a `postgres://` URL's query.
pub(crate) fn tls_request(url: &str) -> Result<TlsRequest, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let mut request = TlsRequest {
        url: String::new(),
        verified: false,
        disabled: false,
        root_cert: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => match value {
                "disable" => request.disabled = true,
                "allow" | "prefer" => {}
                "require" | "verify-ca" | "verify-full" => request.verified = true,
                other => {
                    return Err(format!(
                        "sslmode '{other}' is not one of disable, allow, prefer, require, verify-ca, verify-full"
                    ))
                }
            },
            "sslrootcert" => request.root_cert = Some(PathBuf::from(percent_decoded(value))),
            _ => kept.push(pair),
        }
    }
    if request.root_cert.is_some() && !request.verified {
        return Err(
            "sslrootcert is given but sslmode is not require, verify-ca or verify-full".to_owned(),
        );
    }
    request.url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(request)
}

/// `%2F` and friends in a path given in a URL.
pub(crate) fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The rustls configuration: trust `root_cert`'s certificates, else the system's.
pub(crate) fn client_config(root_cert: Option<&Path>) -> Result<RustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
            if certificates.is_empty() {
                return Err(format!(
                    "sslrootcert {} holds no certificate",
                    path.display()
                ));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|e| {
                    format!(
                        "sslrootcert {} holds an unusable certificate: {e}",
                        path.display()
                    )
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err("sslmode asks for TLS, no sslrootcert is given and the system has no root certificates".to_owned());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(RustlsConnect(Arc::new(config)))
}

/// Makes a TLS connector per connection, for the host being connected to.
#[derive(Clone)]
pub(crate) struct RustlsConnect(Arc<rustls::ClientConfig>);

impl MakeTlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnector;
    type Error = InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnector, InvalidDnsNameError> {
        Ok(RustlsConnector {
            config: self.0.clone(),
            name: ServerName::try_from(host.to_owned())?,
        })
    }
}

pub(crate) struct RustlsConnector {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl TlsConnect<Socket> for RustlsConnector {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let stream = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, socket)
                .await?;
            Ok(RustlsStream(stream))
        })
    }
}

pub(crate) struct RustlsStream(tokio_rustls::client::TlsStream<Socket>);

impl TlsStream for RustlsStream {
    /// No channel binding: SCRAM then runs without `-PLUS`, as with libpq's default `prefer`.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_options_are_taken_out_of_the_url() {
        let plain = tls_request("postgres://u@h:5432/db").unwrap();
        assert_eq!(
            (plain.url.as_str(), plain.verified, plain.disabled),
            ("postgres://u@h:5432/db", false, false)
        );
        let full = tls_request(
            "postgres://u@h/db?connect_timeout=5&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(full.url, "postgres://u@h/db?connect_timeout=5");
        assert!(full.verified);
        assert_eq!(full.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert!(
            tls_request("postgres://u@h/db?sslmode=require")
                .unwrap()
                .verified
        );
        assert!(
            tls_request("postgres://u@h/db?sslmode=disable")
                .unwrap()
                .disabled
        );
        let wrong = tls_request("postgres://u@h/db?sslmode=always").unwrap_err();
        assert!(wrong.contains("sslmode 'always' is not one of"), "{wrong}");
        let loose = tls_request("postgres://u@h/db?sslrootcert=/ca.pem").unwrap_err();
        assert!(
            loose.contains("sslrootcert is given but sslmode"),
            "{loose}"
        );
    }

    #[test]
    fn root_certificate_files_are_checked() {
        let missing = client_config(Some(Path::new("/nonexistent/ca.pem")))
            .err()
            .unwrap();
        assert!(
            missing.contains("cannot read sslrootcert /nonexistent/ca.pem"),
            "{missing}"
        );
        let empty = std::env::temp_dir().join(format!("weir-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let err = client_config(Some(&empty)).err().unwrap();
        assert!(err.contains("holds no certificate"), "{err}");
    }
}
