//! A stand-in app that misbehaves on command, for trying queued delivery against the apps
//! it exists for (a slow one, one that restarts, one that sheds load) and for the soak in
//! `bench/soak.py`.
//!
//! `cargo run --release --example flapping_app -- APP_ADDR CONTROL_ADDR LOG_FILE`
//!
//! - On APP_ADDR it answers webhooks as its current mode says:
//!   - `up MIN_MS MAX_MS`: 200 after a delay drawn between MIN_MS and MAX_MS;
//!   - `error`: 500 at once;
//!   - `refuse`: 422 at once (a final answer: the gateway makes the event a dead letter);
//!   - `throttle SECS`: 429 with `Retry-After: SECS`;
//!   - `down`: not listening at all (connections are refused), as while an app restarts;
//!   - `hang`: reads the request and never answers (the gateway's upstream timeout ends it).
//! - On CONTROL_ADDR, `POST /mode` with the mode as its body (e.g. `up 20 50`) switches
//!   modes; `GET /mode` answers the current one.
//! - Every request it takes is appended to LOG_FILE as one tab-separated line when it
//!   arrives, before any delay: Unix ms, `Idempotency-Key`, `Hookgate-Attempt`, the status
//!   it will answer (0 for a hang). A 2xx line means the app took the event, as an app that
//!   processes first and answers after would: when the gateway gives up on a slow answer,
//!   the app still has the event, and the gateway's next copy is a duplicate.
//!
//! The mode at start is `up 20 50`.

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Clone, Debug, PartialEq)]
enum Mode {
    Up { min_ms: u64, max_ms: u64 },
    Error,
    Refuse,
    Throttle { secs: u64 },
    Down,
    Hang,
}

impl Mode {
    fn parse(text: &str) -> Option<Mode> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let num = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
        match words.first().copied()? {
            "up" => {
                let min_ms = num(1).unwrap_or(20);
                let max_ms = num(2).unwrap_or(min_ms).max(min_ms);
                Some(Mode::Up { min_ms, max_ms })
            }
            "error" => Some(Mode::Error),
            "refuse" => Some(Mode::Refuse),
            "throttle" => Some(Mode::Throttle {
                secs: num(1).unwrap_or(1),
            }),
            "down" => Some(Mode::Down),
            "hang" => Some(Mode::Hang),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Mode::Up { min_ms, max_ms } => format!("up {min_ms} {max_ms}"),
            Mode::Error => "error".into(),
            Mode::Refuse => "refuse".into(),
            Mode::Throttle { secs } => format!("throttle {secs}"),
            Mode::Down => "down".into(),
            Mode::Hang => "hang".into(),
        }
    }
}

struct App {
    mode: Mutex<Mode>,
    /// Told when the mode changes, so the listener can close or reopen.
    changed: tokio::sync::watch::Sender<Mode>,
    log: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl App {
    fn record(&self, key: &str, attempt: &str, status: u16) {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(log, "{ms}\t{key}\t{attempt}\t{status}");
        // Flushed per line: the soak reads it while the app runs, and a line must be on
        // disk before the answer that it describes leaves.
        let _ = log.flush();
    }
}

/// A small pseudo-random draw (not for anything secret).
fn draw(below: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() % below.max(1)
}

async fn answer(app: Arc<App>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let (key, attempt) = (header("idempotency-key"), header("hookgate-attempt"));
    let _ = req.into_body().collect().await;
    let mode = app.mode.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (status, retry_after) = match mode {
        Mode::Up { min_ms, max_ms } => {
            app.record(&key, &attempt, 200);
            let ms = min_ms + draw(max_ms - min_ms + 1);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return answer_with(StatusCode::OK, None);
        }
        Mode::Error => (StatusCode::INTERNAL_SERVER_ERROR, None),
        Mode::Refuse => (StatusCode::UNPROCESSABLE_ENTITY, None),
        Mode::Throttle { secs } => (StatusCode::TOO_MANY_REQUESTS, Some(secs)),
        // Only a request already read when the app went down: its connection is cut.
        Mode::Down => std::future::pending().await,
        Mode::Hang => {
            app.record(&key, &attempt, 0);
            std::future::pending::<()>().await;
            unreachable!("pending never resolves")
        }
    };
    app.record(&key, &attempt, status.as_u16());
    answer_with(status, retry_after)
}

fn answer_with(status: StatusCode, retry_after: Option<u64>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok\n")));
    *response.status_mut() = status;
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    response
}

async fn control(app: Arc<App>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let post = req.method() == http::Method::POST;
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if post {
        let Some(mode) = Mode::parse(&String::from_utf8_lossy(&body)) else {
            let mut r = Response::new(Full::new(Bytes::from_static(b"unknown mode\n")));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        };
        *app.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode.clone();
        let _ = app.changed.send(mode);
    }
    let mode = app
        .mode
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .describe();
    Response::new(Full::new(Bytes::from(format!("{mode}\n"))))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: flapping_app APP_ADDR CONTROL_ADDR LOG_FILE");
        std::process::exit(2);
    }
    let (app_addr, control_addr) = (args[1].clone(), args[2].clone());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args[3])?;
    let start = Mode::Up {
        min_ms: 20,
        max_ms: 50,
    };
    let (changed, mut modes) = tokio::sync::watch::channel(start.clone());
    let app = Arc::new(App {
        mode: Mutex::new(start),
        changed,
        log: Mutex::new(std::io::BufWriter::new(file)),
    });
    let control_listener = TcpListener::bind(&control_addr).await?;
    let control_app = app.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = control_listener.accept().await else {
                continue;
            };
            let app = control_app.clone();
            tokio::spawn(serve(stream, move |req| control(app.clone(), req)));
        }
    });
    println!("flapping app on {app_addr}, control on {control_addr}");
    loop {
        // Not listening while down: the gateway's connections are refused.
        while *modes.borrow_and_update() == Mode::Down {
            if modes.changed().await.is_err() {
                return Ok(());
            }
        }
        let listener = bind_retrying(&app_addr).await?;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let app = app.clone();
                    let mut down = modes.clone();
                    // Going down cuts the open connections too, as a process exit would.
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = serve(stream, move |req| answer(app.clone(), req)) => {}
                            _ = down.wait_for(|m| *m == Mode::Down) => {}
                        }
                    });
                }
                _ = modes.changed() => {
                    if *modes.borrow() == Mode::Down {
                        break;
                    }
                }
            }
        }
    }
}

/// Binds `addr`, retrying briefly (the port may still be in TIME_WAIT after going down).
async fn bind_retrying(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("cannot bind")))
}

async fn serve<F, Fut>(stream: tokio::net::TcpStream, handle: F)
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let service = service_fn(move |req| {
        let fut = handle(req);
        async move { Ok::<_, Infallible>(fut.await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
