//! `#[saga]` input -> a typed model that keeps the user's spans.

use proc_macro2::{Span, TokenStream};

use crate::common::options::{self, Spec};
use crate::common::sig::{Method, Role};
use crate::common::symbol::*;
use crate::common::util::{take_attrs, type_key, type_name};
use crate::common::{Ctxt, Krate, error_at};

pub struct Step {
    pub method: Method,
    pub compensate: Option<syn::Ident>,
    pub retries: Option<u32>,
    pub backoff_ms: u64,
    pub timeout_ms: Option<u64>,
    pub pivot: Option<Span>,
    /// `retry_on = any` (true) or `transient` (false).
    pub retry_any: Option<bool>,
    /// `compensate_retries` and `compensate_backoff_ms`, with the option's span.
    pub compensate_retries: Option<(u32, Span)>,
    pub compensate_backoff_ms: Option<(u64, Span)>,
    /// `sleep`: a durable timer; the step returns how long the saga sleeps.
    pub sleep: Option<Span>,
    /// `signal`: the step waits for the signal its `Signal<T>` parameter takes.
    pub signal: Option<Span>,
    /// `wait_ms = N`: how long a signal step waits.
    pub wait_ms: Option<(u64, Span)>,
    /// The `Signal<T>` parameter: its position among the parameters and its `T` (also
    /// without `signal`, an error: for the fallback).
    pub signal_param: Option<(usize, syn::Type)>,
    /// `key = field`: the field of the signal that names the saga it goes to.
    pub key: Option<syn::Ident>,
    /// `child`: the step runs with the outcome of the child saga its `Child<S>`
    /// parameter names.
    pub child: Option<Span>,
    /// The `Child<S>` parameter: its position and its `S` (also without `child`, an
    /// error).
    pub child_param: Option<(usize, syn::Type)>,
    /// `queue = "name"`: a child step's child starts through that queue.
    pub queue: Option<syn::LitStr>,
}

impl Step {
    /// The name a signal step's signal is kept under: the last segment of its type's
    /// path as written (`Paid` for `payments::Paid`).
    pub fn signal_name(&self) -> Option<String> {
        let (_, ty) = self.signal_param.as_ref()?;
        Some(match ty {
            syn::Type::Path(p) if p.qself.is_none() => p
                .path
                .segments
                .last()
                .map_or_else(|| type_key(ty), |s| s.ident.to_string()),
            _ => type_key(ty),
        })
    }
}

pub struct Saga {
    pub item: syn::ItemImpl,
    pub krate: Krate,
    pub name: String,
    pub steps: Vec<Step>,
    /// Every method that is not a step, for compensations.
    pub others: Vec<Method>,
    /// Older definitions this code resumes (`accepts = "..."`, repeatable).
    pub accepts: Vec<String>,
    /// `key = field`: the field of the input that is the saga's correlation key.
    pub key: Option<syn::Ident>,
}

const SAGA_SPEC: Spec<'static> = Spec {
    attr: SAGA,
    allowed: &[NAME, ACCEPTS, KEY, CRATE],
    repeatable: &[ACCEPTS],
};
const STEP_SPEC: Spec<'static> = Spec {
    attr: SAGA_STEP,
    allowed: &[
        COMPENSATE,
        RETRIES,
        BACKOFF_MS,
        TIMEOUT_MS,
        PIVOT,
        RETRY_ON,
        COMPENSATE_RETRIES,
        COMPENSATE_BACKOFF_MS,
        SLEEP,
        SIGNAL,
        WAIT_MS,
        KEY,
        CHILD,
        QUEUE,
    ],
    repeatable: &[],
};

