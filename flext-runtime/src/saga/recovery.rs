//! Recovery: the link-time registry of saga types, and resuming the sagas a crash left
//! in flight.

use std::sync::Arc;

use tokio::time::Instant;

use super::erased::ErasedSaga;
use super::lease::Claim;
use super::progress::Progress;
use super::{ClaimRequest, Fence, Saga, SagaOutcome, SagaRecord, SagaRunner, now_ms};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::future::BoxFuture;

use super::recovery_loop::{RecoveredSaga, RecoveryReport};

/// The resume function a registration holds: drives a claimed saga of one type.
type ResumeFn = for<'a> fn(
    &'a SagaRunner,
    SagaRecord,
    Instant,
) -> BoxFuture<'a, Result<SagaOutcome<serde_json::Value>>>;

/// Registers a saga type for [`SagaRunner::recover`]. Submitted by `#[saga]`.
#[doc(hidden)]
pub struct SagaRegistration {
    pub name: &'static str,
    pub resume: ResumeFn,
    /// Whether this code can drive a logged saga of the type: its definition is
    /// accepted and its input decodes. Runs before any claim or write.
    pub check: fn(&SagaRecord) -> Result<()>,
    /// The type's definition, as a new record of it is logged with (a child saga its
    /// parent starts by name).
    pub definition: &'static str,
    /// The Rust type's path, for the error that names two types of one name.
    pub type_name: fn() -> &'static str,
}

impl SagaRegistration {
    /// The registration of saga type `S`; used by generated code.
    #[doc(hidden)]
    pub const fn of<S: Saga>() -> Self {
        SagaRegistration {
            name: S::NAME,
            resume: resume::<S>,
            check: check::<S>,
            definition: S::DEFINITION,
            type_name: std::any::type_name::<S>,
        }
    }

    /// The registration of durable workflow type `W`; used by generated code.
    #[doc(hidden)]
    pub const fn workflow<W: super::DurableWorkflow>() -> Self {
        SagaRegistration {
            name: W::NAME,
            resume: super::graph::resume_workflow::<W>,
            check: super::graph::check::<W>,
            definition: W::DEFINITION,
            type_name: std::any::type_name::<W>,
        }
    }

    /// The registration of the type named `name`, when linked into this program.
    ///
    /// # Errors
    ///
    /// `flext.saga.duplicate_name` when two linked types answer to `name`: a logged saga
    /// of that name could be driven by the wrong one, so neither drives it.
    pub(crate) fn find(name: &str) -> Result<Option<&'static SagaRegistration>> {
        let mut found = inventory::iter::<SagaRegistration>
            .into_iter()
            .filter(|r| r.name == name);
        let Some(first) = found.next() else {
            return Ok(None);
        };
        match found.next() {
            None => Ok(Some(first)),
            Some(second) => Err(Error::internal(
                crate::codes::SAGA_DUPLICATE_NAME,
                format!(
                    "two types linked into this program are named `{}`: `{}` and `{}`; give one of them a name of its own with `#[saga(name = \"...\")]` or `#[workflow(name = \"...\")]` (the name is recorded with each run, so rename the one whose runs the log does not hold); until then no saga of this name is driven here",
                    crate::input::echo(name),
                    (first.type_name)(),
                    (second.type_name)()
                ),
            )),
        }
    }

    /// The registration that drives `record`.
    ///
    /// # Errors
    ///
    /// `flext.saga.unknown_type` when no linked type has its name;
    /// `flext.saga.duplicate_name` as [`find`](Self::find).
    pub(crate) fn of_record(record: &SagaRecord) -> Result<&'static SagaRegistration> {
        Self::find(&record.name)?.ok_or_else(|| unknown_type(record))
    }
}

inventory::collect!(SagaRegistration);

/// Whether the linked `S` can drive the logged `record`: the definition it started under
/// is `S`'s or one `S` accepts, and its input decodes as `S`.
///
/// # Errors
///
/// `flext.saga.definition_changed` or `flext.saga.input_mismatch`, naming the saga and
/// what to do.
pub(super) fn check<S: Saga>(record: &SagaRecord) -> Result<()> {
    decode::<S>(record).map(drop)
}

fn decode<S: Saga>(record: &SagaRecord) -> Result<S> {
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
    let saga = S::from_log(record.input.clone()).map_err(|e| {
        Error::internal(
            crate::codes::SAGA_INPUT_MISMATCH,
            format!(
                "the logged input of saga {} does not decode as `{}`: {e}; it is left as it is",
                record.id,
                S::NAME
            ),
        )
    })?;
    let progress = Progress::replay(S::STEPS.len(), &record.transitions);
    S::check_outputs(&progress.outputs).map_err(|e| {
        Error::internal(
            e.code().to_owned(),
            format!(
                "saga {} of `{}` is left as it is: {}; restore the type the log was written with, or give the new field a serde default",
                record.id,
                S::NAME,
                e.message()
            ),
        )
    })?;
    Ok(saga)
}

