//! What the operator views return: serialisable, the same for the console's JSON API
//! and `flext-saga --json`.

use serde::Serialize;
use uuid::Uuid;

use crate::saga::{HistoryEntry, OperatorAction, SagaRecord, SagaState, SagaSummary, Transition};

/// One page of [`Operations::sagas`](super::Operations::sagas).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SagaPage {
    /// How many matching sagas come before this page.
    pub offset: usize,
    /// The page size asked for (at most [`MAX_PAGE`](super::MAX_PAGE)).
    pub limit: usize,
    /// Whether more sagas match after this page.
    pub more: bool,
    /// The sagas.
    pub sagas: Vec<SagaSummary>,
}

/// One step of the definition a saga was logged with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefinedStep {
    /// The step's name.
    pub name: String,
    /// The type of its output.
    pub output: String,
    /// Its compensation's name; `None` for a step with none (the pivot and after).
    pub compensation: Option<String>,
    /// Whether it is the pivot: once it completes, the saga can only go forward.
    pub pivot: bool,
    /// For a durable workflow's node: whether it is optional.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    /// For a durable workflow's node: the nodes it waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// One node of a durable workflow run, as its log leaves it: the run shown as its graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeView {
    /// The node's name.
    pub name: String,
    /// `waiting` (not started), `running` (started, not settled), `completed`, `failed`,
    /// `skipped` (an output it takes is missing), `compensated`, or `stuck` (its
    /// compensation kept failing).
    pub state: &'static str,
    /// The nodes it waits for.
    pub depends_on: Vec<String>,
    /// Whether its failure lets the run go on.
    pub optional: bool,
}

/// One transition of a saga's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// Its number in the saga's history, from 1.
    pub seq: u64,
    /// When it was recorded, in milliseconds since the Unix epoch (0 when the log did
    /// not keep the time).
    pub at_ms: u64,
    /// `step_completed`, `step_failed`, `compensation_completed`, `stuck` or `operator`;
    /// `sleeping` (a sleep step ran; the saga wakes at `until_ms`); `waiting` (a signal
    /// step waits for `signal` until `until_ms`) and `signal_received` (it received one
    /// from `sender`, or timed out: no sender);
    /// for a durable workflow, `node_started`, `node_completed`, `node_failed`,
    /// `node_skipped` or `node_compensated` (with `stuck` and `operator`).
    pub kind: &'static str,
    /// The step (or `compensate <step>`) it concerns, by name when the definition is
    /// known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// How many attempts it took (0 when not recorded).
    pub attempts: u32,
    /// The error's code, for a failure or a stuck point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The error's message, for a failure or a stuck point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// For an operator's transition: the action, who acted and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<OperatorAction>,
    /// For an operator's transition: who acted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// For an operator's transition: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A completed step's output, when payloads are shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// For `sleeping`: when the saga wakes; for `waiting`: when the wait times out (none
    /// without a time limit); in milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// For `waiting` and `signal_received`: the signal's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// For `signal_received`: the sender's id (none when the wait timed out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
}

/// One saga as [`Operations::saga`](super::Operations::saga) shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SagaDetail {
    /// Id, name, state, owner, times, and where it stuck.
    pub summary: SagaSummary,
    /// The correlation id it runs under.
    pub correlation_id: Uuid,
    /// Its input, when payloads are shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
    /// The definition it was logged with (empty when logged without one).
    pub steps: Vec<DefinedStep>,
    /// Every transition, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// What an operator may do now: the actions the log would not refuse at once by the
    /// saga's state (a live lease may still refuse them).
    pub actions: Vec<OperatorAction>,
    /// The completed steps from the pivot on: an abort leaves them done, so it needs
    /// `past_pivot`.
    pub stays_done_on_abort: Vec<String>,
    /// For a durable workflow run: each node of its graph with its state, in declaration
    /// order; empty for a saga.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeView>,
}