impl Saga {
    pub fn from_syn(cx: &Ctxt, args: TokenStream, item: syn::ItemImpl) -> Saga {
        let mut name = None;
        let mut krate = None;
        let mut accepts = Vec::new();
        let mut key = None;
        options::parse(cx, &SAGA_SPEC, args, |option, meta| {
            match option {
                NAME => name = Some(options::string(meta)?.value()),
                KEY => key = Some(options::ident(meta)?),
                // Written as the error shows it: `\t` between fields, `\n` between steps.
                ACCEPTS => accepts.push(
                    options::string(meta)?
                        .value()
                        .replace("\\t", "\t")
                        .replace("\\n", "\n"),
                ),
                _ => krate = Some(options::path(meta)?),
            }
            Ok(())
        });
        let mut item = item;
        if let Some((_, path, _)) = &item.trait_ {
            cx.push(error_at(path, format!("`#[saga]` goes on an inherent `impl {} {{ ... }}` block: it writes the `Saga` impl itself", crate::common::util::type_name(&item.self_ty))));
        }
        if let Some(g) = item.generics.params.first() {
            cx.push(error_at(
                g,
                "a saga cannot be generic: recovery finds the saga's type by name after a restart",
            ));
        }
        let mut steps = Vec::new();
        let mut others = Vec::new();
        for impl_item in &mut item.items {
            let syn::ImplItem::Fn(f) = impl_item else {
                continue;
            };
            let ours = take_attrs(&mut f.attrs, &[SAGA_STEP]);
            if let Some((_, second)) = ours.get(1) {
                cx.push(error_at(
                    second,
                    "a method has one `#[saga_step]`: remove this one",
                ));
            }
            let method = Method::from_sig(&f.sig);
            match ours.into_iter().next() {
                Some((_, attr)) => steps.push(read_step(cx, &attr, method)),
                None => others.push(method),
            }
        }
        Saga {
            name: name.unwrap_or_else(|| type_name(&item.self_ty)),
            krate: Krate::new(krate),
            item,
            steps,
            others,
            accepts,
            key,
        }
    }
}

fn read_step(cx: &Ctxt, attr: &syn::Attribute, method: Method) -> Step {
    let mut step = Step {
        method,
        compensate: None,
        retries: None,
        backoff_ms: 100,
        timeout_ms: None,
        pivot: None,
        retry_any: None,
        compensate_retries: None,
        compensate_backoff_ms: None,
        sleep: None,
        signal: None,
        wait_ms: None,
        signal_param: None,
        key: None,
        child: None,
        child_param: None,
        queue: None,
    };
    options::parse_attr(cx, &STEP_SPEC, attr, |key, meta| {
        match key {
            COMPENSATE => step.compensate = Some(options::ident(meta)?),
            RETRIES => step.retries = Some(options::int(meta)?.0),
            BACKOFF_MS => step.backoff_ms = options::int(meta)?.0,
            TIMEOUT_MS => step.timeout_ms = Some(options::int(meta)?.0),
            RETRY_ON => {
                let kind = options::ident(meta)?;
                step.retry_any = Some(match kind.to_string().as_str() {
                    "any" => true,
                    "transient" => false,
                    other => {
                        return Err(syn::Error::new_spanned(
                            &kind,
                            format!(
                                "`retry_on = {other}` is not a retry policy: write `retry_on = any` (every error) or `retry_on = transient` (timeouts and infrastructure errors)"
                            ),
                        ));
                    }
                });
            }
            COMPENSATE_RETRIES => step.compensate_retries = Some(options::int(meta)?),
            COMPENSATE_BACKOFF_MS => step.compensate_backoff_ms = Some(options::int(meta)?),
            SLEEP => step.sleep = Some(options::flag(meta)?),
            SIGNAL => step.signal = Some(options::flag(meta)?),
            WAIT_MS => step.wait_ms = Some(options::int(meta)?),
            KEY => step.key = Some(options::ident(meta)?),
            CHILD => step.child = Some(options::flag(meta)?),
            QUEUE => step.queue = Some(options::string(meta)?),
            _ => step.pivot = Some(options::flag(meta)?),
        }
        Ok(())
    });
    if let (Some(_), Some(c)) = (step.sleep, &step.compensate) {
        cx.push(error_at(
            c,
            "a sleep step only waits: it has nothing to undo, so remove `compensate` (compensate the step before it)",
        ));
    }
    read_signal(cx, &mut step);
    read_child(cx, &mut step);
    let m = &step.method;
    m.require_ref_self(cx, "`#[saga_step]`");
    m.reject_generics(
        cx,
        "`#[saga_step]`",
        "the runner calls it with types it must know",
    );
    if let Some(p) = m.params.iter().find(|p| matches!(p.role, Role::Bus)) {
        cx.push(error_at(&p.ty, "a `#[saga_step]` cannot take the bus: register what it needs with the runner and take it as `State<T>`"));
    }
    match (&m.output, &m.ok_type) {
        (None, _) => cx.push(error_at(
            &m.ident,
            format!("a `#[saga_step]` returns `flext::Result<T>`, where `T` is what its compensation and later steps receive: add `-> Result<T>` to `{}`", m.ident),
        )),
        (Some(ty), None) => cx.push(error_at(
            ty,
            "write the step's return type as `Result<T>` (or `Result<T, E>`): the saga logs `T` and hands it to the compensation",
        )),
        _ => {}
    }
    step
}

