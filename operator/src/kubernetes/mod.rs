//! `cdot-operator run`: Kubernetes mode. Desired state comes from the API server's watches,
//! status goes to the status subresource; everything else (the store, the reconcilers, the
//! HTTP API, the jobs) is what standalone mode runs.
//!
//! Every replica serves the HTTP API and keeps its tokens current from Secrets; only the
//! replica holding the Lease runs the controllers ([`leader`]).
use std::sync::Arc;

use anyhow::Context;
use cdot_crds::kind::Kind;
use futures::FutureExt;
use kube::{Client, discovery::ApiResource};
use tokio::sync::watch;

use crate::{
    cli::RunArgs,
    server::{self, Server},
};

pub mod config_maps;
pub mod controller;
pub mod devices;
pub mod leader;
pub mod secrets;

/// kubectl's copy of the last applied manifest: large, of no use to reconcilers, and for a
/// Secret a second copy of its data. Dropped from everything the operator keeps.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The dynamic API resource of a kind.
pub fn api_resource(kind: Kind) -> ApiResource {
    ApiResource {
        group: cdot_crds::GROUP.into(),
        version: cdot_crds::VERSION.into(),
        api_version: cdot_crds::API_VERSION.into(),
        kind: kind.as_str().into(),
        plural: kind.plural().into(),
    }
}

/// Every Kubernetes call the operator makes: (API group, resource, verb). The chart's RBAC
/// (`charts/cdot-rmm/files/rbac-rules.yaml`) must grant exactly these; a test checks it.
pub const API_CALLS: &[(&str, &str, &str)] = &[
    // The controllers' watches (list + watch) and the finalizer helper's JSON patches.
    ("rmm.cdot.io", "*", "list"),
    ("rmm.cdot.io", "*", "watch"),
    ("rmm.cdot.io", "*", "patch"),
    ("rmm.cdot.io", "*/status", "patch"),
    // Enrollment creates Devices and reads them back when they already exist.
    ("rmm.cdot.io", "devices", "create"),
    ("rmm.cdot.io", "devices", "get"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
    ("", "secrets", "list"),
    ("", "secrets", "watch"),
    // The scripts RunScript steps name by configMapRef, read through a watch.
    ("", "configmaps", "list"),
    ("", "configmaps", "watch"),
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
];

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let shutdown = server::shutdown_signal();
    let metrics = Arc::new(crate::metrics::Metrics::default());
    server::with_database(&args.serve.database, &metrics, |url| {
        serve(&args, url, metrics.clone(), shutdown)
    })
    .await
}

async fn serve(
    args: &RunArgs,
    url: String,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("failed to configure the Kubernetes client (KUBECONFIG, ~/.kube/config or the in-cluster service account)")?;
    let devices = Arc::new(devices::ClusterDevices::new(client.clone()));
    let server = Server::start(&url, &args.serve, Some(devices), metrics).await?;
    let state = server.state.clone();
    state.alerting.on_transition(alert_events(
        client.clone(),
        &args.identity,
        state.index.clone(),
    ));

    let (synced_tx, mut synced) = watch::channel(false);
    let secrets = tokio::spawn(secrets::run(
        client.clone(),
        args.namespace.clone(),
        args.serve.server.system_namespace.clone(),
        state.clone(),
        synced_tx,
        shutdown.clone(),
    ));
    let (maps_synced_tx, mut maps_synced) = watch::channel(false);
    let config_maps = tokio::spawn(config_maps::run(
        client.clone(),
        args.namespace.clone(),
        state.config_maps.clone(),
        maps_synced_tx,
        shutdown.clone(),
    ));
    // Ready once tokens and ConfigMaps are loaded (a run started before would find its
    // scripts missing): a replica that is not the leader serves all the same.
    let mut stopping = shutdown.clone();
    let loaded = async {
        let _ = synced.wait_for(|synced| *synced).await;
        let _ = maps_synced.wait_for(|synced| *synced).await;
    };
    tokio::select! {
        () = loaded => {
            state.set_ready();
            tracing::info!("ready");
        }
        _ = stopping.wait_for(|stop| *stop) => {}
    }

    let identity = args.identity.clone();
    let (leading_tx, leading) = watch::channel(false);
    let campaign = tokio::spawn(leader::campaign(
        client.clone(),
        leader::LeaseConfig {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity: identity.clone(),
            duration: args.lease_duration,
        },
        leading_tx,
        shutdown.clone(),
    ));

    loop {
        let mut to_lead = leading.clone();
        let mut stopping = shutdown.clone();
        tokio::select! {
            biased;
            _ = stopping.wait_for(|stop| *stop) => break,
            _ = to_lead.wait_for(|leading| *leading) => {}
        }
        tracing::info!(%identity, "leading: starting the controllers");
        state.metrics.leader.set(1);
        let stop = {
            let mut leading = leading.clone();
            let mut stopping = shutdown.clone();
            async move {
                tokio::select! {
                    _ = leading.wait_for(|leading| !*leading) => {}
                    _ = stopping.wait_for(|stop| *stop) => {}
                }
            }
            .boxed()
            .shared()
        };
        let shared = controller::Shared::new(
            client.clone(),
            state.store.clone(),
            state.metrics.clone(),
            &identity,
            args.resync_interval,
        )
        .with_index(state.index.clone())
        .with_config_maps(state.config_maps.clone());
        controller::run(
            shared,
            args.namespace.as_deref(),
            args.concurrency,
            &state.changes,
            stop,
        )
        .await;
        state.metrics.leader.set(0);
        tracing::info!(%identity, "controllers stopped");
    }

    let _ = campaign.await;
    let _ = secrets.await;
    let _ = config_maps.await;
    server.stop().await
}

