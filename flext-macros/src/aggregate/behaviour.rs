//! `#[aggregate]` on the impl: `#[apply]` methods (`&mut self`, `&Event`, no result)
//! and `#[command_handler]` methods (`&self`, `&Command`, optionally `&Context`, returning
//! `Result<Events<Self>>`), their checks, and the generated impls and bus registrations.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::common::options::{self, Spec};
use crate::common::sig::{Method, Receiver, Role};
use crate::common::symbol::*;
use crate::common::util::{take_attrs, type_name};
use crate::common::{Ctxt, Krate, error_at, respan, respan_shallow};

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
                    applies.push(read_apply(cx, &f.sig));
                }
                Some((BUSINESS_RULE, attr)) => rules.push(read_rule(cx, &attr, &f.sig)),
                Some((_, attr)) => {
                    reject_args(cx, &attr);
                    commands.push(read_command(cx, &f.sig));
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

/// `&T` -> `T`.
fn referent(ty: &syn::Type) -> Option<&syn::Type> {
    match ty {
        syn::Type::Reference(r) if r.mutability.is_none() => Some(&r.elem),
        syn::Type::Group(g) => referent(&g.elem),
        syn::Type::Paren(p) => referent(&p.elem),
        _ => None,
    }
}

fn read_apply(cx: &Ctxt, sig: &syn::Signature) -> Apply {
    let ident = &sig.ident;
    match sig.receiver() {
        Some(r) if r.reference.is_some() && r.mutability.is_some() && r.colon_token.is_none() => {}
        Some(r) => cx.push(error_at(
            r,
            format!(
                "an `#[apply]` method evolves the state: take `&mut self`, not `{}`",
                r.to_token_stream().to_string().replace("& ", "&")
            ),
        )),
        None => cx.push(error_at(
            ident,
            format!(
                "an `#[apply]` method evolves the state: `fn {ident}(&mut self, event: &MyEvent)`"
            ),
        )),
    }
    if let Some(a) = &sig.asyncness {
        cx.push(error_at(a, "an `#[apply]` method cannot be `async`: applying an event only changes the state in memory"));
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        cx.push(error_at(ty, "an `#[apply]` method cannot fail and returns nothing: the event already happened; remove the return type (checks belong in the command method that raises the event)"));
    }
    let typed: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            syn::FnArg::Typed(t) => Some(t),
            syn::FnArg::Receiver(_) => None,
        })
        .collect();
    let event = match typed.as_slice() {
        [one] => match referent(&one.ty) {
            Some(ty) => Some(ty.clone()),
            None => {
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
            cx.push(error_at(ident, format!("an `#[apply]` method takes the event it applies: `fn {ident}(&mut self, event: &MyEvent)`")));
            None
        }
        [_, extra, ..] => {
            cx.push(error_at(extra, "an `#[apply]` method takes only the event: the state changes from the event alone, so that replaying the stream gives the same state"));
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
        Receiver::Other(r) if r.mutability.is_some() => cx.push(error_at(r, "a command method decides and does not change the state: take `&self`, and change the state in the `#[apply]` methods of the events it raises")),
        Receiver::Other(r) => cx.push(error_at(r, format!("a command method takes `&self`, not `{}`", r.to_token_stream().to_string().replace("& ", "&")))),
        Receiver::Missing => cx.push(error_at(&method.ident, format!("a command method takes `&self` and the command: `fn {}(&self, command: &MyCommand) -> Result<Events<Self>>`", method.ident))),
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
        cx.push(error_at(&method.ident, format!("a command method takes the command it decides: `fn {}(&self, command: &MyCommand)`", method.ident)));
    }
    Decide { method, command }
}

fn read_rule(cx: &Ctxt, attr: &syn::Attribute, sig: &syn::Signature) -> Rule {
    let mut code = None;
    options::parse_attr(cx, &RULE_SPEC, attr, |_, meta| {
        code = Some(options::string(meta)?.value());
        Ok(())
    });
    let method = Method::from_sig(sig);
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
            _ => cx.push(error_at(&p.ty, format!("a business rule of an aggregate takes `&self` and the command it checks: `fn {}(&self, command: &MyCommand) -> RuleResult`", method.ident))),
        }
    }
    if command.is_none() && method.params.is_empty() {
        cx.push(error_at(&method.ident, format!("a business rule of an aggregate takes the command it checks: `fn {}(&self, command: &MyCommand) -> RuleResult`", method.ident)));
    }
    Rule {
        code: code.unwrap_or_else(|| method.ident.to_string()),
        method,
        command,
    }
}

