//! Leader election on a coordination.k8s.io/v1 Lease.
//!
//! A replica holds the lease while it renews it within the lease duration; another takes
//! it over once the holder's renewal is older than that. Updates carry the Lease's
//! resourceVersion, so two replicas can never both win the same round. On shutdown the
//! holder gives the lease up, so a successor need not wait for it to expire.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};

#[derive(Debug, Clone)]
pub struct ElectionConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub retry_period: Duration,
}

/// Whether this replica leads; read by the status and event writers.
#[derive(Debug, Default)]
pub struct Leadership {
    leader: AtomicBool,
}

impl Leadership {
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    fn set(&self, leader: bool, config: &ElectionConfig) {
        let was = self.leader.swap(leader, Ordering::Relaxed);
        if was != leader {
            if leader {
                tracing::info!(lease = %config.name, identity = %config.identity, "leader acquired");
            } else {
                tracing::info!(lease = %config.name, identity = %config.identity, "leader lost");
            }
        }
    }
}

/// Campaigns until the task is dropped.
pub async fn run_election(client: Client, config: ElectionConfig, leadership: Arc<Leadership>) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut last_renewed: Option<tokio::time::Instant> = None;
    loop {
        match try_acquire_or_renew(&api, &config).await {
            Ok(true) => {
                last_renewed = Some(tokio::time::Instant::now());
                leadership.set(true, &config);
            }
            Ok(false) => {
                last_renewed = None;
                leadership.set(false, &config);
            }
            Err(error) => {
                tracing::warn!(lease = %config.name, %error, "cannot reach the leader-election lease");
                // A leader that cannot renew steps down before anyone could take over.
                let stale =
                    last_renewed.is_none_or(|t| t.elapsed() >= config.lease_duration * 2 / 3);
                if stale {
                    leadership.set(false, &config);
                }
            }
        }
        tokio::time::sleep(config.retry_period).await;
    }
}

/// Gives the lease up if we hold it.
pub async fn release(client: Client, config: &ElectionConfig) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let Ok(mut lease) = api.get(&config.name).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    spec.acquire_time = None;
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => tracing::info!(lease = %config.name, "leader lease released"),
        Err(error) => {
            tracing::warn!(lease = %config.name, %error, "cannot release the leader lease")
        }
    }
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &ElectionConfig,
) -> Result<bool, kube::Error> {
    let now = MicroTime(Timestamp::now());
    let duration_secs = i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let existing = match api.get_opt(&config.name).await? {
        Some(lease) => lease,
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(config.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        }
    };

    let spec = existing.spec.clone().unwrap_or_default();
    let ours = spec.holder_identity.as_deref() == Some(config.identity.as_str());
    let held_by_other = !ours
        && spec
            .holder_identity
            .as_deref()
            .is_some_and(|h| !h.is_empty());
    if held_by_other {
        let lease_secs = spec.lease_duration_seconds.unwrap_or(duration_secs).max(1);
        let expires = spec
            .renew_time
            .as_ref()
            .map(|t| t.0 + SignedDuration::from_secs(i64::from(lease_secs)));
        if expires.is_some_and(|e| e > now.0) {
            return Ok(false);
        }
    }

    let mut lease = existing;
    let new_spec = lease.spec.get_or_insert_with(Default::default);
    if !ours {
        new_spec.acquire_time = Some(now.clone());
        new_spec.lease_transitions = Some(new_spec.lease_transitions.unwrap_or(0) + 1);
    }
    new_spec.holder_identity = Some(config.identity.clone());
    new_spec.lease_duration_seconds = Some(duration_secs);
    new_spec.renew_time = Some(now);
    // replace() sends the resourceVersion we read: a concurrent writer makes this a 409.
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}
