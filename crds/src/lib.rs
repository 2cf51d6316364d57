//! Types shared by the swiftfed operator and sidecar.

#[cfg(feature = "kube")]
pub mod federation;
pub mod routing;
pub mod validate;

pub use routing::RoutingTable;
