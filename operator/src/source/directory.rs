//! Reads every `*.yaml`/`*.yml` under one or more directories (a git checkout) into a
//! [`Snapshot`], validating each document with the same rules the CRD schemas carry.
//!
//! Any invalid document refuses the whole change set; every error names the file, the
//! document's position in it, the object and the field path.
//!
//! Memory and messages stay bounded whatever the checkout holds: a file larger than
//! [`ReadLimits::max_file_bytes`] is refused by its size before it is read (and while it is
//! read, should it grow), the whole set is bounded too, errors quote input as short excerpts,
//! and a refusal is reported by its first [`MAX_REPORTED_ERRORS`] errors.
use std::{
    collections::HashMap,
    fmt,
    io::Read as _,
    path::{Path, PathBuf},
};

use cdot_crds::{
    discovery_scan::DiscoveryScanSpec,
    excerpt::{MAX_PATH_CHARS, clip, inline},
    kind::Kind,
    manifest::{self, Document},
    notification_channel::NotificationChannelSpec,
    workflow::WorkflowSpec,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Snapshot;
use crate::store::DesiredObject;

/// One reason a change set was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// File path relative to its manifest directory (or the directory itself).
    pub file: String,
    /// 1-based position of the document in the file; 0 when the error is about the file.
    pub document: usize,
    /// `Kind namespace/name` as far as the document says.
    pub object: Option<String>,
    /// Field path inside the document, e.g. `spec.targets[1]`.
    pub path: Option<String>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.document > 0 {
            write!(f, ":{}", self.document)?;
        }
        if let Some(object) = &self.object {
            write!(f, ": {object}")?;
        }
        if let Some(path) = &self.path {
            write!(f, ": {path}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Default largest manifest file: far above any hand-written set of resources (the examples
/// are a few KiB), and small enough that parsing it (a parsed document takes several times its
/// text) cannot strain memory.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 << 20;

/// The whole set may hold this many times the per-file limit (64 MiB at the default).
pub const TOTAL_BYTES_PER_FILE_LIMIT: u64 = 16;

/// Errors of a refused set that are logged one per line and stored; the rest are counted.
pub const MAX_REPORTED_ERRORS: usize = 20;

/// How much of a checkout is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest file, in bytes (`--max-manifest-bytes`).
    pub max_file_bytes: u64,
}

impl ReadLimits {
    /// Largest sum of all files' sizes.
    pub fn max_total_bytes(&self) -> u64 {
        self.max_file_bytes
            .saturating_mul(TOTAL_BYTES_PER_FILE_LIMIT)
    }
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// Why a manifest file was not read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("cannot read file: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "file is {size} bytes, more than the limit of {limit} bytes (--max-manifest-bytes); split it or raise the limit"
    )]
    TooLarge { size: u64, limit: u64 },
    #[error("file grew past the limit of {limit} bytes (--max-manifest-bytes) while it was read")]
    Grew { limit: u64 },
    #[error(
        "the manifest files hold more than {limit} bytes in all ({factor} times --max-manifest-bytes); this file and the rest are not read",
        factor = TOTAL_BYTES_PER_FILE_LIMIT
    )]
    SetTooLarge { limit: u64 },
}

/// Reads a file of at most `limits.max_file_bytes`, and at most `room` bytes (what is left of
/// the set's total). Refused by its size before reading, and by what was read should it grow
/// in between: no more than the limit and one byte is ever held.
fn read_bounded(path: &Path, limits: ReadLimits, room: u64) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let set_too_large = ReadError::SetTooLarge {
        limit: limits.max_total_bytes(),
    };
    if size > limits.max_file_bytes {
        return Err(ReadError::TooLarge {
            size,
            limit: limits.max_file_bytes,
        });
    }
    if size > room {
        return Err(set_too_large);
    }
    let cap = limits.max_file_bytes.min(room);
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or_default());
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    match bytes.len() as u64 {
        read if read <= cap => Ok(bytes),
        _ if cap < limits.max_file_bytes => Err(set_too_large),
        _ => Err(ReadError::Grew {
            limit: limits.max_file_bytes,
        }),
    }
}

/// Files of a manifest set, read once so that the fingerprint and the parse see the same bytes.
#[derive(Debug, Default)]
pub struct ManifestFiles {
    files: Vec<(String, Vec<u8>)>,
    errors: Vec<LoadError>,
}

