//! Kubernetes mode's API tokens, enrollment tokens and referenced Secrets, from the API
//! server's Secrets instead of a manifest directory.
//!
//! A reflector caches the Secrets of the watched namespace (every namespace when none is
//! given) and of the system namespace. After every change (batched for [`DEBOUNCE`]) the
//! whole cache is turned into documents by the same validation a manifest directory goes
//! through ([`cdot_crds::manifest::validate_document`]) and the same token rules
//! ([`TokenSet`]: scope, one meaning per hash). Then:
//!
//! - the in-memory [`TokenIndex`] and [`Secrets`](crate::secrets::Secrets) are replaced at
//!   once (a revoked token stops working even while PostgreSQL is unreachable);
//! - the `api_tokens` and `enrollment_tokens` tables are replaced in one transaction
//!   ([`Store::replace_tokens`](crate::store::Store::replace_tokens)), but only when the
//!   tokens differ from what this replica last wrote: an idle cluster causes no writes.
//!
//! Unlike a manifest directory, one bad Secret does not refuse the others: it is logged with
//! its namespace, name and what is wrong (never a value), counted in the `manifest_errors`
//! gauge, and passed over.
//!
//! Secrets of the types in [`SKIPPED_TYPES`] (service-account tokens, Helm releases, image
//! pull credentials) are dropped before the cache and never held in memory.
use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    future::ready,
    sync::Arc,
    time::Duration,
};

use base64::Engine as _;
use cdot_crds::{
    FieldError,
    api_token::ApiToken,
    enrollment_token::EnrollmentToken,
    manifest::{self, Document},
};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, reflector, watcher},
};
use serde_json::{Map, Value, json};
use tokio::{sync::watch, time::Instant};
use tracing::Instrument as _;

use crate::{
    api::{AppState, TokenIndex},
    metrics::OperationLabels,
    source::TokenSet,
};

use super::LAST_APPLIED;

/// How long changes are collected before the tokens are rebuilt: a `kubectl apply` of many
/// Secrets makes one rebuild.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// How soon a failed store write is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// Secret types that never hold anything cdot-rmm refers to; they are not cached.
pub const SKIPPED_TYPES: &[&str] = &[
    "kubernetes.io/service-account-token",
    "helm.sh/release.v1",
    "kubernetes.io/dockerconfigjson",
    "kubernetes.io/dockercfg",
    "bootstrap.kubernetes.io/token",
];

/// Watches Secrets in the watched namespace (all when `watched` is None) and in the system
/// namespace, and keeps API tokens, enrollment tokens and referenced Secrets current.
///
/// `synced` turns true after the first complete apply (tokens in memory and in the store);
/// returns when `stop` turns true (or its sender is gone).
///
/// The `manifest_errors` gauge is the number of Secrets passed over in the newest rebuild
/// (0 when every Secret was accepted): in Kubernetes mode there is no manifest directory,
/// and the Secrets are its counterpart.
pub async fn run(
    client: Client,
    watched: Option<String>,
    system_namespace: String,
    state: AppState,
    synced: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
) {
    let span = tracing::info_span!(
        "secrets",
        watched = watched.as_deref().unwrap_or("*"),
        system_namespace = %system_namespace
    );
    watch_secrets(client, watched, system_namespace, state, synced, stop)
        .instrument(span)
        .await;
}

