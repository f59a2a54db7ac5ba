//! Cross-item rules of a domain service: rule order (`order =`, `after =`), the step
//! chain (what each parameter receives), undos, the error hook. Every problem is
//! collected; none stops the others. The results (`rule_order`, `args`, `undos`) are
//! stored on the model for expansion, which never re-validates.

use std::collections::HashMap;

use quote::ToTokens;

use super::parse::{Arg, Link, Mode, Service};
use crate::common::sig::{Method, Role};
use crate::common::util::{produces, suggestion, type_key};
use crate::common::{Ctxt, error_at, error_at_span, graph, undo};

pub fn service(svc: &mut Service, cx: &Ctxt) {
    match svc.mode {
        Mode::Service => {
            check_links(svc, cx);
            check_hook(svc, cx);
            bind(svc, cx);
        }
        Mode::MessageRules => rules_only(svc, cx),
        Mode::ProcessorRules => processor_rules(svc, cx),
    }
    svc.rule_order = rule_order(svc, cx);
}

/// `#[business_rules]` on a message: rules only, all synchronous.
fn rules_only(svc: &Service, cx: &Ctxt) {
    for link in &svc.links {
        cx.push(error_at(
            &link.method().ident,
            "`#[business_rules]` holds only `#[business_rule]`s; steps and taps belong in a `#[domain_service]`",
        ));
    }
    for rule in svc.rules.iter().chain(&svc.postconditions) {
        if let Some(a) = &rule.method.asyncness {
            cx.push(error_at(
                a,
                "a message's business rules are synchronous checks of the message itself: remove `async`, and query repositories in the handler",
            ));
        }
        if rule.method.takes_context() {
            cx.push(error_at(
                &rule.method.ident,
                "a message's business rules see only the message: remove the `&Context` parameter",
            ));
        }
    }
    if let Some(p) = svc.postconditions.first() {
        cx.push(error_at(
            &p.method.ident,
            "a message has no result to check: postconditions belong in a `#[domain_service]`",
        ));
    }
}

/// `#[business_rules]` on a processor's trait impl: rules only, synchronous, each taking
/// the request.
fn processor_rules(svc: &Service, cx: &Ctxt) {
    let is_processor = svc.item.trait_.as_ref().is_some_and(|(_, path, _)| {
        path.segments
            .last()
            .is_some_and(|s| s.ident == "ServiceProcessor" || s.ident == "AsyncServiceProcessor")
    });
    if !is_processor {
        let path = svc.item.trait_.as_ref().map(|(_, p, _)| p);
        cx.push(error_at(
            &path,
            "`#[business_rules]` on a trait impl works for `impl ServiceProcessor for X` and `impl AsyncServiceProcessor for X`; for a message, put it on the message's inherent `impl`",
        ));
    }
    for link in &svc.links {
        cx.push(error_at(
            &link.method().ident,
            "a processor's `#[business_rules]` holds only `#[business_rule]`s; its logic is `process`",
        ));
    }
    for rule in svc.rules.iter().chain(&svc.postconditions) {
        if let Some(a) = &rule.method.asyncness {
            cx.push(error_at(
                a,
                "a processor's business rules are synchronous checks of the request: remove `async`, and do I/O in `process`",
            ));
        }
    }
    if let Some(p) = svc.postconditions.first() {
        cx.push(error_at(
            &p.method.ident,
            "postconditions belong in a `#[domain_service]`; a processor's result is checked in `build`'s caller",
        ));
    }
}

fn check_links(svc: &Service, cx: &Ctxt) {
    if !svc.links.iter().any(|l| matches!(l, Link::Step(..))) {
        cx.push(error_at(
            &svc.item.self_ty,
            format!(
                "`#[domain_service]` on `{}` has no `#[step]`: add at least one `#[step] fn ...(&self) -> Result<T>`; the last step's output is what `execute` returns",
                svc.name
            ),
        ));
    }
}

fn check_hook(svc: &Service, cx: &Ctxt) {
    let Some(hook) = &svc.on_error else { return };
    let name = hook.to_string();
    match svc.other(hook) {
        None => cx.push(error_at(
            hook,
            format!(
                "`on_error = {name}` names no method of this impl block: define `fn {name}(&self, error: flext::Error) -> flext::Error` here{}",
                suggestion(&name, svc.others.iter().map(|m| m.ident.to_string()).collect::<Vec<_>>().iter().map(String::as_str))
            ),
        )),
        Some(m) => {
            m.require_ref_self(cx, "`on_error` hook");
            if m.values().count() != 1 || m.refs().next().is_some() || m.output.is_none() {
                cx.push(error_at(
                    &m.ident,
                    format!(
                        "the `on_error` hook receives the error and returns the error to report: `fn {}(&self, error: flext::Error) -> flext::Error` (optionally `async`, optionally with `ctx: &Context`)",
                        m.ident
                    ),
                ));
            }
        }
    }
}

