//! One error type for the harness; every variant says what it was doing on what.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("missing test dependency: {0} (run scripts/install-test-deps)")]
    MissingDependency(String),

    #[error("`{command}` failed ({status})\n{output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },

    #[error(
        "cluster {cluster}: {server} not ready: {detail}\n\
         --- last lines of {} ---\n{log_tail}",
        log.display()
    )]
    NotReady {
        cluster: String,
        server: String,
        /// what the last probe saw, and after how long
        detail: String,
        log: PathBuf,
        log_tail: String,
    },

    #[error("{method} {url}: {detail}")]
    Http {
        method: String,
        url: String,
        detail: String,
    },
}

impl HarnessError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        HarnessError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