impl ManifestFiles {
    /// Reads every YAML file below `dirs`, skipping hidden entries such as `.git`, within
    /// `limits`.
    pub fn read(dirs: &[PathBuf], limits: ReadLimits) -> Self {
        let mut out = Self::default();
        let mut total: u64 = 0;
        for dir in dirs {
            let mut paths = Vec::new();
            if let Err(e) = collect_yaml(dir, &mut paths) {
                out.errors.push(file_error(
                    dir.display().to_string(),
                    format!("cannot read manifest directory: {e}"),
                ));
                continue;
            }
            paths.sort();
            for path in paths {
                let shown = display_path(dir, &path, dirs.len() > 1);
                let room = limits.max_total_bytes().saturating_sub(total);
                match read_bounded(&path, limits, room) {
                    Ok(bytes) => {
                        total += bytes.len() as u64;
                        out.files.push((shown, bytes));
                    }
                    // The set is refused anyway: reading on would only hold more memory.
                    Err(e @ ReadError::SetTooLarge { .. }) => {
                        out.errors.push(file_error(shown, e.to_string()));
                        return out;
                    }
                    Err(e) => out.errors.push(file_error(shown, e.to_string())),
                }
            }
        }
        out
    }

    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        for (name, bytes) in &self.files {
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
        for error in &self.errors {
            hasher.update(error.to_string().as_bytes());
        }
        hex::encode(hasher.finalize())
    }

    /// Parses and validates everything; any error refuses the whole set.
    pub fn parse(self, system_namespace: &str) -> Result<Snapshot, Vec<LoadError>> {
        let fingerprint = self.fingerprint();
        let mut errors = self.errors;
        let mut snapshot = Snapshot {
            fingerprint,
            ..Snapshot::default()
        };
        let mut seen: HashMap<(String, String, String), String> = HashMap::new();
        let mut tokens = super::TokenSet::new(system_namespace);

        for (file, bytes) in &self.files {
            let Ok(text) = std::str::from_utf8(bytes) else {
                errors.push(file_error(file.clone(), "file is not UTF-8 text".into()));
                continue;
            };
            let documents = match manifest::split_documents_indexed(text) {
                Ok(documents) => documents,
                Err(e) => {
                    errors.push(file_error(file.clone(), e.to_string()));
                    continue;
                }
            };
            for document in &documents {
                let (position, value) = (document.index, &document.value);
                let here = |path: Option<String>, message: String| LoadError {
                    file: file.clone(),
                    document: position,
                    object: describe(value),
                    path,
                    message,
                };
                match manifest::validate_document(value) {
                    Err(field_errors) => errors.extend(
                        field_errors
                            .into_iter()
                            .map(|e| here(Some(e.path), e.message)),
                    ),
                    Ok(Document::Resource(object)) => {
                        let key = (
                            object.kind.as_str().to_owned(),
                            object.namespace.clone(),
                            object.name.clone(),
                        );
                        let location = format!("{file}:{position}");
                        if let Some(first) = seen.insert(key, location) {
                            errors.push(here(
                                Some("metadata.name".into()),
                                format!("duplicate object: already defined at {first}"),
                            ));
                            continue;
                        }
                        snapshot.objects.push(DesiredObject {
                            kind: object.kind,
                            namespace: object.namespace,
                            name: object.name,
                            labels: object.labels,
                            annotations: object.annotations,
                            spec: object.spec,
                            source: format!("{file}#{position}"),
                        });
                    }
                    Ok(Document::ApiToken(token)) => {
                        if let Err(e) = tokens.add_api_token(token, format!("{file}:{position}")) {
                            errors.push(here(Some(e.path.into()), e.message));
                        }
                    }
                    Ok(Document::EnrollmentToken(token)) => {
                        if let Err(e) =
                            tokens.add_enrollment_token(token, format!("{file}:{position}"))
                        {
                            errors.push(here(Some(e.path.into()), e.message));
                        }
                    }
                    // Credentials that resources refer to (SNMP): held in memory, never stored.
                    Ok(Document::Secret {
                        namespace,
                        name,
                        data,
                    }) => snapshot.secrets.push((namespace, name, data)),
                    // Scripts that Workflows refer to: held in memory like the Secrets.
                    Ok(Document::ConfigMap {
                        namespace,
                        name,
                        data,
                    }) => {
                        let key = ("ConfigMap".to_owned(), namespace.clone(), name.clone());
                        if let Some(first) = seen.insert(key, format!("{file}:{position}")) {
                            errors.push(here(
                                Some("metadata.name".into()),
                                format!("duplicate object: already defined at {first}"),
                            ));
                            continue;
                        }
                        snapshot.config_maps.push((namespace, name, data));
                    }
                    Ok(Document::Ignored { api_version, kind }) => {
                        let (api_version, kind) = (inline(&api_version), inline(&kind));
                        tracing::debug!(%file, position, %api_version, %kind, "ignoring a document of another API");
                    }
                }
            }
        }
        (snapshot.tokens, snapshot.enrollment_tokens) = tokens.into_parts();
        errors.extend(missing_secrets(&snapshot));
        errors.extend(missing_config_maps(&snapshot));
        errors.extend(invalid_scripts(&snapshot));
        if errors.is_empty() {
            Ok(snapshot)
        } else {
            Err(errors)
        }
    }
}

