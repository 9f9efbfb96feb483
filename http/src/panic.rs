//! The layer every weir server puts outermost so that no panic reaches a client as a reset
//! connection: a handler (or anything under it) that panics is answered with a 500 and a JSON
//! body, the panic is logged, and it is counted (`weir_panics_total` where the server exposes
//! metrics).
//!
//! A panic is a bug in weir, never the client's doing, so the answer says only that the request
//! could not be completed; the message (which may quote request data) goes to the log. The body
//! carries both the Open Inference Protocol's `error` field and MLflow's `error_code`/`message`,
//! so every client of every server reads it in its own terms.
//!
//! gRPC calls get [`GrpcAnswerPanics`] instead: a gRPC answer is HTTP 200 whatever its status, so
//! a 500 would read as a broken protocol to a gRPC client, and a panic left to the HTTP/2
//! connection would end the call with a reset stream, which gRPC clients report as CANCELLED,
//! as if they had given up themselves.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

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

pin_project_lite::pin_project! {
    /// A gRPC call whose panic (a bug in weir) is answered INTERNAL with [`PANIC_MESSAGE`],
    /// "trailers-only" (the status in the headers, no message), logged and counted as
    /// [`PanicLayer`] does. `empty` makes the answer's empty body. Unwind safety: a call that
    /// panicked has answered and is never polled again.
    pub struct GrpcAnswerPanics<F, B> {
        #[pin]
        call: F,
        panics: Counter,
        empty: fn() -> B,
    }
}

impl<F, B> GrpcAnswerPanics<F, B> {
    pub fn new(call: F, panics: Counter, empty: fn() -> B) -> GrpcAnswerPanics<F, B> {
        GrpcAnswerPanics {
            call,
            panics,
            empty,
        }
    }
}

impl<F, B, E> Future for GrpcAnswerPanics<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let call = this.call;
        match std::panic::catch_unwind(AssertUnwindSafe(|| call.poll(cx))) {
            Ok(answer) => answer,
            Err(panic) => {
                this.panics.inc();
                tracing::error!(panic = %panic_message(panic.as_ref()), "a gRPC call panicked; answered INTERNAL");
                let mut response = Response::new((this.empty)());
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/grpc"),
                );
                headers.insert("grpc-status", HeaderValue::from_static(GRPC_INTERNAL));
                // Printable ASCII without `%`: already in grpc-message's percent-encoding.
                headers.insert("grpc-message", HeaderValue::from_static(PANIC_MESSAGE));
                Poll::Ready(Ok(response))
            }
        }
    }
}

/// gRPC's INTERNAL status code.
const GRPC_INTERNAL: &str = "13";

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

    #[tokio::test]
    async fn a_grpc_call_that_panics_is_answered_internal_trailers_only_and_counted() {
        let panics = Counter::default();
        let call = async {
            if panics.get() == 0 {
                panic!("index out of bounds: the len is 0 but the index is 3");
            }
            Ok::<_, ()>(Response::new(Full::new(Bytes::from_static(b"never"))))
        };
        let answer = GrpcAnswerPanics::new(call, panics.clone(), Full::default)
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            StatusCode::OK,
            "gRPC carries its status apart"
        );
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/grpc");
        assert_eq!(answer.headers()["grpc-status"], "13");
        assert_eq!(answer.headers()["grpc-message"], PANIC_MESSAGE);
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty(), "trailers-only: no message");
        assert_eq!(panics.get(), 1);

        let fine = async { Ok::<_, ()>(Response::new(Full::new(Bytes::from_static(b"fine")))) };
        let answer = GrpcAnswerPanics::new(fine, panics.clone(), Full::default)
            .await
            .unwrap();
        assert!(
            answer.headers().get("grpc-status").is_none(),
            "passed through as it was"
        );
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, Bytes::from_static(b"fine"));
        assert_eq!(panics.get(), 1, "only panics are counted");
    }

    #[test]
    fn panic_messages_are_read_from_either_payload() {
        assert_eq!(panic_message(&"words"), "words");
        assert_eq!(panic_message(&String::from("owned")), "owned");
        assert_eq!(panic_message(&7u8), "a panic without a message");
    }
}
