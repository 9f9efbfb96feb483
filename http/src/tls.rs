//! Which servers an [`HttpClient`](crate::HttpClient) trusts: the system's root certificates, or
//! exactly those of a CA bundle (`--ca-file`, as curl's `--cacert`). Chain and host name are
//! always verified; there is deliberately no way to turn that off, since a token sent to an
//! unverified server is a token given away.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("cannot read the CA file {path}: {reason}")]
    CaFileUnreadable { path: PathBuf, reason: String },
    #[error("the CA file {path} holds no PEM certificate")]
    CaFileEmpty { path: PathBuf },
    #[error("the CA file {path} holds an unusable certificate: {reason}")]
    CaFileUnusable { path: PathBuf, reason: String },
}

/// The configuration trusting the system's roots, read once per process: reading and parsing
/// the system bundle costs milliseconds, and every client would otherwise repeat it.
pub(crate) fn system_config() -> Arc<ClientConfig> {
    static SYSTEM: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            // Unparsable system certificates are skipped; with none at all every HTTPS call
            // fails naming an unknown issuer, which says what to fix (--ca-file).
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            Arc::new(config(roots))
        })
        .clone()
}

/// The configuration trusting exactly the certificates of the PEM bundle at `path`.
pub(crate) fn ca_file_config(path: &Path) -> Result<Arc<ClientConfig>, HttpClientError> {
    let unreadable = |reason: String| HttpClientError::CaFileUnreadable {
        path: path.to_path_buf(),
        reason,
    };
    // `pem_file_iter` would report a directory only on the first read, as "Is a directory";
    // the same words either way.
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(e.to_string()))?;
    if certificates.is_empty() {
        return Err(HttpClientError::CaFileEmpty {
            path: path.to_path_buf(),
        });
    }
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|e| HttpClientError::CaFileUnusable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
    }
    Ok(Arc::new(config(roots)))
}

fn config(roots: RootCertStore) -> ClientConfig {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        // ring offers suites for both TLS 1.2 and 1.3; this cannot fail for it.
        .expect("the ring provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("weir-http-{name}-{}.pem", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn bad_ca_files_are_named_in_the_error() {
        let missing = ca_file_config(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot read the CA file /nonexistent/ca.pem: "),
            "{missing}"
        );
        let empty = scratch("empty", "");
        let err = ca_file_config(&empty).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("the CA file {} holds no PEM certificate", empty.display())
        );
        let words = scratch("words", "not a certificate at all\n");
        let err = ca_file_config(&words).unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let broken = scratch(
            "broken",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let err = ca_file_config(&broken).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot read the CA file {}", broken.display())),
            "{err}"
        );
        let not_der = scratch(
            "not-der",
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        );
        let err = ca_file_config(&not_der).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "the CA file {} holds an unusable certificate",
                not_der.display()
            )),
            "{err}"
        );
        let dir = ca_file_config(&std::env::temp_dir())
            .unwrap_err()
            .to_string();
        assert!(dir.starts_with("cannot read the CA file"), "{dir}");
        for path in [empty, words, broken, not_der] {
            let _ = std::fs::remove_file(path);
        }
    }
}
