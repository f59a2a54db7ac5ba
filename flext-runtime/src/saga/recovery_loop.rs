//! The recovery loop ([`SagaRunner::spawn_recovery`]) and what a recovery pass reports.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use super::{SagaOutcome, SagaRunner, SagaState};
use crate::error::{Error, Result};

/// A recovery loop started by [`SagaRunner::spawn_recovery`]; stop it with
/// [`shutdown`](Self::shutdown). Dropping it leaves the loop running until the runtime
/// stops.
#[derive(Debug)]
pub struct RecoveryLoop {
    stop: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
    reports: tokio::sync::watch::Receiver<Arc<RecoveryReport>>,
}

impl RecoveryLoop {
    /// The report of the last pass (empty before the first one ends), and a change
    /// notification after every pass: `reports().changed().await`.
    pub fn reports(&self) -> tokio::sync::watch::Receiver<Arc<RecoveryReport>> {
        self.reports.clone()
    }

    /// Stops the loop: a pass in progress finishes the sagas it claimed, then the loop
    /// ends; returns when it has.
    pub async fn shutdown(self) {
        self.stop.notify_one();
        // A loop that panicked has nothing left to stop.
        let _ = self.task.await;
    }
}

impl SagaRunner {
    /// Runs [`recover`](Self::recover) now and then every `every` on the current tokio
    /// runtime, so that sagas a crashed or stopped runner left in flight are finished
    /// once their leases expire, without the caller writing a loop. A pass that claimed
    /// a full batch ([`recovery_batch`](super::SagaRunnerBuilder::recovery_batch)) is
    /// followed by the next at once, until the backlog (a burst of timers due together,
    /// a crashed runner's sagas) is drained; a signal sent through this runner to a
    /// waiting saga also starts a pass at once. Each pass is logged
    /// (`tracing`, INFO when it recovered something, WARN when the log failed).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use flext::saga::{MemoryLog, SagaRunner};
    /// let runner = SagaRunner::builder(MemoryLog::new()).build();
    /// let recovery = runner.spawn_recovery(Duration::from_secs(10));
    /// // ... serve ...
    /// recovery.shutdown().await;
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (it spawns a task).
    pub fn spawn_recovery(&self, every: Duration) -> RecoveryLoop {
        self.spawn_recovery_with(every, |_| {})
    }

    /// [`spawn_recovery`](Self::spawn_recovery), calling `on_pass` with every pass's
    /// report (a pass that found nothing included), for an application's metrics or
    /// alerts. The same reports are on [`RecoveryLoop::reports`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use flext::saga::{MemoryLog, SagaRunner};
    /// let runner = SagaRunner::builder(MemoryLog::new()).build();
    /// let recovery = runner.spawn_recovery_with(Duration::from_secs(10), |report| {
    ///     for refused in &report.refused {
    ///         eprintln!("saga {} needs an operator", refused.saga_id);
    ///     }
    /// });
    /// let mut reports = recovery.reports();
    /// reports.changed().await.unwrap();
    /// assert!(reports.borrow().is_empty());
    /// recovery.shutdown().await;
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (it spawns a task).
    pub fn spawn_recovery_with(
        &self,
        every: Duration,
        on_pass: impl Fn(&RecoveryReport) + Send + 'static,
    ) -> RecoveryLoop {
        let runner = self.clone();
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let (publish, reports) = tokio::sync::watch::channel(Arc::new(RecoveryReport::default()));
        let task = tokio::spawn(async move {
            loop {
                // A pass that claimed a full batch left more behind (a burst of timers
                // due at once, a crashed runner's backlog): the next pass runs at once.
                let mut backlog = false;
                match runner.recover().await {
                    Ok(report) => {
                        if !report.is_empty() || !report.refused.is_empty() {
                            tracing::info!(
                                claimed = report.len(),
                                completed = report.completed(),
                                compensated = report.compensated(),
                                stuck = report.stuck(),
                                failed = report.failed(),
                                refused = report.refused.len(),
                                "saga recovery pass"
                            );
                        }
                        on_pass(&report);
                        backlog = report.len() >= runner.recovery_batch;
                        publish.send_replace(Arc::new(report));
                    }
                    Err(e) => tracing::warn!(error = %e, "saga recovery pass failed"),
                }
                if backlog {
                    tokio::task::yield_now().await;
                    continue;
                }
                // The next pass comes after `every`, or at once when a signal was sent
                // to a waiting saga through this runner.
                let wait = std::pin::pin!(tokio::time::sleep(every));
                let nudged = std::pin::pin!(runner.nudge.notified());
                let stop = std::pin::pin!(stopped.notified());
                let due = futures_util::future::select(wait, nudged);
                if let futures_util::future::Either::Right(_) =
                    futures_util::future::select(due, stop).await
                {
                    break;
                }
            }
        });
        RecoveryLoop {
            stop,
            task,
            reports,
        }
    }
}

