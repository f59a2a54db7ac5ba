//! Sagas: a sequence of local steps, each with a compensation that undoes it, run by a
//! runner that records every transition in a durable log and finishes whatever a crash
//! left in flight.
//!
//! The model is Garcia-Molina and Salem's "Sagas" (SIGMOD 1987) with the step kinds of
//! the later literature: *compensatable* steps before the *pivot* (the point of no
//! return), *retriable* steps after it. A step that fails before the pivot makes the
//! runner compensate every completed step in reverse order; a step after the pivot is
//! retried until it succeeds or the saga is marked stuck for an operator. Durable
//! execution in the manner of Temporal and Restate: a step's output is serialised into
//! the log right after the step, and read back from the log before any later step or
//! compensation, so a resumed saga sees exactly what the crashed one saw.
//!
//! # What is written, and when
//!
//! One atomic write per transition, each also renewing the runner's lease:
//!
//! - creation (before the first step runs): 1;
//! - each completed step, with its output (the last one also completes the saga): 1;
//! - a failed step (when there is nothing to undo it also completes the compensation): 1;
//! - each completed compensation (the last one also marks the saga compensated): 1;
//! - an operator's resume, abort or resolve ([`SagaRunner::intervene`], or the `flext-saga`
//!   tool): 1.
//!
//! A write is atomic; it is not always a commit of its own: at
//! `Synchronous::Full`, `SqliteLog` commits every write waiting for it in one transaction
//! (group commit), so with many sagas in flight one `fsync` carries the transitions of
//! many.
//!
//! A saga of `n` steps that succeeds costs `n + 1` writes; one that fails at step `k`
//! (counting from 0) costs `k + 2` writes plus one per compensated step. A step's start
//! is not written separately: after a crash the step without a completion record runs
//! again under the same idempotency key (`ctx.idempotency_key()`, the saga id and the
//! step name), so a step that deduplicates on that key takes effect once. Recording the
//! start would add a write per step and buy nothing the key does not already give.
//!
//! A sleep step (`#[saga_step(sleep)]`, a durable timer) costs two writes: one when it
//! runs, recording the wake-up time and leasing the saga to no runner until then (the
//! lease is the timer), and its completion when the recovery loop wakes it.
//!
//! A signal step (`#[saga_step(signal)]`) costs one write for the signal it takes
//! ([`Transition::SignalReceived`], or its timeout) and, when no signal was kept for it
//! yet, one before that for the wait ([`Transition::Waiting`], the saga leased to no
//! runner until a signal hands it over or its time limit passes). Keeping a signal
//! ([`SagaRunner::signal`]) is one write of its own.
//!
//! A child step (`#[saga_step(child)]`) costs the parent one write for the child's
//! outcome (a [`Transition::SignalReceived`] of the signal `child:<Name>`) and, when the
//! child has not finished when the step is reached, one before that for the wait; the
//! child's creation is one write that also links it to its parent, and the child's
//! writes are its own.
//!
//! A durable workflow ([`DurableWorkflow`], `#[workflow(durable)]`) is a record of the
//! same log, its transitions keyed by node name: one write when the run is created,
//! then one write per batch, where a batch is the nodes that settled together, the skips
//! they caused and the starts they allowed ([`SagaLog::append_all`]), and one per
//! compensation. A chain of `n` nodes costs `n + 2` writes (the first node's start has a
//! write of its own); `k` independent nodes cost 3. Starts are recorded because nodes
//! run side by side: the log shows which ones a crash interrupted.

mod builder;
mod child;
mod definition;
mod durable;
mod erased;
mod fence;
mod graph;
mod lease;
mod listing;
mod log;
mod memory;
mod operator;
mod outcome;
mod progress;
mod queue;
mod record;
mod recovery;
mod recovery_loop;
mod runner;
#[cfg(feature = "schedules")]
mod schedule;
mod signal;
mod spec;
#[cfg(feature = "sqlite")]
mod sqlite;
mod start;
mod step;
mod timer;
mod transition;
mod workflow;

