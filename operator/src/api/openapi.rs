//! The OpenAPI 3 document of `/v1`, built from the same CRD schemas that validate manifests.
use std::sync::LazyLock;

use axum::Json;
use cdot_crds::kind::Kind;
use serde_json::{Map, Value, json};

static DOCUMENT: LazyLock<Value> = LazyLock::new(build);

pub async fn document() -> Json<Value> {
    Json(DOCUMENT.clone())
}

pub fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

pub fn build() -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["code", "reason", "message"],
            "properties": {
                "code": { "type": "integer" },
                "reason": { "type": "string" },
                "message": { "type": "string" },
                "field": { "type": "string", "description": "path of the offending request field" }
            }
        }),
    );
    let namespace = json!({ "name": "namespace", "in": "path", "required": true, "schema": { "type": "string" } });
    // The list envelope is derived once; each kind's list refers to the kind's CRD schema.
    let envelope = {
        let mut derived = DerivedSchemas::new(&mut schemas);
        derived.add::<cdot_crds::wire::query::ObjectList<Value>>("ObjectList");
        derived.finish();
        schemas.remove("ObjectList").unwrap_or_default()
    };
    for kind in Kind::ALL {
        let crd = kind.crd();
        let schema = crd
            .spec
            .versions
            .first()
            .and_then(|v| v.schema.as_ref())
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| serde_json::to_value(s).ok())
            .unwrap_or_else(|| json!({ "type": "object" }));
        schemas.insert(kind.as_str().into(), schema);
        let mut list = envelope.clone();
        list["properties"]["items"]["items"] =
            json!({ "$ref": format!("#/components/schemas/{}", kind.as_str()) });
        schemas.insert(format!("{}List", kind.as_str()), list);
        // Silences are served by the alerts API (documents and API-made ones together).
        if kind == Kind::Silence {
            continue;
        }
        let tag = kind.as_str();
        paths.insert(
            format!("/v1/namespaces/{{namespace}}/{}", kind.plural()),
            json!({ "get": {
                "tags": [tag],
                "summary": format!("List {} with status", kind.plural()),
                "parameters": [namespace],
                "responses": {
                    "200": { "description": "the list", "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{}List", kind.as_str()) } } } },
                    "401": error_response("no or unknown token"),
                    "404": error_response("namespace outside the token's scope, or unknown resource"),
                }
            }}),
        );
        paths.insert(
            format!("/v1/namespaces/{{namespace}}/{}/{{name}}", kind.plural()),
            json!({ "get": {
                "tags": [tag],
                "summary": format!("Read one {} with status", kind.as_str()),
                "parameters": [namespace, { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": {
                    "200": { "description": "the object", "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{}", kind.as_str()) } } } },
                    "401": error_response("no or unknown token"),
                    "404": error_response("not found, or outside the token's scope"),
                }
            }}),
        );
    }
    paths.insert(
        "/v1/openapi.json".into(),
        json!({ "get": { "summary": "This document", "security": [], "responses": { "200": json_response(
            "the OpenAPI 3 document",
            &json!({ "type": "object", "required": ["openapi", "info", "paths"], "properties": { "openapi": { "type": "string" }, "paths": { "type": "object" } } }),
        ) } } }),
    );
    device_paths(&mut paths, &mut schemas, &namespace);
    agent_paths(&mut paths);
    super::network::openapi_paths(&mut paths, &mut schemas);
    crate::alerting::routes::openapi_paths(&mut paths, &mut schemas);
    crate::discovery::routes::openapi_paths(&mut paths, &mut schemas);
    crate::patching::routes::openapi_paths(&mut paths, &mut schemas);
    crate::automation::routes::openapi_paths(&mut paths, &mut schemas);
    crate::automation::audit_routes::openapi_paths(&mut paths, &mut schemas);
    json!({
        "openapi": "3.0.3",
        "info": { "title": "cdot-rmm operator API", "version": env!("CARGO_PKG_VERSION") },
        "components": {
            "schemas": schemas,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }
        },
        "security": [{ "bearer": [] }],
        "paths": paths,
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": { "type": "string" } })
}

