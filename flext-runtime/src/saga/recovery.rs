//! Recovery: the link-time registry of saga types, and resuming the sagas a crash left
//! in flight.

use uuid::Uuid;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::progress::Progress;
use super::{Durable, Saga, SagaOutcome, SagaRecord, SagaRunner, SagaState, now_ms};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::future::BoxFuture;

/// Registers a saga type for [`SagaRunner::recover`]. Submitted by `#[saga]`.
#[doc(hidden)]
pub struct SagaRegistration {
    pub name: &'static str,
    pub resume: for<'a> fn(
        &'a SagaRunner,
        SagaRecord,
    ) -> BoxFuture<'a, Result<SagaOutcome<serde_json::Value>>>,
}

impl SagaRegistration {
    /// A registration; used by generated code.
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        resume: for<'a> fn(
            &'a SagaRunner,
            SagaRecord,
        ) -> BoxFuture<'a, Result<SagaOutcome<serde_json::Value>>>,
    ) -> Self {
        SagaRegistration { name, resume }
    }
}

inventory::collect!(SagaRegistration);

/// Resumes a logged saga of type `S`. Registered by `#[saga]`.
#[doc(hidden)]
pub fn resume<'a, S: Saga>(
    runner: &'a SagaRunner,
    record: SagaRecord,
) -> BoxFuture<'a, Result<SagaOutcome<serde_json::Value>>> {
    Box::pin(async move {
        // A saga started under another definition is left as the log has it.
        let accepted = record.definition.is_empty()
            || S::DEFINITION.is_empty()
            || record.definition == S::DEFINITION
            || S::ACCEPTS.contains(&record.definition.as_str());
        if !accepted {
            return Err(super::definition::changed(
                S::NAME,
                record.id,
                &record.definition,
                S::DEFINITION,
            ));
        }
        let saga: S = S::from_log(record.input.clone()).map_err(|e| {
            Error::internal(
                crate::codes::SAGA_INPUT_MISMATCH,
                format!(
                    "the logged input of saga {} does not decode as `{}`: {e}",
                    record.id,
                    S::NAME
                ),
            )
        })?;
        let progress = Progress::replay(S::STEPS.len(), &record.transitions);
        let ctx = Context::new().with_correlation_id(record.correlation_id);
        let outcome = runner.drive(&saga, record.id, progress, &ctx).await?;
        // The output was decoded from the log a moment ago; it encodes again.
        let mut encode_error = None;
        let outcome = outcome.map(|o| {
            o.to_log().unwrap_or_else(|e| {
                encode_error = Some(e);
                serde_json::Value::Null
            })
        });
        match encode_error {
            None => Ok(outcome),
            Some(e) => Err(Error::internal(
                crate::codes::SAGA_OUTPUT_NOT_SERIALISABLE,
                format!("the output of saga {} does not serialise: {e}", record.id),
            )),
        }
    })
}

impl SagaRunner {
    /// Takes over every in-flight saga whose lease expired (the runner that held it
    /// crashed or stopped) and finishes it: forward when it was running (the step that
    /// was in flight runs again under its idempotency key), backward when it was
    /// compensating. Sagas of a type not linked into this program are left alone and
    /// reported as errors.
    ///
    /// Returns a [`RecoveryReport`]: every saga claimed, with its outcome (the output
    /// as JSON) or the error that stopped its recovery, and the counts.
    ///
    /// # Errors
    ///
    /// When the log cannot be read. Per-saga failures are in the report.
    pub async fn recover(&self) -> Result<RecoveryReport> {
        let claimed = self.log.claim_expired(&self.lease, now_ms()).await?;
        let mut results = Vec::with_capacity(claimed.len());
        for record in claimed {
            let id = record.id;
            let registration = inventory::iter::<SagaRegistration>
                .into_iter()
                .find(|r| r.name == record.name);
            let result = match registration {
                Some(r) => (r.resume)(self, record).await,
                None => Err(Error::not_found(
                    crate::codes::SAGA_UNKNOWN_TYPE,
                    format!(
                        "saga {id} is a `{}`, which is not linked into this program",
                        record.name
                    ),
                )),
            };
            results.push(RecoveredSaga {
                saga_id: id,
                result,
            });
        }
        Ok(RecoveryReport { sagas: results })
    }
}

/// A recovery loop started by [`SagaRunner::spawn_recovery`]; stop it with
/// [`shutdown`](Self::shutdown). Dropping it leaves the loop running until the runtime
/// stops.
#[derive(Debug)]
pub struct RecoveryLoop {
    stop: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl RecoveryLoop {
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
    /// once their leases expire, without the caller writing a loop. Each pass is logged
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
        let runner = self.clone();
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                match runner.recover().await {
                    Ok(report) if !report.is_empty() => tracing::info!(
                        claimed = report.len(),
                        completed = report.completed(),
                        compensated = report.compensated(),
                        stuck = report.stuck(),
                        failed = report.failed(),
                        "saga recovery pass"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "saga recovery pass failed"),
                }
                let wait = std::pin::pin!(tokio::time::sleep(every));
                let stop = std::pin::pin!(stopped.notified());
                if let futures_util::future::Either::Right(_) =
                    futures_util::future::select(wait, stop).await
                {
                    break;
                }
            }
        });
        RecoveryLoop { stop, task }
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
        let mut st = s.serialize_struct("RecoveryReport", 5)?;
        st.serialize_field("completed", &self.completed())?;
        st.serialize_field("compensated", &self.compensated())?;
        st.serialize_field("stuck", &self.stuck())?;
        st.serialize_field("failed", &self.failed())?;
        st.serialize_field("sagas", &entries)?;
        st.end()
    }
}
