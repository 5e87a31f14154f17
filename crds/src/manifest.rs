//! The standalone desired-state parser: multi-document YAML in, validated objects out.
//!
//! Each rmm.cdot.io document goes through the same gates as in a cluster, and all problems
//! are collected: metadata checks, the generated CRD schema, typed deserialization (unknown
//! fields refused), and the kind's [`Validate`] rules.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::LazyLock,
};

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    FieldError, Kind, Validate,
    alert_rule::AlertRuleSpec,
    api_token::{self, ApiToken},
    device::DeviceSpec,
    discovery_scan::DiscoveryScanSpec,
    enrollment_token::{self, EnrollmentToken},
    excerpt::{MAX_MESSAGE_CHARS, clip, excerpt, excerpt_value, inline},
    notification_channel::NotificationChannelSpec,
    patch_policy::PatchPolicySpec,
    validation::{check_label_key, check_label_value, is_dns1123_label, is_dns1123_subdomain},
    workflow::WorkflowSpec,
};

/// A validated rmm.cdot.io object.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// Kind.
    pub kind: Kind,
    /// Namespace (the client).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// The spec after defaults: the typed spec serialized back.
    pub spec: Value,
}

impl Object {
    /// Deserializes the spec into its typed form (e.g. [`DeviceSpec`]).
    pub fn typed_spec<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(self.spec.clone())
    }
}

/// One document of a manifest file.
#[derive(Clone, PartialEq)]
pub enum Document {
    /// A cdot-rmm custom resource.
    Resource(Object),
    /// An API token Secret (`type: rmm.cdot.io/api-token`).
    ApiToken(ApiToken),
    /// An agent enrollment token Secret (`type: rmm.cdot.io/enrollment-token`).
    EnrollmentToken(EnrollmentToken),
    /// Any other v1 Secret (e.g. SNMP credentials referenced by name). Values are never printed.
    Secret {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Decoded `data` merged with `stringData`.
        data: BTreeMap<String, Vec<u8>>,
    },
    /// A v1 ConfigMap (e.g. scripts that Workflow steps refer to by name and key).
    ConfigMap {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// `data`.
        data: BTreeMap<String, String>,
    },
    /// A document of another API group or kind (e.g. a kustomization), passed over.
    Ignored {
        /// Its `apiVersion`.
        api_version: String,
        /// Its `kind`.
        kind: String,
    },
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Document::Resource(o) => f.debug_tuple("Resource").field(o).finish(),
            Document::ApiToken(t) => f.debug_tuple("ApiToken").field(t).finish(),
            Document::EnrollmentToken(t) => f.debug_tuple("EnrollmentToken").field(t).finish(),
            Document::Secret {
                namespace,
                name,
                data,
            } => f
                .debug_struct("Secret")
                .field("namespace", namespace)
                .field("name", name)
                .field("keys", &data.keys().collect::<Vec<_>>())
                .finish_non_exhaustive(),
            // Scripts can be long: the keys say which ones.
            Document::ConfigMap {
                namespace,
                name,
                data,
            } => f
                .debug_struct("ConfigMap")
                .field("namespace", namespace)
                .field("name", name)
                .field("keys", &data.keys().collect::<Vec<_>>())
                .finish_non_exhaustive(),
            Document::Ignored { api_version, kind } => f
                .debug_struct("Ignored")
                .field("api_version", api_version)
                .field("kind", kind)
                .finish(),
        }
    }
}

/// A manifest file could not be read as YAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// YAML syntax (or structure) error.
    #[error("document {doc} (line {line}, column {column}): invalid YAML: {message}")]
    Yaml {
        /// 1-based position of the document in the file.
        doc: usize,
        /// 1-based line in the file.
        line: u64,
        /// 1-based column.
        column: u64,
        /// What the parser said.
        message: String,
    },
}

/// A non-empty document of a file with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct RawDocument {
    /// 1-based position of the document in the file (empty documents count).
    pub index: usize,
    /// 1-based line where the document's content starts.
    pub line: usize,
    /// The document.
    pub value: Value,
}

fn is_separator(line: &str) -> bool {
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t")
}

