//! The upgrade lock: a `coordination.k8s.io/v1` Lease in `kube-system` that
//! names the run holding it (host, pid, aksup version, target version, start
//! time). A background task renews it while the run lives; the handle releases
//! it on [`UpgradeLock::release`] or, best effort, on drop. A second run
//! refuses and names the holder; a lease whose holder stopped renewing it
//! (expired) is taken over; [`break_lock`] removes a stale lock on request
//! (`--break-lock`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{DeleteParams, PostParams, Preconditions};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::events::{NodeEvent, NodeEvents};
use super::retry::{self, RetryPolicy};
use super::{Error, Result, keys};

pub const LOCK_NAME: &str = "aksup-upgrade-lock";
pub const LOCK_NAMESPACE: &str = "kube-system";

const HOST: &str = "aksup.io/lock-host";
const PID: &str = "aksup.io/lock-pid";
const VERSION: &str = "aksup.io/lock-version";
const TARGET: &str = "aksup.io/lock-target";
const STARTED: &str = "aksup.io/lock-started";

/// Who holds (or wants) the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// The Lease's `holderIdentity`: host, pid and a random run id.
    pub identity: String,
    pub host: String,
    pub pid: u32,
    pub aksup_version: String,
    /// The Kubernetes version the run upgrades to.
    pub target: String,
    /// RFC 3339 start time of the run.
    pub started: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "aksup {} on host {} (pid {}), upgrading to {}, started {} [{}]",
            self.aksup_version, self.host, self.pid, self.target, self.started, self.identity
        )
    }
}

impl LockHolder {
    /// This process, upgrading to `target`.
    pub fn current(target: &str) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown-host".to_owned());
        let pid = std::process::id();
        let run: u32 = rand::random();
        Self {
            identity: format!("{host}/{pid}/{run:08x}"),
            host,
            pid,
            aksup_version: env!("CARGO_PKG_VERSION").to_owned(),
            target: target.to_owned(),
            started: Timestamp::now().to_string(),
        }
    }

    /// The holder recorded on a lease (fields missing on the lease read "unknown").
    pub fn of(lease: &Lease) -> Self {
        let annotations = lease.metadata.annotations.clone().unwrap_or_default();
        let get = |key: &str| {
            annotations
                .get(key)
                .cloned()
                .unwrap_or_else(|| "unknown".to_owned())
        };
        Self {
            identity: lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default(),
            host: get(HOST),
            pid: annotations
                .get(PID)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0),
            aksup_version: get(VERSION),
            target: get(TARGET),
            started: get(STARTED),
        }
    }

    fn annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (HOST.to_owned(), self.host.clone()),
            (PID.to_owned(), self.pid.to_string()),
            (VERSION.to_owned(), self.aksup_version.clone()),
            (TARGET.to_owned(), self.target.clone()),
            (STARTED.to_owned(), self.started.clone()),
        ])
    }
}

/// Options of the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOptions {
    pub name: String,
    pub namespace: String,
    /// How long the lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the background task renews it (well below the duration).
    pub renew_interval: Duration,
    pub retry: RetryPolicy,
}

impl Default for LockOptions {
    fn default() -> Self {
        Self {
            name: LOCK_NAME.to_owned(),
            namespace: LOCK_NAMESPACE.to_owned(),
            lease_duration: Duration::from_secs(60),
            renew_interval: Duration::from_secs(20),
            retry: RetryPolicy::default(),
        }
    }
}

/// True when the lease names no holder, or its holder stopped renewing it
/// before `now - leaseDurationSeconds`.
pub fn is_free_or_expired(lease: &Lease, now: Timestamp) -> bool {
    let Some(spec) = lease.spec.as_ref() else {
        return true;
    };
    if spec.holder_identity.as_deref().is_none_or(str::is_empty) {
        return true;
    }
    let Some(MicroTime(renewed)) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    renewed
        .checked_add(duration)
        .map_or(true, |expiry| expiry < now)
}