async fn watch_secrets(
    client: Client,
    watched: Option<String>,
    system_namespace: String,
    state: AppState,
    synced: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let apis: Vec<Api<Secret>> = match watched.as_deref() {
        None => vec![Api::all(client)],
        Some(ns) if ns == system_namespace => vec![Api::namespaced(client, ns)],
        Some(ns) => vec![
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, &system_namespace),
        ],
    };
    // One cache per watch: a watcher's re-list swaps its whole cache, so two watches cannot
    // share one.
    let mut caches = Vec::with_capacity(apis.len());
    let mut streams = Vec::with_capacity(apis.len());
    for (index, api) in apis.into_iter().enumerate() {
        let (cache, writer) = reflector::store::<Secret>();
        let events = watcher(api, watcher::Config::default())
            .default_backoff()
            .filter_map(|event| ready(slim(event)));
        streams.push(reflector(writer, events).map(move |e| (index, e)).boxed());
        caches.push(cache);
    }
    let mut events = stream::select_all(streams);
    let mut listed = vec![false; caches.len()];
    let mut pending = false;
    let mut due: Option<Instant> = None;
    let mut applier = Applier::new(system_namespace);

    loop {
        if *stop.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            event = events.next() => {
                let Some((index, event)) = event else {
                    tracing::warn!("the Secret watch ended");
                    break;
                };
                match event {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(done) = listed.get_mut(index) {
                            *done = true;
                        }
                        pending = true;
                    }
                    Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => pending = true,
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                    Err(e) => tracing::warn!(error = %e, "watching Secrets failed; retrying"),
                }
                // Nothing is applied before every watch has listed: half a token set would
                // revoke the other half. A change also cuts short the wait of a retry.
                if pending && listed.iter().all(|done| *done) {
                    let soon = Instant::now() + DEBOUNCE;
                    due = Some(due.map_or(soon, |due| due.min(soon)));
                }
            }
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                pending = false;
                due = None;
                let secrets: Vec<Arc<Secret>> =
                    caches.iter().flat_map(|cache| cache.state()).collect();
                if applier.apply(&state, secrets.iter().map(AsRef::as_ref)).await {
                    synced.send_if_modified(|synced| !std::mem::replace(synced, true));
                } else {
                    due = Some(Instant::now() + RETRY);
                }
            }
        }
    }
}

/// Drops Secrets of [`SKIPPED_TYPES`] before they reach the cache, and strips what the
/// rebuild does not read (managed fields, kubectl's last-applied copy of the data).
fn slim(
    event: watcher::Result<watcher::Event<Secret>>,
) -> Option<watcher::Result<watcher::Event<Secret>>> {
    use watcher::Event;
    let keep = |mut secret: Secret| {
        if is_skipped(&secret) {
            return None;
        }
        secret.metadata.managed_fields = None;
        if let Some(annotations) = secret.metadata.annotations.as_mut() {
            annotations.remove(LAST_APPLIED);
        }
        Some(secret)
    };
    Some(match event {
        Ok(Event::Apply(secret)) => Ok(Event::Apply(keep(secret)?)),
        Ok(Event::InitApply(secret)) => Ok(Event::InitApply(keep(secret)?)),
        // A Secret's type cannot change, so a skipped one was never cached.
        Ok(Event::Delete(secret)) => Ok(Event::Delete(keep(secret)?)),
        other => other,
    })
}

/// Whether a Secret is of a type cdot-rmm never reads.
pub fn is_skipped(secret: &Secret) -> bool {
    secret
        .type_
        .as_deref()
        .is_some_and(|t| SKIPPED_TYPES.contains(&t))
}

/// Rebuilds and applies, remembering what it wrote and what it refused.
struct Applier {
    system_namespace: String,
    /// The tokens of the last successful store write.
    written: Option<(Vec<ApiToken>, Vec<EnrollmentToken>)>,
    /// Secrets refused in the last rebuild, with their reasons, to log only what changed.
    refused: HashMap<(String, String), Vec<FieldError>>,
}

impl Applier {
    fn new(system_namespace: String) -> Self {
        Self {
            system_namespace,
            written: None,
            refused: HashMap::new(),
        }
    }