/// Splits multi-document YAML into its non-empty documents with their 1-based positions.
pub fn split_documents_indexed(text: &str) -> Result<Vec<RawDocument>, ManifestError> {
    // (index, first line (1-based), text)
    let mut chunks: Vec<(usize, usize, String)> = Vec::new();
    let mut current = String::new();
    let mut start_line = 1;
    let mut index = 1;
    let mut seen_separator_or_content = false;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim_end();
        if is_separator(trimmed) {
            if seen_separator_or_content {
                chunks.push((index, start_line, std::mem::take(&mut current)));
                index += 1;
            }
            seen_separator_or_content = true;
            start_line = line_no + 1;
            // Content after `--- ` on the same line belongs to the document.
            let rest = trimmed[3..].trim_start();
            if !rest.is_empty() {
                start_line = line_no;
                current.push_str(rest);
                current.push('\n');
            }
            continue;
        }
        if trimmed == "..." {
            continue;
        }
        if current.is_empty() && !seen_separator_or_content {
            start_line = line_no;
        }
        if !trimmed.trim().is_empty() && !trimmed.trim_start().starts_with('#') {
            seen_separator_or_content = true;
        }
        if current.is_empty() && trimmed.trim().is_empty() {
            start_line = line_no + 1;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.is_empty() {
        chunks.push((index, start_line, current));
    }
    let mut out = Vec::new();
    for (index, line, chunk) in chunks {
        let has_content = chunk.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        });
        if !has_content {
            continue;
        }
        let value: Value = serde_saphyr::from_str(&chunk).map_err(|e| {
            let (l, c) = e
                .location()
                .map(|loc| (loc.line(), loc.column()))
                .unwrap_or((1, 1));
            ManifestError::Yaml {
                doc: index,
                line: l.max(1) + line as u64 - 1,
                column: c.max(1),
                // The parser may quote the offending line, which can be the whole file.
                message: clip(first_line(&e.to_string()), MAX_MESSAGE_CHARS).into_owned(),
            }
        })?;
        if value.is_null() {
            continue;
        }
        out.push(RawDocument { index, line, value });
    }
    Ok(out)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// Splits multi-document YAML into its non-empty documents (use [`split_documents_indexed`]
/// for their positions in the file).
pub fn split_documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    Ok(split_documents_indexed(text)?
        .into_iter()
        .map(|d| d.value)
        .collect())
}

/// One validated document of a file, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDocument {
    /// 1-based position of the document in the file (empty documents count).
    pub index: usize,
    /// 1-based line where the document's content starts.
    pub line: usize,
    /// The document, or every problem found in it.
    pub result: Result<Document, Vec<FieldError>>,
}

/// Parses and validates every non-empty document of a file.
pub fn parse_file(text: &str) -> Result<Vec<ParsedDocument>, ManifestError> {
    Ok(split_documents_indexed(text)?
        .into_iter()
        .map(|d| ParsedDocument {
            index: d.index,
            line: d.line,
            result: validate_document(&d.value),
        })
        .collect())
}

fn err(path: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError::new(path, message)
}

fn string_map(
    v: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                match v {
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    _ => errs.push(err(format!("{path}.{}", inline(k)), "must be a string")),
                }
            }
        }
        Some(_) => errs.push(err(path, "must be a map of strings")),
    }
    out
}

