//! A saga type's definition as the log records it, and what changed between two of them.
//!
//! `#[saga]` writes [`Saga::DEFINITION`](super::Saga::DEFINITION): one line per step,
//! `name`, output type, compensation (`-` for none) and `pivot` (or nothing), separated
//! by tabs. `#[workflow(durable)]` writes
//! [`DurableWorkflow::DEFINITION`](super::DurableWorkflow::DEFINITION) the same way, one
//! line per node, with `optional` (or nothing) in the fourth field and the nodes it
//! depends on, comma separated, in a fifth. The log keeps the definition a saga started under; recovery compares it with
//! the linked code's before resuming, because a saga resumed by a changed definition
//! would hand logged outputs to steps that no longer expect them.

use crate::error::Error;

struct Step<'a> {
    name: &'a str,
    output: &'a str,
    compensation: &'a str,
    pivot: bool,
    optional: bool,
    after: &'a str,
}

fn steps(definition: &str) -> Vec<Step<'_>> {
    definition
        .lines()
        .map(|line| {
            let mut fields = line.split('\t');
            let name = fields.next().unwrap_or_default();
            let output = fields.next().unwrap_or_default();
            let compensation = fields.next().unwrap_or("-");
            let kind = fields.next().unwrap_or_default();
            Step {
                name,
                output,
                compensation,
                pivot: kind == "pivot",
                optional: kind == "optional",
                after: fields
                    .next()
                    .filter(|f| {
                        *f != "sleep" && !f.starts_with("signal:") && !f.starts_with("child:")
                    })
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// What changed from `logged` to `linked`, one phrase per change, for the error that
/// stops recovery.
pub(crate) fn changes(logged: &str, linked: &str) -> Vec<String> {
    let (old, new) = (steps(logged), steps(linked));
    let mut out = Vec::new();
    for s in &old {
        if !new.iter().any(|n| n.name == s.name) {
            out.push(format!("step `{}` was removed or renamed", s.name));
        }
    }
    for s in &new {
        if !old.iter().any(|o| o.name == s.name) {
            out.push(format!("step `{}` was added or renamed", s.name));
        }
    }
    let kept_old: Vec<&str> = old
        .iter()
        .map(|s| s.name)
        .filter(|n| new.iter().any(|s| s.name == *n))
        .collect();
    let kept_new: Vec<&str> = new
        .iter()
        .map(|s| s.name)
        .filter(|n| old.iter().any(|s| s.name == *n))
        .collect();
    if kept_old != kept_new {
        out.push(format!(
            "steps were reordered: {} became {}",
            kept_old.join(", "),
            kept_new.join(", ")
        ));
    }
    for o in &old {
        let Some(n) = new.iter().find(|n| n.name == o.name) else {
            continue;
        };
        if o.output != n.output {
            out.push(format!(
                "the output of `{}` changed from `{}` to `{}`",
                o.name, o.output, n.output
            ));
        }
        if o.compensation != n.compensation {
            out.push(format!(
                "the compensation of `{}` changed from `{}` to `{}`",
                o.name, o.compensation, n.compensation
            ));
        }
        if o.optional != n.optional {
            out.push(format!(
                "`{}` {} optional",
                o.name,
                if n.optional { "became" } else { "is no longer" }
            ));
        }
        if o.after != n.after {
            out.push(format!(
                "the dependencies of `{}` changed from [{}] to [{}]",
                o.name, o.after, n.after
            ));
        }
        if o.pivot != n.pivot {
            out.push(format!(
                "`{}` {} the pivot",
                o.name,
                if n.pivot { "became" } else { "is no longer" }
            ));
        }
    }
    out
}

/// The error recovery returns for a saga started under another definition; the saga is
/// left as the log has it.
pub(crate) fn changed(saga: &str, id: uuid::Uuid, logged: &str, linked: &str) -> Error {
    let what = changes(logged, linked);
    let escaped = logged.replace('\t', "\\t").replace('\n', "\\n");
    Error::internal(
        crate::codes::SAGA_DEFINITION_CHANGED,
        format!(
            "saga {id} started under another definition of `{saga}` ({}); it is left as it is: restore that definition, or accept it with #[saga(accepts = \"{escaped}\")] once the code can resume it",
            if what.is_empty() {
                "the steps' details differ".to_owned()
            } else {
                what.join("; ")
            }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::changes;

    #[test]
    fn a_workflow_node_that_became_optional_or_changed_its_dependencies_is_named() {
        let v1 = "extract\tVec<u32>\t-\t\t\nload\tusize\tunload\t\textract";
        let v2 = "extract\tVec<u32>\t-\toptional\t\nload\tusize\tunload\t\textract,check";
        assert_eq!(
            changes(v1, v2),
            [
                "`extract` became optional",
                "the dependencies of `load` changed from [extract] to [extract,check]",
            ]
        );
    }

    const V1: &str = "reserve\tReservation\trelease\t\ncharge\tu64\t-\tpivot\nship\tString\t-\t";

    #[test]
    fn the_same_definition_has_no_changes() {
        assert!(changes(V1, V1).is_empty());
    }

    #[test]
    fn added_removed_and_reordered_steps_are_named() {
        let v2 = "charge\tu64\t-\tpivot\nreserve\tReservation\trelease\t\nnotify\t()\t-\t";
        let c = changes(V1, v2);
        assert!(
            c.contains(&"step `ship` was removed or renamed".to_owned()),
            "{c:?}"
        );
        assert!(
            c.contains(&"step `notify` was added or renamed".to_owned()),
            "{c:?}"
        );
        assert!(
            c.contains(&"steps were reordered: reserve, charge became charge, reserve".to_owned()),
            "{c:?}"
        );
    }

    #[test]
    fn a_changed_output_compensation_or_pivot_is_named() {
        let v2 = "reserve\tHold\tcancel\tpivot\ncharge\tu64\t-\t\nship\tString\t-\t";
        let c = changes(V1, v2);
        assert_eq!(
            c,
            [
                "the output of `reserve` changed from `Reservation` to `Hold`",
                "the compensation of `reserve` changed from `release` to `cancel`",
                "`reserve` became the pivot",
                "`charge` is no longer the pivot",
            ]
        );
    }
}