    /// Rebuilds from `secrets` and applies; false when the store write failed.
    async fn apply<'a>(
        &mut self,
        state: &AppState,
        secrets: impl IntoIterator<Item = &'a Secret>,
    ) -> bool {
        let built = build(secrets, &self.system_namespace);
        self.report(&built.refused);
        state
            .metrics
            .manifest_errors
            .set(i64::try_from(built.refused.len()).unwrap_or(i64::MAX));
        let (api_tokens, enrollment_tokens, plain) = (
            built.tokens.len(),
            built.enrollment_tokens.len(),
            built.secrets.len(),
        );
        state.secrets.replace(built.secrets);
        state.replace_tokens(TokenIndex::new(&built.tokens));
        let tokens = (built.tokens, built.enrollment_tokens);
        if self.written.as_ref() == Some(&tokens) {
            tracing::debug!(
                api_tokens,
                enrollment_tokens,
                secrets = plain,
                "tokens unchanged"
            );
            return true;
        }
        match state.store.replace_tokens(&tokens.0, &tokens.1).await {
            Ok(()) => {
                tracing::info!(
                    api_tokens,
                    enrollment_tokens,
                    secrets = plain,
                    refused = self.refused.len(),
                    "tokens applied from Secrets"
                );
                self.written = Some(tokens);
                true
            }
            Err(e) => {
                state
                    .metrics
                    .store_errors
                    .get_or_create(&OperationLabels {
                        operation: e.metric_label().into(),
                    })
                    .inc();
                tracing::error!(error = %e, retry_in = ?RETRY, "failed to store the tokens; they are in effect in memory");
                false
            }
        }
    }

    /// Logs refusals that are new or changed, and Secrets that are no longer refused.
    fn report(&mut self, refused: &[Refused]) {
        let now: HashMap<(String, String), Vec<FieldError>> = refused
            .iter()
            .map(|r| ((r.namespace.clone(), r.name.clone()), r.errors.clone()))
            .collect();
        for r in refused {
            let key = (r.namespace.clone(), r.name.clone());
            if self.refused.get(&key) != Some(&r.errors) {
                tracing::warn!(
                    namespace = %r.namespace,
                    name = %r.name,
                    reasons = %r.reasons(),
                    "Secret passed over: it stays without effect until it is fixed"
                );
            }
        }
        for (namespace, name) in self.refused.keys() {
            if !now.contains_key(&(namespace.clone(), name.clone())) {
                tracing::info!(%namespace, %name, "Secret no longer passed over (fixed or deleted)");
            }
        }
        self.refused = now;
    }
}

/// A Secret that was passed over, and every reason (field paths and messages, no values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub namespace: String,
    pub name: String,
    pub errors: Vec<FieldError>,
}

impl Refused {
    /// `path: message; path: message`.
    pub fn reasons(&self) -> String {
        cdot_crds::validation::describe_errors(&self.errors)
    }
}

/// What a set of Secrets defines.
#[derive(Default)]
pub struct Built {
    pub tokens: Vec<ApiToken>,
    pub enrollment_tokens: Vec<EnrollmentToken>,
    /// Plain Secrets (namespace, name, data) resources refer to; kept in memory only.
    pub secrets: Vec<(String, String, BTreeMap<String, Vec<u8>>)>,
    /// Secrets passed over.
    pub refused: Vec<Refused>,
}

impl fmt::Debug for Built {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Built")
            .field("tokens", &self.tokens)
            .field("enrollment_tokens", &self.enrollment_tokens)
            .field(
                "secrets",
                &self
                    .secrets
                    .iter()
                    .map(|(namespace, name, _)| format!("{namespace}/{name}"))
                    .collect::<Vec<_>>(),
            )
            .field("refused", &self.refused)
            .finish()
    }
}

/// Turns Secrets into tokens and plain Secrets with the rules of a manifest directory, except
/// that a bad Secret is only passed over ([`Built::refused`]).
///
/// Secrets are taken in a fixed order, the system namespace's first: when two Secrets carry
/// the same token hash, the system namespace's one stays, so a tenant cannot displace an
/// operator-defined token by copying its hash.
pub fn build<'a>(secrets: impl IntoIterator<Item = &'a Secret>, system_namespace: &str) -> Built {
    let mut secrets: Vec<&Secret> = secrets.into_iter().filter(|s| !is_skipped(s)).collect();
    let order = |s: &Secret| {
        let namespace = s.metadata.namespace.clone().unwrap_or_default();
        let name = s.metadata.name.clone().unwrap_or_default();
        (namespace != system_namespace, namespace, name)
    };
    secrets.sort_by_cached_key(|s| order(s));

    let mut tokens = TokenSet::new(system_namespace);
    let mut built = Built::default();
    for secret in secrets {
        let namespace = secret.metadata.namespace.clone().unwrap_or_default();
        let name = secret.metadata.name.clone().unwrap_or_default();
        let origin = format!("Secret {namespace}/{name}");
        let refusal = match manifest::validate_document(&to_manifest(secret)) {
            Err(errors) => Some(errors),
            Ok(Document::ApiToken(token)) => tokens
                .add_api_token(token, origin)
                .err()
                .map(|e| vec![FieldError::new(e.path, e.message)]),
            Ok(Document::EnrollmentToken(token)) => tokens
                .add_enrollment_token(token, origin)
                .err()
                .map(|e| vec![FieldError::new(e.path, e.message)]),
            Ok(Document::Secret {
                namespace,
                name,
                data,
            }) => {
                built.secrets.push((namespace, name, data));
                None
            }
            // A v1 Secret is never one of these.
            Ok(Document::Resource(_) | Document::ConfigMap { .. } | Document::Ignored { .. }) => {
                None
            }
        };
        if let Some(errors) = refusal {
            built.refused.push(Refused {
                namespace,
                name,
                errors,
            });
        }
    }
    (built.tokens, built.enrollment_tokens) = tokens.into_parts();
    built
}

