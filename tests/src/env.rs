//! Where the test dependencies live and per-process scratch space.

use std::collections::HashSet;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};

use crate::error::{HarnessError, Result};

/// The virtualenv made by `scripts/install-test-deps` (`$SWIFTFED_VENV` overrides).
pub fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SWIFTFED_VENV") {
        return dir.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/swiftfed/venv")
}

/// An executable of the virtualenv, e.g. `venv_bin("swift")` for python-swiftclient's CLI.
pub fn venv_bin(name: &str) -> PathBuf {
    venv_dir().join("bin").join(name)
}

/// `tests/swift/launch.py`, which runs Swift servers and memcached under a watchdog.
pub(crate) fn launcher() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("swift/launch.py")
}

pub(crate) fn python() -> Result<PathBuf> {
    let python = venv_bin("python");
    if !python.exists() {
        return Err(HarnessError::MissingDependency(format!(
            "Swift virtualenv ({} not found)",
            python.display()
        )));
    }
    Ok(python)
}

/// memcached binary: `$SWIFTFED_MEMCACHED`, else the first `memcached` on PATH.
pub(crate) fn memcached() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SWIFTFED_MEMCACHED") {
        return Ok(path.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("memcached"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| HarnessError::MissingDependency("memcached (not on PATH)".into()))
}

/// A TCP port that was free on 127.0.0.1 a moment ago. Ports handed out by this
/// process are never handed out twice, so concurrent cluster starts don't collide.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        let mut given = GIVEN.lock().unwrap();
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// A name no other test of this process (or of a concurrent test process) uses,
/// e.g. for containers on the shared clusters.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

pub(crate) fn next_cluster_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

const ROOT_PREFIX: &str = "swiftfed-test-";

/// Parent of all per-process dirs: tmpfs, because Swift keeps object metadata
/// in xattrs and tmpfs is fast (`$SWIFTFED_TEST_ROOT` overrides /dev/shm).
fn test_root_parent() -> PathBuf {
    std::env::var_os("SWIFTFED_TEST_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/dev/shm".into())
}

/// `/dev/shm/swiftfed-test-<pid>`: everything this test process writes. Created
/// on first use, after removing the dirs of test processes that are gone.
pub fn process_dir() -> Result<PathBuf> {
    static FIRST_USE: Once = Once::new();
    let dir = own_process_dir();
    FIRST_USE.call_once(|| {
        remove_stale_dirs(&test_root_parent());
        // SAFETY: registers a plain extern "C" fn without arguments.
        unsafe { libc::atexit(remove_at_exit) };
    });
    fs::create_dir_all(&dir)
        .map_err(|e| HarnessError::io(format!("create {}", dir.display()), e))?;
    Ok(dir)
}

fn own_process_dir() -> PathBuf {
    test_root_parent().join(format!("{ROOT_PREFIX}{}", std::process::id()))
}

/// Statics are never dropped: at normal exit (also after failed tests) stop the
/// shared clusters and remove everything this process wrote.
extern "C" fn remove_at_exit() {
    crate::shared::stop_shared();
    if std::env::var_os("SWIFTFED_KEEP_DIRS").is_none() {
        let _ = fs::remove_dir_all(own_process_dir());
    }
}

/// A scratch dir for test files (objects to upload and the like).
pub fn scratch_dir() -> Result<PathBuf> {
    let dir = process_dir()?.join("scratch");
    fs::create_dir_all(&dir)
        .map_err(|e| HarnessError::io(format!("create {}", dir.display()), e))?;
    Ok(dir)
}

fn remove_stale_dirs(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(ROOT_PREFIX))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if !pid_alive(pid) {
            // best effort: a concurrent test process may be removing it too
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

pub(crate) fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// 16 random bytes as hex, for the per-cluster hash path suffix.
pub(crate) fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `swiftfed-sidecar` binary of the test's own build (`target/<profile>/`), for tests of
/// other crates that drive real sidecars; `scripts/test` builds it before the tests.
pub fn sidecar_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory")
        .join("swiftfed-sidecar");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p swiftfed-sidecar` first (scripts/test does)",
        bin.display()
    );
    bin
}
