//! Rules of a workflow's graph: every name in `depends_on` is a step, there is no cycle,
//! every `&T` a step takes is produced by a step it depends on (directly or through
//! others), no required step takes an optional step's output, and compensations exist
//! and fit.

use super::parse::{Step, WorkflowDef};
use crate::common::sig::Role;
use crate::common::util::{produces, suggestion, type_key};
use crate::common::{Ctxt, error_at, graph, undo};

pub fn workflow(wf: &mut WorkflowDef, cx: &Ctxt) {
    if wf.steps.is_empty() {
        cx.push(error_at(
            &wf.item.self_ty,
            format!("`#[workflow]` on `{}` has no `#[workflow_step]`: add at least one `#[workflow_step] async fn ...(&self) -> Result<T>`", wf.name),
        ));
        return;
    }
    resolve_names(wf, cx);
    let Some(order) = topological(wf, cx) else {
        // No parameter check without an order: each step's own mistakes, as they are.
        for step in &mut wf.steps {
            cx.push_as_one(own_errors(step));
        }
        return;
    };
    let ancestors = ancestors(wf, &order);
    for (i, ancestors) in ancestors.iter().enumerate() {
        // What is wrong with one step's signature and parameters is one error.
        let signature = own_errors(&mut wf.steps[i]);
        sources(wf, &signature, i, ancestors);
        cx.push_as_one(signature);
        if let Some(c) = wf.steps[i].compensate.clone() {
            compensation(wf, cx, i, &c);
        }
    }
}

/// A context holding the mistakes `step`'s parse found in its signature.
fn own_errors(step: &mut Step) -> Ctxt {
    let signature = Ctxt::new();
    for e in std::mem::take(&mut step.signature_errors) {
        signature.push(e);
    }
    signature
}

/// `depends_on` names -> indexes; unknown names and a step naming itself are errors.
fn resolve_names(wf: &mut WorkflowDef, cx: &Ctxt) {
    let names: Vec<String> = wf
        .steps
        .iter()
        .map(|s| s.method.ident.to_string())
        .collect();
    for (i, step) in wf.steps.iter_mut().enumerate() {
        let mut deps = Vec::new();
        for dep in &step.depends_on {
            let wanted = dep.to_string();
            match names.iter().position(|n| *n == wanted) {
                Some(j) if j == i => cx.push(error_at(
                    dep,
                    format!("step `{wanted}` cannot depend on itself: remove it from `depends_on`"),
                )),
                Some(j) if deps.contains(&j) => cx.push(error_at(
                    dep,
                    format!("`{wanted}` is named twice in `depends_on`: remove this one"),
                )),
                Some(j) => deps.push(j),
                None => {
                    step.unresolved = true;
                    let not_a_step = wf.others.iter().any(|m| m.ident == wanted);
                    let message = if not_a_step {
                        format!(
                            "`{wanted}` is a method of this workflow but not a step: mark it `#[workflow_step]`, or remove it from `depends_on`"
                        )
                    } else {
                        format!(
                            "`depends_on` names `{wanted}`, which is not a step of this workflow; the steps are {}{}",
                            names
                                .iter()
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", "),
                            suggestion(&wanted, names.iter().map(String::as_str))
                        )
                    };
                    cx.push(error_at(dep, message));
                }
            }
        }
        step.deps = deps;
    }
}

/// The steps in an order where each comes after its dependencies (Kahn's algorithm);
/// `None`, with the cycle reported, when there is none.
fn topological(wf: &WorkflowDef, cx: &Ctxt) -> Option<Vec<usize>> {
    let base: Vec<usize> = (0..wf.steps.len()).collect();
    let waits_for: Vec<Vec<usize>> = wf.steps.iter().map(|s| s.deps.clone()).collect();
    match graph::topological(&base, &waits_for) {
        Ok(order) => Some(order),
        Err(cycle) => {
            report_cycle(wf, &cycle.path, cx);
            None
        }
    }
}

/// `cycle`: each step waits for the next, the last for the first.
fn report_cycle(wf: &WorkflowDef, cycle: &[usize], cx: &Ctxt) {
    let (Some(&first), Some(&last)) = (cycle.first(), cycle.last()) else {
        return;
    };
    // `a` depends on `b` depends on `a`: print in the direction of `depends_on`.
    let names: Vec<String> = cycle
        .iter()
        .chain(std::iter::once(&first))
        .map(|&i| wf.steps[i].method.ident.to_string())
        .collect();
    let step = &wf.steps[last];
    let blame_name = wf.steps[first].method.ident.to_string();
    let blame = step
        .depends_on
        .iter()
        .find(|d| **d == blame_name)
        .unwrap_or(&step.method.ident);
    cx.push(error_at(
        blame,
        format!(
            "`depends_on` makes a cycle among workflow steps: {} (each waits for the next), so none of them could start; remove one of these dependencies",
            names.join(" -> ")
        ),
    ));
}

/// For each step, every step it waits for, directly or through others.
fn ancestors(wf: &WorkflowDef, order: &[usize]) -> Vec<Vec<usize>> {
    let mut all: Vec<Vec<usize>> = vec![Vec::new(); wf.steps.len()];
    for &i in order {
        let mut mine = Vec::new();
        for &d in &wf.steps[i].deps {
            for a in std::iter::once(d).chain(all[d].iter().copied()) {
                if !mine.contains(&a) {
                    mine.push(a);
                }
            }
        }
        all[i] = mine;
    }
    all
}

