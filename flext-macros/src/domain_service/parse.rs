//! `#[domain_service]` input -> a typed model that keeps the user's spans.
//!
//! Parsing checks the shape of each item on its own (signatures, attribute options);
//! rules that relate several items (order, cycles, the first step) live in `check.rs`.

use darling::FromMeta;
use darling::util::{Flag, SpannedValue};
use proc_macro2::TokenStream;
use quote::ToTokens;

use crate::common::{Errors, Method, Param, error_at, parse_attr_args};

/// The method attributes `#[domain_service]` understands, by their last path segment.
pub const BUSINESS_RULE: &str = "business_rule";
pub const STEP: &str = "step";
pub const TAP: &str = "tap";
pub const POSTCONDITION: &str = "postcondition";
const ROLES: [&str; 4] = [BUSINESS_RULE, STEP, TAP, POSTCONDITION];

/// Options of `#[domain_service(...)]`.
#[derive(Default, FromMeta)]
#[darling(default)]
pub struct ServiceArgs {
    /// Stop at the first violated business rule instead of collecting all of them.
    pub fail_fast: Flag,
    /// A method of the impl called with the error before `execute` returns it.
    pub on_error: Option<syn::Ident>,
    /// The span name; defaults to the type's name.
    pub name: Option<String>,
    /// The path of the flext crate, for crates that rename it.
    #[darling(rename = "crate")]
    pub krate: Option<syn::Path>,
}

/// Options of `#[business_rule(...)]` and `#[postcondition(...)]`.
#[derive(Default, FromMeta)]
#[darling(default)]
pub struct RuleArgs {
    pub code: Option<String>,
    pub order: Option<SpannedValue<i64>>,
    #[darling(multiple)]
    pub after: Vec<syn::Ident>,
}

/// `#[step]` and `#[tap]` take no options; darling still rejects unknown ones.
#[derive(Default, FromMeta)]
pub struct NoArgs {}

pub struct Rule {
    pub method: Method,
    pub code: String,
    pub order: Option<SpannedValue<i64>>,
    pub after: Vec<syn::Ident>,
}

pub enum Link {
    Step(Method),
    Tap(Method),
}

pub struct Service {
    /// The impl block with flext's method attributes removed, emitted as is.
    pub item: syn::ItemImpl,
    pub args: ServiceArgs,
    pub name: String,
    pub rules: Vec<Rule>,
    pub links: Vec<Link>,
    pub postconditions: Vec<Rule>,
    /// The error hook, when `on_error` names a method of this impl.
    pub hook: Option<Method>,
    /// Every method name of the impl, for "did you mean" on `on_error`.
    pub method_names: Vec<String>,
}

impl Service {
    pub fn from_tokens(args: TokenStream, item: syn::ItemImpl, errors: &mut Errors) -> Service {
        let args = darling::ast::NestedMeta::parse_meta_list(args)
            .map_err(darling::Error::from)
            .and_then(|metas| ServiceArgs::from_list(&metas));
        let args = errors.handle(args).unwrap_or_default();
        let mut item = item;

        if let Some((_, path, _)) = &item.trait_ {
            errors.push(error_at(
                path,
                "`#[domain_service]` goes on an inherent `impl MyService { ... }` block, not on a trait impl: it writes the `DomainService` impl itself",
            ));
        }
        let name = args
            .name
            .clone()
            .unwrap_or_else(|| type_name(&item.self_ty));

        let mut rules = Vec::new();
        let mut links = Vec::new();
        let mut postconditions = Vec::new();
        let mut method_names = Vec::new();

        for impl_item in &mut item.items {
            let syn::ImplItem::Fn(f) = impl_item else {
                continue;
            };
            method_names.push(f.sig.ident.to_string());
            let mut ours = Vec::new();
            f.attrs.retain(|attr| match role_of(attr) {
                Some(role) => {
                    ours.push((role, attr.clone()));
                    false
                }
                None => true,
            });
            if let [(first, _), (_, second), ..] = ours.as_slice() {
                errors.push(error_at(
                    second,
                    format!(
                        "`{}` already has a flext attribute (`#[{}]`); a method plays one part: remove one of them",
                        f.sig.ident, first,
                    ),
                ));
            }
            let Some((role, attr)) = ours.into_iter().next() else {
                continue;
            };
            match role {
                BUSINESS_RULE | POSTCONDITION => {
                    let label = format!("`#[{role}]`");
                    let rule_args: RuleArgs =
                        errors.handle(parse_attr_args(&attr)).unwrap_or_default();
                    let method = Method::from_sig(&f.sig, &label, errors);
                    check_rule_signature(&method, role, errors);
                    if role == POSTCONDITION {
                        if let Some(order) = &rule_args.order {
                            errors.push(error_at_spanned(
                                order.span(),
                                "postconditions run in declaration order; remove `order`",
                            ));
                        }
                        if let Some(after) = rule_args.after.first() {
                            errors.push(error_at(
                                after,
                                "postconditions run in declaration order; remove `after`",
                            ));
                        }
                    }
                    let rule = Rule {
                        code: rule_args.code.unwrap_or_else(|| method.ident.to_string()),
                        method,
                        order: rule_args.order,
                        after: rule_args.after,
                    };
                    if role == BUSINESS_RULE {
                        rules.push(rule);
                    } else {
                        postconditions.push(rule);
                    }
                }
                STEP => {
                    errors.handle(parse_attr_args::<NoArgs>(&attr));
                    let method = Method::from_sig(&f.sig, "`#[step]`", errors);
                    check_step_signature(&method, errors);
                    links.push(Link::Step(method));
                }
                _ => {
                    errors.handle(parse_attr_args::<NoArgs>(&attr));
                    let method = Method::from_sig(&f.sig, "`#[tap]`", errors);
                    check_tap_signature(&method, errors);
                    links.push(Link::Tap(method));
                }
            }
        }

        let hook = args.on_error.as_ref().and_then(|hook| {
            item.items.iter().find_map(|i| match i {
                syn::ImplItem::Fn(f) if f.sig.ident == *hook => {
                    let method = Method::from_sig(&f.sig, "`on_error`", errors);
                    check_hook_signature(&method, errors);
                    Some(method)
                }
                _ => None,
            })
        });

        Service {
            item,
            args,
            name,
            rules,
            links,
            postconditions,
            hook,
            method_names,
        }
    }
}

