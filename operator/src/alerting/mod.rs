//! Alerting: AlertRules evaluated on ingest (`engine`, `rules`), alerts and their history
//! in PostgreSQL (`store`), notifications through an outbox (`outbox`, `dispatch`), and
//! the API (`routes`).
pub mod engine;
pub mod rules;