pub fn check(b: &Behaviour, cx: &Ctxt) {
    let key_of = |t: &syn::Type| t.to_token_stream().to_string();
    for rule in &b.rules {
        let Some(command) = &rule.command else {
            continue;
        };
        let decided = b
            .commands
            .iter()
            .any(|c| c.command.as_ref().map(key_of) == Some(key_of(command)));
        if !decided {
            cx.push(error_at(command, format!("no `#[command_handler]` of this aggregate decides `{}`: a business rule runs before the command method of the command it takes", type_name(command))));
        }
    }
    let key = |t: &syn::Type| t.to_token_stream().to_string();
    for (i, a) in b.applies.iter().enumerate() {
        let Some(event) = &a.event else { continue };
        if let Some(first) = b.applies[..i]
            .iter()
            .find(|o| o.event.as_ref().map(key) == Some(key(event)))
        {
            cx.push(error_at(event, format!("`{}` is already applied by `{}`: an aggregate applies each event in one `#[apply]` method", type_name(event), first.method)));
        }
    }
    for (i, c) in b.commands.iter().enumerate() {
        let Some(command) = &c.command else { continue };
        if let Some(first) = b.commands[..i]
            .iter()
            .find(|o| o.command.as_ref().map(key) == Some(key(command)))
        {
            cx.push(error_at(command, format!("`{}` is already decided by `{}`: an aggregate has one command method per command", type_name(command), first.method.ident)));
        }
    }
}