/// Schemas derived from wire types of `cdot-crds`, put under `components.schemas`; each
/// [`DerivedSchemas::add`] answers the `$ref` to use in a path.
pub struct DerivedSchemas<'a> {
    generator: schemars::SchemaGenerator,
    schemas: &'a mut Map<String, Value>,
}

impl<'a> DerivedSchemas<'a> {
    pub fn new(schemas: &'a mut Map<String, Value>) -> Self {
        Self {
            generator: schemars::generate::SchemaSettings::openapi3().into_generator(),
            schemas,
        }
    }

    pub fn add<T: schemars::JsonSchema>(&mut self, name: &str) -> Value {
        let schema = self.generator.root_schema_for::<T>();
        self.schemas.insert(name.into(), schema.to_value());
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    /// Adds the types the added ones refer to.
    pub fn finish(mut self) {
        for (name, definition) in self.generator.take_definitions(true) {
            self.schemas.entry(name).or_insert(definition);
        }
    }
}

/// A JSON response whose body is `schema`.
pub fn json_response(description: &str, schema: &Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn object_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "type": "object" } } } })
}

/// A Device's metric time series and installed software (`api::query`), their bodies'
/// schemas derived from the wire types.
fn device_paths(
    paths: &mut Map<String, Value>,
    schemas: &mut Map<String, Value>,
    namespace: &Value,
) {
    use cdot_crds::wire::query::{Identity, MetricSeriesResponse, SoftwareList};
    let (series, software, identity) = {
        let mut derived = DerivedSchemas::new(schemas);
        let refs = (
            derived.add::<MetricSeriesResponse>("MetricSeriesResponse"),
            derived.add::<SoftwareList>("SoftwareList"),
            derived.add::<Identity>("Identity"),
        );
        derived.finish();
        refs
    };
    paths.insert(
        "/v1/whoami".into(),
        json!({ "get": {
            "summary": "The presented token: its name, role and the namespaces it may read",
            "responses": {
                "200": json_response("the token's identity", &identity),
                "401": error_response("no or unknown token"),
            }
        }}),
    );
    let name = path_param("name", "the Device");
    let query = |name: &str, description: &str| json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": "string" } });
    paths.insert(
        "/v1/namespaces/{namespace}/devices/{name}/metrics/{metric}".into(),
        json!({ "get": {
            "tags": ["Device"],
            "summary": "A metric's time series of one Device: [ms, avg, min, max] per step",
            "parameters": [
                namespace,
                name,
                path_param("metric", "a metric of the catalogue, e.g. cpu, disk, networkIn"),
                query("from", "start, RFC 3339 (default: an hour before `to`)"),
                query("to", "end, RFC 3339 (default: now)"),
                query("step", "bucket size, at least 1s; whole minutes from 1m, read from the 1-minute rollup (default 1m)"),
                query("points", "instead of `step`: at most this many buckets per series, each with its average, minimum and maximum (e.g. the plot's width in pixels)"),
                { "name": "labels", "in": "query", "required": false, "style": "deepObject", "explode": true,
                  "description": "`labels.<name>=<value>`: only series with that label value (the metric's labels only)",
                  "schema": { "type": "object", "additionalProperties": { "type": "string" } } },
            ],
            "responses": {
                "200": json_response("`series`, each with its `labels` and `points`, and the `stepMs` and `source` (raw or rollup) read", &series),
                "400": error_response("a bad parameter (`field` names it)"),
                "401": error_response("no or unknown token"),
                "404": error_response("unknown metric or Device, or outside the token's scope"),
            }
        }}),
    );
    paths.insert(
        "/v1/namespaces/{namespace}/devices/{name}/software".into(),
        json!({ "get": {
            "tags": ["Device"],
            "summary": "Installed software of one Device, from its agent's inventory",
            "parameters": [namespace, name],
            "responses": {
                "200": json_response("`items` of {name, version}", &software),
                "401": error_response("no or unknown token"),
                "404": error_response("unknown Device, or outside the token's scope"),
            }
        }}),
    );
}

