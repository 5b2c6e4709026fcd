//! The admin listener's service: `/metrics` (Prometheus text), `/status` (a
//! live page: overall state, one row per upstream server with its state and
//! why, listeners and proxies, charts of the last five minutes; its tables
//! are written by the server, so they read without JavaScript, and its
//! script refreshes them and draws the charts from `/status.json` every
//! second), `/healthz` (the process is up) and `/ready` (200 until a drain
//! begins, then 503).

mod page;

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;

use crate::body::Incoming;
use crate::metrics::Registry;

/// The admin service.
#[derive(Debug, Clone)]
pub struct Admin {
    registry: Registry,
}

impl Admin {
    /// Serves what `registry` holds. Inside a tokio runtime, also samples
    /// the registry every second for the status page's rates and charts
    /// (once per registry, however many admin services serve it), until the
    /// last clone of the registry outside the sampler is gone.
    pub fn new(registry: Registry) -> Admin {
        if tokio::runtime::Handle::try_current().is_ok() && registry.claim_sampling() {
            tokio::spawn(sample(registry.clone()));
        }
        Admin { registry }
    }

    fn answer(&self, path: &str) -> Response<Full<Bytes>> {
        match path {
            "/metrics" => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.registry.prometheus(),
            ),
            "/status" => respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                page::render(&self.registry.status()),
            ),
            "/status.json" => respond(
                StatusCode::OK,
                "application/json",
                self.registry.status_json(),
            ),
            "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
            "/ready" if self.registry.is_ready() => {
                respond(StatusCode::OK, "text/plain", "ready\n".into())
            }
            "/ready" => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "draining\n".into(),
            ),
            _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        }
    }
}

/// Samples `registry` every second while anyone else holds it.
async fn sample(registry: Registry) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if registry.is_orphaned() {
            return;
        }
        registry.sample();
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

impl tower_service::Service<Request<Incoming>> for Admin {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        ready(Ok(self.answer(req.uri().path())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two admin services on one registry (an admin listener bound to two
    // addresses) share one sampler: a sample a second, not two.
    #[tokio::test]
    async fn one_sampler_per_registry() {
        let registry = Registry::new();
        let a = Admin::new(registry.clone());
        let b = Admin::new(registry.clone());
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        // Ticks at 0 s and 1 s.
        assert_eq!(registry.samples(), 2);
        drop((a, b));
    }
}