struct Meta {
    name: String,
    namespace: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn check_metadata(doc: &Value, errs: &mut Vec<FieldError>) -> Meta {
    let meta = doc.get("metadata");
    let mut m = Meta {
        name: String::new(),
        namespace: String::new(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
    };
    let Some(meta) = meta.and_then(Value::as_object) else {
        errs.push(err(
            "metadata",
            "required: an object with name and namespace",
        ));
        return m;
    };
    match meta.get("name").and_then(Value::as_str) {
        None => errs.push(err("metadata.name", "required")),
        Some(n) if !is_dns1123_subdomain(n) => errs.push(err(
            "metadata.name",
            format!(
                "{} must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.'; at most 253)",
                excerpt(n)
            ),
        )),
        Some(n) => m.name = n.to_owned(),
    }
    match meta.get("namespace").and_then(Value::as_str) {
        None => errs.push(err(
            "metadata.namespace",
            "required: every document names its client namespace",
        )),
        Some(n) if !is_dns1123_label(n) => errs.push(err(
            "metadata.namespace",
            format!(
                "{} must be a lowercase RFC 1123 label (a-z, 0-9, '-'; at most 63)",
                excerpt(n)
            ),
        )),
        Some(n) => m.namespace = n.to_owned(),
    }
    m.labels = string_map(meta.get("labels"), "metadata.labels", errs);
    for (k, v) in &m.labels {
        if let Err(e) = check_label_key(k) {
            errs.push(err(format!("metadata.labels.{}", inline(k)), e));
        }
        if let Err(e) = check_label_value(v) {
            errs.push(err(format!("metadata.labels.{}", inline(k)), e));
        }
    }
    m.annotations = string_map(meta.get("annotations"), "metadata.annotations", errs);
    for k in m.annotations.keys() {
        if let Err(e) = check_label_key(k) {
            errs.push(err(format!("metadata.annotations.{}", inline(k)), e));
        }
    }
    m
}

/// Makes a CRD structural schema usable by a JSON-schema validator: `nullable: true` becomes
/// an explicit `null` type (and enum member).
fn prepare_schema(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(t)) = m.get("type").cloned() {
                    m.insert(
                        "type".into(),
                        Value::Array(vec![Value::String(t), "null".into()]),
                    );
                }
                if let Some(Value::Array(e)) = m.get_mut("enum")
                    && !e.contains(&Value::Null)
                {
                    e.push(Value::Null);
                }
            }
            for (_, child) in m.iter_mut() {
                prepare_schema(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(prepare_schema),
        _ => {}
    }
}

static VALIDATORS: LazyLock<HashMap<Kind, Result<jsonschema::Validator, String>>> =
    LazyLock::new(|| {
        Kind::ALL
            .into_iter()
            .map(|k| {
                let crd = k.crd();
                let schema = crd
                    .spec
                    .versions
                    .first()
                    .and_then(|v| v.schema.as_ref())
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .and_then(|s| serde_json::to_value(s).ok());
                let built = match schema {
                    None => Err(format!("CRD of {k} has no schema")),
                    Some(mut schema) => {
                        prepare_schema(&mut schema);
                        jsonschema::options()
                            .should_validate_formats(false)
                            .build(&schema)
                            .map_err(|e| format!("schema of {k} does not compile: {e}"))
                    }
                };
                (k, built)
            })
            .collect()
    });

/// Converts a JSON pointer into the dotted form `spec.targets[1]`, using the instance to tell
/// array indices from map keys.
fn pointer_to_path(pointer: &str, instance: &Value) -> String {
    let mut out = String::new();
    let mut cur = Some(instance);
    for raw in pointer.split('/').skip(1) {
        let seg = raw.replace("~1", "/").replace("~0", "~");
        match cur {
            Some(Value::Array(a)) => {
                out.push_str(&format!("[{seg}]"));
                cur = seg.parse::<usize>().ok().and_then(|i| a.get(i));
            }
            other => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&inline(&seg));
                cur = other.and_then(|v| v.get(&seg));
            }
        }
    }
    out
}

fn schema_errors(kind: Kind, doc: &Value) -> Vec<FieldError> {
    let validator = match VALIDATORS.get(&kind) {
        Some(Ok(v)) => v,
        Some(Err(e)) => return vec![err("spec", e.clone())],
        None => return vec![err("kind", "no schema")],
    };
    let mut out = Vec::new();
    for e in validator.iter_errors(doc) {
        let mut path = pointer_to_path(e.instance_path().as_str(), doc);
        if let jsonschema::error::ValidationErrorKind::Required { property } = e.kind()
            && let Some(p) = property.as_str()
        {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(p);
            out.push(err(path, "required"));
            continue;
        }
        if path.is_empty() {
            path = ".".into();
        }
        out.push(err(path, schema_message(&e)));
    }
    out
}

/// Field names listed in one "unknown fields" message.
const MAX_LISTED_FIELDS: usize = 5;

/// The validator's message with the offending value (which it would print whole) replaced by
/// its excerpt, and unknown field names excerpted and counted.
fn schema_message(e: &jsonschema::ValidationError<'_>) -> String {
    use std::fmt::Write as _;
    if let jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } = e.kind() {
        let mut message = String::from("unknown field");
        if unexpected.len() > 1 {
            message.push('s');
        }
        for (i, name) in unexpected.iter().take(MAX_LISTED_FIELDS).enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            let _ = write!(message, "{sep}{}", excerpt(name));
        }
        if unexpected.len() > MAX_LISTED_FIELDS {
            let _ = write!(
                message,
                " and {} more",
                unexpected.len() - MAX_LISTED_FIELDS
            );
        }
        return message;
    }
    e.masked_with(excerpt_value(e.instance())).to_string()
}

