//! The layer every weir server puts outermost so that no panic reaches a client as a reset
//! connection: a handler (or anything under it) that panics is answered with a 500 and a JSON
//! body, the panic is logged, and it is counted (`weir_panics_total` where the server exposes
//! metrics).
//!
//! A panic is a bug in weir, never the client's doing, so the answer says only that the request
//! could not be completed; the message (which may quote request data) goes to the log. The body
//! carries both the Open Inference Protocol's `error` field and MLflow's `error_code`/`message`,
//! so every client of every server reads it in its own terms.

use std::any::Any;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use prometheus_client::metrics::counter::Counter;
use tower_http::catch_panic::{CatchPanicLayer, ResponseForPanic};

/// What a client reads when its request panicked.
pub const PANIC_MESSAGE: &str = "internal error: the request could not be completed";

/// The layer: `router.layer(PanicLayer::new(counter).layer())`, outermost.
#[derive(Clone, Debug, Default)]
pub struct PanicLayer {
    panics: Counter,
}

impl PanicLayer {
    /// Counts panics in `panics` (a counter the caller has registered, or will read).
    pub fn new(panics: Counter) -> PanicLayer {
        PanicLayer { panics }
    }

    /// The counter this layer increments (shared with the one given to [`PanicLayer::new`]).
    pub fn panics(&self) -> &Counter {
        &self.panics
    }

    /// The tower layer to put around a service (or `axum::Router::layer`).
    pub fn layer(&self) -> CatchPanicLayer<PanicAnswer> {
        CatchPanicLayer::custom(PanicAnswer {
            panics: self.panics.clone(),
        })
    }
}

/// Builds the answer to a panic; see [`PanicLayer`].
#[derive(Clone, Debug)]
pub struct PanicAnswer {
    panics: Counter,
}

impl ResponseForPanic for PanicAnswer {
    type ResponseBody = Full<Bytes>;

    fn response_for_panic(&mut self, err: Box<dyn Any + Send + 'static>) -> Response<Full<Bytes>> {
        self.panics.inc();
        tracing::error!(panic = %panic_message(err.as_ref()), "a request panicked; answered 500");
        let body = serde_json::json!({
            "error": PANIC_MESSAGE,
            "error_code": "INTERNAL_ERROR",
            "message": PANIC_MESSAGE,
        });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// The panic's payload as text: `panic!` gives a `&str` or a `String`, anything else is opaque.
fn panic_message(err: &(dyn Any + Send)) -> &str {
    if let Some(text) = err.downcast_ref::<&str>() {
        text
    } else if let Some(text) = err.downcast_ref::<String>() {
        text
    } else {
        "a panic without a message"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};

    async fn panicking(request: http::Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, ()> {
        if request.uri().path() == "/boom" {
            panic!("index out of bounds: the len is 0 but the index is 3");
        }
        Ok(Response::new(Full::new(Bytes::from_static(b"fine"))))
    }

    fn request(path: &str) -> http::Request<Full<Bytes>> {
        http::Request::builder()
            .uri(path)
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    #[tokio::test]
    async fn a_panic_becomes_a_counted_json_500_and_other_requests_pass() {
        let layer = PanicLayer::default();
        let service = layer.layer().layer(tower::service_fn(panicking));

        let answer = service.clone().oneshot(request("/boom")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/json");
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], PANIC_MESSAGE);
        assert_eq!(json["error_code"], "INTERNAL_ERROR");
        assert!(
            !body.windows(5).any(|w| w == b"index"),
            "the panic's words stay in the log"
        );
        assert_eq!(layer.panics().get(), 1);

        let fine = service.oneshot(request("/fine")).await.unwrap();
        assert_eq!(fine.status(), StatusCode::OK);
        assert_eq!(layer.panics().get(), 1, "only panics are counted");
    }

    #[test]
    fn panic_messages_are_read_from_either_payload() {
        assert_eq!(panic_message(&"words"), "words");
        assert_eq!(panic_message(&String::from("owned")), "owned");
        assert_eq!(panic_message(&7u8), "a panic without a message");
    }
}