/// The agent and collector routes (agent listener; mutual TLS or a signed JWT, except
/// enrollment, which takes an enrollment token in its body).
fn agent_paths(paths: &mut Map<String, Value>) {
    let route = |summary: &str, responses: Value| {
        let mut all = json!({
            "401": error_response("no client certificate or valid JWT"),
            "413": error_response("the body is larger than 4 MiB"),
            "503": error_response("the operator is busy; retry after `Retry-After` seconds"),
        });
        if let (Some(all), Some(more)) = (all.as_object_mut(), responses.as_object()) {
            all.extend(more.clone());
        }
        json!({ "tags": ["Agent"], "summary": summary, "security": [], "responses": all })
    };
    let body = |operation: &mut Value| {
        operation["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": { "type": "object" } } } });
    };
    let mut enroll = route(
        "Enroll a device with a one-time enrollment token: its identity and credentials",
        json!({
            "200": object_response("the Device's identity, certificate or JWT key binding, CA and agent configuration"),
            "400": error_response("a bad field (`field` names it)"),
            "429": error_response("too many enrollments from this address; retry after `Retry-After` seconds"),
        }),
    );
    body(&mut enroll);
    let mut renew = route(
        "A new client certificate for the same identity (mutual TLS only)",
        json!({ "200": object_response("the certificate"), "403": error_response("no client certificate") }),
    );
    body(&mut renew);
    let mut metrics = route(
        "A metrics batch (gzip allowed); answered once committed",
        json!({ "200": object_response("the batch acknowledgement"), "400": error_response("a bad sample (`field` names it)") }),
    );
    body(&mut metrics);
    let mut inventory = route(
        "The device's hardware and software inventory",
        json!({ "200": object_response("accepted"), "400": error_response("a bad field (`field` names it)") }),
    );
    body(&mut inventory);
    let mut batches = route(
        "A collector's batch of interface, flow and probe aggregates; answered once committed",
        json!({ "200": object_response("the batch acknowledgement"), "400": error_response("a bad field (`field` names it)"), "403": error_response("the device is not a Collector") }),
    );
    body(&mut batches);
    let ca = json!({ "tags": ["Agent"], "summary": "The agent CA certificate (PEM)", "security": [], "responses": {
        "200": { "description": "PEM", "content": { "text/plain": { "schema": { "type": "string" } } } },
    } });
    for (path, method, operation) in [
        ("/v1/agent/enroll", "post", enroll),
        ("/v1/agent/renew", "post", renew),
        ("/v1/agent/ca.pem", "get", ca),
        ("/v1/agent/metrics", "post", metrics),
        ("/v1/agent/inventory", "put", inventory),
        (
            "/v1/agent/config",
            "get",
            route(
                "The agent's configuration from its Device's spec",
                json!({ "200": object_response("the configuration") }),
            ),
        ),
        (
            "/v1/agent/collector/assignments",
            "get",
            route(
                "What a collector polls and probes",
                json!({ "200": object_response("the assignments") }),
            ),
        ),
        ("/v1/agent/collector/batches", "post", batches),
    ] {
        paths.insert(path.into(), json!({ method: operation }));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_has_list_and_get_paths() {
        let doc = super::build();
        let paths = doc["paths"].as_object().expect("paths");
        for kind in cdot_crds::kind::Kind::ALL {
            assert!(paths.contains_key(&format!("/v1/namespaces/{{namespace}}/{}", kind.plural())));
            // Silences: the alerts API lists documents and API-made ones, ends by id.
            let one = if kind == cdot_crds::kind::Kind::Silence {
                "id"
            } else {
                "name"
            };
            assert!(paths.contains_key(&format!(
                "/v1/namespaces/{{namespace}}/{}/{{{one}}}",
                kind.plural()
            )));
        }
    }
}
