//! `GET /v1/namespaces/{ns}/topology?site=`: the Devices of a namespace (or site) and the
//! LLDP links between them, as discovery found them.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::device::DeviceClass;

/// Nodes and edges of the network as LLDP sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Devices of the scope, and the Devices their links lead to.
    pub nodes: Vec<TopologyNode>,
    /// One edge per LLDP neighbour a Device reported.
    pub edges: Vec<TopologyEdge>,
}

/// A Device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopologyNode {
    pub device: String,
    pub class: DeviceClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// `status.discovery.responding`; absent for Devices discovery never saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responding: Option<bool>,
    /// Whether it is a collector (where paths start).
    #[serde(default)]
    pub collector: bool,
}

/// A link: `device` saw a neighbour on `localPort`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopologyEdge {
    pub device: String,
    pub local_port: String,
    /// The neighbour's Device, when one has its chassis id or management address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_device: Option<String>,
    pub remote_chassis: String,
    pub remote_port: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_address: Option<String>,
}