fn lease_for(holder: &LockHolder, options: &LockOptions, previous: Option<&Lease>) -> Lease {
    let now = MicroTime(Timestamp::now());
    let previous_spec = previous.and_then(|lease| lease.spec.as_ref());
    let same_holder =
        previous_spec.and_then(|s| s.holder_identity.as_deref()) == Some(holder.identity.as_str());
    let transitions = previous_spec.and_then(|s| s.lease_transitions).unwrap_or(0);
    let mut annotations = previous
        .and_then(|lease| lease.metadata.annotations.clone())
        .unwrap_or_default();
    annotations.retain(|key, _| !key.starts_with(keys::AKSUP_PREFIX));
    annotations.extend(holder.annotations());
    Lease {
        metadata: ObjectMeta {
            name: Some(options.name.clone()),
            namespace: Some(options.namespace.clone()),
            resource_version: previous.and_then(|lease| lease.metadata.resource_version.clone()),
            annotations: Some(annotations),
            labels: previous.and_then(|lease| lease.metadata.labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(options.lease_duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: if same_holder {
                previous_spec.and_then(|s| s.acquire_time.clone())
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if previous.is_some() && !same_holder {
                transitions + 1
            } else {
                transitions
            }),
            ..LeaseSpec::default()
        }),
    }
}

/// The held lock. Renewed in the background until released or dropped.
pub struct UpgradeLock {
    api: Api<Lease>,
    options: LockOptions,
    holder: LockHolder,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    lost: watch::Receiver<Option<Option<LockHolder>>>,
    events: Arc<dyn NodeEvents>,
}

impl std::fmt::Debug for UpgradeLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpgradeLock")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

enum Attempt {
    Acquired(Option<LockHolder>),
    Held(LockHolder),
}

impl UpgradeLock {
    /// Takes the lock for `holder`: creates the lease, takes it over when it
    /// is free or expired, or fails with [`Error::LockHeld`] naming the holder.
    pub async fn acquire(
        client: &kube::Client,
        holder: LockHolder,
        options: LockOptions,
        events: Arc<dyn NodeEvents>,
    ) -> Result<Self> {
        let api: Api<Lease> = Api::namespaced(client.clone(), &options.namespace);
        let attempt = retry::retry(
            &options.retry,
            events.as_ref(),
            "acquire the upgrade lock",
            || async {
                match api.get_opt(&options.name).await? {
                    None => {
                        api.create(&PostParams::default(), &lease_for(&holder, &options, None))
                            .await?;
                        Ok(Attempt::Acquired(None))
                    }
                    Some(lease) => {
                        let current = LockHolder::of(&lease);
                        let ours = current.identity == holder.identity;
                        if !ours && !is_free_or_expired(&lease, Timestamp::now()) {
                            return Ok(Attempt::Held(current));
                        }
                        api.replace(
                            &options.name,
                            &PostParams::default(),
                            &lease_for(&holder, &options, Some(&lease)),
                        )
                        .await?;
                        let previous = (!ours && !current.identity.is_empty()).then_some(current);
                        Ok(Attempt::Acquired(previous))
                    }
                }
            },
        )
        .await
        .map_err(|source| Error::Lock {
            step: "acquire",
            name: options.name.clone(),
            source: Box::new(source),
        })?;
        match attempt {
            Attempt::Held(current) => Err(Error::LockHeld {
                holder: Box::new(current),
            }),
            Attempt::Acquired(previous) => {
                if let Some(previous) = previous {
                    events.on_event(NodeEvent::LockTakenOver { previous });
                }
                events.on_event(NodeEvent::LockAcquired {
                    holder: holder.clone(),
                });
                Ok(Self::start(api, options, holder, events))
            }
        }
    }

    fn start(
        api: Api<Lease>,
        options: LockOptions,
        holder: LockHolder,
        events: Arc<dyn NodeEvents>,
    ) -> Self {
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let (lost_tx, lost_rx) = watch::channel(None);
        let task = {
            let (api, options, holder, events) =
                (api.clone(), options.clone(), holder.clone(), events.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => return,
                        () = tokio::time::sleep(options.renew_interval) => {}
                    }
                    match renew_once(&api, &options, &holder).await {
                        Ok(Ok(())) => events.on_event(NodeEvent::LockRenewed {
                            holder: holder.clone(),
                        }),
                        Ok(Err(other)) => {
                            events.on_event(NodeEvent::LockLost {
                                holder: other.clone(),
                            });
                            let _ = lost_tx.send(Some(other));
                            return;
                        }
                        // A failed renewal is tried again at the next tick; the
                        // lease stays valid for several ticks.
                        Err(_) => {}
                    }
                }
            })
        };
        Self {
            api,
            options,
            holder,
            stop: Some(stop_tx),
            task: Some(task),
            lost: lost_rx,
            events,
        }
    }

    pub fn holder(&self) -> &LockHolder {
        &self.holder
    }

    /// Fails with [`Error::LockLost`] when a renewal found that the lease now
    /// names another holder or is gone. Check before each disruptive step.
    pub fn check(&self) -> Result<()> {
        match self.lost.borrow().as_ref() {
            None => Ok(()),
            Some(other) => Err(Error::LockLost {
                holder: other.clone().map(Box::new),
            }),
        }
    }

    /// Stops renewing and deletes the lease if this run still holds it.
    pub async fn release(mut self) -> Result<()> {
        self.stop_renewing().await;
        let released = release_lease(&self.api, &self.options.name, &self.holder).await;
        if matches!(released, Ok(true)) {
            self.events.on_event(NodeEvent::LockReleased {
                holder: self.holder.clone(),
            });
        }
        released.map(|_| ()).map_err(|source| Error::Lock {
            step: "release",
            name: self.options.name.clone(),
            source: Box::new(source),
        })
    }

    async fn stop_renewing(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for UpgradeLock {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else { return };
        task.abort();
        // Best effort: release on the runtime if there still is one; otherwise
        // the lease expires after its duration.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (api, name, holder, events) = (
                self.api.clone(),
                self.options.name.clone(),
                self.holder.clone(),
                self.events.clone(),
            );
            runtime.spawn(async move {
                if let Ok(true) = release_lease(&api, &name, &holder).await {
                    events.on_event(NodeEvent::LockReleased { holder });
                }
            });
        }
    }
}

