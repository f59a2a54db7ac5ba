//! `#[aggregate]` on the impl, input -> model: the `#[apply]`, `#[command_handler]` and
//! `#[business_rule]` methods, each checked on its own signature.

use proc_macro2::TokenStream;
use quote::ToTokens;

use crate::common::options::{self, Spec};
use crate::common::sig::{Method, Receiver, Role};
use crate::common::symbol::*;
use crate::common::util::{take_attrs, type_name};
use crate::common::{Ctxt, Krate, error_at};

pub struct Apply {
    pub method: syn::Ident,
    /// The event type (`E` of `&E`), when the signature has one.
    pub event: Option<syn::Type>,
}

pub struct Decide {
    pub method: Method,
    /// The command type (`C` of `&C`), when the signature has one.
    pub command: Option<syn::Type>,
}

/// A `#[business_rule]` of the aggregate: `(&self, command: &C) -> RuleResult`, run
/// before the command method of `C`, every rule of `C` in declaration order, all
/// violations collected.
pub struct Rule {
    pub method: Method,
    pub command: Option<syn::Type>,
    pub code: String,
}

pub struct Behaviour {
    pub item: syn::ItemImpl,
    pub krate: Krate,
    pub applies: Vec<Apply>,
    pub commands: Vec<Decide>,
    pub rules: Vec<Rule>,
}

const RULE_SPEC: Spec<'static> = Spec {
    attr: BUSINESS_RULE,
    allowed: &[CODE],
    repeatable: &[],
};

const SPEC: Spec<'static> = Spec {
    attr: AGGREGATE,
    allowed: &[CRATE],
    repeatable: &[],
};

impl Behaviour {
    pub fn from_syn(cx: &Ctxt, args: TokenStream, mut item: syn::ItemImpl) -> Behaviour {
        let mut krate = None;
        options::parse(cx, &SPEC, args, |_, meta| {
            krate = Some(options::path(meta)?);
            Ok(())
        });
        if let Some((_, path, _)) = &item.trait_ {
            cx.push(error_at(path, "`#[aggregate]` goes on an inherent `impl Account { ... }` block: it writes the `Aggregate` impl itself"));
        }
        if let Some(g) = item.generics.params.first() {
            cx.push(error_at(
                g,
                "an aggregate cannot be generic: its streams are found by its type's name",
            ));
        }
        let mut applies = Vec::new();
        let mut commands = Vec::new();
        let mut rules = Vec::new();
        for impl_item in &mut item.items {
            let syn::ImplItem::Fn(f) = impl_item else {
                continue;
            };
            let ours = take_attrs(&mut f.attrs, &[APPLY, COMMAND_HANDLER, BUSINESS_RULE]);
            if let Some((_, second)) = ours.get(1) {
                cx.push(error_at(second, "a method is one of `#[apply]`, `#[command_handler]` or `#[business_rule]`, once: remove this attribute"));
            }
            match ours.into_iter().next() {
                Some((APPLY, attr)) => {
                    reject_args(cx, &attr);
                    let signature = Ctxt::new();
                    applies.push(read_apply(&signature, &f.sig));
                    cx.push_as_one(signature);
                }
                Some((BUSINESS_RULE, attr)) => {
                    let signature = Ctxt::new();
                    rules.push(read_rule(cx, &signature, &attr, &f.sig));
                    cx.push_as_one(signature);
                }
                Some((_, attr)) => {
                    reject_args(cx, &attr);
                    let signature = Ctxt::new();
                    commands.push(read_command(&signature, &f.sig));
                    cx.push_as_one(signature);
                }
                None => {}
            }
        }
        Behaviour {
            krate: Krate::new(krate),
            item,
            applies,
            commands,
            rules,
        }
    }
}

fn reject_args(cx: &Ctxt, attr: &syn::Attribute) {
    if let syn::Meta::List(list) = &attr.meta {
        cx.push(error_at(
            &list.tokens,
            "this attribute takes no options inside an `#[aggregate]` impl",
        ));
    }
}

