//! End-to-end tests: the real gateway on 127.0.0.1:0 in front of a real recording upstream.
//! Every refusal test asserts that the upstream received nothing and the right metric moved.

mod support;

mod admin;
mod cli;
mod crash;
mod deploy_kit;
mod docs;
mod drain;
mod engine;
mod fanout;
mod fuzz_corpus;
mod handshakes;
mod hostile;
mod https_upstream;
mod layering;
mod network_keys;
mod pg_server;
mod providers;
mod proxy_protocol;
mod queue_admin;
mod queue_model;
mod queue_store;
mod queued;
mod queued_backlog;
mod queued_postgres;
mod refusals;
mod reload;
mod replay;
mod rollout;
mod seed_senders;
mod sign;
mod tls;
mod upstream_pool;
mod watch;
mod workers;
