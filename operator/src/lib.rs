//! swiftfed operator: `render` turns a namespace's federations into a routing table; `cli` holds
//! the offline subcommands.

pub mod cli;
pub mod render;
