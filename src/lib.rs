//! hookgate: a reverse proxy that verifies webhook signatures and forwards only verified
//! requests to the app behind it.
//!
//! # The request pipeline
//!
//! ```text
//! accept         server.rs     TCP or TLS, HTTP/1.1 or HTTP/2, header timeout, conn limits
//!  -> host       host.rs       one valid Host, agreeing with the target  400
//!  -> framing    body.rs       no transfer coding but chunked            400
//!  -> route      routes.rs     method + normalized path -> &Route        400 / 404 / 405
//!  -> client IP  client_ip.rs  peer, trusted proxies, X-Forwarded-For
//!  -> allowlist  route.allow_ips, before any body byte is read           403
//!  -> body       body.rs       bounded by size, time and a global budget 413 / 408 / 503
//!  -> verify     scheme/       signature + timestamp over the raw bytes  401
//!  -> replay     replay.rs     claim the event id: duplicate 200, in flight 409, store 503
//!  -> deliver    sync:   forward.rs, hop-by-hop hygiene; upstream.rs pool  502 / 504
//!                queued: delivery/, store durably then answer 2xx         503
//!                        (delivery/worker.rs forwards later with retries)
//!  -> record     gateway.rs    one log line; metrics.rs counters
//! ```
//!
//! `gateway.rs` is that pipeline as one function; every refusal is a [`refusal::Refusal`],
//! which alone knows its status, metric label and reason.
//!
//! # Layout
//!
//! - `config/`: `gateway.yaml` schema (`file.rs`), compilation with located errors
//!   (`compile.rs`), secret resolution (`secret.rs`), which routes shadow which
//!   (`overlap.rs`), the runtime model (`mod.rs`).
//! - `scheme/`: the generic signature scheme engine and its presets.
//! - `host.rs`, `routes.rs`, `client_ip.rs`, `body.rs`, `replay.rs`, `forward.rs`: one
//!   pipeline step each;
//!   `upstream.rs`: the keep-alive connections to each upstream.
//! - `gateway.rs`: the pipeline and its access-log line. `refusal.rs`: every refusal.
//!   `request_id.rs`: each request's `X-Request-Id`.
//! - `reload.rs`: the configuration in force (`Live`), loaded once per request and swapped
//!   whole on reload.
//! - `server.rs`, `tls.rs`, `proxy_protocol.rs`: listeners, TLS (also to upstreams), the
//!   PROXY protocol, HTTP versions, drain and shutdown.
//! - `delivery/`: queued delivery: the store's state machine (`store.rs`) and its two
//!   engines (embedded SQLite, PostgreSQL for replicas), the delivery worker (leases bounded
//!   by each route's slots, attempts counted when made), the retry policy, the queue API on
//!   the admin listener and the tables `hookgate queue` prints.
//! - `admin.rs`, `metrics.rs`: `/metrics`, `/healthz`, `/readyz`, `/queue/`; every metric.
//! - `logbuf.rs`: log lines buffered off the request path, written by a background thread;
//!   `log_filter.rs`: `HOOKGATE_LOG`, checked.
//! - `main.rs`: the CLI (`run`, `check`, `sign`, `keygen`, `presets`, `healthcheck`,
//!   `queue`), no logic of its own.

pub mod admin;
pub mod body;
pub mod client_ip;
pub mod config;
pub mod delivery;
pub mod forward;
pub mod gateway;
pub mod host;
pub mod log_filter;
pub mod logbuf;
pub mod metrics;
pub mod model;
pub mod proxy_protocol;
pub mod refusal;
pub mod reload;
pub mod replay;
pub mod request_id;
pub mod runtime;
pub mod scheme;
pub mod server;
pub mod sign;
pub mod tls;
pub mod upstream;
pub mod watch;
