//! hookgate's fuzz targets, for `cargo +nightly fuzz` (see fuzz/README.md). The bodies are in
//! `targets.rs`, which `tests/e2e/fuzz_corpus.rs` also compiles on stable to replay the
//! committed corpora.

pub mod targets;

use std::alloc::{GlobalAlloc, Layout, System};

/// The largest single allocation a target may make, the same bound as libFuzzer's
/// `-malloc_limit_mb=64`, enforced here too so that it also holds in builds without a
/// sanitizer (`-s none`), where libFuzzer has no malloc hooks.
const MALLOC_LIMIT: usize = 64 << 20;

struct Bounded;

fn over_limit(size: usize) -> ! {
    // No allocation here: print with a fixed buffer-free message, then abort so libFuzzer
    // records the input as a crash.
    let msg = b"==hookgate-fuzz== allocation over the 64 MiB bound\n";
    // SAFETY: writing a static buffer to stderr.
    unsafe {
        libc_write(2, msg.as_ptr(), msg.len());
    }
    let _ = size;
    std::process::abort()
}

extern "C" {
    #[link_name = "write"]
    fn libc_write(fd: i32, buf: *const u8, count: usize) -> isize;
}

// SAFETY: forwards to the system allocator unchanged, after a size check.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MALLOC_LIMIT {
            over_limit(layout.size());
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MALLOC_LIMIT {
            over_limit(layout.size());
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MALLOC_LIMIT {
            over_limit(new_size);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Bounded = Bounded;
