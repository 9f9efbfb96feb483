//! The HTTP transport of the S3 backend: hyper's pooled HTTP/1 client over rustls on the ring
//! provider, trusting the system's root certificates. object_store's own transport is reqwest,
//! whose TLS brings aws-lc (a C build weir avoids); this gives object_store the same transport
//! weir's other clients use.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};
use object_store::{ClientConfigKey, ClientOptions};

/// How long a connection to the object store may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the object store may take to start answering a request (its headers). Bodies are
/// not timed: a large download streams for as long as it needs to.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// The connector object_store asks for a client; plain `http://` endpoints are allowed only
/// when `AWS_ALLOW_HTTP` says so (object_store's rule, enforced here since this is the
/// transport).
#[derive(Debug, Default)]
pub struct HyperConnector;

impl HttpConnector for HyperConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let allow_http = options
            .get_config_value(&ClientConfigKey::AllowHttp)
            .is_some_and(|value| is_true(&value));
        Ok(HttpClient::new(HyperService {
            client: client(allow_http),
        }))
    }
}

/// Whether a configuration value reads as true, the way object_store reads its booleans.
pub fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "on" | "yes" | "y"
    )
}

/// A pooled client for bodies of type `B` (object_store's requests, or a part being relayed).
pub fn client<B>(allow_http: bool) -> Client<HttpsConnector<TcpConnector>, B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let mut tcp = TcpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    tcp.set_nodelay(true);
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config((*tls()).clone());
    let https = if allow_http {
        builder.https_or_http().enable_http1().wrap_connector(tcp)
    } else {
        builder.https_only().enable_http1().wrap_connector(tcp)
    };
    Client::builder(TokioExecutor::new()).build(https)
}

/// The system's roots, read once per process (reading them costs milliseconds).
fn tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            // ring offers suites for both TLS 1.2 and 1.3; this cannot fail for it.
            .expect("the ring provider supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

#[derive(Debug)]
struct HyperService {
    client: Client<HttpsConnector<TcpConnector>, object_store::client::HttpRequestBody>,
}

impl HttpService for HyperService {
    fn call<'s, 'f>(
        &'s self,
        request: HttpRequest,
    ) -> Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'f>>
    where
        's: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            let answer = tokio::time::timeout(ANSWER_TIMEOUT, self.client.request(request))
                .await
                .map_err(|elapsed| HttpError::new(HttpErrorKind::Timeout, elapsed))?
                .map_err(|err| {
                    let kind = if err.is_connect() {
                        HttpErrorKind::Connect
                    } else {
                        HttpErrorKind::Request
                    };
                    HttpError::new(kind, err)
                })?;
            let (parts, body) = answer.into_parts();
            let body = body.map_err(|err| HttpError::new(HttpErrorKind::Interrupted, err));
            Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
        })
    }
}