/// A NotificationChannel naming a Secret (or key) the change set does not hold would fail
/// every delivery at 3 a.m.: refuse the set now, naming the field.
fn missing_secrets(snapshot: &Snapshot) -> Vec<LoadError> {
    let secrets: HashMap<(&str, &str), &std::collections::BTreeMap<String, Vec<u8>>> = snapshot
        .secrets
        .iter()
        .map(|(ns, name, data)| ((ns.as_str(), name.as_str()), data))
        .collect();
    let mut errors = Vec::new();
    for object in &snapshot.objects {
        // The Secrets an object refers to (only kinds whose references are needed to work:
        // a channel cannot deliver, a scan cannot log in without them).
        let refs = match object.kind {
            Kind::NotificationChannel => {
                serde_json::from_value::<NotificationChannelSpec>(object.spec.clone()).map(|spec| {
                    spec.secret_refs()
                        .into_iter()
                        .map(|(p, n, k)| (p, n.to_owned(), k.map(str::to_owned)))
                        .collect::<Vec<_>>()
                })
            }
            Kind::DiscoveryScan => serde_json::from_value::<DiscoveryScanSpec>(object.spec.clone())
                .map(|spec| {
                    spec.secret_refs()
                        .into_iter()
                        .map(|(p, n, k)| (p, n.to_owned(), k.map(str::to_owned)))
                        .collect()
                }),
            _ => continue,
        };
        let Ok(refs) = refs else { continue };
        for (path, name, key) in refs {
            let (name, key) = (name.as_str(), key.as_deref());
            let message = match (secrets.get(&(object.namespace.as_str(), name)), key) {
                (None, _) => format!(
                    "Secret {}/{} is not in the manifests",
                    object.namespace,
                    inline(name)
                ),
                (Some(data), Some(key)) if !data.contains_key(key) => format!(
                    "Secret {}/{} has no key {}",
                    object.namespace,
                    inline(name),
                    inline(key)
                ),
                _ => continue,
            };
            errors.push(object_error(object, path, message));
        }
    }
    errors
}

/// A Workflow whose RunScript step names a ConfigMap (or key) the change set does not hold
/// would fail that step on every run: refused now, like a channel's missing Secret.
fn missing_config_maps(snapshot: &Snapshot) -> Vec<LoadError> {
    let config_maps: HashMap<(&str, &str), &std::collections::BTreeMap<String, String>> = snapshot
        .config_maps
        .iter()
        .map(|(ns, name, data)| ((ns.as_str(), name.as_str()), data))
        .collect();
    let mut errors = Vec::new();
    for object in snapshot.objects.iter().filter(|o| o.kind == Kind::Workflow) {
        let Ok(spec) = serde_json::from_value::<WorkflowSpec>(object.spec.clone()) else {
            continue;
        };
        for (path, r) in spec.config_map_refs() {
            let name = format!("ConfigMap {}/{}", object.namespace, inline(&r.name));
            let message = match config_maps.get(&(object.namespace.as_str(), r.name.as_str())) {
                None => format!("{name} is not in the manifests"),
                Some(data) if !data.contains_key(&r.key) => {
                    format!("{name} has no key {}", inline(&r.key))
                }
                Some(_) => continue,
            };
            errors.push(object_error(object, path, message));
        }
    }
    errors
}