/// What [`SagaRunner::recover`] did: every saga it claimed, in the order the log gave
/// them, with how each ended. Serialises to JSON with the counts, for an operator's
/// endpoint.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use flext::saga::{MemoryLog, SagaRunner};
/// let report = SagaRunner::builder(MemoryLog::new()).build().recover().await.unwrap();
/// assert!(report.is_empty());
/// assert_eq!((report.completed(), report.compensated(), report.stuck(), report.failed()), (0, 0, 0, 0));
/// # }
/// ```
#[derive(Debug, Default)]
pub struct RecoveryReport {
    /// One entry per claimed saga.
    pub sagas: Vec<RecoveredSaga>,
    /// Sagas whose lease expired that this program cannot drive, left untouched (no
    /// owner, lease or epoch change), each with why: started under another definition,
    /// an input or record that no longer decodes. Reported again on every pass until an
    /// operator acts or a program that can drive them runs.
    pub refused: Vec<RecoveredSaga>,
}

/// One saga [`SagaRunner::recover`] claimed.
#[derive(Debug)]
pub struct RecoveredSaga {
    /// The saga's id.
    pub saga_id: Uuid,
    /// How it ended, its output as JSON; or why it could not be recovered (its type is
    /// not linked into this program, its logged input no longer decodes, the log failed).
    pub result: Result<SagaOutcome<serde_json::Value>>,
}

impl RecoveryReport {
    /// How many sagas were claimed.
    pub fn len(&self) -> usize {
        self.sagas.len()
    }

    /// Whether no saga was in flight with an expired lease.
    pub fn is_empty(&self) -> bool {
        self.sagas.is_empty()
    }

    fn count(&self, state: SagaState) -> usize {
        self.sagas
            .iter()
            .filter(|s| s.result.as_ref().is_ok_and(|o| o.state() == state))
            .count()
    }

    /// Sagas recovery drove to completion.
    pub fn completed(&self) -> usize {
        self.count(SagaState::Completed)
    }

    /// Sagas recovery compensated.
    pub fn compensated(&self) -> usize {
        self.count(SagaState::Compensated)
    }

    /// Sagas that ended stuck, waiting for an operator.
    pub fn stuck(&self) -> usize {
        self.count(SagaState::Stuck)
    }

    /// Sagas whose recovery returned an error.
    pub fn failed(&self) -> usize {
        self.sagas.iter().filter(|s| s.result.is_err()).count()
    }
}

impl Serialize for RecoveryReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        #[derive(Serialize)]
        struct Entry<'a> {
            saga_id: Uuid,
            #[serde(skip_serializing_if = "Option::is_none")]
            outcome: Option<&'a SagaOutcome<serde_json::Value>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'a Error>,
        }
        let entries: Vec<Entry<'_>> = self
            .sagas
            .iter()
            .map(|r| Entry {
                saga_id: r.saga_id,
                outcome: r.result.as_ref().ok(),
                error: r.result.as_ref().err(),
            })
            .collect();
        let refused: Vec<Entry<'_>> = self
            .refused
            .iter()
            .map(|r| Entry {
                saga_id: r.saga_id,
                outcome: None,
                error: r.result.as_ref().err(),
            })
            .collect();
        let mut st = s.serialize_struct("RecoveryReport", 6)?;
        st.serialize_field("completed", &self.completed())?;
        st.serialize_field("compensated", &self.compensated())?;
        st.serialize_field("stuck", &self.stuck())?;
        st.serialize_field("failed", &self.failed())?;
        st.serialize_field("sagas", &entries)?;
        st.serialize_field("refused", &refused)?;
        st.end()
    }
}
