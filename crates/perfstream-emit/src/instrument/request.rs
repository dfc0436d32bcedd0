//! [`RequestLayer`]: a tower layer that records every request as a `RequestEvent`.
//!
//! The endpoint is the route *template* (`/campaigns/{id}`), never the raw path, which would
//! make one series per id: by default axum's `MatchedPath`, which axum puts in the request's
//! extensions when the layer is added with `Router::layer` or `Router::route_layer`. Requests
//! no route matched are recorded as [`UNMATCHED`]. The time is from the request entering the
//! layer to the response head being ready (a streamed body is not waited for); a request whose
//! future is dropped (client gone) is not recorded. A request with a valid W3C `traceparent`
//! header is recorded with its trace id (`trace_id`, schema version 2, issue 14).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::MatchedPath;
use http::header::CONTENT_LENGTH;
use perfstream_events::RequestEvent;
use tower::{Layer, Service};

use super::{elapsed_us, now_us};
use crate::Emitter;

/// The endpoint of requests no route matched.
pub const UNMATCHED: &str = "(unmatched)";

/// Gives a request's endpoint template from its method, URI and extensions.
pub type EndpointFn = Arc<dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync>;

struct Shared {
    emitter: Arc<Emitter>,
    service: String,
    instance: String,
    endpoint: Option<EndpointFn>,
}

/// Records each request through the wrapped service. Cheap to clone.
///
/// ```no_run
/// # fn f(emitter: std::sync::Arc<perfstream_emit::Emitter>) {
/// use axum::{Router, routing::get};
/// use perfstream_emit::instrument::RequestLayer;
/// let app: Router = Router::new()
///     .route("/campaigns/{id}", get(|| async { "ok" }))
///     .layer(RequestLayer::new(emitter, "campaign-api", "campaign-api-0"));
/// # }
/// ```
#[derive(Clone)]
pub struct RequestLayer {
    shared: Arc<Shared>,
}

impl RequestLayer {
    pub fn new(emitter: Arc<Emitter>, service: &str, instance: &str) -> RequestLayer {
        RequestLayer {
            shared: Arc::new(Shared {
                emitter,
                service: service.to_string(),
                instance: instance.to_string(),
                endpoint: None,
            }),
        }
    }

    /// Takes the endpoint template from `f` instead of axum's `MatchedPath` (for other tower
    /// routers); `None` records [`UNMATCHED`].
    pub fn endpoint_with(self, f: EndpointFn) -> RequestLayer {
        let s = &self.shared;
        RequestLayer {
            shared: Arc::new(Shared {
                emitter: s.emitter.clone(),
                service: s.service.clone(),
                instance: s.instance.clone(),
                endpoint: Some(f),
            }),
        }
    }
}

impl<S> Layer<S> for RequestLayer {
    type Service = RequestService<S>;

    fn layer(&self, inner: S) -> RequestService<S> {
        RequestService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`RequestLayer`] wraps around another.
#[derive(Clone)]
pub struct RequestService<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// What is known of a request before its response.
struct Pending {
    endpoint: String,
    method: String,
    request_bytes: Option<i64>,
    occurred_at_us: i64,
    trace_id: Option<String>,
    start: Instant,
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex trace id>-<16 hex span id>-<2 hex
/// flags>`), if the header is there and well-formed; an all-zero id is invalid.
pub fn traceparent_trace_id(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = v.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(span, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && (version != "00" || parts.next().is_none());
    ok.then(|| trace.to_string())
}

fn content_length(headers: &http::HeaderMap) -> Option<i64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse::<i64>()
        .ok()
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RequestService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let endpoint = match &self.shared.endpoint {
            Some(f) => f(&parts),
            None => parts
                .extensions
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_string()),
        };
        let pending = Pending {
            endpoint: endpoint.unwrap_or_else(|| UNMATCHED.to_string()),
            method: parts.method.as_str().to_string(),
            request_bytes: content_length(&parts.headers),
            occurred_at_us: now_us(),
            trace_id: traceparent_trace_id(&parts.headers),
            start: Instant::now(),
        };
        let inner = self.inner.call(http::Request::from_parts(parts, body));
        ResponseFuture {
            inner,
            pending: Some(pending),
            shared: self.shared.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of a [`RequestService`]; records the request when it completes.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
        shared: Arc<Shared>,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if let Some(p) = this.pending.take() {
            let (status_code, response_bytes) = match &out {
                Ok(r) => (i32::from(r.status().as_u16()), content_length(r.headers())),
                Err(_) => (500, None),
            };
            this.shared.emitter.record_request(RequestEvent {
                service: this.shared.service.clone(),
                instance: this.shared.instance.clone(),
                endpoint: p.endpoint,
                method: p.method,
                status_code,
                response_time_us: elapsed_us(p.start),
                request_bytes: p.request_bytes,
                response_bytes,
                occurred_at_us: p.occurred_at_us,
                trace_id: p.trace_id,
            });
        }
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(v: &str) -> Option<String> {
        let mut h = http::HeaderMap::new();
        h.insert("traceparent", v.parse().unwrap());
        traceparent_trace_id(&h)
    }

    #[test]
    fn traceparent_gives_the_trace_id_when_well_formed() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            trace(&format!("00-{id}-00f067aa0ba902b7-01")).as_deref(),
            Some(id)
        );
        // A later version may append fields.
        assert_eq!(
            trace(&format!("01-{id}-00f067aa0ba902b7-01-x")).as_deref(),
            Some(id)
        );
        for bad in [
            format!("00-{id}-00f067aa0ba902b7-01-x"),
            format!("ff-{id}-00f067aa0ba902b7-01"),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_string(),
            format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase()),
            format!("00-{id}-00f067aa0ba902b7"),
            format!("00-{id}x-00f067aa0ba902b7-01"),
            String::new(),
        ] {
            assert_eq!(trace(&bad), None, "{bad}");
        }
        assert_eq!(traceparent_trace_id(&http::HeaderMap::new()), None);
    }
}
