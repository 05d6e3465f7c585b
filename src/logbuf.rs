//! Log output that never makes a request wait on stderr.
//!
//! Every refused request gets a log line, so a flood of forged requests is a flood of lines.
//! Written one `write(2)` per line on the event loop, each line cost a syscall there and a
//! stalled stderr (a full pipe nobody reads) would have stalled every connection. Instead
//! each line is appended to an in-memory buffer, and a background
//! thread writes the buffer out at least every [`FLUSH_EVERY`], sooner once it holds
//! [`FLUSH_AT`] bytes. When more than [`MAX_PENDING`] bytes are waiting (stderr is not being
//! drained), new lines are dropped and counted in `hookgate_log_lines_dropped_total`, rather
//! than blocking requests or growing without bound.
//!
//! [`flush`] writes out whatever is pending; `main` calls it before the process exits.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// Longest a line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Pending bytes that wake the writer thread early.
pub const FLUSH_AT: usize = 64 * 1024;
/// Pending bytes beyond which lines are dropped.
pub const MAX_PENDING: usize = 4 * 1024 * 1024;

struct Shared {
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
    /// Held while a batch is taken from `pending` and written: keeps the writer thread and
    /// [`flush`] in order.
    out: Mutex<()>,
    dropped: AtomicU64,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            pending: Mutex::new(Vec::with_capacity(FLUSH_AT)),
            wake: Condvar::new(),
            out: Mutex::new(()),
            dropped: AtomicU64::new(0),
        }
    }

    fn append(&self, buf: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() + buf.len() > MAX_PENDING {
            // Count a line once, at its end (fmt writes a whole line per call).
            if buf.ends_with(b"\n") {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let was_below = pending.len() < FLUSH_AT;
        pending.extend_from_slice(buf);
        // Wake the writer once per batch, not on every line after the threshold.
        if was_below && pending.len() >= FLUSH_AT {
            self.wake.notify_one();
        }
    }
}

static SHARED: OnceLock<&'static Shared> = OnceLock::new();

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let shared: &'static Shared = Box::leak(Box::new(Shared::new()));
        let spawned = std::thread::Builder::new()
            .name("hookgate-log".into())
            .spawn(move || writer_thread(shared));
        if spawned.is_err() {
            // No thread: lines still reach stderr at the next `flush` (at the latest at exit).
            eprintln!("hookgate: could not start the log writer thread; logs are delayed");
        }
        shared
    })
}

fn writer_thread(shared: &'static Shared) {
    let mut batch = Vec::with_capacity(FLUSH_AT);
    loop {
        {
            let pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.len() < FLUSH_AT {
                // Poisoning only means a writer panicked mid-append; the bytes are still there.
                let _ = shared.wake.wait_timeout(pending, FLUSH_EVERY);
            }
        }
        // The output lock is taken before the lines, and held until they are written: a
        // `flush` can then neither overtake this batch nor find it gone from `pending` while it
        // is not yet written (and return, and let the process exit without it).
        let out = shared.out.lock().unwrap_or_else(|e| e.into_inner());
        match shared.pending.lock() {
            Ok(mut pending) => std::mem::swap(&mut *pending, &mut batch),
            Err(e) => std::mem::swap(&mut *e.into_inner(), &mut batch),
        }
        write_out(&batch);
        drop(out);
        batch.clear();
        // Keep one ordinary-sized buffer, not the largest burst ever seen.
        batch.shrink_to(FLUSH_AT);
    }
}

fn write_out(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let mut stderr = io::stderr().lock();
    // Nowhere to report a failed write to stderr; the lines are gone either way.
    let _ = stderr.write_all(bytes);
    let _ = stderr.flush();
}

/// Writes out every pending line now, after any batch the writer thread is writing.
pub fn flush() {
    let shared = shared();
    let _out = shared.out.lock().unwrap_or_else(|e| e.into_inner());
    let batch = match shared.pending.lock() {
        Ok(mut pending) => std::mem::take(&mut *pending),
        Err(e) => std::mem::take(&mut *e.into_inner()),
    };
    write_out(&batch);
}

/// [`flush`] for a panic hook: it must not wait on a lock the panicking thread may hold, so it
/// writes nothing if either lock is taken.
pub fn flush_if_free() {
    let Some(shared) = SHARED.get() else {
        return;
    };
    let Ok(_out) = shared.out.try_lock() else {
        return;
    };
    let Ok(mut pending) = shared.pending.try_lock() else {
        return;
    };
    let batch = std::mem::take(&mut *pending);
    drop(pending);
    write_out(&batch);
}

/// Lines dropped because stderr was not keeping up.
pub fn dropped() -> u64 {
    SHARED
        .get()
        .map_or(0, |s| s.dropped.load(Ordering::Relaxed))
}

/// The `MakeWriter` for `tracing_subscriber::fmt`: it writes each formatted event with one
/// `write_all`, which becomes one append to the buffer.
#[derive(Clone, Copy, Default)]
pub struct BufferedStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BufferedStderr {
    type Writer = BufferedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        BufferedStderr
    }
}

impl Write for BufferedStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        shared().append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_beyond_the_bound_are_dropped_and_counted() {
        let shared = Shared::new();
        let line = [b'x'; 1024];
        let lines = MAX_PENDING / 1024;
        for _ in 0..lines + 10 {
            shared.append(&line[..1023]);
            shared.append(b"\n");
        }
        assert_eq!(shared.pending.lock().unwrap().len(), MAX_PENDING);
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 10);
        // Once written out, lines are accepted again.
        std::mem::take(&mut *shared.pending.lock().unwrap());
        shared.append(b"after\n");
        assert_eq!(&*shared.pending.lock().unwrap(), b"after\n");
    }
}
