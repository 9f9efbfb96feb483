//! An S3 bucket configured the way the AWS SDKs and boto3 are, from the standard environment:
//! `AWS_ENDPOINT_URL` (an S3-compatible server), `AWS_REGION` / `AWS_DEFAULT_REGION`,
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, web identity
//! (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, as EKS's IRSA sets them), `AWS_ALLOW_HTTP`
//! for a plain-http endpoint, and path-style requests unless
//! `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`. Without keys in the environment or a web identity,
//! the shared credentials file is read (`AWS_SHARED_CREDENTIALS_FILE`, else
//! `~/.aws/credentials`; profile `AWS_PROFILE`, else `default`); then the instance's metadata
//! service. No credential is ever logged or put in an error.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::RetryConfig;

use super::connector::{self, HyperConnector};
use super::BucketStore;
use crate::error::StoreError;

/// Retries of a failed request: a few, within half a minute, so a wrong endpoint or a bucket
/// that is down is said in seconds rather than object_store's default three minutes.
fn retries() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
        ..RetryConfig::default()
    }
}

/// The store under `prefix` of `bucket`, configured from the environment.
pub fn open(bucket: &str, prefix: &str) -> Result<BucketStore, StoreError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_http_connector(HyperConnector)
        .with_retry(retries());
    if env("AWS_REGION").is_none() && env("AWS_DEFAULT_REGION").is_none() {
        builder = builder.with_config(AmazonS3ConfigKey::Region, "us-east-1");
    }
    let has_keys = env("AWS_ACCESS_KEY_ID").is_some() || env("AWS_SECRET_ACCESS_KEY").is_some();
    let has_web_identity =
        env("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() && env("AWS_ROLE_ARN").is_some();
    if !has_keys && !has_web_identity {
        if let Some(keys) = super::credentials_file::from_environment()? {
            builder = builder
                .with_access_key_id(keys.access_key_id)
                .with_secret_access_key(keys.secret_access_key);
            if let Some(token) = keys.session_token {
                builder = builder.with_token(token);
            }
        }
    }
    let allow_http = env("AWS_ALLOW_HTTP").is_some_and(|v| connector::is_true(&v));
    if let Some(endpoint) = builder.get_config_value(&AmazonS3ConfigKey::Endpoint) {
        if endpoint.starts_with("http://") && !allow_http {
            return Err(StoreError::InvalidParameter(format!(
                "the S3 endpoint {endpoint} is plain http; set AWS_ALLOW_HTTP=true to use it"
            )));
        }
    }
    let s3 = Arc::new(builder.build().map_err(|e| {
        StoreError::InvalidParameter(format!("cannot configure S3 bucket '{bucket}': {e}"))
    })?);
    let name = if prefix.trim_matches('/').is_empty() {
        format!("s3://{bucket}")
    } else {
        format!("s3://{bucket}/{}", prefix.trim_matches('/'))
    };
    Ok(BucketStore::new(s3.clone(), prefix, &name)?.with_signer(s3, connector::client(allow_http)))
}