/// Kubernetes Events on the AlertRule for each alert that fires or resolves, so that
/// `kubectl describe alertrule` and event exporters show them. Best effort: an Event that
/// cannot be published is logged, the alert is stored either way.
fn alert_events(
    client: Client,
    identity: &str,
    index: crate::index::Index,
) -> crate::alerting::TransitionHook {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: controller::CONTROLLER_NAME.into(),
            instance: Some(identity.to_owned()),
        },
    );
    Box::new(move |t| {
        let firing = t.to == cdot_crds::wire::alert::AlertState::Firing;
        let device = index
            .snapshot()
            .device_by_uid(&t.device_uid)
            .map_or_else(|| t.device_uid.to_string(), |d| d.object.name.clone());
        let series: Vec<String> = t.series.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let event = Event {
            type_: if firing {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: if firing {
                "AlertFiring"
            } else {
                "AlertResolved"
            }
            .into(),
            note: Some(format!(
                "{} on {device}{}: value {} (threshold {}), alert {}",
                t.rule.metric,
                if series.is_empty() {
                    String::new()
                } else {
                    format!(" {{{}}}", series.join(","))
                },
                t.value,
                t.rule.spec.condition.threshold,
                t.alert_id
            )),
            action: "Evaluate".into(),
            secondary: None,
        };
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(cdot_crds::API_VERSION.into()),
            kind: Some("AlertRule".into()),
            name: Some(t.rule.name.clone()),
            namespace: Some(t.rule.namespace.clone()),
            uid: Some(t.rule.uid.to_string()),
            ..Default::default()
        };
        let recorder = recorder.clone();
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::warn!(error = %e, "failed to publish an alert Event");
            }
        });
    })
}

/// The default holder identity: the host name (the pod name in a cluster) and the process id,
/// so two replicas on one machine differ.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "cdot-operator".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    /// The chart's rules, as (group, resource, verb) triples per section.
    /// (API group, resource, verb).
    type Grant = (String, String, String);

    fn chart_rules() -> Vec<(String, BTreeSet<Grant>)> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../charts/cdot-rmm/files/rbac-rules.yaml"
        );
        let text = std::fs::read_to_string(path).expect("read the chart's RBAC rules");
        let sections: serde_json::Map<String, Value> =
            serde_saphyr::from_str(&text).expect("parse the chart's RBAC rules");
        sections
            .into_iter()
            .map(|(section, rules)| {
                let mut granted = BTreeSet::new();
                for rule in rules.as_array().expect("a list of rules") {
                    let list = |key: &str| -> Vec<String> {
                        rule[key]
                            .as_array()
                            .expect(key)
                            .iter()
                            .map(|v| v.as_str().expect("a string").to_owned())
                            .collect()
                    };
                    for group in list("apiGroups") {
                        for resource in list("resources") {
                            for verb in list("verbs") {
                                granted.insert((group.clone(), resource.clone(), verb));
                            }
                        }
                    }
                }
                (section, granted)
            })
            .collect()
    }

    /// Every resource a `*` in [`API_CALLS`] stands for.
    fn expand(group: &str, resource: &str) -> Vec<String> {
        match (group, resource) {
            ("rmm.cdot.io", "*") => Kind::ALL.iter().map(|k| k.plural().to_owned()).collect(),
            ("rmm.cdot.io", "*/status") => Kind::ALL
                .iter()
                .map(|k| format!("{}/status", k.plural()))
                .collect(),
            _ => vec![resource.to_owned()],
        }
    }

    #[test]
    fn every_call_the_code_makes_is_granted_by_the_chart() {
        let granted: BTreeSet<_> = chart_rules().into_iter().flat_map(|(_, g)| g).collect();
        for (group, resource, verb) in API_CALLS {
            for resource in expand(group, resource) {
                assert!(
                    granted.contains(&(group.to_string(), resource.clone(), verb.to_string())),
                    "the code calls {verb} on {group}/{resource} but charts/cdot-rmm/files/rbac-rules.yaml does not grant it"
                );
            }
        }
    }

    #[test]
    fn the_chart_grants_nothing_the_code_does_not_call() {
        let called: BTreeSet<Grant> = API_CALLS
            .iter()
            .flat_map(|(group, resource, verb)| {
                expand(group, resource)
                    .into_iter()
                    .map(move |r| (group.to_string(), r, verb.to_string()))
            })
            .collect();
        for (section, granted) in chart_rules() {
            for grant in granted {
                assert!(
                    called.contains(&grant),
                    "rbac-rules.yaml section {section} grants {} on {}/{} but the code never calls it; remove it (least privilege)",
                    grant.2,
                    grant.0,
                    grant.1
                );
            }
        }
    }
}