impl SagaDetail {
    /// The detail of `record` with its `history`; `payloads` says whether its input and
    /// outputs are shown.
    pub fn new(record: &SagaRecord, history: &[HistoryEntry], payloads: bool) -> Self {
        let steps = defined_steps(&record.definition);
        let step = |i: usize| {
            steps
                .get(i)
                .map_or_else(|| format!("#{i}"), |s| s.name.clone())
        };
        let timeline = history
            .iter()
            .map(|entry| {
                let mut t = TimelineEntry {
                    seq: entry.seq,
                    at_ms: entry.at_ms,
                    kind: "",
                    step: None,
                    attempts: 0,
                    error_code: None,
                    error_message: None,
                    action: None,
                    principal: None,
                    reason: None,
                    output: None,
                    until_ms: None,
                    signal: None,
                    sender: None,
                };
                match &entry.transition {
                    Transition::StepCompleted {
                        index,
                        output,
                        attempts,
                    } => {
                        t.kind = "step_completed";
                        t.step = Some(step(*index));
                        t.attempts = *attempts;
                        t.output = payloads.then(|| output.clone());
                    }
                    Transition::StepFailed {
                        index,
                        error,
                        attempts,
                    } => {
                        t.kind = "step_failed";
                        t.step = Some(step(*index));
                        t.attempts = *attempts;
                        t.error_code = Some(error.code.clone());
                        t.error_message = Some(error.message.clone());
                    }
                    Transition::CompensationCompleted { index, attempts } => {
                        t.kind = "compensation_completed";
                        t.step = Some(format!("compensate {}", step(*index)));
                        t.attempts = *attempts;
                    }
                    Transition::Stuck {
                        step: at,
                        error,
                        attempts,
                    } => {
                        t.kind = "stuck";
                        t.step = Some(at.clone());
                        t.attempts = *attempts;
                        t.error_code = Some(error.code.clone());
                        t.error_message = Some(error.message.clone());
                    }
                    Transition::Operator {
                        action,
                        principal,
                        reason,
                    } => {
                        t.kind = "operator";
                        t.action = Some(*action);
                        t.principal = Some(principal.clone());
                        t.reason = Some(reason.clone());
                    }
                    Transition::Sleeping {
                        index,
                        until_ms,
                        output,
                    } => {
                        t.kind = "sleeping";
                        t.step = Some(step(*index));
                        t.until_ms = Some(*until_ms);
                        t.output = payloads.then(|| output.clone());
                    }
                    Transition::Waiting {
                        index,
                        signal,
                        until_ms,
                    } => {
                        t.kind = "waiting";
                        t.step = Some(step(*index));
                        t.signal = Some(signal.clone());
                        t.until_ms = *until_ms;
                    }
                    Transition::SignalReceived {
                        index,
                        signal,
                        sender,
                        payload,
                    } => {
                        t.kind = "signal_received";
                        t.step = Some(step(*index));
                        t.signal = Some(signal.clone());
                        t.sender = sender.clone();
                        t.output = payload.as_ref().filter(|_| payloads).cloned();
                    }
                    Transition::NodeStarted { node } => {
                        t.kind = "node_started";
                        t.step = Some(node.clone());
                    }
                    Transition::NodeCompleted {
                        node,
                        output,
                        attempts,
                    } => {
                        t.kind = "node_completed";
                        t.step = Some(node.clone());
                        t.attempts = *attempts;
                        t.output = payloads.then(|| output.clone());
                    }
                    Transition::NodeFailed {
                        node,
                        error,
                        attempts,
                        ..
                    } => {
                        t.kind = "node_failed";
                        t.step = Some(node.clone());
                        t.attempts = *attempts;
                        t.error_code = Some(error.code.clone());
                        t.error_message = Some(error.message.clone());
                    }
                    Transition::NodeSkipped { node, missing } => {
                        t.kind = "node_skipped";
                        t.step = Some(node.clone());
                        t.error_message = Some(format!("no output from `{missing}`"));
                    }
                    Transition::NodeCompensated { node, attempts } => {
                        t.kind = "node_compensated";
                        t.step = Some(format!("compensate {node}"));
                        t.attempts = *attempts;
                    }
                }
                t
            })
            .collect();
        let actions = match record.state {
            SagaState::Stuck => vec![
                OperatorAction::Resume,
                OperatorAction::Abort,
                OperatorAction::Resolve,
            ],
            SagaState::Running | SagaState::Compensating => {
                vec![OperatorAction::Abort, OperatorAction::Resolve]
            }
            _ => Vec::new(),
        };
        SagaDetail {
            summary: record.summary(),
            correlation_id: record.correlation_id,
            input: payloads.then(|| record.input.clone()),
            stays_done_on_abort: crate::saga::done_for_good(record),
            nodes: nodes(&steps, &record.transitions),
            steps,
            timeline,
            actions,
        }
    }
}

