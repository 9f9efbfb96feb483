//! HTTPS through weir-http against a real TLS server on loopback (certificates made by the
//! `openssl` command): a private CA is trusted only when given, chains are always verified,
//! and plain HTTP keeps working beside it.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_http::testing::{tls_forwarder, TestCerts};
use weir_http::HttpClient;

/// A plain HTTP server answering every request `200 hello`, one request per connection.
async fn hello_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
                    )
                    .await;
            });
        }
    });
    address
}

async fn get(client: &HttpClient, url: &str) -> Result<(u16, Bytes), String> {
    client
        .send("GET", url, &[], Bytes::new(), Duration::from_secs(10))
        .await
}

#[tokio::test]
async fn https_trusts_the_given_ca_and_verifies_always() {
    let certs = TestCerts::generate("http").unwrap();
    let plain = hello_server().await;
    let tls = tls_forwarder(&certs, plain).unwrap();
    let https_url = format!("https://127.0.0.1:{}/", tls.port());

    let trusting = HttpClient::with_ca_file(Some(&certs.ca)).unwrap();
    assert_eq!(
        get(&trusting, &https_url).await.unwrap(),
        (200, Bytes::from_static(b"hello"))
    );
    // The certificate also names localhost: host names are checked against it, not skipped.
    assert_eq!(
        get(&trusting, &format!("https://localhost:{}/", tls.port()))
            .await
            .unwrap()
            .0,
        200
    );
    // Plain HTTP through the same client.
    assert_eq!(
        get(&trusting, &format!("http://{plain}/")).await.unwrap().0,
        200
    );

    let system = HttpClient::default();
    let refused = get(&system, &https_url).await.unwrap_err();
    assert!(
        refused.contains("certificate") && refused.contains("UnknownIssuer"),
        "{refused}"
    );
    assert_eq!(
        get(&system, &format!("http://{plain}/")).await.unwrap().0,
        200,
        "plain HTTP needs no certificates"
    );
    let also_system = HttpClient::with_ca_file(None).unwrap();
    assert!(get(&also_system, &https_url).await.is_err());

    // A CA that signed something else is no help.
    let other = HttpClient::with_ca_file(Some(&certs.other_ca)).unwrap();
    let refused = get(&other, &https_url).await.unwrap_err();
    assert!(refused.contains("certificate"), "{refused}");

    // Plain HTTP to the TLS port is not silently accepted either.
    let confused = get(&trusting, &format!("http://127.0.0.1:{}/", tls.port())).await;
    assert!(confused.is_err(), "{confused:?}");
}

#[test]
fn a_missing_ca_file_is_an_error_naming_it() {
    let err = HttpClient::with_ca_file(Some(std::path::Path::new("/nonexistent/ca.pem")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}
