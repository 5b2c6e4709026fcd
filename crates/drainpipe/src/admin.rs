//! The admin listener's service: `/metrics` (Prometheus text), `/status` (a
//! live page: connections by state, requests per connection, upstream reuse;
//! it refreshes itself from `/status.json` every second), `/healthz` (the
//! process is up) and `/ready` (200 until a drain begins, then 503).

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
    /// Serves what `registry` holds.
    pub fn new(registry: Registry) -> Admin {
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
                STATUS_PAGE.to_string(),
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

/// The live status page: static HTML whose script polls `/status.json`.
const STATUS_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>drainpipe status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
  h1 { font-size: 1.4em; margin: 0 0 .2em; }
  .muted { color: #777; }
  table { border-collapse: collapse; margin: 1em 0 2em; }
  th, td { border: 1px solid #ccc; padding: .35em .8em; text-align: right; }
  th:first-child, td:first-child { text-align: left; }
  th { background: #f3f3f3; }
  .ready { color: #1a7f37; font-weight: bold; }
  .draining { color: #b35900; font-weight: bold; }
</style>
</head>
<body>
<h1>drainpipe</h1>
<p>State: <span id="ready">…</span> <span class="muted">· updated <span id="updated">never</span></span></p>
<h2>Connections by state</h2>
<table id="listeners">
  <thead><tr><th>listener</th><th>open</th><th>reading</th><th>writing</th><th>idle</th><th>parked</th><th>lingering</th><th>accepted</th><th>requests</th><th>requests / connection</th></tr></thead>
  <tbody></tbody>
</table>
<h2>Closed connections by reason</h2>
<table id="closed"><thead></thead><tbody></tbody></table>
<h2>Upstreams</h2>
<table id="proxies">
  <thead><tr><th>proxy</th><th>connections opened</th><th>requests on reused connections</th><th>reuse ratio</th><th>retries</th><th>502/504</th></tr></thead>
  <tbody></tbody>
</table>
<script>
function cell(row, text, id) {
  const td = document.createElement('td');
  td.textContent = text;
  if (id) td.id = id;
  row.appendChild(td);
}
function render(s) {
  const ready = document.getElementById('ready');
  ready.textContent = s.ready ? 'ready' : 'draining';
  ready.className = s.ready ? 'ready' : 'draining';
  const lb = document.querySelector('#listeners tbody');
  lb.innerHTML = '';
  for (const l of s.listeners) {
    const tr = document.createElement('tr');
    const k = l.name;
    cell(tr, k);
    cell(tr, l.open, k + '-open');
    for (const st of ['reading', 'writing', 'idle', 'parked', 'lingering']) cell(tr, l.states[st], k + '-' + st);
    cell(tr, l.accepted, k + '-accepted');
    cell(tr, l.requests, k + '-requests');
    cell(tr, l.accepted ? (l.requests / l.accepted).toFixed(2) : '0.00', k + '-per-connection');
    lb.appendChild(tr);
  }
  // Closed connections: one row per reason, one column per listener.
  const ch = document.querySelector('#closed thead');
  const cb = document.querySelector('#closed tbody');
  ch.innerHTML = ''; cb.innerHTML = '';
  const hr = document.createElement('tr');
  const th = document.createElement('th'); th.textContent = 'reason'; hr.appendChild(th);
  for (const l of s.listeners) {
    const h = document.createElement('th'); h.textContent = l.name; hr.appendChild(h);
  }
  ch.appendChild(hr);
  const reasons = s.listeners.length ? Object.keys(s.listeners[0].closed_by) : [];
  for (const r of reasons) {
    const tr = document.createElement('tr');
    cell(tr, r);
    for (const l of s.listeners) cell(tr, l.closed_by[r], l.name + '-closed-' + r);
    cb.appendChild(tr);
  }
  const pb = document.querySelector('#proxies tbody');
  pb.innerHTML = '';
  for (const p of s.proxies) {
    const tr = document.createElement('tr');
    cell(tr, p.name);
    cell(tr, p.opened, p.name + '-opened');
    cell(tr, p.reused, p.name + '-reused');
    cell(tr, (p.reuse_ratio * 100).toFixed(1) + ' %', p.name + '-reuse-ratio');
    cell(tr, p.retries, p.name + '-retries');
    cell(tr, p.gateway_errors, p.name + '-gateway-errors');
    pb.appendChild(tr);
  }
  document.getElementById('updated').textContent = new Date().toLocaleTimeString();
}
async function tick() {
  try {
    const r = await fetch('/status.json', {cache: 'no-store'});
    render(await r.json());
  } catch (e) {
    document.getElementById('updated').textContent = 'failed: ' + e;
  }
}
tick();
setInterval(tick, 1000);
</script>
</body>
</html>
"#;