/// A Workflow whose condition or rhai script does not compile would fail every run.
fn invalid_scripts(snapshot: &Snapshot) -> Vec<LoadError> {
    snapshot
        .objects
        .iter()
        .filter(|o| o.kind == Kind::Workflow)
        .filter_map(|o| {
            Some((
                o,
                serde_json::from_value::<WorkflowSpec>(o.spec.clone()).ok()?,
            ))
        })
        .flat_map(|(o, spec)| {
            crate::automation::sandbox::script_errors(&spec)
                .into_iter()
                .map(move |e| object_error(o, e.path, e.message))
        })
        .collect()
}

/// An error about `object` at `path`, located by its source (`file#document`).
fn object_error(object: &DesiredObject, path: String, message: String) -> LoadError {
    let (file, document) = object
        .source
        .rsplit_once('#')
        .map_or((object.source.clone(), 0), |(f, d)| {
            (f.to_owned(), d.parse().unwrap_or(0))
        });
    LoadError {
        file,
        document,
        object: Some(format!(
            "{} {}/{}",
            object.kind.as_str(),
            object.namespace,
            object.name
        )),
        path: Some(path),
        message,
    }
}

fn describe(value: &Value) -> Option<String> {
    let kind = inline(value.get("kind")?.as_str()?);
    let meta = value.get("metadata");
    let name = inline(
        meta.and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("<no name>"),
    );
    Some(
        match meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
        {
            Some(ns) => format!("{kind} {}/{name}", inline(ns)),
            None => format!("{kind} {name}"),
        },
    )
}

/// The lines that report a refused set, for the log and the stored load: the first
/// [`MAX_REPORTED_ERRORS`] errors, then how many more there are. Each line is bounded, so the
/// report is too, whatever the checkout holds.
pub fn report_lines(errors: &[LoadError]) -> Vec<String> {
    let mut lines: Vec<String> = errors
        .iter()
        .take(MAX_REPORTED_ERRORS)
        .map(ToString::to_string)
        .collect();
    if errors.len() > MAX_REPORTED_ERRORS {
        lines.push(format!(
            "... and {} more errors",
            errors.len() - MAX_REPORTED_ERRORS
        ));
    }
    lines
}

fn file_error(file: String, message: String) -> LoadError {
    LoadError {
        file,
        document: 0,
        object: None,
        path: None,
        message,
    }
}

