//! What an operator sees and does, in one place: the `flext-saga` tool and the web
//! console (`flext::console`) both call [`Operations`], so they cannot disagree on what
//! an action does or refuses.
//!
//! - **Sagas**: [`sagas`](Operations::sagas) lists them a page at a time, stuck first;
//!   [`saga`](Operations::saga) shows one with its timeline, attempts, errors and the
//!   definition it was logged with; [`intervene`](Operations::intervene) resumes,
//!   aborts or resolves one, recorded in its log as a transition with the principal and
//!   the reason.
//! - **Projections** ([`ProjectionControl`]): position, lag, the failing event of a
//!   stopped one, rebuild.
//! - **Outboxes** ([`OutboxControl`]): backlog and the oldest row's age.
//! - **Dead letters** ([`DeadLetterControl`]): a consumer's messages given up on, and
//!   their replay through the consumer's own handling.
//! - **Handlers, circuit breakers, the service registry, consumers**: the bus's
//!   [report](crate::Bus::report) ([`health`](Operations::health)).
//!
//! Every state-changing call needs a principal and a reason and leaves an
//! [`AuditRecord`]: logged under the `flext::audit` tracing target, and kept (the last
//! [`AUDIT_KEPT`]) for [`audit`](Operations::audit). A saga's intervention is also a
//! transition in its durable log, which is its lasting audit record.
//!
//! Payloads (a saga's input, a step's output) may hold personal data: they are shown
//! only when the application opts in with [`show_payloads`](Operations::show_payloads).

mod controls;
mod sagas;
mod views;

pub use self::controls::{DeadLetter, DeadLetterControl, OutboxControl, ProjectionControl};
pub use self::views::{
    AuditRecord, DefinedStep, Intervened, NodeView, SagaDetail, SagaPage, TimelineEntry,
};
pub use crate::database::{OutboxStatus, ProjectionStatus};

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use crate::bus::Bus;
use crate::codes;
use crate::error::{Error, Result};
use crate::input::echo;
use crate::registry::RegistryReport;
use crate::saga::{Intervention, OperatorAction, SagaLog, SagaRunner, now_ms};

/// The most sagas one [`Operations::sagas`] call returns.
pub const MAX_PAGE: usize = 200;
/// How many [`AuditRecord`]s [`Operations::audit`] keeps, newest last.
pub const AUDIT_KEPT: usize = 1000;

/// The operator's view of one application: its saga log, and optionally its runner (to
/// drive a resumed or aborted saga at once), bus (handler health), projections and
/// outboxes. Cheap to clone.
///
/// ```
/// use flext::operator::Operations;
/// use flext::saga::{MemoryLog, OperatorAction, Intervention, SagaFilter};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> flext::Result<()> {
/// let ops = Operations::new(MemoryLog::new());
/// let page = ops.sagas(&SagaFilter::default().stuck_first().limit(20)).await?;
/// assert!(page.sagas.is_empty());
/// // An unknown saga is refused, and the refusal is audited.
/// let resume = Intervention::new(OperatorAction::Resume, "alice", "the carrier is back")?;
/// let refused = ops.intervene("3f2a", &resume).await.unwrap_err();
/// assert_eq!(refused.code(), flext::codes::SAGA_NOT_FOUND);
/// assert_eq!(ops.audit()[0].outcome, format!("refused: {}", refused.code()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Operations {
    log: Arc<dyn SagaLog>,
    runner: Option<SagaRunner>,
    bus: Option<Bus>,
    projections: Vec<Arc<dyn ProjectionControl>>,
    outboxes: Vec<(String, Arc<dyn OutboxControl>)>,
    dead_letters: Vec<Arc<dyn DeadLetterControl>>,
    show_payloads: bool,
    audit: Arc<Mutex<VecDeque<AuditRecord>>>,
}

impl std::fmt::Debug for Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operations")
            .field("runner", &self.runner.is_some())
            .field("bus", &self.bus.is_some())
            .field(
                "projections",
                &self
                    .projections
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>(),
            )
            .field(
                "outboxes",
                &self.outboxes.iter().map(|o| &o.0).collect::<Vec<_>>(),
            )
            .field(
                "dead_letters",
                &self
                    .dead_letters
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>(),
            )
            .field("show_payloads", &self.show_payloads)
            .finish_non_exhaustive()
    }
}

