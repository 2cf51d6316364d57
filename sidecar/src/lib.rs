//! swiftfed forwarder sidecar. Modules follow the request: `server` accepts, `forward` (a module per concern inside) drives
//! `swift_path` → `route_table` → `rename` → `auth` (Keystone v3 tokens: `keystone`) → `upstream`,
//! with streaming `body` types, `pacing` (what a slow client may queue) and `read_size` (how much
//! of a response is read from upstream at once);
//! `state` holds the table in force, fed by `config_source` (file) and `admin` (push). `tls`
//! connects to targets; `tls_listener` serves the sidecar's own listeners; `access_log` writes
//! one line per request in batches.

pub mod access_log;
pub mod acl_shadow;
pub mod admin;
pub mod auth;
pub mod body;
pub mod bulk;
pub mod config_source;
pub mod copy;
pub mod dlo;
pub mod extract;
pub mod forward;
pub mod keystone;
pub mod labels;
pub mod listing;
pub mod metrics;
pub mod on_end;
pub mod pacing;
pub mod pyformat;
pub mod read_size;
pub mod rename;
pub mod route_table;
pub mod segments;
pub mod server;
pub mod slo;
pub mod slo_assembly;
pub mod slo_put;
pub mod standin;
pub mod state;
pub mod subrequest;
pub mod swift_path;
pub mod symlink;
pub mod tls;
pub mod tls_listener;
pub mod upstream;