fn error_at_spanned(span: proc_macro2::Span, message: &str) -> syn::Error {
    crate::common::error_at_span(span, message)
}

fn role_of(attr: &syn::Attribute) -> Option<&'static str> {
    let last = attr.path().segments.last()?;
    ROLES.into_iter().find(|r| last.ident == r)
}

fn type_name(ty: &syn::Type) -> String {
    match ty {
        syn::Type::Path(p) => p
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_else(|| ty.to_token_stream().to_string()),
        _ => ty.to_token_stream().to_string(),
    }
}

fn check_rule_signature(m: &Method, role: &str, errors: &mut Errors) {
    let values: Vec<_> = m.values().collect();
    if role == BUSINESS_RULE {
        for ty in values {
            errors.push(error_at(
                ty,
                format!(
                    "a `#[business_rule]` reads the service's fields through `&self` and takes no other input; remove this parameter (only `ctx: &Context` is allowed), or make `{}` a `#[step]`",
                    m.ident
                ),
            ));
        }
    } else {
        match values.as_slice() {
            [ty] if is_reference(ty) => {}
            [ty] => errors.push(error_at(
                ty,
                "a `#[postcondition]` checks the service's result by reference: take `&T` where `T` is the last step's output",
            )),
            [] => errors.push(error_at(
                &m.ident,
                format!("a `#[postcondition]` checks the service's result: `fn {}(&self, result: &T) -> RuleResult`", m.ident),
            )),
            [_, extra, ..] => errors.push(error_at(extra, "a `#[postcondition]` takes one value, the service's result by reference; remove this parameter")),
        }
    }
    if m.return_type().is_none() {
        errors.push(error_at(
            &m.ident,
            format!(
                "a `#[{role}]` must say whether it holds: add `-> RuleResult` and return `Ok(())` or a `RuleViolation` (the `ensure!` macro does both)"
            ),
        ));
    }
}

fn check_step_signature(m: &Method, errors: &mut Errors) {
    if let [_, extra, ..] = m.values().collect::<Vec<_>>().as_slice() {
        errors.push(error_at(
            extra,
            "a `#[step]` takes at most one value, the previous step's output (plus `ctx: &Context` if it needs it); read other inputs from the service's fields",
        ));
    }
    if m.return_type().is_none() {
        errors.push(error_at(
            &m.ident,
            format!(
                "a `#[step]` must return `flext::Result<T>`: add `-> Result<T>` to `{}` (use `Result<()>` when it produces nothing)",
                m.ident
            ),
        ));
    }
}

fn check_tap_signature(m: &Method, errors: &mut Errors) {
    match m.values().collect::<Vec<_>>().as_slice() {
        [ty] if is_reference(ty) => {}
        [ty] => errors.push(error_at(
            ty,
            "a `#[tap]` sees the value by reference and cannot change it: take `&T`",
        )),
        [] => errors.push(error_at(
            &m.ident,
            format!("a `#[tap]` sees the previous step's output: `fn {}(&self, value: &T)`", m.ident),
        )),
        [_, extra, ..] => errors.push(error_at(extra, "a `#[tap]` takes one value, the previous step's output by reference; remove this parameter")),
    }
    if let Some(ty) = m.return_type() {
        if !crate::common::is_unit(ty) {
            errors.push(error_at(
                ty,
                "a `#[tap]` cannot change the flow, so it returns nothing: remove the return type, or make it a `#[step]` if it can fail",
            ));
        }
    }
}

fn check_hook_signature(m: &Method, errors: &mut Errors) {
    let values: Vec<_> = m.values().collect();
    if values.len() != 1 || m.return_type().is_none() {
        errors.push(error_at(
            &m.ident,
            format!(
                "the `on_error` hook receives the error and returns the error to report: `fn {}(&self, error: flext::Error) -> flext::Error` (optionally `async`, optionally with `ctx: &Context`)",
                m.ident
            ),
        ));
    }
}

fn is_reference(ty: &syn::Type) -> bool {
    matches!(ty, syn::Type::Reference(_))
}

impl Link {
    pub fn method(&self) -> &Method {
        match self {
            Link::Step(m) | Link::Tap(m) => m,
        }
    }
}

impl Method {
    /// The first non-context parameter type, if any.
    pub fn input(&self) -> Option<&syn::Type> {
        self.params.iter().find_map(|p| match p {
            Param::Value(ty) => Some(&**ty),
            Param::Context => None,
        })
    }
}