fn serde_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::from("spec");
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                out.push('.');
                out.push_str(&inline(key));
            }
            Segment::Enum { variant } => {
                out.push('.');
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// Typed deserialization plus [`Validate`]; returns the defaulted spec.
fn typed<T>(
    spec: &Value,
    labels: &BTreeMap<String, String>,
    errs: &mut Vec<FieldError>,
) -> Option<Value>
where
    T: DeserializeOwned + serde::Serialize + Validate,
{
    match serde_path_to_error::deserialize::<_, T>(spec) {
        Ok(typed) => {
            errs.extend(typed.validate());
            errs.extend(typed.validate_metadata(labels));
            serde_json::to_value(&typed).ok()
        }
        Err(e) => {
            let path = serde_path(e.path());
            if !errs.iter().any(|x| x.path == path) {
                // serde quotes the offending value whole; FieldError bounds the message.
                errs.push(err(path, first_line(&e.inner().to_string())));
            }
            None
        }
    }
}

/// Validates one document (all problems are collected).
pub fn validate_document(value: &Value) -> Result<Document, Vec<FieldError>> {
    let mut errs = Vec::new();
    let Some(obj) = value.as_object() else {
        return Err(vec![err(".", "a document must be a YAML mapping")]);
    };
    let api_version = obj.get("apiVersion").and_then(Value::as_str);
    let kind_str = obj.get("kind").and_then(Value::as_str);
    let (Some(api_version), Some(kind_str)) = (api_version, kind_str) else {
        if api_version.is_none() {
            errs.push(err("apiVersion", "required"));
        }
        if kind_str.is_none() {
            errs.push(err("kind", "required"));
        }
        return Err(errs);
    };
    if api_version == "v1" && kind_str == "Secret" {
        return secret(value);
    }
    if api_version == "v1" && kind_str == "ConfigMap" {
        return config_map(value);
    }
    let group = api_version.split_once('/').map(|(g, _)| g);
    if group != Some(crate::GROUP) {
        return Ok(Document::Ignored {
            api_version: api_version.to_owned(),
            kind: kind_str.to_owned(),
        });
    }
    if api_version != crate::API_VERSION {
        errs.push(err(
            "apiVersion",
            format!(
                "{} is not served; use {}",
                excerpt(api_version),
                crate::API_VERSION
            ),
        ));
    }
    let kind = Kind::from_kind_name(kind_str);
    if kind.is_none() {
        errs.push(err(
            "kind",
            format!(
                "unknown kind {} in {}; expected one of {}",
                excerpt(kind_str),
                crate::GROUP,
                Kind::ALL.map(Kind::as_str).join(", ")
            ),
        ));
    }
    let meta = check_metadata(value, &mut errs);
    let Some(kind) = kind else {
        return Err(errs);
    };
    // `status` in a manifest is ignored: it is observed state, not desired state.
    let mut doc = value.clone();
    if let Some(m) = doc.as_object_mut() {
        m.remove("status");
    }
    // metadata was checked above; the CRD schema only says `type: object` for it.
    errs.extend(schema_errors(kind, &doc));
    let spec = doc.get("spec").cloned().unwrap_or(Value::Null);
    let labels = &meta.labels;
    let typed_spec = if spec.is_null() {
        if !errs.iter().any(|e| e.path == "spec") {
            errs.push(err("spec", "required"));
        }
        None
    } else {
        match kind {
            Kind::Device => typed::<DeviceSpec>(&spec, labels, &mut errs),
            Kind::AlertRule => typed::<AlertRuleSpec>(&spec, labels, &mut errs),
            Kind::NotificationChannel => typed::<NotificationChannelSpec>(&spec, labels, &mut errs),
            Kind::PatchPolicy => typed::<PatchPolicySpec>(&spec, labels, &mut errs),
            Kind::Workflow => typed::<WorkflowSpec>(&spec, labels, &mut errs),
            Kind::DiscoveryScan => typed::<DiscoveryScanSpec>(&spec, labels, &mut errs),
            Kind::Silence => typed::<crate::silence::SilenceSpec>(&spec, labels, &mut errs),
        }
    };
    match typed_spec {
        Some(spec) if errs.is_empty() => Ok(Document::Resource(Object {
            kind,
            namespace: meta.namespace,
            name: meta.name,
            labels: meta.labels,
            annotations: meta.annotations,
            spec,
        })),
        _ => {
            dedup(&mut errs);
            Err(errs)
        }
    }
}

fn dedup(errs: &mut Vec<FieldError>) {
    let mut seen = std::collections::HashSet::new();
    errs.retain(|e| seen.insert((e.path.clone(), e.message.clone())));
}

fn secret(value: &Value) -> Result<Document, Vec<FieldError>> {
    let mut errs = Vec::new();
    let meta = check_metadata(value, &mut errs);
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    match value.get("data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                match v
                    .as_str()
                    .map(|s| base64::engine::general_purpose::STANDARD.decode(s.trim()))
                {
                    Some(Ok(bytes)) => {
                        data.insert(k.clone(), bytes);
                    }
                    _ => errs.push(err(
                        format!("data.{}", inline(k)),
                        "must be a base64 string",
                    )),
                }
            }
        }
        Some(_) => errs.push(err("data", "must be a map")),
    }
    for (k, v) in string_map(value.get("stringData"), "stringData", &mut errs) {
        data.insert(k, v.into_bytes());
    }
    let secret_type = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("Opaque");
    if !errs.is_empty() {
        return Err(errs);
    }
    if secret_type == api_token::SECRET_TYPE {
        return ApiToken::from_secret_data(&meta.name, &meta.namespace, &data)
            .map(Document::ApiToken);
    }
    if secret_type == enrollment_token::SECRET_TYPE {
        return EnrollmentToken::from_secret_data(&meta.name, &meta.namespace, &data)
            .map(Document::EnrollmentToken);
    }
    Ok(Document::Secret {
        namespace: meta.namespace,
        name: meta.name,
        data,
    })
}