/// A durable workflow run's nodes with their states, from its definition and its
/// transitions; empty when the transitions are a saga's (no node transition).
fn nodes(steps: &[DefinedStep], transitions: &[Transition]) -> Vec<NodeView> {
    let is_node = |t: &Transition| {
        matches!(
            t,
            Transition::NodeStarted { .. }
                | Transition::NodeCompleted { .. }
                | Transition::NodeFailed { .. }
                | Transition::NodeSkipped { .. }
                | Transition::NodeCompensated { .. }
        )
    };
    if !transitions.iter().any(is_node) {
        return Vec::new();
    }
    let mut nodes: Vec<NodeView> = steps
        .iter()
        .map(|s| NodeView {
            name: s.name.clone(),
            state: "waiting",
            depends_on: s.depends_on.clone(),
            optional: s.optional,
        })
        .collect();
    let mut set = |name: &str, state: &'static str| {
        if let Some(n) = nodes.iter_mut().find(|n| n.name == name) {
            n.state = state;
        }
    };
    for t in transitions {
        match t {
            Transition::NodeStarted { node } => set(node, "running"),
            Transition::NodeCompleted { node, .. } => set(node, "completed"),
            Transition::NodeFailed { node, .. } => set(node, "failed"),
            Transition::NodeSkipped { node, .. } => set(node, "skipped"),
            Transition::NodeCompensated { node, .. } => set(node, "compensated"),
            Transition::Stuck { step, .. } => {
                set(step.strip_prefix("compensate ").unwrap_or(step), "stuck");
            }
            _ => {}
        }
    }
    // An operator's action after a stuck compensation puts it back in line.
    if let Some(Transition::Operator { .. }) = transitions.last() {
        for n in &mut nodes {
            if n.state == "stuck" {
                n.state = "completed";
            }
        }
    }
    nodes
}

/// The steps of a logged definition: one line per step, tab-separated name, output
/// type, compensation (`-` for none) and `pivot` for the pivot; a durable workflow's
/// node has `optional` in the fourth field and its dependencies, comma separated, in a
/// fifth.
fn defined_steps(definition: &str) -> Vec<DefinedStep> {
    definition
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut fields = line.split('\t');
            let name = fields.next().unwrap_or_default().to_owned();
            let output = fields.next().unwrap_or_default().to_owned();
            let compensation = fields
                .next()
                .filter(|c| *c != "-" && !c.is_empty())
                .map(str::to_owned);
            let kind = fields.next().unwrap_or_default();
            let depends_on = fields
                .next()
                .unwrap_or_default()
                .split(',')
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect();
            DefinedStep {
                name,
                output,
                compensation,
                pivot: kind == "pivot",
                optional: kind == "optional",
                depends_on,
            }
        })
        .collect()
}

/// What [`Operations::intervene`](super::Operations::intervene) did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Intervened {
    /// The saga after the intervention.
    pub saga: SagaSummary,
    /// The action carried out.
    pub action: OperatorAction,
    /// Who carried it out.
    pub principal: String,
    /// What happens next, in words: `completed`, `compensated`, `stuck again`, or which
    /// recovery pass carries it out.
    pub next: String,
}

/// One operator action, done or refused: who, what, on what, why, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `resume`, `abort`, `resolve`, `rebuild` or `replay`.
    pub action: String,
    /// What it acted on: `saga <id>`, `projection <name>`, `dead letter <id> of <consumer>`.
    pub target: String,
    /// Who acted.
    pub principal: String,
    /// Why.
    pub reason: String,
    /// `done`, or `refused: <code>`.
    pub outcome: String,
}
