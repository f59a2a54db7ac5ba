//! Cross-item rules of a domain service: rule order (`order =`, `after =`), the shape of
//! the step chain, the error hook. Every problem is collected; none stops the others.

use std::collections::HashMap;

use super::parse::{Link, Service};
use crate::common::{Errors, error_at, suggestion};

/// What expansion needs beyond the model: the order the rules run in (indices into
/// `Service::rules`).
pub struct Plan {
    pub rule_order: Vec<usize>,
}

pub fn service(svc: &Service, errors: &mut Errors) -> Plan {
    check_links(svc, errors);
    check_hook(svc, errors);
    Plan {
        rule_order: rule_order(svc, errors),
    }
}

/// `#[business_rules]` on a message: rules only, all synchronous.
pub fn rules_only(svc: &Service, errors: &mut Errors) -> Plan {
    for link in &svc.links {
        errors.push(error_at(
            &link.method().ident,
            "`#[business_rules]` holds only `#[business_rule]`s; steps and taps belong in a `#[domain_service]`",
        ));
    }
    for rule in svc.rules.iter().chain(&svc.postconditions) {
        if rule.method.is_async {
            errors.push(error_at(
                &rule.method.ident,
                "a message's business rules are synchronous checks of the message itself: remove `async`, and query repositories in the handler",
            ));
        }
        if rule
            .method
            .params
            .iter()
            .any(|p| matches!(p, crate::common::Param::Context))
        {
            errors.push(error_at(
                &rule.method.ident,
                "a message's business rules see only the message: remove the `&Context` parameter",
            ));
        }
    }
    if let Some(p) = svc.postconditions.first() {
        errors.push(error_at(
            &p.method.ident,
            "a message has no result to check: postconditions belong in a `#[domain_service]`",
        ));
    }
    if svc.args.on_error.is_some() || svc.args.fail_fast.is_present() {
        errors.push(syn::Error::new(
            proc_macro2::Span::call_site(),
            "`#[business_rules]` takes no options other than `crate = path`",
        ));
    }
    Plan {
        rule_order: rule_order(svc, errors),
    }
}

fn check_links(svc: &Service, errors: &mut Errors) {
    let Some(first_step) = svc.links.iter().position(|l| matches!(l, Link::Step(_))) else {
        errors.push(error_at(
            &svc.item.self_ty,
            format!(
                "`#[domain_service]` on `{}` has no `#[step]`: add at least one `#[step] fn ...(&self) -> Result<T>`; the last step's output is what `execute` returns",
                svc.name
            ),
        ));
        return;
    };
    for link in &svc.links[..first_step] {
        errors.push(error_at(
            &link.method().ident,
            "a `#[tap]` sees the output of the step before it, and no `#[step]` comes before this one: move it after a step",
        ));
    }
    if let Some(ty) = svc.links[first_step].method().input() {
        errors.push(error_at(
            ty,
            "the first `#[step]` has no previous output to take: remove this parameter and read the input from the service's fields (`ctx: &Context` is allowed)",
        ));
    }
}

fn check_hook(svc: &Service, errors: &mut Errors) {
    let Some(hook) = &svc.args.on_error else {
        return;
    };
    if svc.hook.is_none() {
        let name = hook.to_string();
        errors.push(error_at(
            hook,
            format!(
                "`on_error = {name}` names no method of this impl block: define `fn {name}(&self, error: flext::Error) -> flext::Error` here{}",
                suggestion(&name, svc.method_names.iter().map(String::as_str))
            ),
        ));
    }
}

/// Rules with `order = N` run first, by ascending N; the others follow in declaration
/// order. `after = r` then moves a rule after `r`: a stable topological sort (Kahn's
/// algorithm) that, among the rules whose predecessors have run, picks the one that comes
/// first in that base order.
fn rule_order(svc: &Service, errors: &mut Errors) -> Vec<usize> {
    let rules = &svc.rules;
    let by_name: HashMap<String, usize> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r.method.ident.to_string(), i))
        .collect();

    let mut seen_order: HashMap<i64, usize> = HashMap::new();
    for (i, rule) in rules.iter().enumerate() {
        let Some(order) = &rule.order else { continue };
        if let Some(&first) = seen_order.get(&**order) {
            errors.push(crate::common::error_at_span(
                order.span(),
                format!(
                    "`order = {}` is already used by business rule `{}`: give each rule its own order, or use `after = {}` to run this one after it",
                    **order, rules[first].method.ident, rules[first].method.ident
                ),
            ));
        } else {
            seen_order.insert(**order, i);
        }
    }

    let mut base: Vec<usize> = (0..rules.len()).collect();
    base.sort_by_key(|&i| match &rules[i].order {
        Some(o) => (0, **o, i),
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
                    errors.push(error_at(
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

    let mut done = vec![false; rules.len()];
    let mut order = Vec::with_capacity(rules.len());
    while order.len() < rules.len() {
        let ready = base
            .iter()
            .copied()
            .find(|&i| !done[i] && predecessors[i].iter().all(|&p| done[p]));
        match ready {
            Some(i) => {
                done[i] = true;
                order.push(i);
            }
            None => {
                if !unknown {
                    report_cycle(svc, &predecessors, &done, errors);
                }
                // Keep going with the base order so expansion still has every rule.
                order.extend(base.iter().copied().filter(|&i| !done[i]));
                break;
            }
        }
    }
    order
}

fn report_cycle(svc: &Service, predecessors: &[Vec<usize>], done: &[bool], errors: &mut Errors) {
    // Every remaining rule waits on another remaining one; walking predecessors from any
    // of them must revisit a rule, and the walk from that rule on is the cycle.
    let Some(start) = (0..done.len()).find(|&i| !done[i]) else {
        return;
    };
    let mut path = vec![start];
    let mut current = start;
    loop {
        let Some(&next) = predecessors[current].iter().find(|&&p| !done[p]) else {
            return;
        };
        if let Some(pos) = path.iter().position(|&r| r == next) {
            let cycle = &path[pos..];
            let names: Vec<String> = cycle
                .iter()
                .rev()
                .chain(std::iter::once(&cycle[cycle.len() - 1]))
                .map(|&i| svc.rules[i].method.ident.to_string())
                .collect();
            let head = cycle[0];
            let rule = &svc.rules[head];
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
            errors.push(error_at(blame, message));
            return;
        }
        path.push(next);
        current = next;
    }
}
