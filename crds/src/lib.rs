//! Types shared by the swiftfed operator and sidecar.

pub mod routing;
pub mod validate;

pub use routing::RoutingTable;