impl Operations {
    /// The views over `log` alone: an intervention is recorded and the saga left with
    /// an expired lease, for the next recovery pass of a runner that has its type (what
    /// `flext-saga` does).
    pub fn new(log: impl SagaLog) -> Self {
        Self::from_log(Arc::new(log))
    }

    /// As [`new`](Self::new), over a shared log.
    pub fn from_log(log: Arc<dyn SagaLog>) -> Self {
        Operations {
            log,
            runner: None,
            bus: None,
            projections: Vec::new(),
            outboxes: Vec::new(),
            dead_letters: Vec::new(),
            show_payloads: false,
            audit: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    /// The views over `runner`'s log; a resume or an abort is driven at once by
    /// `runner` ([`SagaRunner::intervene`]).
    pub fn for_runner(runner: SagaRunner) -> Self {
        let mut ops = Self::from_log(runner.log().clone());
        ops.runner = Some(runner);
        ops
    }

    /// Handler, circuit breaker, service registry and consumer health from `bus`'s
    /// [report](Bus::report).
    pub fn bus(mut self, bus: Bus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Shows `projection` (a `SqliteProjectionRunner` or `PgProjectionRunner`, or
    /// anything implementing [`ProjectionControl`]) and allows its rebuild.
    pub fn projection(mut self, projection: impl ProjectionControl) -> Self {
        self.projections.push(Arc::new(projection));
        self
    }

    /// Shows the outbox `relay` (a `SqliteOutboxRelay` or `PgOutboxRelay`) under `name`.
    pub fn outbox(mut self, name: impl Into<String>, relay: impl OutboxControl) -> Self {
        self.outboxes.push((name.into(), Arc::new(relay)));
        self
    }

    /// Shows the dead letters of `consumer` (a `flext::nats::NatsConsumer`) and allows
    /// their replay.
    pub fn dead_letters(mut self, consumer: impl DeadLetterControl) -> Self {
        self.dead_letters.push(Arc::new(consumer));
        self
    }

    /// Whether [`saga`](Self::saga) shows a saga's input and its steps' outputs. Off by
    /// default: they may hold personal data.
    pub fn show_payloads(mut self, show: bool) -> Self {
        self.show_payloads = show;
        self
    }

    /// Whether payloads are shown.
    pub fn payloads_shown(&self) -> bool {
        self.show_payloads
    }

    /// Every registered projection's status, in registration order; one whose state
    /// cannot be read is shown with the error.
    pub async fn projections(&self) -> Vec<std::result::Result<ProjectionStatus, (String, Error)>> {
        let mut out = Vec::with_capacity(self.projections.len());
        for p in &self.projections {
            out.push(p.status().await.map_err(|e| (p.name().to_owned(), e)));
        }
        out
    }

    /// Rebuilds the projection named `name` from its first event, for `principal` and
    /// `reason` (checked as an [`Intervention`]'s); returns how many events it applied.
    /// Audited whether it is done or refused.
    ///
    /// # Errors
    ///
    /// `flext.saga.operator_input` for a missing or oversized principal or reason;
    /// `flext.operator.unknown_target` for a projection not registered here; the
    /// rebuild's own errors.
    pub async fn rebuild(&self, name: &str, principal: &str, reason: &str) -> Result<u64> {
        let result = async {
            Intervention::new(OperatorAction::Resolve, principal, reason)?;
            let projection = self
                .projections
                .iter()
                .find(|p| p.name() == name)
                .ok_or_else(|| {
                    Error::not_found(
                        codes::OPERATOR_UNKNOWN_TARGET,
                        format!(
                            "no projection `{}` is registered with the operator views; known: {}",
                            echo(name),
                            self.projections
                                .iter()
                                .map(|p| format!("`{}`", p.name()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
            projection.rebuild().await
        }
        .await;
        self.record_audit(
            "rebuild",
            format!("projection {}", echo(name)),
            principal,
            reason,
            result.as_ref().err(),
        );
        result
    }

    /// Every registered outbox's backlog, by name, in registration order.
    pub async fn outboxes(&self) -> Vec<(String, Result<OutboxStatus>)> {
        let mut out = Vec::with_capacity(self.outboxes.len());
        for (name, o) in &self.outboxes {
            out.push((name.clone(), o.status().await));
        }
        out
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) dead letters of each registered consumer,
    /// by consumer name; payloads only when [shown](Self::show_payloads).
    pub async fn dead_letter_lists(&self, limit: usize) -> Vec<(String, Result<Vec<DeadLetter>>)> {
        let mut out = Vec::with_capacity(self.dead_letters.len());
        for c in &self.dead_letters {
            let letters = c.list(limit.min(MAX_PAGE)).await.map(|mut letters| {
                if !self.show_payloads {
                    for l in &mut letters {
                        l.payload = None;
                    }
                }
                letters
            });
            out.push((c.name().to_owned(), letters));
        }
        out
    }

    /// Replays the dead letter `id` of the consumer named `consumer`, for `principal`
    /// and `reason` (checked as an [`Intervention`]'s). Audited whether it is done or
    /// refused.
    ///
    /// # Errors
    ///
    /// `flext.saga.operator_input` for a missing or oversized principal or reason;
    /// `flext.operator.unknown_target` for a consumer not registered here; those of
    /// [`DeadLetterControl::replay`].
    pub async fn replay(
        &self,
        consumer: &str,
        id: u64,
        principal: &str,
        reason: &str,
    ) -> Result<()> {
        let result = async {
            Intervention::new(OperatorAction::Resolve, principal, reason)?;
            let control = self
                .dead_letters
                .iter()
                .find(|c| c.name() == consumer)
                .ok_or_else(|| {
                    Error::not_found(
                        codes::OPERATOR_UNKNOWN_TARGET,
                        format!(
                            "no consumer `{}` is registered with the operator views; known: {}",
                            echo(consumer),
                            self.dead_letters
                                .iter()
                                .map(|c| format!("`{}`", c.name()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
            control.replay(id).await
        }
        .await;
        self.record_audit(
            "replay",
            format!("dead letter {} of {}", id, echo(consumer)),
            principal,
            reason,
            result.as_ref().err(),
        );
        result
    }

    /// The bus's report: every handler's counts, failures by code and latency
    /// percentiles, and the components registered with it (circuit breakers, the
    /// service registry's instances, consumers). `None` without a [bus](Self::bus).
    pub fn health(&self) -> Option<RegistryReport> {
        self.bus.as_ref().map(Bus::report)
    }

    /// Records an action refused before it reached these views (by the console's
    /// guard: no principal, another origin), so that every attempt leaves an
    /// [`AuditRecord`]. `principal` is `-` when the request had none.
    pub fn audit_refused(
        &self,
        action: &str,
        target: &str,
        principal: &str,
        reason: &str,
        error: &Error,
    ) {
        self.record_audit(
            action,
            echo(target).into_owned(),
            principal,
            reason,
            Some(error),
        );
    }

    /// The audit records kept, oldest first (at most [`AUDIT_KEPT`]).
    pub fn audit(&self) -> Vec<AuditRecord> {
        self.audit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    fn record_audit(
        &self,
        action: &str,
        target: String,
        principal: &str,
        reason: &str,
        refusal: Option<&Error>,
    ) {
        let record = AuditRecord {
            at_ms: now_ms(),
            action: action.to_owned(),
            target,
            principal: kept_text(principal, crate::saga::MAX_PRINCIPAL_BYTES),
            reason: kept_text(reason, crate::saga::MAX_REASON_BYTES),
            outcome: match refusal {
                None => "done".to_owned(),
                Some(e) => format!("refused: {}", e.code()),
            },
        };
        tracing::info!(
            target: "flext::audit",
            action = %record.action,
            target_ = %record.target,
            principal = %record.principal,
            reason = %record.reason,
            outcome = %record.outcome,
            "operator action"
        );
        let mut kept = self.audit.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() == AUDIT_KEPT {
            kept.pop_front();
        }
        kept.push_back(record);
    }
}

/// `text` whole when it is within `max` bytes (what an intervention accepts), else a
/// bounded, escaped echo of it.
fn kept_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        text.to_owned()
    } else {
        echo(text).into_owned()
    }
}
