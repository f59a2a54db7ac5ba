//! `#[domain_service]` and `#[business_rules]` input -> a typed model that keeps the
//! user's spans. Parsing checks the shape of each item on its own (signatures, attribute
//! options); rules that relate several items (order, cycles, the step chain, undo and
//! hook lookup) live in `check.rs`.

use proc_macro2::{Span, TokenStream};

use crate::common::options::{self, Spec};
use crate::common::sig::{Method, Role};
use crate::common::symbol::*;
use crate::common::util::{is_unit, take_attrs, type_name};
use crate::common::{Ctxt, Krate, error_at};

/// Which attribute the impl block carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `#[domain_service]`: rules, steps, taps, postconditions.
    Service,
    /// `#[business_rules]` on a message: rules only, implementing `Validate`.
    MessageRules,
    /// `#[business_rules]` on `impl ServiceProcessor for X` (or `AsyncServiceProcessor`):
    /// rules that take the request, run before `process`.
    ProcessorRules,
}

pub struct Rule {
    pub method: Method,
    pub code: String,
    pub order: Option<(i64, Span)>,
    pub after: Vec<syn::Ident>,
}

pub enum Link {
    /// A step, and the method that undoes it.
    Step(Method, Option<syn::Ident>),
    Tap(Method),
}

pub struct Service {
    pub mode: Mode,
    /// The impl block with flext's method attributes removed, emitted as is.
    pub item: syn::ItemImpl,
    pub krate: Krate,
    pub name: String,
    pub fail_fast: Option<Span>,
    pub on_error: Option<syn::Ident>,
    pub rules: Vec<Rule>,
    pub links: Vec<Link>,
    pub postconditions: Vec<Rule>,
    /// Every method of the impl that plays no part, for `on_error` and `undo` lookup.
    pub others: Vec<Method>,
    /// Indices into `rules`, in the order they run; set by the check.
    pub rule_order: Vec<usize>,
    /// For each link, what each of its parameters is bound to; set by the check.
    pub args: Vec<Vec<Arg>>,
    /// For each step with an undo: the step's link index, the undo and its arguments.
    pub undos: Vec<(usize, syn::Ident, Vec<Arg>)>,
}

/// What a parameter of a step, tap, postcondition or undo receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    Context,
    /// The output of the step at this link index, moved.
    Moved(usize),
    /// The output of the step at this link index, by reference.
    Borrowed(usize),
    /// Nothing could be bound (an error has been reported).
    Unbound,
}

const SERVICE_SPEC: Spec<'static> = Spec {
    attr: DOMAIN_SERVICE,
    allowed: &[FAIL_FAST, ON_ERROR, NAME, CRATE],
    repeatable: &[],
};
const RULES_SPEC: Spec<'static> = Spec {
    attr: BUSINESS_RULES,
    allowed: &[CRATE],
    repeatable: &[],
};
const RULE_SPEC: Spec<'static> = Spec {
    attr: BUSINESS_RULE,
    allowed: &[CODE, ORDER, AFTER],
    repeatable: &[AFTER],
};
const POSTCONDITION_SPEC: Spec<'static> = Spec {
    attr: POSTCONDITION,
    allowed: &[CODE],
    repeatable: &[],
};
const STEP_SPEC: Spec<'static> = Spec {
    attr: STEP,
    allowed: &[UNDO],
    repeatable: &[],
};
const TAP_SPEC: Spec<'static> = Spec {
    attr: TAP,
    allowed: &[UNDO],
    repeatable: &[],
};

impl Service {
    pub fn from_syn(cx: &Ctxt, mode: Mode, args: TokenStream, item: syn::ItemImpl) -> Service {
        let mut name = None;
        let mut krate = None;
        let mut fail_fast = None;
        let mut on_error = None;
        let spec = match mode {
            Mode::Service => &SERVICE_SPEC,
            Mode::MessageRules | Mode::ProcessorRules => &RULES_SPEC,
        };
        options::parse(cx, spec, args, |key, meta| {
            match key {
                FAIL_FAST => fail_fast = Some(options::flag(meta)?),
                ON_ERROR => on_error = Some(options::ident(meta)?),
                NAME => name = Some(options::string(meta)?.value()),
                _ => krate = Some(options::path(meta)?),
            }
            Ok(())
        });
        let attr = match mode {
            Mode::Service => DOMAIN_SERVICE,
            Mode::MessageRules | Mode::ProcessorRules => BUSINESS_RULES,
        };
        if mode == Mode::ProcessorRules {
            // The trait impl is what it goes on; `lib.rs` chose this mode from it.
        } else if let Some((_, path, _)) = &item.trait_ {
            cx.push(error_at(
                path,
                format!("`#[{attr}]` goes on an inherent `impl {} {{ ... }}` block, not on a trait impl: it writes the trait impl itself", crate::common::util::type_name(&item.self_ty)),
            ));
        }

        let mut svc = Service {
            mode,
            name: name.unwrap_or_else(|| type_name(&item.self_ty)),
            krate: Krate::new(krate),
            fail_fast,
            on_error,
            rules: Vec::new(),
            links: Vec::new(),
            postconditions: Vec::new(),
            others: Vec::new(),
            rule_order: Vec::new(),
            args: Vec::new(),
            undos: Vec::new(),
            item,
        };
        // The methods are read (and flext's attributes taken off them) outside the item,
        // then put back.
        let mut items = std::mem::take(&mut svc.item.items);
        for impl_item in &mut items {
            if let syn::ImplItem::Fn(f) = impl_item {
                svc.read_method(cx, f);
            }
        }
        svc.item.items = items;
        svc
    }

