//! The `hookgate` command: `run`, `check`, `sign`. Argument parsing and printing only; the
//! work is in the library.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use http::{HeaderMap, HeaderName, HeaderValue};

use hookgate::config::{self, Loaded};
use hookgate::scheme::{TimestampSource, TimestampUnit};

#[derive(Parser)]
#[command(
    name = "hookgate",
    version,
    about = "Verify webhook signatures; forward only verified requests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve: listen, verify and forward.
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
    },
    /// Validate the configuration: print every error with its location, exit non-zero on any.
    Check {
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
        /// Also print each route's verification scheme with its preset expanded.
        #[arg(long)]
        expand: bool,
    },
    /// Print the headers a real sender would attach to a body for a route (for testing with
    /// curl: `curl -H @headers.txt --data-binary @body.json URL`).
    Sign {
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
        /// Route name, as in the configuration.
        #[arg(long)]
        route: String,
        /// Body file, or `-` for standard input.
        #[arg(long, default_value = "-")]
        body: String,
        /// Extra `NAME: VALUE` headers that are part of the signed message.
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOOKGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal; log collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::Check { config, expand } => check(&config, expand),
        Command::Sign {
            config,
            route,
            body,
            headers,
        } => sign(&config, &route, &body, &headers),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hookgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> anyhow::Result<Loaded> {
    let loaded = config::load(path)
        .map_err(|e| anyhow::anyhow!("{}{e}", path.display().to_string() + ": "))?;
    for w in &loaded.warnings {
        tracing::warn!("{}: {w}", path.display());
    }
    Ok(loaded)
}

fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let loaded = load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let metrics = Arc::new(hookgate::metrics::Metrics::new());
        let running = hookgate::server::start(loaded.gateway, metrics, SystemTime::now).await?;
        tracing::info!("hookgate ready");
        wait_for_signal().await;
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn check(path: &Path, expand: bool) -> anyhow::Result<ExitCode> {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(errors) => {
            eprint!("{}: {errors}", path.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &loaded.warnings {
        eprintln!("{}: warning: {w}", path.display());
    }
    let g = &loaded.gateway;
    println!(
        "{}: ok: {} listener(s), {} route(s), admin on {}",
        path.display(),
        g.listeners.len(),
        g.routes.routes().len(),
        g.admin
    );
    if expand {
        for route in g.routes.routes() {
            println!(
                "\nroute {} ({} -> http://{}{})",
                route.name, route.path, route.upstream.authority, route.upstream.base_path
            );
            if let Some(nets) = &route.allow_ips {
                let nets: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
                println!("  allow_ips: [{}]", nets.join(", "));
            }
            match &route.scheme {
                Some(s) => print!("{}", s.describe("  ")),
                None => println!("  verify: none (IP allowlist only)"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sign(
    path: &Path,
    route_name: &str,
    body_arg: &str,
    extra: &[String],
) -> anyhow::Result<ExitCode> {
    let loaded = load(path)?;
    let Some(route) = loaded.gateway.routes.get(route_name) else {
        let names: Vec<&str> = loaded
            .gateway
            .routes
            .routes()
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        bail!(
            "no route named `{route_name}`; routes: {}",
            names.join(", ")
        );
    };
    let Some(scheme) = &route.scheme else {
        bail!("route `{route_name}` verifies no signature (IP allowlist only): nothing to sign");
    };
    let mut body = Vec::new();
    if body_arg == "-" {
        std::io::stdin()
            .read_to_end(&mut body)
            .context("reading body from stdin")?;
    } else {
        body = std::fs::read(body_arg).with_context(|| format!("reading body file {body_arg}"))?;
    }

    let mut headers = HeaderMap::new();
    for h in extra {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("`{h}` is not NAME: VALUE"))?;
        headers.insert(
            HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("bad header name in `{h}`"))?,
            HeaderValue::from_str(value.trim())
                .with_context(|| format!("bad header value in `{h}`"))?,
        );
    }
    // A timestamp header is filled in with "now", as the sender would.
    let mut printed: Vec<HeaderName> = Vec::new();
    if let Some(ts) = &scheme.timestamp {
        match &ts.source {
            TimestampSource::Header(name) if !headers.contains_key(name) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
                let value = match ts.unit {
                    TimestampUnit::Seconds => now.as_secs().to_string(),
                    TimestampUnit::Milliseconds => now.as_millis().to_string(),
                    TimestampUnit::Rfc3339 => {
                        humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
                    }
                };
                headers.insert(name.clone(), HeaderValue::from_str(&value)?);
                printed.push(name.clone());
            }
            TimestampSource::JsonField(pointer) => {
                eprintln!(
                    "note: the timestamp is read from the body at {pointer}; it must be recent"
                );
            }
            _ => {}
        }
    }
    let signature = scheme
        .sign(&headers, &body)
        .map_err(|e| anyhow::anyhow!("{e}: pass it with --header 'NAME: VALUE'"))?;
    for (name, value) in &headers {
        if printed.contains(name)
            || extra.iter().any(|h| {
                h.split(':')
                    .next()
                    .map(str::trim)
                    .is_some_and(|n| n.eq_ignore_ascii_case(name.as_str()))
            })
        {
            println!("{}: {}", name, value.to_str().unwrap_or_default());
        }
    }
    println!("{}: {}", scheme.signature.header, signature);
    Ok(ExitCode::SUCCESS)
}