/// The Secret as the manifest document it would be in a directory: `type`, the name and
/// namespace, and its data (base64 `data`, as the API server serves it, plus `stringData`
/// if a client set it). Labels and annotations are left out: the Secret validation does not
/// read them, and the API server already checked them.
fn to_manifest(secret: &Secret) -> Value {
    let mut metadata = Map::new();
    if let Some(name) = &secret.metadata.name {
        metadata.insert("name".into(), name.as_str().into());
    }
    if let Some(namespace) = &secret.metadata.namespace {
        metadata.insert("namespace".into(), namespace.as_str().into());
    }
    let mut document = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
    });
    if let Some(map) = document.as_object_mut() {
        if let Some(secret_type) = &secret.type_ {
            map.insert("type".into(), secret_type.as_str().into());
        }
        if let Some(data) = &secret.data {
            let data: Map<String, Value> = data
                .iter()
                .map(|(key, value)| {
                    (
                        key.clone(),
                        base64::engine::general_purpose::STANDARD
                            .encode(&value.0)
                            .into(),
                    )
                })
                .collect();
            map.insert("data".into(), data.into());
        }
        if let Some(string_data) = &secret.string_data {
            let string_data: Map<String, Value> = string_data
                .iter()
                .map(|(key, value)| (key.clone(), value.as_str().into()))
                .collect();
            map.insert("stringData".into(), string_data.into());
        }
    }
    document
}

#[cfg(test)]
mod tests {
    use cdot_crds::api_token::{self, Role, format_token_hash, hash_token};
    use k8s_openapi::{ByteString, apimachinery::pkg::apis::meta::v1::ObjectMeta};

    use super::*;

    const SYSTEM: &str = "cdot-system";

