//! Signals of the main job, each a request the control thread picks up within its
//! 50 ms loop (the handlers only store to atomics, which is async-signal-safe):
//!
//! | signal | meaning |
//! | --- | --- |
//! | `SIGINT`, `SIGTERM`, `SIGQUIT` | stop gracefully: drain the rings, seal every segment, print the accounting |
//! | `SIGHUP` | reopen: seal every stream's current segment and continue in a new one (for tools that ship or archive sealed segments); the config is not reloaded |
//! | `SIGUSR1`, `SIGUSR2` | print the status line now |
//!
//! Nothing else changes the default action of a signal.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
static REOPEN: AtomicBool = AtomicBool::new(false);
static STATUS: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

extern "C" fn on_reopen(_: libc::c_int) {
    REOPEN.store(true, Ordering::Relaxed);
}

extern "C" fn on_status(_: libc::c_int) {
    STATUS.store(true, Ordering::Relaxed);
}

fn install(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed sigaction is a valid starting point; the handler only stores to an
    // atomic (async-signal-safe); SA_RESTART keeps blocking calls of other threads going.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

/// Installs the handlers of the main job (see the module docs).
pub(crate) fn install_main_job() {
    install_stop();
    install(libc::SIGHUP, on_reopen);
    install(libc::SIGUSR1, on_status);
    install(libc::SIGUSR2, on_status);
}

/// SIGINT, SIGTERM and SIGQUIT request a graceful stop (also for `engine tail`).
pub(crate) fn install_stop() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGQUIT] {
        install(sig, on_stop);
    }
}

/// Whether a stop has been requested.
pub(crate) fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Whether SIGHUP arrived since the last call.
pub(crate) fn take_reopen() -> bool {
    REOPEN.swap(false, Ordering::Relaxed)
}

/// Whether SIGUSR1/SIGUSR2 arrived since the last call.
pub(crate) fn take_status() -> bool {
    STATUS.swap(false, Ordering::Relaxed)
}
