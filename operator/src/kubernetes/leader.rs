//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go does it: the
//! holder renews `renewTime` well within `leaseDurationSeconds`; a candidate takes the Lease
//! over only after it expired. Every write is a replace carrying the `resourceVersion` it
//! read, so of two replicas racing for it the API server lets exactly one win (409 for the
//! other).
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{Api, Client, api::PostParams};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's holder identity.
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub duration: Duration,
}

impl LeaseConfig {
    /// Renew (or try to take) the Lease this often: three tries per lease duration.
    pub fn retry_period(&self) -> Duration {
        self.duration / 3
    }
}

/// Campaigns until `stop` turns true; `leading` says whether this replica holds the Lease.
/// Leadership is given up (reported `false`) as soon as a renewal fails or the Lease would
/// expire before the next try, so two replicas never both believe they lead.
pub async fn campaign(
    client: Client,
    config: LeaseConfig,
    leading: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut last_renewal: Option<tokio::time::Instant> = None;
    loop {
        let started = tokio::time::Instant::now();
        let held = match try_acquire_or_renew(&api, &config, Timestamp::now()).await {
            Ok(true) => {
                last_renewal = Some(started);
                true
            }
            Ok(false) => {
                last_renewal = None;
                false
            }
            Err(e) => {
                tracing::warn!(lease = %config.name, error = %e, "leader election: cannot read or write the Lease");
                // Still leading only if the last renewal outlasts the next try.
                last_renewal
                    .is_some_and(|at| at.elapsed() + config.retry_period() < config.duration)
            }
        };
        if *leading.borrow() != held {
            tracing::info!(lease = %config.name, identity = %config.identity, leading = held, "leader election: leadership changed");
            let _ = leading.send(held);
        }
        tokio::select! {
            () = tokio::time::sleep(config.retry_period()) => {}
            _ = stop.changed() => break,
        }
    }
    if *leading.borrow() {
        release(&api, &config).await;
        let _ = leading.send(false);
    }
}

/// One round: `Ok(true)` when this replica holds the Lease afterwards.
pub async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaseConfig,
    now: Timestamp,
) -> Result<bool, kube::Error> {
    let Some(lease) = api.get_opt(&config.name).await? else {
        let fresh = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(held_spec(config, now, now, 0)),
        };
        return match api.create(&PostParams::default(), &fresh).await {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let mine = spec.holder_identity.as_deref() == Some(config.identity.as_str());
    let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
        let lasts = spec.lease_duration_seconds.map_or(config.duration, |s| {
            Duration::from_secs(u64::try_from(s).unwrap_or(0))
        });
        let lasts = jiff::SignedDuration::try_from(lasts).unwrap_or(jiff::SignedDuration::MAX);
        renewed.0.saturating_add(lasts).unwrap_or(Timestamp::MAX) < now
    }) || spec.holder_identity.as_deref().is_none_or(str::is_empty);
    if !mine && !expired {
        return Ok(false);
    }
    let (acquired, transitions) = if mine {
        (
            spec.acquire_time.map_or(now, |t| t.0),
            spec.lease_transitions.unwrap_or(0),
        )
    } else {
        (now, spec.lease_transitions.unwrap_or(0) + 1)
    };
    let mut updated = lease;
    updated.spec = Some(held_spec(config, acquired, now, transitions));
    match api
        .replace(&config.name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up on shutdown so that another replica need not wait for it to expire.
async fn release(api: &Api<Lease>, config: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    if let Err(e) = api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        tracing::warn!(lease = %config.name, error = %e, "leader election: could not release the Lease");
    }
}

fn held_spec(
    config: &LeaseConfig,
    acquired: Timestamp,
    now: Timestamp,
    transitions: i32,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(
            i32::try_from(config.duration.as_secs().max(1)).unwrap_or(i32::MAX),
        ),
        acquire_time: Some(MicroTime(acquired)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}
