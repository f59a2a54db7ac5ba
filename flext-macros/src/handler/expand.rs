//! Model -> tokens: the registration (`inventory`) with a `build` function that extracts
//! injected state once, when the bus is built; and, for a command or query in the
//! message's crate, the compiler-known handler `Bus::send_local` calls. The user's
//! function is called in one place, a generated `__flext_call`, which both call.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::parse::HandlerDef;
use crate::common::kind::Kind;
use crate::common::sig::Role;
use crate::common::{respan, respan_shallow};

/// The handler's registration and compiler-known impl; with `complete` false (the
/// fallback beside errors), only a stand-in of the latter, so that `send_local` adds no
/// error.
pub fn handler(h: &HandlerDef, complete: bool) -> TokenStream {
    let Some(message) = &h.message else {
        return TokenStream::new();
    };
    let p = h.krate.private();
    let ident = &h.method.ident;
    let name = match &h.receiver {
        Some(ty) => format!("{}::{}", quote!(#ty).to_string().replace(' ', ""), ident),
        None => ident.to_string(),
    };
    let takes_context = h.method.takes_context();
    let variant = h.kind.variant();
    let local = h.kind.is_request() && !h.external;

    // Injected state, extracted from the bus's state map: once at build for the erased
    // handler, at each call for `send_local`.
    let mut extract = TokenStream::new();
    let mut deps = Vec::new();
    // `__flext_call`'s parameters after the message, context and bus, and what the
    // callers pass for them.
    let mut params = Vec::new();
    let mut passed = Vec::new();
    if let Some(ty) = &h.receiver {
        extract.extend(quote_spanned! {ty.span()=>
            let __flext_self = <#p::State<#ty> as #p::FromState>::from_state(__flext_state, #name)?;
        });
        deps.push(format_ident!("__flext_self"));
        params.push(quote!(__flext_self: &'__flext_a #ty));
        passed.push(quote!(&*__flext_self));
    }
    let mut args = Vec::new();
    let mut seen_message = false;
    for (i, param) in h.method.params.iter().enumerate() {
        let ty = &param.ty;
        match &param.role {
            Role::Value if !seen_message => {
                seen_message = true;
                args.push(quote!(__flext_message));
            }
            Role::Context => args.push(quote!(__flext_ctx)),
            Role::Bus => args.push(quote!(__flext_bus)),
            Role::Value | Role::Ref(_) => {
                let dep = format_ident!("__flext_dep{}", i);
                let from = respan(
                    quote!(<#ty as #p::FromState>::from_state(__flext_state, #name)),
                    ty.span(),
                );
                extract.extend(quote! { let #dep = #from?; });
                params.push(quote!(#dep: #ty));
                passed.push(respan(
                    quote!(<#ty as #p::FromState>::share(&#dep)),
                    ty.span(),
                ));
                args.push(quote!(#dep));
                deps.push(dep);
            }
        }
    }

    let out_span = h
        .method
        .output
        .as_ref()
        .map_or_else(|| ident.span(), |o| o.span());
    let callee = match &h.receiver {
        Some(ty) => quote!(<#ty>::#ident(__flext_self, #(#args),*)),
        None => quote!(#ident(#(#args),*)),
    };
    // The one call of the user's function. It returns what the user's function returns;
    // the callers check that against the message's output.
    let ret = h
        .method
        .output
        .as_ref()
        .map_or_else(|| quote!(()), |t| quote!(#t));
    let ret = if h.method.is_async() {
        respan_shallow(
            quote!(impl ::core::future::Future<Output = #ret> + ::core::marker::Send + '__flext_a),
            out_span,
        )
    } else {
        ret
    };
    let call_fn = quote! {
        #[allow(unused_variables, clippy::too_many_arguments)]
        #[inline]
        fn __flext_call<'__flext_a>(
            __flext_message: #message,
            __flext_ctx: &'__flext_a #p::Context,
            __flext_bus: &'__flext_a #p::Bus,
            #(#params),*
        ) -> #ret {
            #callee
        }
    };
    // The call's result is checked against the message's output: a mismatch is reported
    // on the user's return type, while errors in the arguments keep their own spans.
    let callee = respan_shallow(
        quote!(__flext_call(__flext_message, __flext_ctx, __flext_bus, #(#passed),*)),
        out_span,
    );
    let await_ = h
        .method
        .asyncness
        .map(|_| respan_shallow(quote!(.await), out_span));
    let call = respan_shallow(
        quote!(::core::convert::identity::<#p::Result<_>>(#callee #await_)),
        out_span,
    );

    // `HandlerFor<M>`: the one place the handler is called; `OneHandlerPerCommandOrQuery`
    // for a command or query in this crate, whose second impl is E0119 naming both
    // handlers.
    let output = match h.kind {
        Kind::Event => quote!(()),
        _ => respan(quote!(<#message as #p::ReplyOf>::Reply), message.span()),
    };
    let annotated = respan_shallow(
        quote!({ let __flext_out: #p::Result<Self::Output> = #call; __flext_out }),
        out_span,
    );
    let body = if complete {
        quote! {
            async move {
                let __flext_state = __flext_bus.__state();
                #extract
                #annotated
            }
        }
    } else {
        quote!(async move { ::core::unreachable!() })
    };
    let handler_for = local.then(|| quote! {
        #[doc(hidden)]
        pub struct __FlextHandler;

        #[automatically_derived]
        impl #p::HandlerFor<#message> for __FlextHandler {
            type Output = #output;
            const TAKES_CONTEXT: bool = #takes_context;
            const HANDLER: &'static str = #name;

            #[allow(unused_variables)]
            fn handle<'__flext_a>(
                __flext_message: #message,
                __flext_ctx: &'__flext_a #p::Context,
                __flext_bus: &'__flext_a #p::Bus,
            ) -> impl ::core::future::Future<Output = #p::Result<Self::Output>> + ::core::marker::Send + '__flext_a {
                #body
            }
        }
    });
    let one = local.then(|| {
        // Spanned at the handler's name, so that E0119 names both handlers.
        let one = respan_shallow(
            quote!(impl #p::OneHandlerPerCommandOrQuery for #message { type Handler = __FlextHandler; }),
            ident.span(),
        );
        quote!(#[automatically_derived] #one)
    });
    if !complete {
        return match one {
            Some(one) => quote!(const _: () = { #handler_for #one };),
            None => TokenStream::new(),
        };
    }

    // The kind check, once, at the message type: nothing else the handler generates
    // requires the kind, so a query taken by a `#[command_handler]` is one error.
    let kind_check = {
        let assert = format_ident!("assert_{}", variant.to_string().to_lowercase());
        let check = respan(quote!(#p::#assert::<#message>), message.span());
        quote! {
            #[allow(dead_code)]
            fn __flext_kind_check() { let _ = #check; }
        }
    };
    // The erased handler the bus dispatches through: state extracted once, when the bus
    // is built (a missing state is a construction error), then shared with every call.
    let ctor = match (h.kind, h.method.is_async()) {
        (Kind::Command, false) => quote!(command_sync),
        (Kind::Command, true) => quote!(command_async),
        (Kind::Query, false) => quote!(query_sync),
        (Kind::Query, true) => quote!(query_async),
        (Kind::Event, false) => quote!(event_sync),
        (Kind::Event, true) => quote!(event_async),
    };
    // The same annotation as `send_local`'s: a wrong output is one E0308 at the user's
    // return type (rustc drops the identical second one), not also an E0271 about the
    // boxed future.
    let annotated_erased = respan_shallow(
        quote!({ let __flext_out: #p::Result<#output> = #call; __flext_out }),
        out_span,
    );
    let erased_body = if h.method.is_async() {
        let clones = deps.iter().map(|d| quote!(let #d = #d.clone();));
        quote! {
            #(#clones)*
            ::std::boxed::Box::pin(async move { #annotated_erased })
        }
    } else {
        call.clone()
    };
    let unused = deps.is_empty().then(|| quote!(let _ = __flext_state;));
    let line = quote_spanned!(ident.span()=> ::core::line!());
    quote! {
        const _: () = {
            #call_fn
            #handler_for
            #one
            #kind_check

            fn __flext_build(
                __flext_state: &#p::StateMap,
            ) -> #p::Result<#p::ErasedHandler> {
                #unused
                #extract
                ::core::result::Result::Ok(#p::#ctor::<#message, _>(
                    #name,
                    #takes_context,
                    move |__flext_message, __flext_ctx, __flext_bus| {
                        let _ = (&__flext_ctx, &__flext_bus);
                        #erased_body
                    },
                ))
            }

            #p::inventory::submit! {
                #p::HandlerRegistration::__new(
                    #p::MessageKind::#variant,
                    #p::message_name::<#message>(),
                    ::core::any::TypeId::of::<#message>,
                    #name,
                    ::core::module_path!(),
                    ::core::file!(),
                    #line,
                    __flext_build,
                )
            }
        };
    }
}
