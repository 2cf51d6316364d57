//! Test harness for swiftfed: real OpenStack Swift clusters on 127.0.0.1.
//!
//! Needs the Swift virtualenv and memcached from `scripts/install-test-deps`.
//! The API is blocking std code; from async tests call it in
//! `tokio::task::spawn_blocking` (or before entering the runtime).
//!
//! Environment: `SWIFTFED_VENV` (virtualenv, default ~/.cache/swiftfed/venv),
//! `SWIFTFED_MEMCACHED` (binary), `SWIFTFED_TEST_ROOT` (default /dev/shm),
//! `SWIFTFED_KEEP_DIRS=1` (keep cluster dirs and logs after the run).
//! Keystone ([`Keystone`], Debian's python3-keystone) for clusters built with
//! [`ClusterBuilder::keystone`].
//! Manual poking: `cargo run -p swiftfed-tests --example swift-cluster`.
//!
//! ```no_run
//! use swiftfed_tests::{shared_pair, swift_cli_ok, unique_name};
//! let [a, _b] = shared_pair();
//! let container = unique_name("c");
//! swift_cli_ok(a, "test:tester", "testing", &["post", &container]).unwrap();
//! ```

mod cli;
mod cluster;
mod config;
mod env;
mod error;
mod http;
mod keystone;
mod process;
mod shared;

pub use cli::{swift_cli, swift_cli_ok, AuthEndpoint};
pub use cluster::{auth_at, ClusterBuilder, SwiftCluster};
pub use config::USERS;
pub use env::{free_port, process_dir, scratch_dir, sidecar_bin, unique_name, venv_bin, venv_dir};
pub use error::{HarnessError, Result};
pub use http::{http_request, parse_response, HttpResponse};
pub use keystone::{Keystone, KeystoneToken, KEYSTONE_ADMIN};
pub use process::Server;
pub use shared::shared_pair;