/// Kubernetes' limit on a ConfigMap's data (keys and values together).
pub const MAX_CONFIG_MAP_BYTES: usize = 1 << 20;

fn config_map(value: &Value) -> Result<Document, Vec<FieldError>> {
    let mut errs = Vec::new();
    let meta = check_metadata(value, &mut errs);
    let data = string_map(value.get("data"), "data", &mut errs);
    for k in data.keys() {
        if !crate::common::is_data_key(k) {
            errs.push(err(
                format!("data.{}", inline(k)),
                "a ConfigMap key must be 1-253 alphanumerics, '-', '_' or '.'",
            ));
        }
    }
    // Nothing reads binary values (scripts are text): refused rather than silently dropped.
    if value
        .get("binaryData")
        .is_some_and(|b| b.as_object().is_none_or(|m| !m.is_empty()))
    {
        errs.push(err(
            "binaryData",
            "not supported: cdot-rmm reads ConfigMap text only; put the values in data",
        ));
    }
    let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_CONFIG_MAP_BYTES {
        errs.push(err(
            "data",
            format!(
                "holds {size} bytes, more than Kubernetes allows a ConfigMap ({MAX_CONFIG_MAP_BYTES})"
            ),
        ));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Document::ConfigMap {
        namespace: meta.namespace,
        name: meta.name,
        data,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn splits_documents_keeping_positions() {
        let text = "# header comment\n---\n---\napiVersion: v1\nkind: ConfigMap\n---\n# only a comment\n---\na: 1\n...\n";
        let docs = split_documents_indexed(text).expect("parses");
        let pos: Vec<_> = docs.iter().map(|d| (d.index, d.line)).collect();
        assert_eq!(pos, [(2, 4), (4, 9)]);
        assert_eq!(docs[1].value, json!({"a": 1}));
        assert_eq!(split_documents(text).expect("parses").len(), 2);
        assert_eq!(
            split_documents("a: 1\n").expect("parses"),
            [json!({"a": 1})]
        );
        assert!(split_documents("").expect("parses").is_empty());
    }

    #[test]
    fn yaml_errors_name_document_and_line() {
        let text = "a: 1\n---\nb: 2\nc: [unclosed\nd: 4\n";
        let e = split_documents(text).expect_err("invalid");
        let ManifestError::Yaml { doc, line, .. } = &e;
        assert_eq!(*doc, 2);
        assert!((3..=6).contains(line), "line {line}");
        assert!(e.to_string().starts_with("document 2 (line "), "{e}");
    }

    #[test]
    fn other_groups_are_ignored() {
        let d = validate_document(
            &json!({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}),
        );
        assert!(matches!(d, Ok(Document::Ignored { ref kind, .. }) if kind == "Kustomization"));
    }

    #[test]
    fn non_documents_are_refused() {
        assert_eq!(
            validate_document(&json!([1])).expect_err("not a map")[0].path,
            "."
        );
        let e = validate_document(&json!({"kind": "Device"})).expect_err("no apiVersion");
        assert_eq!(e[0].path, "apiVersion");
        let e = validate_document(&json!({"apiVersion": "rmm.cdot.io/v1alpha1", "kind": "Device", "metadata": {"name": "a", "namespace": "b"}}))
            .expect_err("no spec");
        assert!(e.iter().any(|e| e.path == "spec"), "{e:?}");
    }

    #[test]
    fn all_errors_are_collected() {
        let e = validate_document(&json!({
            "apiVersion": "rmm.cdot.io/v1alpha1", "kind": "DiscoveryScan",
            "metadata": {"name": "Bad_Name", "namespace": "acme"},
            "spec": {"targets": ["10.0.0.0/24"], "rateLimit": 0, "timeout": "0s"}
        }))
        .expect_err("invalid");
        let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
        assert!(
            paths.contains(&"metadata.name") && paths.contains(&"spec.rateLimit"),
            "{paths:?}"
        );
    }

    #[test]
    fn secrets_keep_values_out_of_debug() {
        let d = validate_document(&json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "snmp-acme", "namespace": "acme"},
            "data": {"community": "cHVibGlj"},
            "stringData": {"user": "ops"}
        }))
        .expect("valid");
        let Document::Secret { ref data, .. } = d else {
            panic!("not a secret")
        };
        assert_eq!(data["community"], b"public");
        assert_eq!(data["user"], b"ops");
        let dbg = format!("{d:?}");
        assert!(!dbg.contains("public") && !dbg.contains("ops\"") && dbg.contains("community"));
        let e = validate_document(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "acme"}, "data": {"k": "%%%"}}))
            .expect_err("bad base64");
        assert_eq!(e[0].path, "data.k");
    }

    #[test]
    fn config_maps() {
        let d = validate_document(&json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "scripts", "namespace": "acme"},
            "data": {"cleanup.sh": "rm -rf /tmp/x\n"}
        }))
        .expect("valid");
        let Document::ConfigMap {
            ref namespace,
            ref name,
            ref data,
        } = d
        else {
            panic!("not a ConfigMap")
        };
        assert_eq!((namespace.as_str(), name.as_str()), ("acme", "scripts"));
        assert_eq!(data["cleanup.sh"], "rm -rf /tmp/x\n");
        assert!(!format!("{d:?}").contains("rm -rf"), "{d:?}");

        let refused = |extra: Value| {
            let mut doc = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "scripts", "namespace": "acme"}});
            crate::test_support::merge(&mut doc, &extra);
            let e = validate_document(&doc).expect_err("refused");
            e.into_iter().map(|e| e.path).collect::<Vec<_>>()
        };
        assert_eq!(refused(json!({"data": {"a/b": "x"}})), ["data.a/b"]);
        assert_eq!(refused(json!({"data": {"n": 1}})), ["data.n"]);
        assert_eq!(
            refused(json!({"binaryData": {"bin": "AAEC"}})),
            ["binaryData"]
        );
        assert_eq!(
            refused(json!({"data": {"big": "x".repeat(MAX_CONFIG_MAP_BYTES)}})),
            ["data"]
        );
        assert_eq!(
            refused(json!({"metadata": {"namespace": null}, "data": {}})),
            ["metadata.namespace"]
        );
    }

    #[test]
    fn api_token_secrets() {
        let hash = api_token::format_token_hash(&api_token::hash_token("t0ken"));
        let d = validate_document(&json!({
            "apiVersion": "v1", "kind": "Secret", "type": "rmm.cdot.io/api-token",
            "metadata": {"name": "alice", "namespace": "cdot-system"},
            "stringData": {"tokenHash": hash, "role": "viewer", "namespaces": "acme"}
        }))
        .expect("valid");
        let Document::ApiToken(t) = d else {
            panic!("not a token")
        };
        assert!(
            t.token_sha256 == api_token::hash_token("t0ken") && t.role == api_token::Role::Viewer
        );
        let e = validate_document(&json!({
            "apiVersion": "v1", "kind": "Secret", "type": "rmm.cdot.io/api-token",
            "metadata": {"name": "alice", "namespace": "cdot-system"},
            "stringData": {"tokenHash": "t0ken", "role": "viewer", "namespaces": "acme"}
        }))
        .expect_err("plaintext token");
        assert_eq!(e[0].path, "stringData.tokenHash");
        let rendered = api_token::render_token_secret(
            "bob",
            "cdot-system",
            api_token::Role::Admin,
            &["*".into()],
            "xyz",
        );
        let docs = split_documents(&rendered).expect("yaml");
        assert!(matches!(
            validate_document(&docs[0]),
            Ok(Document::ApiToken(_))
        ));
    }

    #[test]
    fn nullable_fields_accept_null() {
        let d = validate_document(&json!({
            "apiVersion": "rmm.cdot.io/v1alpha1", "kind": "Device",
            "metadata": {"name": "a", "namespace": "b"},
            "spec": {"displayName": null, "snmp": null}
        }));
        assert!(d.is_ok(), "{d:?}");
    }

    /// Every gate that quotes the input (metadata checks, the schema, typed deserialization,
    /// the kind's rules, the YAML parser) quotes a huge value as a short excerpt.
    #[test]
    fn huge_values_are_quoted_short() {
        let huge = "x".repeat(3 << 20);
        let documents = [
            json!({"apiVersion": "rmm.cdot.io/v1alpha1", "kind": "Device",
                "metadata": {"name": huge, "namespace": huge,
                    "labels": {"role": huge}, "annotations": {(huge.clone()): "a"}},
                "spec": {"class": huge, "displayName": huge, (huge.clone()): 1}}),
            json!({"apiVersion": "rmm.cdot.io/v1alpha1", "kind": "DiscoveryScan",
                "metadata": {"name": "a", "namespace": "b"},
                "spec": {"targets": [huge, {"a": huge}], "schedule": huge, "timeout": huge}}),
            json!({"apiVersion": "rmm.cdot.io/v1alpha1", "kind": "Device",
                "metadata": {"name": "a", "namespace": "b"}, "spec": {(huge.clone()): 1}}),
            json!({"apiVersion": "rmm.cdot.io/v1alpha1", "kind": huge}),
            json!({"apiVersion": format!("rmm.cdot.io/{huge}"), "kind": "Device"}),
            json!({"apiVersion": "v1", "kind": "Secret", "type": "rmm.cdot.io/api-token",
                "metadata": {"name": "a", "namespace": "b"},
                "stringData": {"tokenHash": huge, "role": huge, "namespaces": huge}}),
        ];
        for document in documents {
            let errors = validate_document(&document).expect_err("invalid");
            let rendered = crate::validation::describe_errors(&errors);
            assert!(
                rendered.len() < 16 << 10,
                "{} bytes: {rendered:.2000}",
                rendered.len()
            );
            for e in &errors {
                assert!(e.to_string().len() < 1024, "{e:.2000}");
            }
            assert!(rendered.contains("…\" (31457"), "{rendered}");
        }

        let yaml = format!("a: [1\nb: {huge}\n");
        let e = split_documents(&yaml).expect_err("invalid YAML");
        assert!(e.to_string().len() < 1024, "{e:.2000}");
    }

    #[test]
    fn parse_file_reports_positions() {
        let text = "apiVersion: rmm.cdot.io/v1alpha1\nkind: Device\nmetadata: {name: a, namespace: b}\nspec: {}\n---\napiVersion: rmm.cdot.io/v1alpha1\nkind: Device\nmetadata: {name: a, namespace: b}\nspec: {class: Nope}\n";
        let docs = parse_file(text).expect("yaml");
        assert!(docs[0].result.is_ok());
        assert_eq!((docs[1].index, docs[1].line), (2, 6));
        let errs = docs[1].result.as_ref().expect_err("invalid");
        assert_eq!(errs[0].path, "spec.class");
    }
}
