//! swiftfed forwarder sidecar. Modules follow the request: `server` accepts, `forward` drives
//! `swift_path` → `route_table` → `rename` → `auth` → `upstream`, with streaming `body` types;
//! `state` holds the table in force, fed by `config_source` (file) and `admin` (push). `tls`
//! connects to targets; `tls_listener` serves the sidecar's own listeners; `access_log` writes
//! one line per request in batches.

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod body;
pub mod config_source;
pub mod forward;
pub mod labels;
pub mod metrics;
pub mod pacing;
pub mod rename;
pub mod route_table;
pub mod server;
pub mod state;
pub mod swift_path;
pub mod tls;
pub mod tls_listener;
pub mod upstream;
