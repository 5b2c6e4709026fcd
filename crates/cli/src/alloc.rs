//! The binary's allocator: mimalloc, faster than the system allocator for the
//! many small, short-lived allocations of request handling.
//!
//! Freed memory goes back to the system only when mimalloc purges it; after a
//! burst of connections that then sit idle (and are parked, holding almost
//! nothing), the pages their tasks used would otherwise stay resident. Freed
//! pages are purged after 1 ms (not mimalloc's 10), and a task asks for a
//! purge once a second.

use std::time::Duration;

/// mimalloc 3's `mi_option_arena_eager_commit` (its index in the vendored
/// `mimalloc.h`; libmimalloc-sys names only mimalloc 2's options).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// mimalloc 3's `mi_option_purge_delay` (milliseconds a freed page waits
/// before it is given back), likewise by index.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed pages go back to the system after 1 ms instead of mimalloc's 10:
/// measured with 10,000 idle keep-alive connections (RSS growth per
/// connection 5 s after they went idle), the default left about 450 KiB of
/// freed pages resident that the housekeeping's `mi_collect` never purged
/// (0.44 KiB per connection against 0.40 with 1 ms, three runs each, at
/// 2340b5f). Under
/// load the cost did not show: keep-alive and a new connection per request
/// within 1 % of the default (`bench/compare.py`, 4 rounds).
const PURGE_DELAY_MS: std::os::raw::c_long = 1;

/// Arena memory committed on demand, not all at once: measured with
/// 10,000 idle keep-alive connections (RSS growth per connection, each second
/// for 10 s after they went idle), eager commit made the figure jump by about
/// 1 KiB per connection at a random moment seconds after the connections
/// were parked (0.86 -> 2.37, 0.95 -> 1.75); committed on demand it stays at
/// 0.57. It must be set before mimalloc reserves its first arena, which the
/// Rust runtime's first allocation does before `main`: so it is set from the
/// ELF `.init_array`, which runs before the runtime starts.
extern "C" fn configure() {
    // SAFETY: setting an option is allowed at any time; this one only
    // changes how arenas reserved from now on are committed.
    unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) };
    // SAFETY: as above; read whenever a page is freed.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) };
}

#[used]
#[cfg_attr(target_os = "linux", link_section = ".init_array")]
static CONFIGURE: extern "C" fn() = configure;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Returns freed memory to the system now and then (call inside the runtime).
pub fn spawn_housekeeping() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // SAFETY: mi_collect only walks mimalloc's own free lists; it is
            // safe to call at any time from any thread.
            unsafe { libmimalloc_sys::mi_collect(true) };
        }
    });
}
