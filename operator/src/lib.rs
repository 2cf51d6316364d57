//! swiftfed operator. `render` turns a namespace's federations into a routing table, `sync`
//! snapshots and pushes it (`push`), `controller` drives both from the API server and writes
//! `status`; `cli` holds the offline subcommands.

pub mod cli;
pub mod controller;
pub mod inject;
pub mod leader;
pub mod metrics;
pub mod probe;
pub mod push;
pub mod render;
pub mod run;
pub mod status;
pub mod sync;
#[doc(hidden)]
pub mod testing;
pub mod webhook;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("encoding: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
}
