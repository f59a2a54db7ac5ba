//! [`ServiceRegistry`]: the instances of a service, their health, and which one to call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::future::BoxFuture;

/// How [`ServiceRegistry::select`] picks among the healthy instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Each healthy instance in turn.
    RoundRobin,
    /// The healthy instance whose health probe answered fastest (a moving average).
    LeastLatency,
}

type Probe<S> = Arc<dyn Fn(Arc<S>) -> BoxFuture<'static, Result<()>> + Send + Sync>;

struct Instance<S> {
    id: String,
    service: Arc<S>,
    health: Mutex<Health>,
}

#[derive(Clone)]
struct Health {
    healthy: bool,
    /// Since when the instance has been healthy (or unhealthy).
    since: Instant,
    last_check: Option<Instant>,
    /// Moving average of the probe's latency, microseconds.
    latency_us: Option<f64>,
    last_error: Option<String>,
}

/// One instance's line in [`ServiceRegistry::health`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceHealth {
    /// The instance's id.
    pub id: String,
    /// Whether its last probe passed (instances start healthy).
    pub healthy: bool,
    /// Milliseconds since its last probe; `None` before the first.
    pub last_check_ms_ago: Option<u64>,
    /// The probe's latency, a moving average, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Milliseconds it has been healthy without interruption (0 while unhealthy).
    pub uptime_ms: u64,
    /// Why its last probe failed, while unhealthy.
    pub last_error: Option<String>,
}

/// The instances of one service, with an async health probe run on an interval: an
/// instance whose probe fails is skipped by [`select`](Self::select) and comes back when
/// its probe passes again. Cheap to clone. Time is tokio's clock.
///
/// ```
/// use flext::registry::{Selection, ServiceRegistry};
///
/// struct Replica { url: &'static str, up: bool }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let replicas = ServiceRegistry::new("search", |r: std::sync::Arc<Replica>| {
///     Box::pin(async move {
///         if r.up { Ok(()) } else { Err(flext::Error::infrastructure("search.down", "no answer")) }
///     })
/// });
/// replicas.add("a", Replica { url: "http://a", up: false });
/// replicas.add("b", Replica { url: "http://b", up: true });
/// replicas.check_now().await;
/// assert_eq!(replicas.select(Selection::RoundRobin).unwrap().url, "http://b");
/// assert_eq!(replicas.select(Selection::RoundRobin).unwrap().url, "http://b", "a is skipped");
/// # }
/// ```
pub struct ServiceRegistry<S> {
    name: Arc<str>,
    probe: Probe<S>,
    instances: Arc<Mutex<Vec<Arc<Instance<S>>>>>,
    next: Arc<AtomicUsize>,
    probe_timeout: Duration,
}

impl<S> Clone for ServiceRegistry<S> {
    fn clone(&self) -> Self {
        ServiceRegistry {
            name: self.name.clone(),
            probe: self.probe.clone(),
            instances: self.instances.clone(),
            next: self.next.clone(),
            probe_timeout: self.probe_timeout,
        }
    }
}

