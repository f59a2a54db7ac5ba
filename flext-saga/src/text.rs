//! What the tool prints: the list of sagas and one saga with its steps (or graph) and
//! history, every stored string escaped and bounded.

use flext_runtime::input::echo;
use flext_runtime::operator::SagaDetail;
use flext_runtime::saga::{OperatorAction, QueueDepth, SagaSummary, now_ms};

pub(crate) fn time(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .filter(|&ms| ms > 0)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || "-".to_owned(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
}

pub(crate) fn list_text(sagas: &[SagaSummary]) -> String {
    if sagas.is_empty() {
        return "no sagas match".to_owned();
    }
    let mut out = format!(
        "{:<36}  {:<20}  {:<12}  {:>5}  {:<24}  {:<32}  {}",
        "ID", "NAME", "STATE", "TRANS", "CREATED", "OWNER", "STUCK AT"
    );
    for s in sagas {
        let stuck = s.stuck_at.as_ref().map_or_else(String::new, |at| {
            format!(
                "{}: {} {}",
                echo(&at.step),
                echo(&at.code),
                echo(&at.message)
            )
        });
        out.push_str(&format!(
            "\n{:<36}  {:<20}  {:<12}  {:>5}  {:<24}  {:<32}  {stuck}",
            s.id,
            echo(&s.name),
            s.state,
            s.transitions,
            time(s.created_ms),
            echo(&s.owner)
        ));
    }
    out.push_str(&format!("\n{} saga(s)", sagas.len()));
    out
}

/// Every queue's depth, its running count and the age of its oldest waiting saga as of
/// `now_ms`.
pub(crate) fn queues_text(queues: &[QueueDepth], now_ms: u64) -> String {
    if queues.is_empty() {
        return "no queue has sagas waiting or running".to_owned();
    }
    let mut out = format!(
        "{:<32}  {:>8}  {:>8}  {}",
        "QUEUE", "QUEUED", "RUNNING", "OLDEST WAITING"
    );
    for q in queues {
        let oldest = q.oldest_queued_ms.map_or_else(
            || "-".to_owned(),
            |at| format!("{} ({} s ago)", time(at), now_ms.saturating_sub(at) / 1000),
        );
        out.push_str(&format!(
            "\n{:<32}  {:>8}  {:>8}  {oldest}",
            echo(&q.queue),
            q.queued,
            q.running
        ));
    }
    out
}

pub(crate) fn show_text(detail: &SagaDetail) -> String {
    let saga = &detail.summary;
    let attempts = |n: u32| match n {
        0 => String::new(),
        1 => " (1 attempt)".to_owned(),
        n => format!(" ({n} attempts)"),
    };
    let lease = if saga.state.is_in_flight() {
        if saga.lease_until_ms > now_ms() {
            format!(" (lease until {})", time(saga.lease_until_ms))
        } else {
            " (lease expired: the next recovery pass takes it)".to_owned()
        }
    } else {
        String::new()
    };
    let input = detail
        .input
        .as_ref()
        .map(|i| serde_json::to_string(i).unwrap_or_default())
        .unwrap_or_default();
    let mut out = format!(
        "saga        {}\nname        {}\nstate       {}\ncreated     {}\ncorrelation {}\nowner       {}{lease}\ninput       {}",
        saga.id,
        echo(&saga.name),
        saga.state,
        time(saga.created_ms),
        detail.correlation_id,
        echo(&saga.owner),
        echo(&input),
    );
    if !detail.nodes.is_empty() {
        // A durable workflow run: its graph, each node with its state.
        out.push_str("\ngraph");
        for node in &detail.nodes {
            let after = if node.depends_on.is_empty() {
                String::new()
            } else {
                format!("  after {}", echo(&node.depends_on.join(", ")))
            };
            let optional = if node.optional { " (optional)" } else { "" };
            out.push_str(&format!(
                "\n  {:<24}  {:<11}{after}",
                format!("{}{optional}", echo(&node.name)),
                node.state
            ));
        }
    }
    out.push_str("\nhistory");
    if detail.timeline.is_empty() {
        out.push_str("\n  (no transitions yet)");
    }
    for entry in &detail.timeline {
        let step = entry.step.as_deref().map(echo).unwrap_or_default();
        let error = format!(
            "{} {}",
            echo(entry.error_code.as_deref().unwrap_or_default()),
            echo(entry.error_message.as_deref().unwrap_or_default())
        );
        let what = match entry.kind {
            "step_completed" => format!("step `{step}` completed{}", attempts(entry.attempts)),
            "step_failed" => format!(
                "step `{step}` failed{}: {error}; compensating",
                attempts(entry.attempts)
            ),
            "compensation_completed" => format!(
                "compensation of `{}` completed{}",
                step.strip_prefix("compensate ").unwrap_or(&step),
                attempts(entry.attempts)
            ),
            "stuck" => format!("STUCK at `{step}`{}: {error}", attempts(entry.attempts)),
            "sleeping" => format!(
                "step `{step}` sleeps until {}",
                entry.until_ms.map_or_else(|| "?".to_owned(), time)
            ),
            "waiting" => format!(
                "step `{step}` waits for a `{}` signal {}",
                echo(entry.signal.as_deref().unwrap_or("?")),
                entry.until_ms.map_or_else(
                    || "with no time limit".to_owned(),
                    |ms| format!("until {}", time(ms))
                )
            ),
            "signal_received" => match &entry.sender {
                Some(sender) => format!(
                    "step `{step}` received the `{}` signal of sender `{}`",
                    echo(entry.signal.as_deref().unwrap_or("?")),
                    echo(sender)
                ),
                None => format!(
                    "step `{step}` timed out waiting for a `{}` signal",
                    echo(entry.signal.as_deref().unwrap_or("?"))
                ),
            },
            "node_started" => format!("node `{step}` started"),
            "node_completed" => format!("node `{step}` completed{}", attempts(entry.attempts)),
            "node_failed" => format!("node `{step}` failed{}: {error}", attempts(entry.attempts)),
            "node_skipped" => format!("node `{step}` skipped: {error}"),
            "node_compensated" => format!(
                "compensation of node `{}` completed{}",
                step.strip_prefix("compensate ").unwrap_or(&step),
                attempts(entry.attempts)
            ),
            _ => format!(
                "{} by {}: {}",
                entry.action.map_or("?", OperatorAction::as_str),
                echo(entry.principal.as_deref().unwrap_or_default()),
                echo(entry.reason.as_deref().unwrap_or_default())
            ),
        };
        out.push_str(&format!(
            "\n  {:>3}  {:<24}  {what}",
            entry.seq,
            time(entry.at_ms)
        ));
    }
    out
}