/// The `Signal<T>` parameter of a `signal` step, and the rules that tie the option, the
/// parameter and `wait_ms` together.
fn read_signal(cx: &Ctxt, step: &mut Step) {
    let mut found = None;
    for (n, param) in step.method.params.iter().enumerate() {
        let Some(inner) = signal_type(&param.ty) else {
            continue;
        };
        if found.is_some() {
            cx.push(error_at(
                &param.ty,
                "a signal step waits for one signal: take one `Signal<T>` parameter, and wait for the next in a later step",
            ));
        } else if step.signal.is_none() {
            cx.push(error_at(
                &param.ty,
                format!(
                    "`{}` takes a `Signal<T>`, which only a signal step receives: write `#[saga_step(signal)]` (and `wait_ms = ...` for a time limit)",
                    step.method.ident
                ),
            ));
            found = Some((n, inner.clone()));
        } else {
            found = Some((n, inner.clone()));
        }
    }
    if let Some(span) = step.signal {
        if found.is_none() {
            cx.push(error_at(
                &step.method.ident,
                format!(
                    "signal step `{}` takes the signal it waits for as a parameter: add `signal: Signal<T>`, where `T` is the message senders send with `runner.signal`",
                    step.method.ident
                ),
            ));
        }
        if step.sleep.is_some() {
            cx.push(crate::common::error_at_span(
                span,
                "a step either sleeps or waits for a signal: a signal step's `wait_ms` is its time limit, so remove `sleep` (or split the step in two)",
            ));
        }
    } else {
        if let Some((_, span)) = step.wait_ms {
            cx.push(crate::common::error_at_span(
                span,
                "`wait_ms` is how long a signal step waits for its signal: add `signal`, or remove `wait_ms` (a step's own time limit is `timeout_ms`)",
            ));
        }
        if let Some(key) = &step.key {
            cx.push(error_at(
                key,
                "`key` names the field of a signal that routes it to its saga: add `signal` to this step, or remove `key`",
            ));
        }
    }
    // Kept without `signal` too (an error above): the fallback still implements
    // `WaitsFor<T>`, so that sending it adds no error.
    step.signal_param = found;
}

/// The `Child<S>` parameter of a `child` step, and the rules that tie the option and
/// the parameter together and keep a child step apart from the other kinds.
fn read_child(cx: &Ctxt, step: &mut Step) {
    let mut found = None;
    for (n, param) in step.method.params.iter().enumerate() {
        let Some(inner) = wrapped(&param.ty, "Child") else {
            continue;
        };
        if found.is_some() {
            cx.push(error_at(
                &param.ty,
                "a child step waits for one child saga: take one `Child<S>` parameter, and start the next child in a later step",
            ));
            continue;
        }
        if step.child.is_none() {
            cx.push(error_at(
                &param.ty,
                format!(
                    "`{}` takes a `Child<S>`, which only a child step receives: write `#[saga_step(child)]`",
                    step.method.ident
                ),
            ));
        }
        found = Some((n, inner.clone()));
    }
    if let Some(span) = step.child {
        if found.is_none() {
            cx.push(error_at(
                &step.method.ident,
                format!(
                    "child step `{}` takes the outcome of the child saga it starts as a parameter: add `child: Child<S>`, where `S` is the saga an earlier step returns",
                    step.method.ident
                ),
            ));
        }
        let other = [(step.sleep, "sleep"), (step.signal, "signal")];
        for (_, kind) in other.iter().filter(|(s, _)| s.is_some()) {
            cx.push(crate::common::error_at_span(
                span,
                format!("a step either {kind}s or waits for a child saga: remove `{kind}` here, and {kind} in a step of its own"),
            ));
        }
        if let Some(c) = &step.compensate {
            cx.push(error_at(
                c,
                "a child step is undone by its child saga's own compensations when this saga compensates: remove `compensate`",
            ));
        }
    }
    if step.child.is_none()
        && let Some(queue) = &step.queue
    {
        cx.push(error_at(
            queue,
            "`queue` names the queue a child step's child saga starts through: add `child` to this step, or remove `queue`",
        ));
    }
    if let Some(queue) = &step.queue
        && queue.value().is_empty()
    {
        cx.push(error_at(
            queue,
            "a queue's name is not empty: name the queue the child saga waits in",
        ));
    }
    step.child_param = found;
}

/// `T` when `ty` is written `Signal<T>` (any path ending in `Signal`).
fn signal_type(ty: &syn::Type) -> Option<&syn::Type> {
    wrapped(ty, "Signal")
}

/// `T` when `ty` is written `Name<T>` (any path ending in `Name`).
fn wrapped<'a>(ty: &'a syn::Type, name: &str) -> Option<&'a syn::Type> {
    let syn::Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first() {
        Some(syn::GenericArgument::Type(t)) if args.args.len() == 1 => Some(t),
        _ => None,
    }
}
