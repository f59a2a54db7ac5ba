//! `#[aggregate]` on the impl, model -> tokens: the `Aggregate` impl, `Apply` for each
//! applied event, `Handles` and the bus registration for each command. The logic lives in
//! the runtime's `aggregate` helpers; what is generated only names the user's items.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;

use super::parse::Behaviour;
use crate::common::sig::Role;
use crate::common::util::type_name;
use crate::common::{respan, respan_shallow};

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
                fn apply_stored(&mut self, name: &str, payload: &#p::serde_json::Value) -> #p::Result<()> {
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
                fn apply_stored(&mut self, _: &str, _: &#p::serde_json::Value) -> #p::Result<()> { ::core::unreachable!() }
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
                        #p::message_name::<#command>(),
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