pub use self::builder::SagaRunnerBuilder;
pub use self::child::{Child, child_saga_id};
pub use self::durable::Durable;
#[doc(hidden)]
pub use self::durable::{
    EncodeDurable, EncodeNotDurable, LogSlot, NodeDurable, NodeNotDurable, SleepOutput,
    assert_durable, assert_sleep_output, no_such_step,
};
#[cfg(feature = "postgres")]
pub(crate) use self::fence::fence_refused;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use self::fence::owner_range;
pub use self::graph::DurableWorkflow;
#[doc(hidden)]
pub use self::graph::resume_workflow;
#[cfg(feature = "postgres")]
pub(crate) use self::log::refuse_signal;
pub use self::log::{
    ClaimRequest, Claimed, ErrorRecord, Fence, HistoryEntry, Lease, OperatorAction, SagaFilter,
    SagaLog, SagaRecord, SagaState, SagaSummary, StuckAt, Transition, now_ms,
};
#[cfg(feature = "postgres")]
pub(crate) use self::log::{lease_lost as lease_lost_error, unknown_saga as unknown_saga_error};
pub use self::memory::MemoryLog;
pub(crate) use self::operator::done_for_good;
pub use self::operator::{Intervention, MAX_PRINCIPAL_BYTES, MAX_REASON_BYTES};

/// The former name of [`Intervention`].
#[deprecated(
    since = "0.1.0",
    note = "renamed `Intervention` (it read as a bus `Command`); `SagaRunner::act` and `SagaLog::act` are now `intervene`"
)]
pub type OperatorCommand = Intervention;
pub use self::outcome::SagaOutcome;
pub(crate) use self::queue::{Candidate, QUEUE_PREFIX, pick};
pub use self::queue::{
    DequeueRequest, Dequeued, Enqueue, Enqueued, MAX_PARTITION_BYTES, MAX_QUEUE_NAME_BYTES, Queue,
    QueueDepth, QueueItem, QueueLoop, QueueReport, Rate,
};
#[doc(hidden)]
pub use self::recovery::{SagaRegistration, resume};
pub use self::recovery_loop::{RecoveredSaga, RecoveryLoop, RecoveryReport};
pub use self::runner::SagaRunner;
#[cfg(feature = "schedules")]
pub use self::schedule::{CatchUp, MAX_SCHEDULE_NAME_BYTES, Schedule, ScheduleLoop, Tick};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use self::signal::WAITING_PREFIX;
pub(crate) use self::signal::parked;
pub use self::signal::{
    KeyedSaga, MAX_SENDER_BYTES, Signal, SignalKey, SignalRecord, SignalSent, WaitsFor,
    saga_id_for_key,
};
#[cfg(feature = "sqlite")]
pub use self::sqlite::{SqliteLog, Synchronous};
#[cfg(feature = "sqlite")]
pub(crate) use self::sqlite::{append_sqlite, create_sqlite, migrate as migrate_sqlite};
pub use self::start::saga_id_for_event;
pub use self::step::StepScope;
pub use spec::{ChildSpec, RetryOn, SignalSpec, StepSpec};

use crate::error::Result;
use crate::future::BoxFuture;

/// A saga type: its input is the struct, its steps the `#[saga_step]` methods.
/// Implemented by `#[saga]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a saga",
    label = "not a `#[saga]`",
    note = "add `#[saga]` to the `impl {Self}` block that holds its `#[saga_step]` methods"
)]
pub trait Saga: Durable + Send + Sync + 'static {
    /// The name recorded in the log and used by recovery to find the type again.
    const NAME: &'static str;
    /// The steps, in order.
    const STEPS: &'static [StepSpec];
    /// The definition as the log records it when a saga starts: each step's name, output
    /// type, compensation and pivot, in order (`#[saga]` writes it). Recovery refuses to
    /// resume a saga started under another definition, unless it is in
    /// [`ACCEPTS`](Self::ACCEPTS). Empty for a hand-written impl: not checked.
    const DEFINITION: &'static str = "";
    /// Older definitions this code still resumes (`#[saga(accepts = "...")]`).
    const ACCEPTS: &'static [&'static str] = &[];
    /// The last step's output.
    type Output: Durable + Send + 'static;

    /// Whether every logged output in `outputs` (by step index) decodes as its step's
    /// output type: checked before a runner claims a logged saga, so that a type changed
    /// under the same name (a field added without a serde default) leaves the saga as it
    /// is instead of failing its next step. `#[saga]` writes it; a hand-written impl
    /// checks nothing.
    ///
    /// # Errors
    ///
    /// `flext.saga.output_mismatch`, naming the step, the type and serde's reason.
    fn check_outputs(outputs: &[Option<serde_json::Value>]) -> Result<()> {
        let _ = outputs;
        Ok(())
    }

    /// Runs step `index` and returns its output as JSON. Used by the runner.
    fn run_step<'a>(
        &'a self,
        index: usize,
        scope: &'a StepScope<'a>,
    ) -> BoxFuture<'a, Result<serde_json::Value>>;

    /// Runs the compensation of step `index`. Used by the runner.
    fn compensate<'a>(
        &'a self,
        index: usize,
        scope: &'a StepScope<'a>,
    ) -> BoxFuture<'a, Result<()>>;
}
