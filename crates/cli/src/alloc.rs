//! The binary's allocator: mimalloc, faster than the system allocator for the
//! many small, short-lived allocations of request handling.
//!
//! Freed memory goes back to the system only when mimalloc purges it; after a
//! burst of connections that then sit idle (and are parked, holding almost
//! nothing), the pages their tasks used would otherwise stay resident. A task
//! asks for a purge once a second.

use std::time::Duration;

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