impl<S: Send + Sync + 'static> ServiceRegistry<S> {
    /// A registry of service `name` whose instances are checked with `probe` (an
    /// instance is healthy while its probe returns `Ok` within the probe timeout, 5 s
    /// by default).
    pub fn new(
        name: impl Into<String>,
        probe: impl Fn(Arc<S>) -> BoxFuture<'static, Result<()>> + Send + Sync + 'static,
    ) -> Self {
        ServiceRegistry {
            name: name.into().into(),
            probe: Arc::new(probe),
            instances: Arc::default(),
            next: Arc::default(),
            probe_timeout: Duration::from_secs(5),
        }
    }

    /// A probe slower than `timeout` fails.
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// Adds an instance, healthy until a probe says otherwise; an instance with the same
    /// id is replaced.
    pub fn add(&self, id: impl Into<String>, service: S) {
        let id = id.into();
        let mut instances = self.lock();
        instances.retain(|i| i.id != id);
        instances.push(Arc::new(Instance {
            id,
            service: Arc::new(service),
            health: Mutex::new(Health {
                healthy: true,
                since: Instant::now(),
                last_check: None,
                latency_us: None,
                last_error: None,
            }),
        }));
    }

    /// Removes the instance `id`; returns whether there was one.
    pub fn remove(&self, id: &str) -> bool {
        let mut instances = self.lock();
        let before = instances.len();
        instances.retain(|i| i.id != id);
        instances.len() != before
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Instance<S>>>> {
        self.instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A healthy instance, chosen by `selection`.
    ///
    /// # Errors
    ///
    /// `flext.service.no_healthy_instance` (infrastructure) when no instance is healthy.
    pub fn select(&self, selection: Selection) -> Result<Arc<S>> {
        let instances = self.lock();
        let healthy: Vec<(&Arc<Instance<S>>, Health)> = instances
            .iter()
            .map(|i| {
                (
                    i,
                    i.health
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone(),
                )
            })
            .filter(|(_, h)| h.healthy)
            .collect();
        let chosen = match selection {
            Selection::RoundRobin if !healthy.is_empty() => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                healthy.get(n % healthy.len()).map(|(i, _)| *i)
            }
            Selection::RoundRobin => None,
            Selection::LeastLatency => healthy
                .iter()
                .min_by(|(_, a), (_, b)| {
                    let a = a.latency_us.unwrap_or(f64::MAX);
                    let b = b.latency_us.unwrap_or(f64::MAX);
                    a.total_cmp(&b)
                })
                .map(|(i, _)| *i),
        };
        chosen.map(|i| i.service.clone()).ok_or_else(|| {
            Error::infrastructure(
                crate::codes::SERVICE_NO_HEALTHY_INSTANCE,
                format!(
                    "no healthy instance of `{}` ({} registered): retry after their health probes pass",
                    self.name,
                    instances.len()
                ),
            )
        })
    }

    /// Probes every instance now, all at once, and records the results.
    pub async fn check_now(&self) {
        let instances: Vec<Arc<Instance<S>>> = self.lock().clone();
        let checks = instances.into_iter().map(|instance| {
            let probe = self.probe.clone();
            let timeout = self.probe_timeout;
            async move {
                let started = Instant::now();
                let outcome =
                    match tokio::time::timeout(timeout, probe(instance.service.clone())).await {
                        Ok(result) => result,
                        Err(_) => Err(Error::timeout(
                            crate::codes::SERVICE_STEP_TIMED_OUT,
                            format!("health probe took over {} ms", timeout.as_millis()),
                        )),
                    };
                let us = started.elapsed().as_secs_f64() * 1e6;
                let now = Instant::now();
                let mut h = instance
                    .health
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let healthy = outcome.is_ok();
                if healthy != h.healthy {
                    tracing::info!(instance = %instance.id, healthy, "instance health changed");
                    h.since = now;
                }
                h.healthy = healthy;
                h.last_check = Some(now);
                h.last_error = outcome.err().map(|e| e.to_string());
                // An exponentially weighted moving average, weight 0.3 for the newest.
                h.latency_us = Some(h.latency_us.map_or(us, |old| 0.7 * old + 0.3 * us));
            }
        });
        futures_util::future::join_all(checks).await;
    }

    /// Probes every instance now and then every `every` on the current tokio runtime,
    /// until the returned loop is shut down.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn_health_checks(&self, every: Duration) -> HealthLoop {
        let registry = self.clone();
        HealthLoop(crate::background::Background::spawn(every, move || {
            let registry = registry.clone();
            async move { registry.check_now().await }
        }))
    }

    /// Every instance's health: status, last check, probe latency and uptime.
    pub fn health(&self) -> Vec<InstanceHealth> {
        let now = Instant::now();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.lock()
            .iter()
            .map(|i| {
                let h = i.health.lock().unwrap_or_else(PoisonError::into_inner);
                InstanceHealth {
                    id: i.id.clone(),
                    healthy: h.healthy,
                    last_check_ms_ago: h.last_check.map(|t| ms(now.duration_since(t))),
                    latency_ms: h.latency_us.map(|us| us / 1000.0),
                    uptime_ms: if h.healthy {
                        ms(now.duration_since(h.since))
                    } else {
                        0
                    },
                    last_error: if h.healthy {
                        None
                    } else {
                        h.last_error.clone()
                    },
                }
            })
            .collect()
    }
}

impl<S: Send + Sync + 'static> super::ReportSource for ServiceRegistry<S> {
    /// Every instance's health; healthy while at least one instance is.
    fn report(&self) -> super::ComponentReport {
        let health = self.health();
        super::ComponentReport {
            kind: "service",
            name: self.name.to_string(),
            healthy: health.iter().any(|h| h.healthy),
            status: serde_json::json!({ "instances": health }),
        }
    }
}

/// The health checks' background loop; see [`ServiceRegistry::spawn_health_checks`].
#[derive(Debug)]
pub struct HealthLoop(crate::background::Background);

impl HealthLoop {
    /// Stops the loop after its current pass; returns when it has.
    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
}