    fn read_method(&mut self, cx: &Ctxt, f: &mut syn::ImplItemFn) {
        let ours = take_attrs(&mut f.attrs, &SERVICE_ROLES);
        let method = Method::from_sig(&f.sig);
        if let [(first, _), (_, second), ..] = ours.as_slice() {
            cx.push(error_at(
                second,
                format!(
                    "`{}` already has a flext attribute (`#[{first}]`); a method plays one part: remove one of them",
                    f.sig.ident,
                ),
            ));
        }
        let Some((role, attr)) = ours.into_iter().next() else {
            self.others.push(method);
            return;
        };
        let label = format!("`#[{role}]` method");
        // The mistakes in this method's signature, reported as one error.
        let signature = Ctxt::new();
        method.require_ref_self(&signature, &label);
        method.reject_generics(
            &signature,
            &label,
            "the service calls it with types it must know; move the parameter to the `impl`",
        );
        match role {
            BUSINESS_RULE | POSTCONDITION => {
                let rule = read_rule(cx, &signature, self.mode, role, &attr, method);
                if role == BUSINESS_RULE {
                    self.rules.push(rule);
                } else {
                    self.postconditions.push(rule);
                }
            }
            STEP => {
                let mut undo = None;
                options::parse_attr(cx, &STEP_SPEC, &attr, |_, meta| {
                    undo = Some(options::ident(meta)?);
                    Ok(())
                });
                check_step_signature(&signature, &method);
                self.links.push(Link::Step(method, undo));
            }
            _ => {
                options::parse_attr(cx, &TAP_SPEC, &attr, |_, meta| {
                    Err(meta.error("a `#[tap]` changes nothing, so it has nothing to undo: remove `undo`, or put it on the `#[step]` whose effect it reverts"))
                });
                check_tap_signature(&signature, &method);
                self.links.push(Link::Tap(method));
            }
        }
        cx.push_as_one(signature);
    }
}

fn read_rule(
    cx: &Ctxt,
    signature: &Ctxt,
    mode: Mode,
    role: &str,
    attr: &syn::Attribute,
    method: Method,
) -> Rule {
    let mut code = None;
    let mut order = None;
    let mut after = Vec::new();
    let spec = if role == BUSINESS_RULE {
        &RULE_SPEC
    } else {
        &POSTCONDITION_SPEC
    };
    options::parse_attr(cx, spec, attr, |key, meta| {
        match key {
            CODE => code = Some(options::string(meta)?.value()),
            ORDER => order = Some(options::int::<i64>(meta)?),
            _ => after.push(options::ident(meta)?),
        }
        Ok(())
    });
    if mode == Mode::ProcessorRules && role == BUSINESS_RULE {
        check_processor_rule_signature(signature, &method);
    } else {
        check_rule_signature(signature, &method, role);
    }
    Rule {
        code: code.unwrap_or_else(|| method.ident.to_string()),
        method,
        order,
        after,
    }
}

fn check_rule_signature(cx: &Ctxt, m: &Method, role: &str) {
    if role == BUSINESS_RULE {
        for p in m.values().chain(m.refs()) {
            cx.push(error_at(
                &p.ty,
                format!(
                    "a `#[business_rule]` reads the service's fields through `&self` and takes no other input; remove this parameter (only `ctx: &Context` is allowed), or make `{}` a `#[step]`",
                    m.ident
                ),
            ));
        }
    } else {
        let refs: Vec<_> = m.refs().collect();
        for p in m.values() {
            cx.push(error_at(
                &p.ty,
                "a `#[postcondition]` checks the service's result by reference: take `&T` where `T` is the last step's output",
            ));
        }
        match refs.as_slice() {
            [_] => {}
            [] if m.values().next().is_some() => {}
            [] => cx.push(error_at(
                &m.ident,
                format!("a `#[postcondition]` checks the service's result: `fn {}(&self, result: &T) -> RuleResult`", m.ident),
            )),
            [_, extra, ..] => cx.push(error_at(&extra.ty, "a `#[postcondition]` takes one value, the service's result by reference; remove this parameter")),
        }
    }
    if m.output.is_none() {
        cx.push(error_at(
            &m.ident,
            format!(
                "a `#[{role}]` must say whether it holds: add `-> RuleResult` and return `Ok(())` or a `RuleViolation` (the `ensure!` macro does both)"
            ),
        ));
    }
}

