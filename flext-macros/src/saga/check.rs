//! Cross-item rules of a saga: compensations exist, fit and come before the pivot, at
//! most one pivot, every `&T` a step takes is produced by an earlier step.

use super::parse::Saga;
use crate::common::sig::Role;
use crate::common::util::{produces, type_key};
use crate::common::{Ctxt, error_at, error_at_span, undo};

pub fn saga(saga: &Saga, cx: &Ctxt) {
    if saga.steps.is_empty() {
        cx.push(error_at(
            &saga.item.self_ty,
            format!("`#[saga]` on `{}` has no `#[saga_step]`: add at least one `#[saga_step] fn ...(&self) -> Result<T>`", saga.name),
        ));
    }
    if saga.key.is_none()
        && let Some(key) = saga.steps.iter().find_map(|s| s.key.as_ref())
    {
        cx.push(error_at(
            key,
            format!(
                "a signal routed by its `{key}` goes to the saga whose key it is: add `key = field` to `#[saga(...)]` on `{}`, naming the input field it matches",
                saga.name
            ),
        ));
    }
    let mut pivot: Option<&syn::Ident> = None;
    for (i, step) in saga.steps.iter().enumerate() {
        if let Some(span) = step.pivot {
            if let Some(first) = pivot {
                cx.push(error_at_span(
                    span,
                    format!("a saga has at most one pivot, and `{first}` is already it: the pivot is the single point of no return"),
                ));
            } else {
                pivot = Some(&step.method.ident);
                if let Some(c) = &step.compensate {
                    cx.push(error_at(c, "the pivot is the point of no return and has no compensation: remove `compensate`, or move `pivot` to a later step"));
                }
            }
        } else if let (Some(p), Some(c)) = (pivot, &step.compensate) {
            cx.push(error_at(
                c,
                format!("steps after the pivot `{p}` are never compensated, they are retried until they succeed: remove `compensate`, or move the pivot after `{}`", step.method.ident),
            ));
        }
        if let Some(c) = &step.compensate {
            compensation(saga, cx, i, c);
        } else {
            let options = [
                step.compensate_retries
                    .map(|(_, span)| (span, "compensate_retries")),
                step.compensate_backoff_ms
                    .map(|(_, span)| (span, "compensate_backoff_ms")),
            ];
            for (span, option) in options.into_iter().flatten() {
                cx.push(error_at_span(
                    span,
                    format!("`{option}` sets how `{}`'s compensation is retried, and it has none: add `compensate = method`, or remove `{option}`", step.method.ident),
                ));
            }
        }
        // A child step's child saga is an earlier step's output.
        if let Some((_, child)) = &step.child_param
            && step.child.is_some()
            && super::expand::child_input(saga, i, child).is_none()
        {
            cx.push(error_at(
                child,
                format!(
                    "no step before `{}` returns a `{}`: a child step starts the child saga an earlier step returns, so add a step `async fn ...(&self) -> Result<{}>` before it",
                    step.method.ident,
                    type_key(child),
                    type_key(child)
                ),
            ));
        }
        // Every `&T` must be an earlier step's output.
        for param in step.method.refs() {
            let Role::Ref(inner) = &param.role else {
                continue;
            };
            let found = saga.steps[..i].iter().any(|s| {
                s.method
                    .ok_type
                    .as_ref()
                    .is_some_and(|t| produces(t, inner))
            });
            if !found {
                cx.push(error_at(
                    &param.ty,
                    format!(
                        "no step before `{}` produces a `{}`: steps run in declaration order and take earlier outputs by reference",
                        step.method.ident,
                        type_key(inner)
                    ),
                ));
            }
        }
    }
}

fn compensation(saga: &Saga, cx: &Ctxt, i: usize, c: &syn::Ident) {
    undo::check(
        cx,
        &undo::SAGA_COMPENSATION,
        &saga.others,
        &saga.steps[i].method,
        c,
    );
}