fn display_path(dir: &Path, path: &Path, qualify: bool) -> String {
    let relative = path.strip_prefix(dir).unwrap_or(path);
    let shown = if qualify {
        dir.join(relative).display().to_string()
    } else {
        relative.display().to_string()
    };
    // A file's path comes from the checkout too, and names every error of the file.
    clip(&shown, MAX_PATH_CHARS).into_owned()
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type()?;
        if file_type.is_dir() || (file_type.is_symlink() && path.is_dir()) {
            collect_yaml(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    const DEVICE: &str = "apiVersion: rmm.cdot.io/v1alpha1\nkind: Device\nmetadata: {name: a, namespace: acme}\nspec: {class: Server}\n";

    fn read(dir: &Path, max_file_bytes: u64) -> Result<Snapshot, Vec<LoadError>> {
        ManifestFiles::read(&[dir.to_path_buf()], ReadLimits { max_file_bytes })
            .parse("cdot-system")
    }

    /// A DiscoveryScan naming a credential Secret the manifests lack is refused whole, the
    /// error naming the file, document, object and field (as for a NotificationChannel).
    #[test]
    fn a_scan_without_its_credential_secret_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let scan = "apiVersion: rmm.cdot.io/v1alpha1\nkind: DiscoveryScan\nmetadata: {name: lan, namespace: acme}\nspec:\n  targets: [10.0.0.0/24]\n  methods: {snmp: {credentials: [{version: V2c, secretRef: {name: snmp-lan}}]}}\n";
        std::fs::write(dir.path().join("scan.yaml"), format!("{DEVICE}---\n{scan}"))
            .expect("write");
        let errors = read(dir.path(), DEFAULT_MAX_FILE_BYTES).expect_err("refused");
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "scan.yaml:2: DiscoveryScan acme/lan: spec.methods.snmp.credentials[0].secretRef: Secret acme/snmp-lan is not in the manifests"
            ]
        );
        let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: snmp-lan, namespace: acme}\nstringData: {community: public}\n";
        std::fs::write(dir.path().join("secret.yaml"), secret).expect("write");
        assert_eq!(
            read(dir.path(), DEFAULT_MAX_FILE_BYTES)
                .expect("valid")
                .objects
                .len(),
            2
        );
    }

    /// A Workflow naming a ConfigMap (or key) the manifests lack is refused whole, the error
    /// naming the file, document, object and field; with the ConfigMap, the set applies.
    #[test]
    fn a_workflow_without_its_config_map_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let workflow = "apiVersion: rmm.cdot.io/v1alpha1\nkind: Workflow\nmetadata: {name: clean, namespace: acme}\nspec:\n  trigger: {type: Manual}\n  steps:\n    - {name: a, type: RunScript, script: {body: 'true'}}\n    - {name: b, type: RunScript, script: {configMapRef: {name: scripts, key: cleanup.sh}}}\n";
        std::fs::write(dir.path().join("wf.yaml"), workflow).expect("write");
        let errors = read(dir.path(), DEFAULT_MAX_FILE_BYTES).expect_err("refused");
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "wf.yaml:1: Workflow acme/clean: spec.steps[1].script.configMapRef: ConfigMap acme/scripts is not in the manifests"
            ]
        );
        let config_map = |key: &str| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: scripts, namespace: acme}}\ndata:\n  {key}: rm -f /tmp/x\n"
            )
        };
        std::fs::write(dir.path().join("cm.yaml"), config_map("other.sh")).expect("write");
        let errors = read(dir.path(), DEFAULT_MAX_FILE_BYTES).expect_err("refused");
        assert_eq!(
            errors[0].to_string(),
            "wf.yaml:1: Workflow acme/clean: spec.steps[1].script.configMapRef: ConfigMap acme/scripts has no key cleanup.sh"
        );
        std::fs::write(dir.path().join("cm.yaml"), config_map("cleanup.sh")).expect("write");
        let snapshot = read(dir.path(), DEFAULT_MAX_FILE_BYTES).expect("valid");
        assert_eq!(snapshot.config_maps.len(), 1);
        assert_eq!(snapshot.config_maps[0].2["cleanup.sh"], "rm -f /tmp/x");
    }

    /// A Workflow whose rhai does not compile is refused whole, each script at its field;
    /// a field named like a rhai keyword gets the way to read it.
    #[test]
    fn a_workflow_whose_rhai_does_not_compile_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let workflow = "apiVersion: rmm.cdot.io/v1alpha1\nkind: Workflow\nmetadata: {name: heal, namespace: acme}\nspec:\n  trigger: {type: PatchFailed}\n  condition: 'event.package == \"x\"'\n  steps:\n    - {name: a, type: Rhai, rhai: 'let = 1'}\n    - {name: b, type: Wait, duration: 1m, until: 'eval(\"true\")'}\n";
        std::fs::write(dir.path().join("wf.yaml"), workflow).expect("write");
        let errors = read(dir.path(), DEFAULT_MAX_FILE_BYTES).expect_err("refused");
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(
            errors[0],
            "wf.yaml:1: Workflow acme/heal: spec.condition: rhai script does not parse at 1:7: \
             'package' is a reserved keyword; a field with that name is read with brackets, as \
             in event[\"package\"]"
        );
        assert!(
            errors[1].starts_with("wf.yaml:1: Workflow acme/heal: spec.steps[0].rhai: rhai script does not parse at 1:"),
            "{}",
            errors[1]
        );
        assert_eq!(
            errors[2],
            "wf.yaml:1: Workflow acme/heal: spec.steps[1].until: rhai script uses `eval` at 1:1, \
             which the sandbox does not allow"
        );
        let fixed = workflow
            .replace("event.package", "event[\"package\"]")
            .replace("let = 1", "let x = 1; x")
            .replace("eval(\"true\")", "true");
        std::fs::write(dir.path().join("wf.yaml"), fixed).expect("write");
        read(dir.path(), DEFAULT_MAX_FILE_BYTES).expect("valid");
    }

    /// A file over the limit is refused by its size: a sparse 5 GiB file is refused at once,
    /// which reading it could not be.
    #[test]
    fn a_file_over_the_limit_is_refused_unread() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a.yaml"), DEVICE).expect("write");
        let big = std::fs::File::create(dir.path().join("big.yaml")).expect("create");
        big.set_len(5 << 30).expect("sparse file");
        let started = Instant::now();
        let errors = read(dir.path(), DEFAULT_MAX_FILE_BYTES).expect_err("refused");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "big.yaml: file is 5368709120 bytes, more than the limit of 4194304 bytes (--max-manifest-bytes); split it or raise the limit"
        );

        // At the limit exactly, the file is read.
        std::fs::remove_file(dir.path().join("big.yaml")).expect("rm");
        let limit = DEVICE.len() as u64;
        assert_eq!(read(dir.path(), limit).expect("valid").objects.len(), 1);
        let errors = read(dir.path(), limit - 1).expect_err("refused");
        assert!(
            errors[0].message.starts_with(&format!(
                "file is {limit} bytes, more than the limit of {}",
                limit - 1
            )),
            "{}",
            errors[0]
        );
    }

    /// The size is enforced while reading too: a file that reports 0 bytes but yields more
    /// (here /dev/zero, as a file that grows between the size check and the read) is cut at
    /// the limit.
    #[test]
    fn a_file_growing_past_the_limit_is_refused_while_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).expect("symlink");
        let errors = read(dir.path(), 1 << 20).expect_err("refused");
        assert_eq!(
            errors[0].to_string(),
            "zero.yaml: file grew past the limit of 1048576 bytes (--max-manifest-bytes) while it was read"
        );
    }

    /// The set as a whole is bounded: past 16 times the file limit, the rest is not read.
    #[test]
    fn the_whole_set_is_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let limit = 1000;
        let padding = format!("# {}\n", "x".repeat(850));
        for i in 0..20 {
            let device = DEVICE.replace("name: a", &format!("name: d{i:02}"));
            std::fs::write(
                dir.path().join(format!("d{i:02}.yaml")),
                format!("{padding}{device}"),
            )
            .expect("write");
        }
        // Each file is below the limit, and 16 of them fit.
        let size = std::fs::metadata(dir.path().join("d00.yaml"))
            .expect("stat")
            .len();
        assert!(size < limit && size * 16 < limit * 16, "{size}");
        let errors = read(dir.path(), limit).expect_err("refused");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "d16.yaml: the manifest files hold more than 16000 bytes in all (16 times --max-manifest-bytes); this file and the rest are not read"
        );
        for i in 16..20 {
            std::fs::remove_file(dir.path().join(format!("d{i:02}.yaml"))).expect("rm");
        }
        assert_eq!(read(dir.path(), limit).expect("valid").objects.len(), 16);
    }

    /// A refusal with many errors is reported by its first errors and a count, and every
    /// line stays short even for a huge value, name or kind.
    #[test]
    fn a_refusal_report_is_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Three values of 1 MiB: below the file limit, so every gate sees them.
        let huge = "x".repeat(1 << 20);
        let mut text = format!(
            "apiVersion: rmm.cdot.io/v1alpha1\nkind: Device\nmetadata: {{name: {huge}, namespace: acme}}\nspec: {{class: {huge}}}\n---\napiVersion: example.com/v1\nkind: {huge}\n"
        );
        for i in 0..50 {
            text.push_str(&format!("---\napiVersion: rmm.cdot.io/v1alpha1\nkind: Device\nmetadata: {{name: d{i}, namespace: acme}}\nspec: {{class: Toaster}}\n"));
        }
        std::fs::write(dir.path().join("bad.yaml"), text).expect("write");
        let errors = read(dir.path(), DEFAULT_MAX_FILE_BYTES).expect_err("refused");
        assert!(errors.len() > 50, "{}: {:.500}", errors.len(), errors[0]);
        let lines = report_lines(&errors);
        assert_eq!(lines.len(), MAX_REPORTED_ERRORS + 1);
        assert_eq!(
            lines.last().map(String::as_str),
            Some(format!("... and {} more errors", errors.len() - MAX_REPORTED_ERRORS).as_str())
        );
        assert!(
            lines[0].starts_with(&format!(
                "bad.yaml:1: Device acme/\"{}…\" (1048576 bytes): metadata.name: \"",
                "x".repeat(64)
            )),
            "{:.500}",
            lines[0]
        );
        for line in &lines {
            assert!(line.len() < 1500, "{} bytes: {line:.2000}", line.len());
        }
        assert!(lines.iter().map(String::len).sum::<usize>() < 16 << 10);
    }
}
