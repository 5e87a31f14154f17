//! One module per screen; each keeps its own panels and filters.
pub mod alerts;
pub mod connect;
pub mod devices;
pub mod network;
