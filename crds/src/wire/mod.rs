//! The wire protocol between agents (and collectors) and the operator: request and response
//! bodies of the `/v1/agent/*` routes. JSON, camelCase, unknown fields refused so that a
//! typo in a hand-made request is an error instead of silently lost data.
//!
//! Identity never travels in a body: the operator takes it from the client certificate
//! (mutual TLS) or from the signed JWT, so a device cannot write another device's data.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::device::{DeviceClass, Inventory};

pub mod alert;
pub mod automation;
pub mod collector;
pub mod discovery;
pub mod isolation;
pub mod network;
pub mod patch;
pub mod query;
pub mod topology;
pub mod work;

/// Path prefix of every agent route.
pub const AGENT_API_PREFIX: &str = "/v1/agent";
/// Largest accepted request body after decompression.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Most samples one metrics batch may carry.
pub const MAX_SAMPLES_PER_BATCH: usize = 20_000;
/// Samples may be this far in the future (clock skew) before they are refused.
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;
/// Samples older than this are refused (the spool keeps at most about this much).
pub const MAX_SAMPLE_AGE_MS: i64 = 7 * 24 * 3600 * 1000;

/// `POST /v1/agent/enroll`: a one-time enrollment token buys a device identity.
///
/// Exactly one of `csrPem` (mutual TLS: the operator signs it) and `jwtPublicKey` (signed
/// JWTs: the operator records the key) must be set. The private key never leaves the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrollRequest {
    /// The enrollment token (from an `rmm.cdot.io/enrollment-token` Secret).
    pub token: String,
    /// Name of the Device to create or take (default: the host name), an RFC 1123 subdomain.
    pub device_name: String,
    /// Namespace (client) the agent expects to join; refused when the token belongs to another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// PKCS#10 certificate signing request, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr_pem: Option<String>,
    /// Ed25519 public key (32 bytes, base64url without padding) for JWT authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_public_key: Option<String>,
    /// Version of the agent binary.
    pub agent_version: String,
    /// Class of the Device created by this enrollment (default `Other`); a collector sends
    /// `Collector`. A Device that already exists keeps its spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_class: Option<DeviceClass>,
}

/// Answer to a successful enrollment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrollResponse {
    /// Namespace (client) the device belongs to.
    pub namespace: String,
    /// Name of the Device.
    pub device_name: String,
    /// Stable id of the Device; the subject of its certificate and JWTs.
    pub device_uid: Uuid,
    /// The issued client certificate, PEM (mutual TLS enrollments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    /// When the certificate expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expiry: Option<String>,
    /// The operator's CA certificate, PEM: trust anchor for the agent listener.
    pub ca_pem: String,
    /// What the device's spec asks of the agent.
    pub config: AgentConfig,
}

/// `POST /v1/agent/renew` (mutual TLS): a new certificate for the same identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenewRequest {
    /// PKCS#10 certificate signing request, PEM, for a fresh key pair.
    pub csr_pem: String,
}

/// The renewed certificate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenewResponse {
    /// The new client certificate, PEM.
    pub certificate_pem: String,
    /// When it expires (RFC 3339).
    pub certificate_expiry: String,
}

/// `GET /v1/agent/config`: the agent's settings from its Device's spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentConfig {
    /// Seconds between metrics batches.
    pub metrics_interval_secs: u64,
    /// Seconds between full inventory reports.
    pub inventory_interval_secs: u64,
    /// Services whose state is reported as `serviceFailed`.
    #[serde(default)]
    pub monitored_services: Vec<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            metrics_interval_secs: 10,
            inventory_interval_secs: 6 * 3600,
            monitored_services: Vec::new(),
        }
    }
}

/// `POST /v1/agent/metrics`: one batch, sent gzip-compressed (`Content-Encoding: gzip`).
///
/// `batchId` makes retries safe: a batch already stored is acknowledged again, not stored twice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsBatch {
    /// Unique id chosen by the agent when the batch is made (UUID v4 or v7).
    pub batch_id: Uuid,
    /// Version of the agent binary.
    pub agent_version: String,
    /// The samples, each a catalogue metric (see `metrics_catalog`).
    pub samples: Vec<Sample>,
    /// Seconds between the agent's samples as it really runs (a local override included),
    /// so that liveness and the Device's `Ready` message follow it; absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_secs: Option<u32>,
}

/// One measurement. Short field names: a batch holds thousands of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// Time of the measurement, Unix milliseconds.
    pub t: i64,
    /// Catalogue metric name, e.g. `cpu`, `disk`.
    pub n: String,
    /// Series labels, exactly the catalogue's labels of the metric (e.g. `mount`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub l: BTreeMap<String, String>,
    /// Value in the metric's unit; must be finite.
    pub v: f64,
}

/// Acknowledgement of a batch: sent only after its rows are committed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchAck {
    /// The batch acknowledged.
    pub batch_id: Uuid,
    /// Samples stored by this request (0 for a duplicate).
    pub stored: u32,
    /// The batch had been stored before; nothing was written again.
    pub duplicate: bool,
}

/// An installed package.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Installed version.
    pub version: String,
}

/// `PUT /v1/agent/inventory`: the whole inventory (it replaces the previous one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InventoryReport {
    /// Version of the agent binary.
    pub agent_version: String,
    /// Hardware and OS facts (shown in the Device's status).
    pub inventory: Inventory,
    /// Installed software (dpkg or rpm database), kept in the store.
    #[serde(default)]
    pub software: Vec<Package>,
}

/// Error body of every API error (4xx and 5xx).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// HTTP status code.
    pub code: u16,
    /// Short CamelCase reason, e.g. `BadRequest`.
    pub reason: String,
    /// What is wrong, with the offending input.
    pub message: String,
    /// Path of the offending field, e.g. `samples[3].v`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_with_short_sample_fields() {
        let batch = MetricsBatch {
            batch_id: Uuid::nil(),
            agent_version: "0.1.0".into(),
            interval_secs: Some(10),
            samples: vec![Sample {
                t: 1,
                n: "disk".into(),
                l: BTreeMap::from([("mount".into(), "/".into())]),
                v: 42.5,
            }],
        };
        let json = serde_json::to_value(&batch).expect("serialize");
        assert_eq!(
            json["samples"][0],
            serde_json::json!({ "t": 1, "n": "disk", "l": { "mount": "/" }, "v": 42.5 })
        );
        assert_eq!(
            serde_json::from_value::<MetricsBatch>(json).expect("parse"),
            batch
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<Sample>(r#"{"t":1,"n":"cpu","v":1,"device":"other"}"#)
            .expect_err("refused");
        assert!(err.to_string().contains("unknown field `device`"), "{err}");
    }
}