/// Which step each `&T` parameter of step `i` takes its value from.
fn sources(wf: &mut WorkflowDef, cx: &Ctxt, i: usize, ancestors: &[usize]) {
    let step = &wf.steps[i];
    let mut sources = Vec::with_capacity(step.method.params.len());
    if step.unresolved {
        return;
    }
    for param in &step.method.params {
        let Role::Ref(inner) = &param.role else {
            sources.push(None);
            continue;
        };
        let makes = |j: &usize| {
            wf.steps[*j]
                .method
                .ok_type
                .as_ref()
                .is_some_and(|t| produces(t, inner))
        };
        // By name first: `b: &u32` takes the output of the step `b` it waits for.
        let by_name = param.name.as_ref().and_then(|n| {
            step.deps
                .iter()
                .chain(ancestors)
                .copied()
                .find(|j| wf.steps[*j].method.ident == *n && makes(j))
        });
        let direct: Vec<usize> = step.deps.iter().copied().filter(makes).collect();
        let found: Vec<usize> = if let Some(j) = by_name {
            vec![j]
        } else if direct.is_empty() {
            ancestors.iter().copied().filter(makes).collect()
        } else {
            direct
        };
        let name = &step.method.ident;
        let wanted = type_key(inner);
        // What a step must return for this parameter: `&str` takes a `String`, `&[T]` a
        // `Vec<T>`.
        let produced = match &**inner {
            syn::Type::Path(p) if p.path.is_ident("str") => "String".to_owned(),
            syn::Type::Slice(s) => format!("Vec<{}>", type_key(&s.elem)),
            _ => wanted.clone(),
        };
        match found.as_slice() {
            [] => {
                let elsewhere = (0..wf.steps.len()).find(|j| *j != i && makes(j));
                let hint = match elsewhere {
                    Some(j) => format!(
                        ": `{}` returns one; add it to `depends_on = [..]` of `{name}`",
                        wf.steps[j].method.ident
                    ),
                    None => format!(
                        ": no step returns one; add a step that does, or take `{produced}` from a field of the workflow"
                    ),
                };
                let deps = if step.deps.is_empty() {
                    format!("`{name}` depends on no step")
                } else {
                    format!("none of the steps `{name}` depends on produces a `{produced}`")
                };
                cx.push(error_at(
                    &param.ty,
                    format!("{deps}, and it takes a `&{wanted}`{hint}"),
                ));
                sources.push(None);
            }
            [j] => {
                let source = &wf.steps[*j];
                if source.optional.is_some() && step.optional.is_none() {
                    let src = &source.method.ident;
                    let wanted = source.method.ok_type.as_ref().map_or(wanted, type_key);
                    cx.push(error_at(
                        &param.ty,
                        format!("`{src}` is optional, so its `{wanted}` may be missing, and `{name}` is required: make `{name}` `optional` too (it is then skipped when `{src}` fails), or make `{src}` required"),
                    ));
                }
                sources.push(Some(*j));
            }
            many => {
                let names: Vec<String> = many
                    .iter()
                    .map(|&j| format!("`{}`", wf.steps[j].method.ident))
                    .collect();
                let first = &wf.steps[many[0]].method.ident;
                let all = if many.len() == 2 { "both" } else { "all" };
                cx.push(error_at(
                    &param.ty,
                    format!("{} {all} produce a `{produced}`, so `{name}` cannot tell which it takes: name the parameter after the step whose output it takes (`{first}: &{wanted}`), or give each step an output type of its own (a newtype such as `struct {}Output({produced})`)", names.join(" and "), upper_first(&first.to_string())),
                ));
                sources.push(None);
            }
        }
    }
    wf.steps[i].sources = sources;
}

fn compensation(wf: &WorkflowDef, cx: &Ctxt, i: usize, c: &syn::Ident) {
    let step = &wf.steps[i];
    let Some(m) = undo::check(
        cx,
        &undo::WORKFLOW_COMPENSATION,
        &wf.others,
        &step.method,
        c,
    ) else {
        return;
    };
    let name = &m.ident;
    let output = undo::output_name(&step.method);
    let mut refs = m.refs();
    // The output is bound by type here, as the steps' are: it must be the step's own.
    if let Some(first) = refs.next()
        && let (Role::Ref(inner), Some(own)) = (&first.role, &step.method.ok_type)
        && !produces(own, inner)
    {
        cx.push(error_at(
            &first.ty,
            format!("the compensation `{name}` receives the output of `{}`, a `{output}`: take `&{output}`", step.method.ident),
        ));
    }
    for extra in refs {
        cx.push(error_at(
            &extra.ty,
            format!("a compensation takes its own step's output only: take what else `{name}` needs from a field of the workflow or as `State<T>`"),
        ));
    }
    if let Some(p) = m.params.iter().find(|p| matches!(p.role, Role::Bus)) {
        cx.push(error_at(&p.ty, "a compensation cannot take the bus: give it to the runner as state and take it as `State<T>`"));
    }
}

/// `load_rows` -> `LoadRows`, for a newtype's name in a suggestion.
fn upper_first(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}