fn read_apply(cx: &Ctxt, sig: &syn::Signature) -> Apply {
    let m = Method::from_sig(sig);
    let ident = &m.ident;
    // The signature that works, with the user's event type when the method names one.
    let usage = m
        .params
        .first()
        .map(|p| match &p.role {
            Role::Ref(ty) => type_name(ty),
            _ => type_name(&p.ty),
        })
        .map_or_else(
            || {
                format!(
                    "`fn {ident}(&mut self, event: &E)`, with `E` the `#[event]` type it applies"
                )
            },
            |e| format!("`fn {ident}(&mut self, event: &{e})`"),
        );
    match &m.receiver {
        Receiver::RefMut(_) => {}
        Receiver::Ref | Receiver::Other(_) => {
            let written = sig
                .receiver()
                .map(|r| r.to_token_stream().to_string().replace("& ", "&"));
            let at: &dyn ToTokens = match sig.receiver() {
                Some(r) => r,
                None => ident,
            };
            cx.push(error_at(
                at,
                format!(
                    "an `#[apply]` method evolves the state: take `&mut self`, not `{}`, as in {usage}",
                    written.unwrap_or_default()
                ),
            ));
        }
        Receiver::Missing => cx.push(error_at(
            ident,
            format!("an `#[apply]` method evolves the state: {usage}"),
        )),
    }
    if let Some(a) = &m.asyncness {
        cx.push(error_at(a, "an `#[apply]` method cannot be `async`: applying an event only changes the state in memory"));
    }
    if let Some(ty) = &m.output {
        cx.push(error_at(ty, "an `#[apply]` method cannot fail and returns nothing: the event already happened; remove the return type (checks belong in the command method that raises the event)"));
    }
    let event = match m.params.as_slice() {
        [one] => match &one.role {
            Role::Ref(ty) => Some((**ty).clone()),
            _ => {
                cx.push(error_at(
                    &one.ty,
                    format!(
                        "an `#[apply]` method takes its event by reference: `event: &{}`",
                        one.ty.to_token_stream()
                    ),
                ));
                // Kept for the fallback's stand-in, so that raising it adds no error.
                Some((*one.ty).clone())
            }
        },
        [] => {
            cx.push(error_at(
                ident,
                format!("an `#[apply]` method takes the event it applies: {usage}"),
            ));
            None
        }
        [_, extra, ..] => {
            cx.push(error_at(&extra.ty, "an `#[apply]` method takes only the event: the state changes from the event alone, so that replaying the stream gives the same state"));
            None
        }
    };
    Apply {
        method: ident.clone(),
        event,
    }
}

fn read_command(cx: &Ctxt, sig: &syn::Signature) -> Decide {
    let method = Method::from_sig(sig);
    match &method.receiver {
        Receiver::Ref => {}
        Receiver::RefMut(r) => cx.push(error_at(r, "a command method decides and does not change the state: take `&self`, and change the state in the `#[apply]` methods of the events it raises")),
        Receiver::Other(r) => cx.push(error_at(r, format!("a command method takes `&self`, not `{}`", r.to_token_stream().to_string().replace("& ", "&")))),
        Receiver::Missing => cx.push(error_at(&method.ident, format!("a command method takes `&self` and the command: `fn {}(&self, command: &C) -> Result<Events<Self>>`, with `C` the `#[command]` type", method.ident))),
    }
    if let Some(a) = &method.asyncness {
        cx.push(error_at(a, "a command method decides from the state alone and cannot be `async`: do the I/O before sending the command, or in a saga"));
    }
    method.reject_generics(
        cx,
        "command method",
        "the bus registers it for one command type",
    );
    if method.output.is_none() {
        cx.push(error_at(&method.ident, format!("a command method returns the events it raises: add `-> Result<Events<Self>>` to `{}`", method.ident)));
    }
    let mut command = None;
    for p in &method.params {
        match &p.role {
            Role::Context => {}
            Role::Ref(ty) if command.is_none() => command = Some((**ty).clone()),
            Role::Value if command.is_none() => cx.push(error_at(&p.ty, format!("take the command by reference: `command: &{}`", p.ty.to_token_stream()))),
            Role::Bus => cx.push(error_at(&p.ty, "a command method cannot take the bus: it decides from the state alone, and the events it raises are published for it")),
            _ => cx.push(error_at(&p.ty, "a command method takes the command and, optionally, `&Context`: nothing else")),
        }
    }
    if command.is_none()
        && method
            .params
            .iter()
            .all(|p| matches!(p.role, Role::Context))
    {
        cx.push(error_at(&method.ident, format!("a command method takes the command it decides: `fn {}(&self, command: &C)`, with `C` the `#[command]` type", method.ident)));
    }
    Decide { method, command }
}

fn read_rule(outer: &Ctxt, cx: &Ctxt, attr: &syn::Attribute, sig: &syn::Signature) -> Rule {
    let mut code = None;
    options::parse_attr(outer, &RULE_SPEC, attr, |_, meta| {
        code = Some(options::string(meta)?.value());
        Ok(())
    });
    let method = Method::from_sig(sig);
    // The command a rule checks: its first parameter's type, however it is taken.
    let checked = method.params.first().map_or_else(
        || "C".to_owned(),
        |p| match &p.role {
            Role::Ref(ty) => type_name(ty),
            _ => type_name(&p.ty),
        },
    );
    method.require_ref_self(cx, "business rule of an aggregate");
    if let Some(a) = &method.asyncness {
        cx.push(error_at(a, "a business rule of an aggregate cannot be `async`: it checks the state and the command"));
    }
    if method.output.is_none() {
        cx.push(error_at(
            &method.ident,
            format!(
                "a business rule returns its verdict: add `-> RuleResult` to `{}`",
                method.ident
            ),
        ));
    }
    let mut command = None;
    for p in &method.params {
        match &p.role {
            Role::Ref(ty) if command.is_none() => command = Some((**ty).clone()),
            _ => cx.push(error_at(&p.ty, format!("a business rule of an aggregate takes `&self` and the command it checks, by reference: `fn {}(&self, command: &{checked}) -> RuleResult`", method.ident))),
        }
    }
    if command.is_none() && method.params.is_empty() {
        cx.push(error_at(&method.ident, format!("a business rule of an aggregate takes the command it checks: `fn {}(&self, command: &C) -> RuleResult`, with `C` the `#[command]` type", method.ident)));
    }
    Rule {
        code: code.unwrap_or_else(|| method.ident.to_string()),
        method,
        command,
    }
}