    fn secret(namespace: &str, name: &str, secret_type: &str, data: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            type_: Some(secret_type.into()),
            // As the API server serves a Secret: `data` only, never `stringData`.
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    fn api_token(namespace: &str, name: &str, token: &str, namespaces: &str) -> Secret {
        secret(
            namespace,
            name,
            api_token::SECRET_TYPE,
            &[
                ("tokenHash", &format_token_hash(&hash_token(token))),
                ("role", "operator"),
                ("namespaces", namespaces),
            ],
        )
    }

    fn enrollment_token(namespace: &str, name: &str, token: &str) -> Secret {
        secret(
            namespace,
            name,
            cdot_crds::enrollment_token::SECRET_TYPE,
            &[
                ("tokenHash", &format_token_hash(&hash_token(token))),
                ("maxUses", "3"),
            ],
        )
    }

    fn names<T>(items: &[T], f: impl Fn(&T) -> (&str, &str)) -> Vec<String> {
        items
            .iter()
            .map(|i| {
                let (ns, name) = f(i);
                format!("{ns}/{name}")
            })
            .collect()
    }

    #[test]
    fn secrets_become_tokens_and_plain_secrets() {
        let secrets = [
            api_token(SYSTEM, "ops", "tok-ops", "*"),
            enrollment_token("acme", "laptops", "tok-enroll"),
            secret("acme", "snmp-acme", "Opaque", &[("community", "public")]),
            secret(
                "acme",
                "default-token",
                "kubernetes.io/service-account-token",
                &[("token", "jwt")],
            ),
            secret(
                "acme",
                "sh.helm.release.v1.x.v1",
                "helm.sh/release.v1",
                &[("release", "gz")],
            ),
            secret(
                "acme",
                "pull",
                "kubernetes.io/dockerconfigjson",
                &[(".dockerconfigjson", "{}")],
            ),
        ];
        let built = build(&secrets, SYSTEM);
        assert!(built.refused.is_empty(), "{:?}", built.refused);
        assert_eq!(built.tokens.len(), 1);
        let ops = &built.tokens[0];
        assert_eq!((ops.namespace.as_str(), ops.name.as_str()), (SYSTEM, "ops"));
        assert_eq!(ops.token_sha256, hash_token("tok-ops"));
        assert_eq!(ops.role, Role::Operator);
        assert_eq!(ops.namespaces, ["*"]);
        assert_eq!(built.enrollment_tokens.len(), 1);
        let laptops = &built.enrollment_tokens[0];
        assert_eq!(
            (laptops.namespace.as_str(), laptops.name.as_str()),
            ("acme", "laptops")
        );
        assert_eq!(
            (laptops.token_sha256, laptops.max_uses),
            (hash_token("tok-enroll"), 3)
        );
        // Only the Opaque Secret is kept for references; the skipped types are not held.
        assert_eq!(built.secrets.len(), 1);
        let (ns, name, data) = &built.secrets[0];
        assert_eq!((ns.as_str(), name.as_str()), ("acme", "snmp-acme"));
        assert_eq!(data["community"], b"public");
        // Debug names Secrets, never their values.
        let debug = format!("{built:?}");
        assert!(
            debug.contains("acme/snmp-acme") && !debug.contains("public"),
            "{debug}"
        );
    }

    #[test]
    fn a_bad_secret_is_passed_over_with_its_reason_and_the_rest_applies() {
        let secrets = [
            // A plaintext token where its hash belongs.
            secret(
                SYSTEM,
                "leaky",
                api_token::SECRET_TYPE,
                &[
                    ("tokenHash", "cdot_plaintext"),
                    ("role", "admin"),
                    ("namespaces", "*"),
                ],
            ),
            secret(
                "acme",
                "bad-role",
                api_token::SECRET_TYPE,
                &[
                    ("tokenHash", &format_token_hash(&hash_token("x"))),
                    ("role", "root"),
                    ("namespaces", "acme"),
                ],
            ),
            api_token(SYSTEM, "ops", "tok-ops", "*"),
            enrollment_token("acme", "laptops", "tok-enroll"),
        ];
        let built = build(&secrets, SYSTEM);
        assert_eq!(
            names(&built.tokens, |t| (&t.namespace, &t.name)),
            [format!("{SYSTEM}/ops")]
        );
        assert_eq!(built.enrollment_tokens.len(), 1);
        assert_eq!(built.refused.len(), 2, "{:?}", built.refused);
        let leaky = built
            .refused
            .iter()
            .find(|r| r.name == "leaky")
            .expect("leaky refused");
        assert_eq!(leaky.namespace, SYSTEM);
        assert_eq!(leaky.errors[0].path, "stringData.tokenHash");
        assert!(
            !leaky.reasons().contains("cdot_plaintext"),
            "{}",
            leaky.reasons()
        );
        let bad_role = built
            .refused
            .iter()
            .find(|r| r.name == "bad-role")
            .expect("bad-role refused");
        assert_eq!(bad_role.namespace, "acme");
        assert!(
            bad_role
                .reasons()
                .starts_with("stringData.role: unknown role"),
            "{}",
            bad_role.reasons()
        );
    }

    #[test]
    fn tokens_outside_the_system_namespace_only_grant_their_own() {
        let secrets = [
            api_token("acme", "own", "t1", "acme"),
            api_token("acme", "grabby", "t2", "acme,globex"),
            api_token("acme", "everything", "t3", "*"),
            api_token(SYSTEM, "spanning", "t4", "acme,globex"),
        ];
        let built = build(&secrets, SYSTEM);
        assert_eq!(
            names(&built.tokens, |t| (&t.namespace, &t.name)),
            [format!("{SYSTEM}/spanning"), "acme/own".to_owned()]
        );
        let refused: Vec<_> = built
            .refused
            .iter()
            .map(|r| (r.name.as_str(), r.errors[0].path.as_str()))
            .collect();
        assert_eq!(
            refused,
            [
                ("everything", "stringData.namespaces"),
                ("grabby", "stringData.namespaces")
            ]
        );
        assert!(
            built.refused[1].reasons().contains("\"globex\""),
            "{}",
            built.refused[1].reasons()
        );
    }

    #[test]
    fn the_system_namespace_keeps_a_duplicated_hash() {
        // "aaa" sorts before "cdot-system", yet the system namespace's token stays.
        let secrets = [
            enrollment_token("aaa", "copycat", "shared"),
            api_token(SYSTEM, "ops", "shared", "*"),
            enrollment_token("acme", "a", "same"),
            enrollment_token("acme", "b", "same"),
        ];
        let built = build(&secrets, SYSTEM);
        assert_eq!(
            names(&built.tokens, |t| (&t.namespace, &t.name)),
            [format!("{SYSTEM}/ops")]
        );
        assert_eq!(
            names(&built.enrollment_tokens, |t| (&t.namespace, &t.name)),
            ["acme/a"]
        );
        let refused: Vec<_> = built
            .refused
            .iter()
            .map(|r| (format!("{}/{}", r.namespace, r.name), r.reasons()))
            .collect();
        assert_eq!(
            refused,
            [
                (
                    "aaa/copycat".to_owned(),
                    format!(
                        "stringData.tokenHash: the same token is already defined at Secret {SYSTEM}/ops"
                    )
                ),
                (
                    "acme/b".to_owned(),
                    "stringData.tokenHash: the same token is already defined at Secret acme/a"
                        .to_owned()
                ),
            ]
        );
    }

    #[test]
    fn string_data_is_read_too() {
        let mut s = secret(SYSTEM, "ops", api_token::SECRET_TYPE, &[("role", "viewer")]);
        s.string_data = Some(BTreeMap::from([
            ("tokenHash".to_owned(), format_token_hash(&hash_token("t"))),
            ("namespaces".to_owned(), "acme".to_owned()),
        ]));
        let built = build([&s], SYSTEM);
        assert!(built.refused.is_empty(), "{:?}", built.refused);
        assert_eq!(built.tokens[0].role, Role::Viewer);
    }

    #[test]
    fn slim_drops_skipped_types_and_strips_copies_of_the_data() {
        let mut kept = secret("acme", "snmp", "Opaque", &[("community", "public")]);
        kept.metadata.annotations = Some(BTreeMap::from([
            (
                LAST_APPLIED.to_owned(),
                "{\"stringData\":{\"community\":\"public\"}}".to_owned(),
            ),
            ("team".to_owned(), "net".to_owned()),
        ]));
        kept.metadata.managed_fields = Some(Vec::new());
        let Some(Ok(watcher::Event::Apply(slimmed))) = slim(Ok(watcher::Event::Apply(kept))) else {
            panic!("an Opaque Secret is kept");
        };
        assert_eq!(slimmed.metadata.managed_fields, None);
        let annotations = slimmed.metadata.annotations.unwrap_or_default();
        assert!(!annotations.contains_key(LAST_APPLIED) && annotations.contains_key("team"));

        for secret_type in SKIPPED_TYPES {
            let skipped = secret("acme", "x", secret_type, &[("k", "v")]);
            assert!(slim(Ok(watcher::Event::InitApply(skipped.clone()))).is_none());
            assert!(slim(Ok(watcher::Event::Apply(skipped.clone()))).is_none());
            assert!(slim(Ok(watcher::Event::Delete(skipped))).is_none());
        }
        assert!(matches!(
            slim(Ok(watcher::Event::InitDone)),
            Some(Ok(watcher::Event::InitDone))
        ));
    }
}
