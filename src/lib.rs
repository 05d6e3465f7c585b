//! hookgate: a reverse proxy that verifies webhook signatures and forwards only verified
//! requests to the app behind it.
//!
//! # The request pipeline
//!
//! ```text
//! accept         server.rs     TCP or TLS, HTTP/1.1 or HTTP/2, header timeout, conn limits
//!  -> admit      gateway.rs    host.rs: one valid Host, agreeing with the target   400
//!                              body.rs: no transfer coding but chunked             400
//!                              model/routes.rs: method + normalized path -> &Route 400/404/405
//!                              client_ip.rs, route.allow_ips, before any body byte 403
//!  -> handshake  handshake.rs  an unsigned challenge (Meta, X CRC, Dropbox) answered 200 / 403
//!  -> read       body.rs       bounded by size, time and a global budget 413 / 408 / 503
//!  -> verify     scheme/       signature + timestamp over the raw bytes  401
//!                remote_keys/  a key the request names, fetched from a pinned host 503
//!                handshake.rs  a signed challenge (Slack, Zoom, Discord) answered  200
//!  -> deliver    sync:   replay.rs claims the event id (duplicate 200, in flight 409,
//!                        store down 503); forward.rs, upstream.rs pool       502 / 504
//!                queued: delivery/, store durably then answer 2xx         503
//!                        (delivery/worker.rs forwards later with retries)
//!  -> record     gateway/context.rs  one access-log line and the metrics, answered or dropped
//! ```
//!
//! `gateway.rs` is that pipeline, one function per phase; how a request ended is an
//! [`refusal::Outcome`], and every refusal a [`refusal::Refusal`], which alone knows its
//! status, metric label and reason.
//!
//! # Layers
//!
//! `scheme ← model ← runtime ← server/gateway ← reload, config compile ← main`: each
//! module uses only what is to its left (checked by `tests/e2e/layering.rs`, with no import
//! cycle anywhere). The scheme engine is pure; the model is the compiled configuration;
//! the runtime holds state (clock, configuration in force, stores, budgets); the server and
//! the pipeline serve; the reload drives the server; `config/` compiles the file into the
//! model and `main.rs` wires it all.
//!
//! # Layout
//!
//! - `model/`: the compiled configuration (gateway, listeners, limits, routes and the route
//!   table, delivery and retry policy, queue store, replay policy and store), plain values
//!   that import nothing of the runtime.
//! - `config/`: `gateway.yaml`'s schema (`file.rs`), its compilation into the model with
//!   located errors (`compile/`, one file per section, reporting the files it read),
//!   the defaults it applies (`defaults.rs`), secrets (`secret.rs`), which routes shadow
//!   which (`overlap.rs`), the built-in senders as one table (`presets.rs`).
//! - `scheme/`: the generic signature scheme engine, and signing as a sender (`sign.rs`);
//!   keys a scheme fetches (`fetched.rs`: where the request names the key's URL, which hosts
//!   it may name (`pin.rs`), the signing certificate read once (`certificate.rs`)); AWS SNS's
//!   string to sign (`sns.rs`).
//! - `runtime.rs`: the clock, the configuration in force (`InForce`, in its `ConfigSlot`,
//!   loaded once per request and swapped whole), state shared by connections, cut-offs.
//! - `host.rs`, `client_ip.rs`, `handshake.rs`, `body.rs`, `replay.rs`, `forward.rs`: one
//!   pipeline step each; `upstream.rs`: the keep-alive connections to each upstream.
//! - `gateway.rs`: the pipeline; `gateway/context.rs` the request's context and its one
//!   record (access-log line and metrics). `refusal.rs`: every refusal and
//!   every outcome. `request_id.rs`: each request's `X-Request-Id`.
//! - `server.rs`, `tls.rs`, `proxy_protocol.rs`: listeners, TLS (also to upstreams), the
//!   PROXY protocol, HTTP versions, drain and shutdown.
//! - `remote_keys/`: keys fetched over the network (AWS SNS, PayPal, JWKS issuers, Plaid's
//!   and eBay's key APIs): how long one is kept (`freshness.rs`), one bounded fetch over
//!   verified TLS (`fetch.rs`), a key API's OAuth token (`token.rs`), the process's cache
//!   over them (`cache.rs`: one fetch per URL in flight, 503 with `Retry-After` when none can
//!   be had), documents parsed once (`parsed.rs`); `key_fetch:` is `model/key_fetch.rs`.
//! - `reload.rs`: what a reload keeps (a pure function of two configurations) and the
//!   reload itself; `watch.rs`: `--watch`, on exactly the files the compiler read.
//! - `delivery/`: queued delivery: the store's state machine (`store.rs`, shared types in
//!   `state.rs`, SQL in `sql.rs`) and its two engines (embedded SQLite, PostgreSQL for
//!   replicas), the delivery worker (leases bounded by each route's slots, attempts counted
//!   when made), its pacing while an app is down (`pacing.rs`, pure decisions) and its rate limit
//!   (`rate.rs`, a token bucket), the retry
//!   policy, the queue API on the admin listener and its client, the
//!   tables `hookgate queue` prints.
//! - `admin.rs`, `metrics.rs`: `/metrics`, `/healthz`, `/readyz`, `/keys`, `/queue/`; every metric.
//! - `logbuf.rs`: log lines buffered off the request path, written by a background thread;
//!   `log_filter.rs`: `HOOKGATE_LOG`, checked.
//! - `sign.rs`: what `hookgate sign` sends, as a sender would (the signing itself is
//!   `scheme/sign.rs`); `sign/handshake.rs`: the sender's side of each handshake.
//! - `main.rs`: the CLI (`run`, `check`, `sign`, `keygen`, `presets`, `healthcheck`,
//!   `queue`), no logic of its own.

pub mod admin;
pub mod body;
pub mod client_ip;
pub mod config;
pub mod delivery;
pub mod explain;
pub mod forward;
pub mod gateway;
pub mod handshake;
pub mod host;
pub mod log_filter;
pub mod logbuf;
pub mod metrics;
pub mod model;
pub mod proxy_protocol;
pub mod refusal;
pub mod reload;
pub mod remote_keys;
pub mod replay;
pub mod request_id;
pub mod runtime;
pub mod scheme;
pub mod server;
pub mod sign;
pub mod tls;
pub mod upstream;
pub mod watch;