pub fn expand(b: &Behaviour, complete: bool) -> TokenStream {
    let p = b.krate.private();
    let item = &b.item;
    let ty = &item.self_ty;
    let agg = quote!(#p::aggregate);

    // `Aggregate`: the stored events it applies, by name.
    let events: Vec<&syn::Type> = b.applies.iter().filter_map(|a| a.event.as_ref()).collect();
    let versions = events.iter().map(|e| {
        quote! {
            if name == #agg::event_name::<Self, #e>() {
                return ::core::option::Option::Some(#agg::event_version_of::<Self, #e>());
            }
        }
    });
    let decodes = events.iter().map(|e| {
        quote! {
            if name == #agg::event_name::<Self, #e>() {
                return #agg::apply_payload::<Self, #e>(self, payload);
            }
        }
    });
    let aggregate = if complete {
        quote! {
            #[automatically_derived]
            impl #agg::Aggregate for #ty {
                fn event_version(name: &str) -> ::core::option::Option<u32> {
                    #(#versions)*
                    ::core::option::Option::None
                }
                fn apply_stored(&mut self, name: &str, payload: #p::serde_json::Value) -> #p::Result<()> {
                    #(#decodes)*
                    ::core::result::Result::Err(#agg::unknown_event(<Self as #agg::AggregateRoot>::TYPE, name))
                }
            }
        }
    } else {
        quote! {
            #[automatically_derived]
            impl #agg::Aggregate for #ty {
                fn event_version(_: &str) -> ::core::option::Option<u32> { ::core::unreachable!() }
                fn apply_stored(&mut self, _: &str, _: #p::serde_json::Value) -> #p::Result<()> { ::core::unreachable!() }
            }
        }
    };

    // Only the first method for an event or a command is expanded: a second one is an
    // error already, and its impls would add conflicting ones.
    let key = |t: &syn::Type| t.to_token_stream().to_string();
    let mut seen = std::collections::HashSet::new();
    // `Apply<Self>` for each applied event: the bound that makes raising an event with
    // no `#[apply]` a compile error.
    let applies = b.applies.iter().filter_map(|a| {
        let event = a.event.as_ref()?;
        if !seen.insert(key(event)) {
            return None;
        }
        let method = &a.method;
        let body = if complete {
            quote!(<#ty>::#method(aggregate, self))
        } else {
            quote!(::core::unreachable!())
        };
        Some(quote_spanned! {event.span()=>
            #[automatically_derived]
            impl #agg::Apply<#ty> for #event {
                fn apply_to(&self, aggregate: &mut #ty) { #body }
            }
        })
    });

    // `Handles<C>` and the bus registration for each command method.
    let mut seen = std::collections::HashSet::new();
    let commands = b.commands.iter().filter_map(|c| {
        let command = c.command.as_ref()?;
        if !seen.insert(key(command)) {
            return None;
        }
        let method = &c.method.ident;
        let handler = format!("{}::{}", type_name(ty), method);
        let args = c.method.params.iter().map(|p| match p.role {
            Role::Context => quote!(ctx),
            _ => quote!(command),
        });
        let out_span = c.method.output.as_ref().map_or_else(|| method.span(), |o| o.span());
        let call = respan_shallow(
            quote!(::core::convert::identity::<#p::Result<#agg::Events<Self>>>(<#ty>::#method(self, #(#args),*))),
            out_span,
        );
        let rules: Vec<TokenStream> = b
            .rules
            .iter()
            .filter(|r| r.command.as_ref().map(key) == Some(key(command)))
            .map(|r| {
                let ident = &r.method.ident;
                let name = ident.to_string();
                let code = &r.code;
                let check = quote!(__flext_rules.check(#name, #code, <#ty>::#ident(self, command)));
                let check = match &r.method.output {
                    Some(ret) => respan(check, ret.span()),
                    None => check,
                };
                quote!(#check?;)
            })
            .collect();
        let rules = (!rules.is_empty()).then(|| {
            quote! {
                let mut __flext_rules = #p::Rules::new(#p::RuleMode::CollectAll);
                #(#rules)*
                __flext_rules.finish()?;
            }
        });
        let handles = if complete {
            // The command's own requirements, checked once each, at the command type.
            let id = respan(quote!(#agg::aggregate_id_of::<#command>), command.span());
            let answer = respan(quote!(#agg::answer::<#command>), command.span());
            quote! {
                fn aggregate_id_of(command: &#command) -> ::std::string::String { #id(command) }
                fn answer(appended: #agg::Appended) -> <#command as #p::Command>::Output { #answer(appended) }
                #[allow(unused_variables)]
                fn handle(&self, command: &#command, ctx: &#p::Context) -> #p::Result<#agg::Events<Self>> {
                    #rules
                    #call
                }
            }
        } else {
            quote! {
                fn aggregate_id_of(_: &#command) -> ::std::string::String { ::core::unreachable!() }
                fn answer(_: #agg::Appended) -> <#command as #p::Command>::Output { ::core::unreachable!() }
                fn handle(&self, _: &#command, _: &#p::Context) -> #p::Result<#agg::Events<Self>> { ::core::unreachable!() }
            }
        };
        let handles = quote_spanned! {command.span()=>
            #[automatically_derived]
            impl #agg::Handles<#command> for #ty {
                #handles
            }
        };
        let one = respan_shallow(
            quote!(impl #p::OneHandlerPerCommandOrQuery for #command { type Handler = __FlextHandler; }),
            method.span(),
        );
        let handler_for = quote! {
            #[doc(hidden)]
            pub struct __FlextHandler;
            #[automatically_derived]
            impl #p::HandlerFor<#command> for __FlextHandler {
                type Output = <#command as #p::Command>::Output;
                const TAKES_CONTEXT: bool = true;
                const HANDLER: &'static str = #handler;
                fn handle<'__flext_a>(
                    __flext_message: #command,
                    __flext_ctx: &'__flext_a #p::Context,
                    __flext_bus: &'__flext_a #p::Bus,
                ) -> impl ::core::future::Future<Output = #p::Result<Self::Output>> + ::core::marker::Send + '__flext_a {
                    #agg::aggregate_send_local::<#ty, #command>(#handler, __flext_message, __flext_ctx, __flext_bus)
                }
            }
            #[automatically_derived]
            #one
        };
        let registration = complete.then(|| {
            let line = quote_spanned!(method.span()=> ::core::line!());
            quote! {
                fn __flext_build(__flext_state: &#p::StateMap) -> #p::Result<#p::ErasedHandler> {
                    #agg::aggregate_command::<#ty, #command>(#handler, __flext_state)
                }
                #p::inventory::submit! {
                    #p::HandlerRegistration::__new(
                        #p::MessageKind::Command,
                        <#command as #p::Message>::NAME,
                        ::core::any::TypeId::of::<#command>,
                        #handler,
                        ::core::module_path!(),
                        ::core::file!(),
                        #line,
                        __flext_build,
                    )
                }
            }
        });
        Some(quote! {
            #handles
            const _: () = {
                #handler_for
                #registration
            };
        })
    });

    quote! {
        #item
        #aggregate
        #(#applies)*
        #(#commands)*
    }
}
