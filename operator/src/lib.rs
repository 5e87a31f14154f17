//! The cdot-rmm operator: desired-state sources, reconcilers, the HTTP API and the store.
//!
//! Both sources of desired state (a directory of YAML in [`standalone`] mode, the API
//! server's watches in [`kubernetes`] mode) feed the same [`reconcile`] functions and the
//! same [`store`]; [`server`] is what both modes serve.

pub mod alerting;
pub mod api;
pub mod automation;
pub mod background;
pub mod changes;
pub mod cli;
pub mod config_maps;
pub mod discovery;
pub mod index;
pub mod ingest;
pub mod jobs;
pub mod kubernetes;
pub mod metrics;
pub mod notify;
pub mod patching;
pub mod pki;
pub mod reconcile;
pub mod secrets;
pub mod server;
pub mod source;
pub mod standalone;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod work;
