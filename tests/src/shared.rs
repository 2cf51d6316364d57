//! Two clusters shared by all tests of one test binary.
//!
//! Starting clusters costs seconds, so "a" and "b" start once per test process,
//! on first use, and every test uses its own containers on them
//! (`unique_name`). Statics are never dropped: at normal exit an atexit hook
//! stops them and removes the process dir; if the test process is killed, the
//! launcher watchdogs stop the servers within a second and the next test
//! process removes the dir.

use std::sync::OnceLock;

use crate::cluster::SwiftCluster;
use crate::error::HarnessError;

static PAIR: OnceLock<Result<[SwiftCluster; 2], String>> = OnceLock::new();

/// Clusters "a" and "b", started (in parallel) on first call. Tests must not
/// stop their proxies; start an own `SwiftCluster` for outage tests.
/// Panics with the startup error (server, log tail) if they cannot start.
pub fn shared_pair() -> &'static [SwiftCluster; 2] {
    let pair = PAIR.get_or_init(|| start_pair().map_err(|e| e.to_string()));
    match pair {
        Ok(pair) => pair,
        Err(e) => panic!("shared Swift clusters did not start: {e}"),
    }
}

fn start_pair() -> Result<[SwiftCluster; 2], HarnessError> {
    std::thread::scope(|s| {
        let a = s.spawn(|| SwiftCluster::start("a"));
        let b = s.spawn(|| SwiftCluster::start("b"));
        let (a, b) = (
            a.join().expect("start a panicked"),
            b.join().expect("start b panicked"),
        );
        Ok([a?, b?])
    })
}

/// Called at process exit (see `env::process_dir`): SIGTERM only, no waiting.
/// Swift servers die on it at once and memcached's launcher kills memcached;
/// the process dir is removed right after.
pub(crate) fn stop_shared() {
    let Some(Ok(pair)) = PAIR.get() else { return };
    for pid in pair.iter().flat_map(SwiftCluster::pids) {
        // SAFETY: kill(2) on PIDs of our own, not yet reaped, children.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
}