/// A processor's rule: `fn rule(&self, request: &Request) -> RuleResult`, optionally
/// also taking `&Context`.
fn check_processor_rule_signature(cx: &Ctxt, m: &Method) {
    for p in m.values() {
        cx.push(error_at(
            &p.ty,
            "a processor's `#[business_rule]` checks the request by reference: take `request: &Request` (and optionally `ctx: &Context`)",
        ));
    }
    let refs: Vec<_> = m.refs().collect();
    match refs.as_slice() {
        [_] => {}
        [] if m.values().next().is_some() => {}
        [] => cx.push(error_at(
            &m.ident,
            format!("a processor's `#[business_rule]` checks the request: `fn {}(&self, request: &Request) -> RuleResult`", m.ident),
        )),
        [_, extra, ..] => cx.push(error_at(&extra.ty, "a processor's `#[business_rule]` takes one value, the request by reference; remove this parameter")),
    }
    if m.output.is_none() {
        cx.push(error_at(
            &m.ident,
            "a `#[business_rule]` must say whether it holds: add `-> RuleResult` and return `Ok(())` or a `RuleViolation` (the `ensure!` macro does both)",
        ));
    }
}

fn check_step_signature(cx: &Ctxt, m: &Method) {
    if let Some(extra) = m.values().nth(1) {
        cx.push(error_at(
            &extra.ty,
            "a `#[step]` takes at most one value, the previous step's output; take earlier outputs by reference (`&T`), and read other inputs from the service's fields",
        ));
    }
    if let Some(p) = m.params.iter().find(|p| matches!(p.role, Role::Bus)) {
        cx.push(error_at(
            &p.ty,
            "a `#[step]` cannot take the bus: keep it in a field of the service",
        ));
    }
    if m.output.is_none() {
        cx.push(error_at(
            &m.ident,
            format!(
                "a `#[step]` must return `flext::Result<T>`: add `-> Result<T>` to `{}` (use `Result<()>` when it produces nothing)",
                m.ident
            ),
        ));
    }
}

fn check_tap_signature(cx: &Ctxt, m: &Method) {
    let refs: Vec<_> = m.refs().collect();
    for p in m.values() {
        cx.push(error_at(
            &p.ty,
            "a `#[tap]` sees the value by reference and cannot change it: take `&T`",
        ));
    }
    match refs.as_slice() {
        [_] => {}
        [] if m.values().next().is_some() => {}
        [] => cx.push(error_at(
            &m.ident,
            format!("a `#[tap]` sees the previous step's output: `fn {}(&self, value: &T)`", m.ident),
        )),
        [_, extra, ..] => cx.push(error_at(&extra.ty, "a `#[tap]` takes one value, the previous step's output by reference; remove this parameter")),
    }
    if let Some(ty) = &m.output
        && !is_unit(ty)
    {
        cx.push(error_at(
            ty,
            "a `#[tap]` cannot change the flow, so it returns nothing: remove the return type, or make it a `#[step]` if it can fail",
        ));
    }
}

impl Link {
    pub fn method(&self) -> &Method {
        match self {
            Link::Step(m, _) | Link::Tap(m) => m,
        }
    }
}

impl Service {
    /// Every method the generated code calls, hook and undos included.
    pub fn called(&self) -> impl Iterator<Item = &Method> {
        let undos = self.links.iter().filter_map(|l| match l {
            Link::Step(_, Some(u)) => self.other(u),
            _ => None,
        });
        self.rules
            .iter()
            .map(|r| &r.method)
            .chain(self.links.iter().map(Link::method))
            .chain(self.postconditions.iter().map(|r| &r.method))
            .chain(self.on_error.as_ref().and_then(|h| self.other(h)))
            .chain(undos)
    }

    /// The method of this impl named `name` that plays no other part.
    pub fn other(&self, name: &syn::Ident) -> Option<&Method> {
        self.others.iter().find(|m| m.ident == *name)
    }

    /// The steps, with their index among the links.
    pub fn steps(&self) -> impl Iterator<Item = (usize, &Method, Option<&syn::Ident>)> {
        self.links.iter().enumerate().filter_map(|(i, l)| match l {
            Link::Step(m, undo) => Some((i, m, undo.as_ref())),
            Link::Tap(_) => None,
        })
    }

    /// The first `async` method the generated code calls, if any.
    pub fn first_async(&self) -> Option<&Method> {
        self.called().find(|m| m.is_async())
    }
}
