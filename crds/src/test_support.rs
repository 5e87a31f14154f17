//! Helpers for the validation tests: a valid document per kind, patched per case.

use serde_json::{Value, json};

use crate::{FieldError, manifest::validate_document};

/// JSON merge patch (RFC 7386): `null` deletes.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// A document of `kind` with `spec`, in namespace `acme`, named `x`.
pub fn doc(kind: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "rmm.cdot.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "acme"},
        "spec": spec,
    })
}

/// Errors of `base` patched with `patch` (empty when valid).
pub fn errors(base: &Value, patch: Value) -> Vec<FieldError> {
    let mut d = base.clone();
    merge(&mut d, &patch);
    match validate_document(&d) {
        Ok(_) => Vec::new(),
        Err(e) => e,
    }
}

/// Asserts the patched document is valid.
#[track_caller]
pub fn ok(base: &Value, patch: Value) {
    let e = errors(base, patch.clone());
    assert!(e.is_empty(), "expected valid with {patch}, got {e:#?}");
}

/// Asserts the patched document has an error at exactly `path`.
#[track_caller]
pub fn err_at(base: &Value, patch: Value, path: &str) {
    let e = errors(base, patch.clone());
    assert!(
        e.iter().any(|e| e.path == path),
        "expected an error at {path} with {patch}, got {e:#?}"
    );
}