/// Binds every parameter of every step, tap, postcondition and undo to an output:
/// a step's by-value parameter takes the previous step's output, `&T` takes the latest
/// earlier output of type `T` that is still there, a tap and a postcondition see the
/// current value. An output with an undo must outlive later steps, so it may not be
/// moved.
fn bind(svc: &mut Service, cx: &Ctxt) {
    let mut args = Vec::with_capacity(svc.links.len());
    let mut moved_into: HashMap<usize, usize> = HashMap::new();
    let mut prev: Option<usize> = None;
    let undone: Vec<usize> = svc
        .steps()
        .filter(|(_, _, undo)| undo.is_some())
        .map(|(i, _, _)| i)
        .collect();

    for (k, link) in svc.links.iter().enumerate() {
        let m = link.method();
        let mut bound = Vec::with_capacity(m.params.len());
        for p in &m.params {
            let arg = match (&p.role, link) {
                (Role::Context, _) => Arg::Context,
                (Role::Bus, _) => Arg::Unbound,
                (Role::Value, Link::Tap(_)) => Arg::Unbound,
                (Role::Value, Link::Step(..)) => match prev {
                    None => {
                        cx.push(error_at(
                            &p.ty,
                            "the first `#[step]` has no previous output to take: remove this parameter and read the input from the service's fields (`ctx: &Context` is allowed)",
                        ));
                        Arg::Unbound
                    }
                    Some(j) if undone.contains(&j) => {
                        let source = svc.links[j].method();
                        cx.push(error_at(
                            &p.ty,
                            format!(
                                "`{}` has an undo, which needs its output after later steps ran: take it by reference here, `&{}`",
                                source.ident,
                                ok_name(source)
                            ),
                        ));
                        Arg::Unbound
                    }
                    Some(j) => {
                        moved_into.insert(j, k);
                        Arg::Moved(j)
                    }
                },
                (Role::Ref(_), Link::Tap(_)) => match prev {
                    Some(j) => Arg::Borrowed(j),
                    None => {
                        cx.push(error_at(
                            &m.ident,
                            "a `#[tap]` sees the output of the step before it, and no `#[step]` comes before this one: move it after a step",
                        ));
                        Arg::Unbound
                    }
                },
                (Role::Ref(wanted), Link::Step(..)) => {
                    earlier(svc, cx, k, m, &p.ty, wanted, &moved_into)
                }
            };
            bound.push(arg);
        }
        args.push(bound);
        if matches!(link, Link::Step(..)) {
            prev = Some(k);
        }
    }

    // (Postconditions see the last step's output; expansion binds them.)
    let mut undos = Vec::new();
    for (i, step, undo) in svc.steps() {
        let Some(undo) = undo else { continue };
        undos.push((i, undo.clone(), bind_undo(svc, cx, i, step, undo)));
    }
    svc.args = args;
    svc.undos = undos;
}

/// The latest step before link `k` whose output serves `&wanted`.
fn earlier(
    svc: &Service,
    cx: &Ctxt,
    k: usize,
    m: &Method,
    ty: &syn::Type,
    wanted: &syn::Type,
    moved_into: &HashMap<usize, usize>,
) -> Arg {
    let found = (0..k).rev().find(|&j| match &svc.links[j] {
        Link::Step(s, _) => s.ok_type.as_ref().is_some_and(|t| produces(t, wanted)),
        Link::Tap(_) => false,
    });
    match found {
        Some(j) => match moved_into.get(&j) {
            Some(&taker) => {
                cx.push(error_at(
                    ty,
                    format!(
                        "the output of `{}` was moved into `{}`, which takes it by value: take it by reference there (`&{}`) so that `{}` can see it too",
                        svc.links[j].method().ident,
                        svc.links[taker].method().ident,
                        type_key(wanted),
                        m.ident
                    ),
                ));
                Arg::Unbound
            }
            None => Arg::Borrowed(j),
        },
        None => {
            cx.push(error_at(
                ty,
                format!(
                    "no step before `{}` produces a `{}`: steps run in declaration order; a step takes the previous output by value or any earlier output by reference",
                    m.ident,
                    type_key(wanted)
                ),
            ));
            Arg::Unbound
        }
    }
}

