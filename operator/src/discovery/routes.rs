//! `GET /v1/namespaces/{ns}/topology?site=`: Devices and the LLDP links between them.
use std::collections::{BTreeMap, BTreeSet};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    routing::get,
};
use cdot_crds::{
    api_token::Role,
    device::{DeviceClass, DeviceSpec, DeviceStatus},
    kind::Kind,
    wire::topology::{Topology, TopologyEdge, TopologyNode},
};

use crate::api::{ApiError, AppState, auth::Principal, params::Params};

pub fn routes() -> Router<AppState> {
    Router::new().route("/namespaces/{namespace}/topology", get(topology))
}

async fn topology(
    State(state): State<AppState>,
    principal: Principal,
    Path(namespace): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Topology>, ApiError> {
    principal.require(&namespace, Role::Viewer)?;
    let params = Params::parse(pairs, &["site"])?;
    let site = params.get("site").map(str::to_owned);
    let devices = state.store.list_objects(&namespace, Kind::Device).await?;
    let links = state.store.discovery_links(&namespace).await?;
    let nodes: BTreeMap<String, TopologyNode> = devices
        .iter()
        .map(|d| {
            let spec: DeviceSpec = serde_json::from_value(d.spec.clone()).unwrap_or_default();
            let status: DeviceStatus = serde_json::from_value(d.status.clone()).unwrap_or_default();
            (
                d.name.clone(),
                TopologyNode {
                    device: d.name.clone(),
                    class: spec.class,
                    site: spec
                        .site
                        .clone()
                        .or_else(|| d.labels.get(cdot_crds::SITE_LABEL).cloned()),
                    responding: status.discovery.map(|f| f.responding),
                    collector: spec.class == DeviceClass::Collector,
                },
            )
        })
        .collect();
    let in_scope = |name: &str| {
        site.is_none()
            || nodes
                .get(name)
                .is_some_and(|n| n.site.as_deref() == site.as_deref())
    };
    let edges: Vec<TopologyEdge> = links
        .into_iter()
        .filter(|l| in_scope(&l.device))
        .map(|l| TopologyEdge {
            device: l.device,
            local_port: l.local_port,
            remote_device: l.remote_device,
            remote_chassis: l.remote_chassis,
            remote_port: l.remote_port,
            remote_name: l.remote_name,
            remote_address: l.remote_address.map(|a| a.to_string()),
        })
        .collect();
    let linked: BTreeSet<&str> = edges
        .iter()
        .filter_map(|e| e.remote_device.as_deref())
        .collect();
    let nodes = nodes
        .values()
        .filter(|n| in_scope(&n.device) || linked.contains(n.device.as_str()))
        .cloned()
        .collect();
    Ok(Json(Topology {
        namespace,
        site,
        nodes,
        edges,
    }))
}

/// The route in the OpenAPI document.
pub fn openapi_paths(
    paths: &mut serde_json::Map<String, serde_json::Value>,
    schemas: &mut serde_json::Map<String, serde_json::Value>,
) {
    use serde_json::json;

    use crate::api::openapi::{DerivedSchemas, json_response as ok};
    let mut derived = DerivedSchemas::new(schemas);
    let topology = derived.add::<Topology>("Topology");
    derived.finish();
    paths.insert(
        "/v1/namespaces/{namespace}/topology".into(),
        json!({ "get": {
            "tags": ["Discovery"],
            "summary": "Devices and the LLDP links between them",
            "parameters": [
                { "name": "namespace", "in": "path", "required": true, "schema": { "type": "string" } },
                { "name": "site", "in": "query", "required": false, "description": "only links of this site's Devices", "schema": { "type": "string" } },
            ],
            "responses": { "200": ok("nodes and edges", &topology) },
        }}),
    );
}
