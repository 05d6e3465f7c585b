//! The `hookgate` command: `run`, `check`, `sign`, `keygen`, `presets`, `healthcheck`, `queue`.
//! Argument parsing and printing only; the work is in the library.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use clap::{Parser, Subcommand};

use hookgate::config::{self, Loaded};
use hookgate::delivery::api;
use hookgate::model::{LogFormat, LogSettings};
use hookgate::scheme::SigningKey;

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
        /// Also reload when the configuration file, or a secret, key or certificate file it
        /// names, changes (SIGHUP always reloads).
        #[arg(long)]
        watch: bool,
    },
    /// Validate the configuration: print every error with its location, exit non-zero on any.
    Check {
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
        /// Also print each route's verification scheme with its preset expanded.
        #[arg(long)]
        expand: bool,
        /// Fail on warnings too (for CI: a partly shadowed route, a literal secret, a
        /// certificate close to expiry, an admin listener off loopback, ...).
        #[arg(long)]
        strict: bool,
    },
    /// Print the headers a real sender would attach to a body for a route (for testing with
    /// curl: `curl -H @headers.txt --data-binary @body.json URL`).
    Sign {
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
        #[command(flatten)]
        args: SignArgs,
    },
    /// List the built-in presets: each one's expanded scheme, how strongly it checks its
    /// sender, its handshake, replay key and evidence.
    Presets {
        /// Only the presets whose name or signature header contains this.
        query: Option<String>,
        /// One JSON array, for tools.
        #[arg(long)]
        json: bool,
    },
    /// Why was this request refused? Each step the gateway takes with a captured request
    /// (a raw HTTP file): the route, the allowlist, the handshake, where the signature came
    /// from, the signed message part by part, the timestamp and its skew, each key by
    /// index, the replay key, and the verdict with its refusal label.
    Explain {
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
        /// The raw HTTP request: request line, headers, an empty line, the body.
        request: PathBuf,
        /// The route to check it against (default: the one its method and path match).
        #[arg(long)]
        route: Option<String>,
        /// The client's address, to check the route's allowlist.
        #[arg(long)]
        client: Option<std::net::IpAddr>,
        /// Check at this Unix time instead of now (for a request captured earlier).
        #[arg(long)]
        at: Option<u64>,
        /// For a sender whose key is fetched (aws-sns, paypal, a JWKS): the document its key
        /// URL served (a certificate, a JWKS, a key API's answer), read from this file.
        /// `explain` fetches nothing.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Make a key pair for an asymmetric scheme (Ed25519, ECDSA P-256): the private key as a
    /// PEM file (for `sign --private-key`, or to play the sender in tests), the public key
    /// printed as the route's `public_key:` takes it.
    Keygen {
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
        /// The route the key pair is for (read without compiling the configuration, so the
        /// route may not have a key yet).
        #[arg(long, required_unless_present = "preset", conflicts_with = "preset")]
        route: Option<String>,
        /// A preset instead of a route: discord, sendgrid, standard-webhooks-ed25519.
        #[arg(long)]
        preset: Option<String>,
        /// Where to write the private key (PKCS#8 PEM, mode 0600; an existing file is never
        /// overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Exit 0 if the running gateway's admin listener answers `/readyz` (with `--live`:
    /// `/healthz`) with 200, else 1: for container health checks (the image has no shell or
    /// curl). Reads only `admin.addr` from the configuration; an unspecified address
    /// (0.0.0.0, ::) is reached on loopback.
    Healthcheck {
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
        /// The admin listener's HOST:PORT instead of the configuration's `admin.addr`.
        #[arg(long)]
        admin: Option<String>,
        /// Liveness (`/healthz`: the process answers) instead of readiness (`/readyz`:
        /// listeners bound, not draining).
        #[arg(long)]
        live: bool,
        /// How long to wait for the answer.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Inspect and operate the delivery queue through the admin listener.
    Queue {
        /// Configuration file: the admin address and `admin.token_file` are read from it
        /// unless given below.
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
        /// The admin listener's `host:port` (default: `admin.addr` from the configuration).
        #[arg(long)]
        admin: Option<String>,
        /// File with the admin bearer token (default: `admin.token_file`).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Print the admin API's JSON as it is (the default when the output is not a
        /// terminal) instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Try a destination filter on the events a queued route has stored (through the
    /// admin listener).
    Filter {
        /// Configuration file: the admin address and `admin.token_file` are read from it
        /// unless given below.
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
        #[arg(long)]
        admin: Option<String>,
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Print the admin API's JSON as it is.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: FilterAction,
    },
}

#[derive(Subcommand)]
enum FilterAction {
    /// How many of the route's stored events a filter takes, and which: the one given
    /// (`--filter '{ json: /type, prefix: invoice. }'`), or a destination's configured one.
    Test {
        #[arg(long)]
        route: String,
        /// The filter, in the YAML form `destinations:` takes.
        #[arg(long, conflicts_with = "destination")]
        filter: Option<String>,
        /// The filter this destination has in the configuration in force.
        #[arg(long)]
        destination: Option<String>,
        /// Events received since: a duration ago (default 24h) or an RFC 3339 time.
        #[arg(long, default_value = "24h")]
        since: String,
        /// The most events to look at (1 to 10000).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum QueueAction {
    /// Each queued route and its destinations: events by state, the oldest one's age,
    /// leases held, and whether delivery is held back because the app looks down (since
    /// when, next probe), broken off by its breaker, or paused.
    Routes {
        /// Only this route.
        route: Option<String>,
    },
    /// List deliveries (no bodies), by event id: one per event and destination.
    List {
        #[arg(long)]
        route: Option<String>,
        /// Only the deliveries to this destination.
        #[arg(long)]
        destination: Option<String>,
        /// queued, delivering, retrying, delivered, dead or filtered.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only deliveries after this one (the previous page's `next_after`).
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one event and its deliveries; with `--body`, the stored request (headers and
    /// body) too.
    Show {
        id: String,
        #[arg(long)]
        body: bool,
    },
    /// Make an event's dead (or retrying) deliveries due now, starting their retries over.
    Retry {
        id: String,
        /// Only its delivery to this destination.
        #[arg(long)]
        destination: Option<String>,
    },
    /// Retry every dead delivery of a route.
    RetryDead {
        #[arg(long)]
        route: String,
        /// Only those to this destination.
        #[arg(long)]
        destination: Option<String>,
    },
    /// Pause a route's delivery (or one destination's): its events are still taken and
    /// stored (the senders get their 2xx), none is delivered until `resume`; the pause is
    /// stored, so it survives restarts and holds on every replica.
    Pause {
        #[arg(long)]
        route: String,
        #[arg(long)]
        destination: Option<String>,
    },
    /// Resume a paused route (or destination): what waited is delivered at its
    /// concurrency, its age not counting the pause.
    Resume {
        #[arg(long)]
        route: String,
        #[arg(long)]
        destination: Option<String>,
    },
    /// Delete an event's deliveries (not while one is being delivered).
    Drop {
        id: String,
        /// Only its delivery to this destination.
        #[arg(long)]
        destination: Option<String>,
    },
    /// Send again what a route's destinations got: counts what matches (a dry run), and
    /// with `--yes` starts a job that replays it at the destination's pace, each delivery
    /// with its original `Idempotency-Key` and `Hookgate-Replay`.
    Replay {
        #[arg(long)]
        route: String,
        /// Only the deliveries to this destination (default: every destination's).
        #[arg(long)]
        destination: Option<String>,
        /// Send them to this destination of the route instead (e.g. staging).
        #[arg(long)]
        to: Option<String>,
        /// Received since: a duration ago (1h) or an RFC 3339 time.
        #[arg(long)]
        since: String,
        /// Received before (default: now).
        #[arg(long)]
        until: Option<String>,
        /// States to replay, comma-separated (default: delivered,dead).
        #[arg(long)]
        state: Option<String>,
        /// Only events whose stored request matches this filter, as in `destinations:`
        /// (e.g. '{ json: /type, prefix: invoice. }').
        #[arg(long)]
        filter: Option<String>,
        /// Start the job (without it: only count what it would replay).
        #[arg(long)]
        yes: bool,
    },
    /// The latest replay jobs and their progress, or one.
    Replays { id: Option<String> },
    /// Stop a running replay job (what it sent stays sent).
    CancelReplay { id: String },
}

#[derive(clap::Args)]
struct SignArgs {
    /// Route name, as in the configuration.
    #[arg(long)]
    route: String,
    /// Body file, or `-` for standard input.
    #[arg(long, default_value = "-")]
    body: String,
    /// Extra `NAME: VALUE` headers that are part of the signed message (e.g. webhook-id).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Request path and query the sender posts to, for schemes that sign the URL (twilio,
    /// square); default: the route's exact path.
    #[arg(long)]
    path: Option<String>,
    /// Private key file for Ed25519 and ECDSA schemes: PEM (`hookgate keygen`, openssl), or
    /// 32 bytes as hex or base64; for RS*, PS*, ES* and EdDSA JWTs, PEM (PKCS#8).
    #[arg(long)]
    private_key: Option<PathBuf>,
    /// The request method, for schemes that sign it.
    #[arg(long, default_value = "POST")]
    method: String,
    /// Write the body to send here (needed when the signature goes in a form or JSON field
    /// of the body; written in every case when given).
    #[arg(long, value_name = "FILE")]
    out_body: Option<PathBuf>,
    /// Play the route's handshake instead: print it as a curl command line, then the answer
    /// the gateway gives as `# expect ...` comments.
    #[arg(long, conflicts_with_all = ["body", "out_body", "method"])]
    handshake: bool,
    /// With --handshake: the gateway's base URL (default: the route's public_url, else its
    /// first listener).
    #[arg(long, requires = "handshake", value_name = "URL")]
    url: Option<String>,
}

fn main() -> ExitCode {
    let env_level = match env_log_level() {
        Ok(level) => level,
        Err(e) => {
            eprintln!("hookgate: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse();
    // `run` logs as its configuration's `log:` says; the other commands as text.
    let (settings, loaded) = match &cli.command {
        Command::Run { config: path, .. } => match config::load(path) {
            Ok(loaded) => (loaded.gateway.log.clone(), Some(loaded)),
            Err(problems) => {
                print_problems(path, &problems);
                return ExitCode::FAILURE;
            }
        },
        _ => (LogSettings::default(), None),
    };
    let logging = Logging::init(&settings, env_level);
    // A panic's message goes straight to stderr: write the log lines before it first.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        hookgate::logbuf::flush_if_free();
        default_hook(info);
    }));
    let result = dispatch(cli.command, loaded, &logging);
    hookgate::logbuf::flush();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hookgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command (`run` with its configuration already loaded).
fn dispatch(
    command: Command,
    loaded: Option<config::Loaded>,
    logging: &Logging,
) -> anyhow::Result<ExitCode> {
    match (command, loaded) {
        (Command::Run { config, watch }, Some(loaded)) => run(&config, watch, loaded, logging),
        (
            Command::Check {
                config,
                expand,
                strict,
            },
            _,
        ) => check(&config, expand, strict),
        (Command::Sign { config, args }, _) => sign(&config, &args),
        (Command::Presets { query, json }, _) => presets(query.as_deref(), json),
        (
            Command::Explain {
                config,
                request,
                route,
                client,
                at,
                key_file,
            },
            _,
        ) => explain(
            &config,
            &request,
            route.as_deref(),
            client,
            at,
            key_file.as_deref(),
        ),
        (
            Command::Keygen {
                config,
                route,
                preset,
                out,
            },
            _,
        ) => keygen(&config, route.as_deref(), preset.as_deref(), &out),
        (
            Command::Healthcheck {
                config,
                admin,
                live,
                timeout,
            },
            _,
        ) => healthcheck(&config, admin, live, timeout),
        (
            Command::Queue {
                config,
                admin,
                token_file,
                json,
                action,
            },
            _,
        ) => queue(&config, admin, token_file, json, api::Call::from(action)),
        (
            Command::Filter {
                config,
                admin,
                token_file,
                json,
                action,
            },
            _,
        ) => queue(&config, admin, token_file, json, api::Call::from(action)),
        (Command::Run { .. }, None) => unreachable!("run's configuration is loaded above"),
    }
}

/// `HOOKGATE_LOG`, which overrides `log.level`; a value that names no level is an error, not
/// silence.
fn env_log_level() -> Result<Option<String>, String> {
    match std::env::var("HOOKGATE_LOG") {
        Err(_) => Ok(None),
        Ok(value) => hookgate::log_filter::check(&value)
            .map(|f| Some(f.to_owned()))
            .map_err(|e| format!("HOOKGATE_LOG={value:?}: {e}")),
    }
}

/// The log subscriber: lines buffered off the request path (`logbuf`), as text or JSON, with
/// a level filter a reload can change.
struct Logging {
    filter: tracing_subscriber::reload::Handle<
        tracing_subscriber::EnvFilter,
        tracing_subscriber::Registry,
    >,
    /// `HOOKGATE_LOG` was set: it wins over `log.level`, on reload too.
    env_override: bool,
}

impl Logging {
    fn init(settings: &LogSettings, env_level: Option<String>) -> Logging {
        use tracing_subscriber::prelude::*;
        let env_override = env_level.is_some();
        let level = env_level.unwrap_or_else(|| settings.level.clone());
        let (filter, handle) =
            tracing_subscriber::reload::Layer::new(tracing_subscriber::EnvFilter::new(level));
        let lines = tracing_subscriber::fmt::layer()
            // Buffered off the request path; flushed before the process exits.
            .with_writer(hookgate::logbuf::BufferedStderr);
        let registry = tracing_subscriber::registry().with(filter);
        match settings.format {
            // Colour only for a person at a terminal; log collectors get plain text.
            LogFormat::Text => registry
                .with(lines.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())))
                .init(),
            LogFormat::Json => registry
                .with(
                    lines
                        .json()
                        .flatten_event(true)
                        .with_current_span(false)
                        .with_span_list(false),
                )
                .init(),
        }
        Logging {
            filter: handle,
            env_override,
        }
    }

    /// A reload's `log.level`, unless `HOOKGATE_LOG` overrides it.
    fn set_level(&self, level: &str) {
        if self.env_override {
            return;
        }
        if let Err(e) = self
            .filter
            .reload(tracing_subscriber::EnvFilter::new(level))
        {
            tracing::warn!(error = %e, "log level not changed");
        }
    }
}

fn run(path: &Path, watch: bool, loaded: Loaded, logging: &Logging) -> anyhow::Result<ExitCode> {
    for w in &loaded.warnings {
        tracing::warn!("{}: {w}", path.display());
    }
    // Before the runtime's threads start allocating.
    hookgate::body::keep_freed_memory_nearby();
    // One worker: a current-thread runtime (no work-stealing, no cross-thread wakeups).
    // Per-core workers run their own runtimes on their own threads; this one keeps only the
    // admin listener and signal handling.
    let single = loaded.gateway.workers == 1
        || loaded.gateway.runtime == hookgate::model::RuntimeModel::PerCore;
    let runtime = if single {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(loaded.gateway.workers)
            .enable_all()
            .build()
    }
    .context("starting the async runtime")?;
    let stopped = runtime.block_on(async {
        let metrics = Arc::new(hookgate::metrics::Metrics::new());
        metrics.config_loaded(&loaded.sha256);
        let running = hookgate::server::start(loaded.gateway, metrics, SystemTime::now).await?;
        tracing::info!("hookgate ready");
        // SIGHUP reloads (as `systemctl reload` and nginx operators send it), and so does a
        // changed file with --watch, until a SIGTERM/SIGINT.
        let (reload_tx, mut reloads) = tokio::sync::mpsc::channel(1);
        forward_hangups(reload_tx.clone());
        if watch {
            tokio::spawn(hookgate::watch::watch(path.to_owned(), reload_tx));
        }
        loop {
            tokio::select! {
                _ = wait_for_signal() => break,
                Some(()) = reloads.recv() => {
                    tracing::info!(config = %path.display(), "reloading");
                    // A reload may take a while to read its files; a SIGTERM meanwhile
                    // abandons it (nothing is swapped until the files are read) and drains.
                    let reload = hookgate::reload::reload_file(&running, path);
                    tokio::select! {
                        log = reload => if let Some(log) = log {
                            logging.set_level(&log.level);
                        },
                        _ = wait_for_signal() => {
                            tracing::warn!("reload abandoned: stopping");
                            break;
                        }
                    }
                }
            }
        }
        // A second SIGTERM/SIGINT skips the rest of the drain delay.
        anyhow::Ok(running.drain(wait_for_signal()).await)
    })?;
    // Shutting the runtime down drops whatever shutdown_grace cut off (each logs itself).
    // A blocking thread still stuck reading a file (an abandoned reload) is not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    // Requests answered since the signal, and those `shutdown_grace` cut off.
    tracing::info!(
        completed = stopped.completed(),
        cut_off = stopped.cut_off(),
        "stopped; requests since the signal:"
    );
    Ok(ExitCode::SUCCESS)
}

/// Sends a message for each SIGHUP (none where there is no SIGHUP).
fn forward_hangups(tx: tokio::sync::mpsc::Sender<()>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!("SIGHUP");
                        // A reload already pending covers this one too.
                        let _ = tx.try_send(());
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP; reload disabled"),
        }
    }
    #[cfg(not(unix))]
    drop(tx);
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

fn check(path: &Path, expand: bool, strict: bool) -> anyhow::Result<ExitCode> {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(problems) => {
            print_problems(path, &problems);
            return Ok(ExitCode::FAILURE);
        }
    };
    print_warnings(path, &loaded.warnings);
    if strict && !loaded.warnings.is_empty() {
        let warnings = config::counted(loaded.warnings.len(), "warning", "warnings");
        eprintln!("{}: check failed: {warnings} and --strict", path.display());
        return Ok(ExitCode::FAILURE);
    }
    let g = &loaded.gateway;
    let ok = format!(
        "{}: ok: {}, {}, admin on {}",
        path.display(),
        config::counted(g.listeners.len(), "listener", "listeners"),
        config::counted(g.routes.routes().len(), "route", "routes"),
        g.admin
    );
    if expand {
        eprintln!("{ok}");
    } else {
        println!("{ok}");
    }
    if expand {
        // YAML on stdout, to paste back or diff; everything else on stderr.
        let (yaml, notes) = config::expand(path, &loaded).map_err(anyhow::Error::msg)?;
        for note in notes {
            eprintln!("{}: note: {note}", path.display());
        }
        print!(
            "# {} with every route's defaults written out (hookgate check --expand)\n{yaml}",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A configuration that does not compile, as `check` prints it: its warnings (what would
/// still be worth fixing once the errors are), then its errors.
fn print_problems(path: &Path, problems: &config::ConfigErrors) {
    print_warnings(path, &problems.warnings);
    eprint!("{}: {problems}", path.display());
}

fn print_warnings(path: &Path, warnings: &[config::ConfigError]) {
    for w in warnings {
        eprintln!("{}: warning: {w}", path.display());
    }
}

fn sign(path: &Path, args: &SignArgs) -> anyhow::Result<ExitCode> {
    let loaded = config::load(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    for w in &loaded.warnings {
        tracing::warn!("{}: {w}", path.display());
    }
    let sender = hookgate::sign::Sender::for_route(&loaded.gateway, &args.route)?;
    let secrets = config::sender_secrets(path, &args.route).map_err(anyhow::Error::msg)?;
    let mut body = Vec::new();
    if args.handshake {
        // A handshake brings its own body.
    } else if args.body == "-" {
        std::io::stdin()
            .read_to_end(&mut body)
            .context("reading body from stdin")?;
    } else {
        body = std::fs::read(&args.body)
            .with_context(|| format!("reading body file {}", args.body))?;
    }
    let private_key = match &args.private_key {
        None => None,
        Some(file) => Some((
            file.as_path(),
            std::fs::read_to_string(file)
                .with_context(|| format!("reading private key {}", file.display()))?,
        )),
    };
    let request = hookgate::sign::Request {
        method: Some(&args.method),
        body: &body,
        headers: &args.headers,
        path: args.path.as_deref(),
        private_key: private_key
            .as_ref()
            .map(|(file, text)| (*file, text.as_str())),
        secret: secrets.keys.first().map(Vec::as_slice),
        body_out: args.out_body.is_some(),
    };
    if args.handshake {
        let verify_token = secrets.verify_token.as_deref();
        let play =
            hookgate::sign::handshake::play(&sender, &request, verify_token, SystemTime::now())?;
        let base = args
            .url
            .clone()
            .unwrap_or_else(|| hookgate::sign::handshake::default_base(&loaded.gateway, &sender));
        for note in &play.request.notes {
            eprintln!("{note}");
        }
        print!("{}", play.curl(base.trim_end_matches('/')));
        return Ok(ExitCode::SUCCESS);
    }
    let signed = sender.sign(&request, SystemTime::now())?;
    if let Some(file) = &args.out_body {
        write_private(file, &signed.body)
            .with_context(|| format!("writing the body to {}", file.display()))?;
    }
    for note in &signed.notes {
        eprintln!("{note}");
    }
    for (name, value) in &signed.headers {
        println!("{}: {}", name, String::from_utf8_lossy(value.as_bytes()));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to `file` readable by its owner only (a body may carry a shared secret,
/// as Microsoft Graph's clientState), replacing a regular file but never following a link.
fn write_private(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(std::io::Error::other(
            "it is a symbolic link; give a plain file",
        ));
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(file)?;
    // An existing file keeps its mode on open: narrow it before anything is written.
    #[cfg(unix)]
    out.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    out.write_all(bytes)
}

fn keygen(
    path: &Path,
    route: Option<&str>,
    preset: Option<&str>,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let (algorithm, encoding) =
        config::key_spec(path, route, preset).map_err(anyhow::Error::msg)?;
    let key = SigningKey::generate(algorithm).map_err(anyhow::Error::msg)?;
    let pem = key.to_pem().map_err(anyhow::Error::msg)?;
    let public = encoding.encode(&key.public_key_bytes().map_err(anyhow::Error::msg)?);
    {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(out)
            .with_context(|| format!("creating {} (an existing file is kept)", out.display()))?;
        file.write_all(pem.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", out.display()))?;
    }
    eprintln!(
        "wrote the {} private key to {} (PKCS#8 PEM, mode 0600): the sender's side, keep it \
         out of the gateway's configuration",
        algorithm.name(),
        out.display()
    );
    println!(
        "public_key: \"{public}\"   # key_encoding: {}",
        encoding.name()
    );
    Ok(ExitCode::SUCCESS)
}

/// `hookgate queue …`: one call to the admin listener's queue API, shown as a table on a
/// terminal (`delivery::table`), its JSON as it is otherwise or with `--json`. An error
/// answer (an unknown route or event, a store that is down) exits non-zero.
fn queue(
    path: &Path,
    admin: Option<String>,
    token_file: Option<PathBuf>,
    json: bool,
    call: api::Call,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal as _;
    let client = api::Client::new(path, admin, token_file.as_deref())?;
    let (method, target, view) = call.request();
    let (status, body) = admin_call(
        &client.addr,
        client.token.as_deref(),
        method,
        &target,
        std::time::Duration::from_secs(30),
    )?
    .map_err(anyhow::Error::msg)?;
    let answer = api::Answer::new(status, body);
    if let Some(why) = answer.failure() {
        if json {
            print!("{}", answer.body);
        }
        eprintln!("hookgate queue: {why} (HTTP {})", status.as_u16());
        return Ok(ExitCode::FAILURE);
    }
    let table = if !json && std::io::stdout().is_terminal() {
        answer.table(
            view,
            hookgate::delivery::UnixMs::from(SystemTime::now()).as_i64(),
        )
    } else {
        None
    };
    print!("{}", table.as_deref().unwrap_or(&answer.body));
    Ok(ExitCode::SUCCESS)
}

impl From<QueueAction> for api::Call {
    fn from(action: QueueAction) -> api::Call {
        use api::Call;
        match action {
            QueueAction::Routes { route } => Call::Routes { route },
            QueueAction::List {
                route,
                destination,
                state,
                limit,
                after,
            } => Call::List {
                route,
                destination,
                state,
                limit,
                after,
            },
            QueueAction::Show { id, body } => Call::Show { id, body },
            QueueAction::Retry { id, destination } => Call::Retry { id, destination },
            QueueAction::RetryDead { route, destination } => Call::RetryDead { route, destination },
            QueueAction::Pause { route, destination } => Call::Pause { route, destination },
            QueueAction::Resume { route, destination } => Call::Resume { route, destination },
            QueueAction::Drop { id, destination } => Call::Drop { id, destination },
            QueueAction::Replay {
                route,
                destination,
                to,
                since,
                until,
                state,
                filter,
                yes,
            } => Call::Replay(api::ReplayCall {
                route,
                destination,
                to,
                since,
                until,
                state,
                filter,
                dry_run: !yes,
            }),
            QueueAction::Replays { id } => Call::Replays { id },
            QueueAction::CancelReplay { id } => Call::CancelReplay { id },
        }
    }
}

impl From<FilterAction> for api::Call {
    fn from(action: FilterAction) -> api::Call {
        let FilterAction::Test {
            route,
            filter,
            destination,
            since,
            limit,
        } = action;
        api::Call::FilterTest {
            route,
            filter,
            destination,
            since,
            limit,
        }
    }
}

/// One request to the admin listener from the command line, on a runtime of its own. The
/// outer error is the runtime's; the inner one the exchange's.
fn admin_call(
    addr: &str,
    token: Option<&str>,
    method: http::Method,
    target: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<Result<(http::StatusCode, String), String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(api::call(addr, token, method, target, timeout)))
}

fn healthcheck(
    path: &Path,
    admin: Option<String>,
    live: bool,
    timeout: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let addr = match admin {
        Some(a) => a,
        None => hookgate::delivery::api::local_target(
            config::admin_addr(path).map_err(anyhow::Error::msg)?,
        )
        .to_string(),
    };
    let target = if live { "/healthz" } else { "/readyz" };
    let answer = admin_call(&addr, None, http::Method::GET, target, timeout)?;
    Ok(match answer {
        Ok((status, _)) if status == http::StatusCode::OK => {
            println!("{addr}{target}: {status}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            println!("{addr}{target}: {status}: {}", body.trim());
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("{e}");
            ExitCode::FAILURE
        }
    })
}

fn explain(
    path: &Path,
    request: &Path,
    route: Option<&str>,
    client: Option<std::net::IpAddr>,
    at: Option<u64>,
    key_file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let loaded = config::load(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let key_doc = key_file
        .map(|f| std::fs::read(f).with_context(|| format!("reading {}", f.display())))
        .transpose()?;
    let raw = std::fs::read(request).with_context(|| format!("reading {}", request.display()))?;
    let captured = hookgate::explain::parse_raw_http(&raw)
        .map_err(|e| anyhow::anyhow!("{}: {e}", request.display()))?;
    let now = at.map_or_else(SystemTime::now, |s| {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s)
    });
    let asked = hookgate::explain::Asked {
        request: &captured,
        route,
        client,
        now,
        key_doc: key_doc.as_deref(),
    };
    let steps =
        hookgate::explain::explain(&loaded.gateway, &asked).map_err(|e| anyhow::anyhow!(e))?;
    let verified = steps
        .last()
        .is_some_and(|l| !l.starts_with("verdict: refused"));
    print_all(&(steps.join("\n") + "\n"));
    Ok(if verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn presets(query: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let text = hookgate::config::catalog::listing(query, json).map_err(|e| anyhow::anyhow!(e))?;
    print_all(&text);
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout, quietly stopping when the reader has gone (`hookgate presets | head`).
fn print_all(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