/// Resumes a claimed saga of type `S` (the claim acknowledged by a log call that started
/// at `since`). Registered by `#[saga]`.
#[doc(hidden)]
pub fn resume<'a, S: Saga>(
    runner: &'a SagaRunner,
    record: SagaRecord,
    since: Instant,
) -> BoxFuture<'a, Result<SagaOutcome<serde_json::Value>>> {
    Box::pin(async move {
        let saga: S = decode::<S>(&record)?;
        let ctx = Context::new().with_correlation_id(record.correlation_id);
        runner.continue_claimed(&saga, record, since, &ctx).await
    })
}

impl SagaRunner {
    /// Drives a saga this runner holds a claim on (`record` as claimed, the claim
    /// acknowledged by a log call that started at `since`) from where its transitions
    /// leave it. A saga whose transitions already end it while its record still shows it
    /// in flight gets its final state written, once.
    pub(super) async fn continue_claimed(
        &self,
        saga: &dyn ErasedSaga,
        record: SagaRecord,
        since: Instant,
        ctx: &Context,
    ) -> Result<SagaOutcome<serde_json::Value>> {
        let claim = Claim::new(self, record.id, Fence::of(&record), since);
        let steps = saga.steps();
        let progress = Progress::replay(steps.len(), &record.transitions);
        if let Some(done) = progress.final_state(steps)
            && record.state.is_in_flight()
            && done != record.state
        {
            tracing::info!(saga_id = %record.id, state = %done, "saga's transitions end it; writing its final state");
            self.log.settle(record.id, done, claim.fence()).await?;
        }
        self.drive(saga, &claim, progress, ctx).await
    }

    /// Takes over in-flight sagas whose lease expired (the runner that held it crashed,
    /// stopped, or lost the database) and finishes them: forward when one was running
    /// (the step that was in flight runs again under its idempotency key, with the new
    /// epoch as its [fencing token](crate::Context::fencing_token)), backward when it was
    /// compensating. A pass claims at most
    /// [`recovery_batch`](super::SagaRunnerBuilder::recovery_batch) sagas (default 32),
    /// and drives them concurrently, so that each is driven within its lease.
    ///
    /// Only types linked into this program are claimed: sagas of other types are left to
    /// the processes that have them (a rolling upgrade, two services on one database).
    /// A saga this program cannot drive (started under another definition, an input
    /// that no longer decodes, a log record that does not decode) is left untouched (no
    /// owner, lease or epoch change) and reported in [`RecoveryReport::refused`].
    ///
    /// # Errors
    ///
    /// When the log cannot be read. Per-saga failures are in the report.
    pub async fn recover(&self) -> Result<RecoveryReport> {
        let names: Vec<&'static str> = inventory::iter::<SagaRegistration>
            .into_iter()
            .map(|r| r.name)
            .collect();
        if names.is_empty() {
            return Ok(RecoveryReport::default());
        }
        let alive = self.hold_liveness().await;
        let request = ClaimRequest {
            lease: self.lease.clone(),
            now_ms: now_ms(),
            names,
            limit: self.recovery_batch,
            only: None,
            takeover_gone: alive.then(|| self.owner_prefix()),
            accept: Arc::new(|record: &SagaRecord| {
                (SagaRegistration::of_record(record)?.check)(record)
            }),
        };
        let since = Instant::now();
        let claimed = self.log.claim_expired(&request).await?;
        let refused = claimed
            .refused
            .into_iter()
            .map(|(saga_id, error)| {
                tracing::warn!(saga_id = %saga_id, code = error.code(), error = %error, "saga left as it is: this program cannot drive it");
                RecoveredSaga {
                    saga_id,
                    result: Err(error),
                }
            })
            .collect();
        let sagas = futures_util::future::join_all(claimed.sagas.into_iter().map(|record| async move {
            let saga_id = record.id;
            let result = match SagaRegistration::of_record(&record) {
                Ok(r) => (r.resume)(self, record, since).await,
                Err(e) => Err(e),
            };
            if let Err(e) = &result {
                tracing::warn!(saga_id = %saga_id, code = e.code(), error = %e, "saga recovery stopped");
            }
            RecoveredSaga { saga_id, result }
        }))
        .await;
        Ok(RecoveryReport { sagas, refused })
    }
}

fn unknown_type(record: &SagaRecord) -> Error {
    Error::not_found(
        crate::codes::SAGA_UNKNOWN_TYPE,
        format!(
            "saga {} is a `{}`, which is not linked into this program",
            record.id,
            crate::input::echo(&record.name)
        ),
    )
}