/// One renewal: `Ok(Ok(()))` renewed; `Ok(Err(holder))` the lease belongs to
/// someone else now (or is gone: `None`).
async fn renew_once(
    api: &Api<Lease>,
    options: &LockOptions,
    holder: &LockHolder,
) -> Result<Result<(), Option<LockHolder>>, kube::Error> {
    let Some(lease) = api.get_opt(&options.name).await? else {
        return Ok(Err(None));
    };
    let current = LockHolder::of(&lease);
    if current.identity != holder.identity {
        return Ok(Err(Some(current)));
    }
    api.replace(
        &options.name,
        &PostParams::default(),
        &lease_for(holder, options, Some(&lease)),
    )
    .await?;
    Ok(Ok(()))
}

/// Deletes the lease if `holder` still holds it; true when deleted.
async fn release_lease(
    api: &Api<Lease>,
    name: &str,
    holder: &LockHolder,
) -> Result<bool, kube::Error> {
    let Some(lease) = api.get_opt(name).await? else {
        return Ok(false);
    };
    if LockHolder::of(&lease).identity != holder.identity {
        return Ok(false);
    }
    delete_lease(api, name, &lease).await
}

async fn delete_lease(api: &Api<Lease>, name: &str, lease: &Lease) -> Result<bool, kube::Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: lease.metadata.uid.clone(),
            resource_version: lease.metadata.resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(err) if retry::is_not_found(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Removes the lock whoever holds it (`--break-lock`): for a run that died
/// without releasing it, when waiting for the lease to expire is not wanted.
/// Returns the holder it removed.
pub async fn break_lock(
    client: &kube::Client,
    options: &LockOptions,
    events: &dyn NodeEvents,
) -> Result<Option<LockHolder>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &options.namespace);
    let broken = retry::retry(&options.retry, events, "break the upgrade lock", || async {
        let Some(lease) = api.get_opt(&options.name).await? else {
            return Ok(None);
        };
        delete_lease(&api, &options.name, &lease).await?;
        Ok(Some(LockHolder::of(&lease)))
    })
    .await
    .map_err(|source| Error::Lock {
        step: "break",
        name: options.name.clone(),
        source: Box::new(source),
    })?;
    events.on_event(NodeEvent::LockBroken {
        previous: broken.clone(),
    });
    Ok(broken)
}
