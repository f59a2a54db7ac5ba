//! What the log records of each saga and durable workflow run: its transitions, and
//! each one with when it was written.

use serde::{Deserialize, Serialize};

use super::log::{ErrorRecord, OperatorAction};

/// One recorded transition. Each is written in one transaction together with the
/// saga's new state, so the log never shows a state its transitions do not explain.
///
/// A saga's steps are recorded by position (`StepCompleted`, ...); a durable workflow's
/// nodes by name (`NodeStarted`, `NodeCompleted`, ...), never by position, because
/// nodes that run concurrently complete in any order. `Stuck` and `Operator` serve both.
/// Non-exhaustive: later kinds of durable work add transitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Transition {
    /// Step `index` finished with `output` (serialised); the next step may start. For the
    /// last step this also completes the saga.
    StepCompleted {
        /// The step's position.
        index: usize,
        /// The step's output, as JSON.
        output: serde_json::Value,
        /// How many attempts the step took (0 in logs written before attempts were
        /// recorded).
        #[serde(default)]
        attempts: u32,
    },
    /// Step `index` failed for good; compensation starts.
    StepFailed {
        /// The step's position.
        index: usize,
        /// Why.
        error: ErrorRecord,
        /// How many attempts failed.
        #[serde(default)]
        attempts: u32,
    },
    /// The compensation of step `index` finished. When no completed step is left to
    /// undo, this also marks the saga compensated.
    CompensationCompleted {
        /// The compensated step's position.
        index: usize,
        /// How many attempts the compensation took.
        #[serde(default)]
        attempts: u32,
    },
    /// The saga cannot make progress on its own.
    Stuck {
        /// The step or compensation that kept failing.
        step: String,
        /// Its last error.
        error: ErrorRecord,
        /// How many attempts failed.
        #[serde(default)]
        attempts: u32,
    },
    /// An operator acted on the saga ([`SagaRunner::intervene`](super::SagaRunner::intervene), or the
    /// `flext-saga` tool).
    Operator {
        /// What the operator did.
        action: OperatorAction,
        /// Who did it, as they gave it.
        principal: String,
        /// Why, as they gave it.
        reason: String,
    },
    /// Sleep step `index` ran and returned `output` (how long to sleep); the saga sleeps
    /// until `until_ms` (milliseconds since the Unix epoch), leased to no runner, and
    /// the step completes when it wakes.
    Sleeping {
        /// The sleep step's position.
        index: usize,
        /// When the saga wakes, in milliseconds since the Unix epoch.
        until_ms: u64,
        /// The step's output, as JSON: what it completes with.
        output: serde_json::Value,
    },
    /// Signal step `index` found no signal `signal` for it and waits, leased to no
    /// runner, until one is sent ([`SagaRunner::signal`](super::SagaRunner::signal)) or
    /// until `until_ms` (milliseconds since the Unix epoch; `None`: no time limit).
    Waiting {
        /// The signal step's position.
        index: usize,
        /// The name of the signal it waits for (its type's name).
        signal: String,
        /// When the wait times out, in milliseconds since the Unix epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until_ms: Option<u64>,
    },
    /// Signal step `index` received signal `signal` from `sender` with `payload`, or
    /// (both `None`) its wait timed out: what the step runs with, recorded before it
    /// runs so that a step run again after a crash sees the same signal. A sender's
    /// signal is received once per saga.
    SignalReceived {
        /// The signal step's position.
        index: usize,
        /// The signal's name.
        signal: String,
        /// The sender's id (the deduplication key), `None` when the wait timed out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sender: Option<String>,
        /// The signal, as JSON; `None` when the wait timed out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<serde_json::Value>,
    },
    /// Node `node` of a durable workflow started (its dependencies had all settled).
    /// Written together with the transitions that made it ready, so starting costs no
    /// write of its own; a node started and never settled ran when the process stopped,
    /// and recovery runs it again under the same idempotency key (`run id:node`).
    NodeStarted {
        /// The node's name (its `#[workflow_step]` method).
        node: String,
    },
    /// Node `node` returned `output` (serialised); the nodes that take it may start.
    NodeCompleted {
        /// The node's name.
        node: String,
        /// Its output, as JSON.
        output: serde_json::Value,
        /// How many attempts it took.
        #[serde(default)]
        attempts: u32,
    },
    /// Node `node` failed (returned an error, timed out or panicked). An `optional`
    /// node's failure is recorded and the workflow goes on; a required one's turns the
    /// run to compensation.
    NodeFailed {
        /// The node's name.
        node: String,
        /// Why.
        error: ErrorRecord,
        /// Whether the node is optional.
        #[serde(default)]
        optional: bool,
        /// How many attempts failed.
        #[serde(default)]
        attempts: u32,
    },
    /// Node `node` did not run: it takes the output of `missing`, an optional node that
    /// failed or was skipped.
    NodeSkipped {
        /// The node's name.
        node: String,
        /// The node whose output was missing.
        missing: String,
    },
    /// The compensation of node `node` finished. When nothing completed is left to
    /// undo, this also marks the run compensated.
    NodeCompensated {
        /// The compensated node's name.
        node: String,
        /// How many attempts the compensation took.
        #[serde(default)]
        attempts: u32,
    },
}

/// One recorded transition with when it was written: an entry of a saga's history
/// ([`SagaLog::history`](super::SagaLog::history)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The transition's position in the saga's log, from 1.
    pub seq: u64,
    /// When it was written, in milliseconds since the Unix epoch (0 in logs written
    /// before times were recorded).
    pub at_ms: u64,
    /// The transition.
    #[serde(flatten)]
    pub transition: Transition,
}