/// Checks `undo = name` for `step` and binds the undo's parameters: its `&T` receives the
/// step's output.
/// `step_index` is the link index of `step`.
fn bind_undo(
    svc: &Service,
    cx: &Ctxt,
    step_index: usize,
    step: &Method,
    undo: &syn::Ident,
) -> Vec<Arg> {
    let Some(m) = undo::check(cx, &undo::UNDO, &svc.others, step, undo) else {
        return Vec::new();
    };
    let mut has_output = false;
    m.params
        .iter()
        .map(|p| match &p.role {
            Role::Context => Arg::Context,
            Role::Ref(_) if !has_output => {
                has_output = true;
                Arg::Borrowed(step_index)
            }
            _ => {
                cx.push(error_at(
                    &p.ty,
                    format!(
                        "the undo `{undo}` receives only the output of `{}` by reference (and `ctx: &Context`): remove this parameter",
                        step.ident
                    ),
                ));
                Arg::Unbound
            }
        })
        .collect()
}

fn ok_name(m: &Method) -> String {
    m.ok_type.as_ref().map_or_else(
        || "T".to_owned(),
        |t| t.to_token_stream().to_string().replace(' ', ""),
    )
}

/// Rules with `order = N` run first, by ascending N; the others follow in declaration
/// order. `after = r` then moves a rule after `r`: a stable topological sort (Kahn's
/// algorithm) that, among the rules whose predecessors have run, picks the one that comes
/// first in that base order.
pub fn rule_order(svc: &Service, cx: &Ctxt) -> Vec<usize> {
    let rules = &svc.rules;
    let by_name: HashMap<String, usize> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r.method.ident.to_string(), i))
        .collect();

    // What is wrong with one rule's `order` and `after` is one error.
    let per_rule: Vec<Ctxt> = rules.iter().map(|_| Ctxt::new()).collect();
    let mut seen_order: HashMap<i64, usize> = HashMap::new();
    for (i, rule) in rules.iter().enumerate() {
        let Some((order, span)) = rule.order else {
            continue;
        };
        if let Some(&first) = seen_order.get(&order) {
            let first = &rules[first].method.ident;
            per_rule[i].push(error_at_span(
                span,
                format!(
                    "`order = {order}` is already used by business rule `{first}`: give each rule its own order, or use `after = {first}` to run this one after it",
                ),
            ));
        } else {
            seen_order.insert(order, i);
        }
    }

    let mut base: Vec<usize> = (0..rules.len()).collect();
    base.sort_by_key(|&i| match rules[i].order {
        Some((o, _)) => (0, o, i),
        None => (1, 0, i),
    });

    // predecessors[i]: rules that must run before rule i.
    let mut predecessors: Vec<Vec<usize>> = vec![Vec::new(); rules.len()];
    let mut unknown = false;
    for (i, rule) in rules.iter().enumerate() {
        for after in &rule.after {
            let name = after.to_string();
            match by_name.get(&name) {
                Some(&j) => predecessors[i].push(j),
                None => {
                    unknown = true;
                    per_rule[i].push(error_at(
                        after,
                        format!(
                            "`after = {name}` names no business rule of this service{}",
                            suggestion(&name, by_name.keys().map(String::as_str))
                        ),
                    ));
                }
            }
        }
    }

    for rule in per_rule {
        cx.push_as_one(rule);
    }

    match graph::topological(&base, &predecessors) {
        Ok(order) => order,
        Err(cycle) => {
            if !unknown {
                report_cycle(svc, &cycle.path, cx);
            }
            // Keep going with the base order so expansion still has every rule.
            let rest: Vec<usize> = base
                .iter()
                .copied()
                .filter(|i| !cycle.ordered.contains(i))
                .collect();
            let mut order = cycle.ordered;
            order.extend(rest);
            order
        }
    }
}

/// `cycle`: each rule runs after the next, the last after the first.
fn report_cycle(svc: &Service, cycle: &[usize], cx: &Ctxt) {
    let Some(&last) = cycle.last() else { return };
    let names: Vec<String> = cycle
        .iter()
        .rev()
        .chain(std::iter::once(&last))
        .map(|&i| svc.rules[i].method.ident.to_string())
        .collect();
    let rule = &svc.rules[cycle[0]];
    let blame = rule
        .after
        .iter()
        .find(|a| names.iter().any(|n| a == &n.as_str()))
        .unwrap_or(&rule.method.ident);
    let message = if cycle.len() == 1 {
        format!(
            "business rule `{}` cannot run after itself: remove this `after`",
            rule.method.ident
        )
    } else {
        format!(
            "`after` makes a cycle among business rules: {}; remove one of these `after =` options",
            names.join(" -> ")
        )
    };
    cx.push(error_at(blame, message));
}
