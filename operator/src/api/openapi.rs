//! The OpenAPI 3 document of `/v1`, built from the same CRD schemas that validate manifests.
use std::sync::LazyLock;

use axum::Json;
use cdot_crds::kind::Kind;
use serde_json::{Map, Value, json};

static DOCUMENT: LazyLock<Value> = LazyLock::new(build);

pub async fn document() -> Json<Value> {
    Json(DOCUMENT.clone())
}

fn error_response(description: &str) -> Value {
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
        schemas.insert(
            format!("{}List", kind.as_str()),
            json!({
                "type": "object",
                "properties": { "items": { "type": "array", "items": { "$ref": format!("#/components/schemas/{}", kind.as_str()) } } }
            }),
        );
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
    super::network::openapi_paths(&mut paths);
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

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_has_list_and_get_paths() {
        let doc = super::build();
        let paths = doc["paths"].as_object().expect("paths");
        for kind in cdot_crds::kind::Kind::ALL {
            assert!(paths.contains_key(&format!("/v1/namespaces/{{namespace}}/{}", kind.plural())));
            assert!(paths.contains_key(&format!(
                "/v1/namespaces/{{namespace}}/{}/{{name}}",
                kind.plural()
            )));
        }
    }
}
