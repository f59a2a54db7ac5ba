//! `#[command_handler]`, `#[query_handler]`, `#[event_handler]` on free functions, and
//! `#[handlers]` on an `impl` whose methods carry those attributes: register the handler
//! at link time with a `build` function that extracts its injected state once, when the
//! bus is built.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::common::{
    Errors, error_at, is_context, parse_item, respan, respan_shallow, with_errors,
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Command,
    Query,
    Event,
}

impl Kind {
    fn attr(self) -> &'static str {
        match self {
            Kind::Command => "command_handler",
            Kind::Query => "query_handler",
            Kind::Event => "event_handler",
        }
    }

    fn from_attr(attr: &syn::Attribute) -> Option<Kind> {
        let last = attr.path().segments.last()?;
        [Kind::Command, Kind::Query, Kind::Event]
            .into_iter()
            .find(|k| last.ident == k.attr())
    }
}

#[derive(Default)]
struct Args {
    external: bool,
    krate: Option<syn::Path>,
}

fn parse_args(kind: Kind, args: TokenStream, errors: &mut Errors) -> Args {
    let mut out = Args::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("external") {
            out.external = true;
            Ok(())
        } else if meta.path.is_ident("crate") {
            out.krate = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            Err(meta.error(format!(
                "unknown option of `#[{}]`; the options are `external` (the message is defined in another crate) and `crate = path`",
                kind.attr()
            )))
        }
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        errors.push(e);
    }
    out
}

enum Param {
    Message(Box<syn::Type>),
    Context,
    Bus,
    Injected(Box<syn::Type>),
}

struct HandlerFn {
    kind: Kind,
    args: Args,
    ident: syn::Ident,
    /// `Some(T)` for a method of `#[handlers] impl T`.
    receiver: Option<Box<syn::Type>>,
    is_async: bool,
    params: Vec<Param>,
    output: Box<syn::Type>,
}

fn is_bus(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Reference(r) if r.mutability.is_none() => matches!(
            &*r.elem,
            syn::Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Bus")
        ),
        _ => false,
    }
}

fn parse_fn(
    kind: Kind,
    args: Args,
    sig: &syn::Signature,
    receiver: Option<&syn::Type>,
    errors: &mut Errors,
) -> Option<HandlerFn> {
    let role = format!("`#[{}]`", kind.attr());
    let mut params = Vec::new();
    let mut ok = true;
    for input in &sig.inputs {
        match input {
            syn::FnArg::Receiver(r) => {
                if receiver.is_none() {
                    errors.push(error_at(r, format!("a {role} on a method needs `#[handlers]` on the enclosing `impl`, which tells the bus where the handler value comes from")));
                    ok = false;
                } else if r.reference.is_none() || r.mutability.is_some() {
                    errors.push(error_at(r, format!("a {role} method takes `&self`; the bus shares one handler value between concurrent dispatches")));
                    ok = false;
                }
            }
            syn::FnArg::Typed(pt) => {
                let ty = &pt.ty;
                if is_context(ty) {
                    params.push(Param::Context);
                } else if is_bus(ty) {
                    params.push(Param::Bus);
                } else if !params.iter().any(|p| matches!(p, Param::Message(_))) {
                    if let syn::Type::Reference(r) = &**ty {
                        errors.push(error_at(
                            r,
                            format!(
                                "a {role} takes the message by value: write `{}`",
                                quote!(#r).to_string().trim_start_matches('&').trim()
                            ),
                        ));
                        ok = false;
                    }
                    params.push(Param::Message(ty.clone()));
                } else {
                    params.push(Param::Injected(ty.clone()));
                }
            }
        }
    }
    if receiver.is_some() && !matches!(sig.inputs.first(), Some(syn::FnArg::Receiver(_))) {
        errors.push(error_at(
            &sig.ident,
            format!(
                "a {role} method takes `&self`: `fn {}(&self, message: M, ...)`",
                sig.ident
            ),
        ));
        ok = false;
    }
    if !params.iter().any(|p| matches!(p, Param::Message(_))) {
        errors.push(error_at(
            &sig.ident,
            format!(
                "a {role} takes the message as its first parameter: `fn {}(message: MyMessage, ...)`",
                sig.ident
            ),
        ));
        ok = false;
    }
    if let Some(param) = sig.generics.params.first() {
        errors.push(error_at(param, format!("a {role} cannot be generic: the bus registers one handler per concrete message type")));
        ok = false;
    }
    let output = match &sig.output {
        syn::ReturnType::Type(_, ty) => ty.clone(),
        syn::ReturnType::Default => {
            let what = if kind == Kind::Event {
                "Result<()>".to_owned()
            } else {
                "Result<Output>".to_owned()
            };
            errors.push(error_at(
                &sig.ident,
                format!(
                    "a {role} returns `flext::{what}`: add `-> {what}` to `{}`",
                    sig.ident
                ),
            ));
            return None;
        }
    };
    ok.then(|| HandlerFn {
        kind,
        args,
        ident: sig.ident.clone(),
        receiver: receiver.map(|t| Box::new(t.clone())),
        is_async: sig.asyncness.is_some(),
        params,
        output,
    })
}

/// `#[command_handler]` and friends on a free function.
pub fn handler(kind: Kind, args: TokenStream, input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = parse_args(kind, args, &mut errors);
    let item: syn::ItemFn = match parse_item(
        &input,
        format!(
            "`#[{}]` goes on a function (or on a method inside `#[handlers] impl`)",
            kind.attr()
        ),
    ) {
        Ok(item) => item,
        Err(tokens) => return tokens,
    };
    let handler = parse_fn(kind, args, &item.sig, None, &mut errors);
    match (errors.finish(), handler) {
        (Ok(()), Some(h)) => {
            let registration = expand(&h);
            quote!(#item #registration)
        }
        (Err(e), _) => with_errors(input, e),
        (Ok(()), None) => input,
    }
}

/// `#[handlers]` on an `impl` block: registers every method marked with a handler
/// attribute; the `&self` value is the bus's `State<Self>`.
pub fn handlers(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    if !args.is_empty() {
        errors.push(error_at(
            &args,
            "`#[handlers]` takes no options; put them on the method attributes",
        ));
    }
    let mut item: syn::ItemImpl = match parse_item(
        &input,
        "`#[handlers]` goes on an `impl` block whose methods carry `#[command_handler]`, `#[query_handler]` or `#[event_handler]`",
    ) {
        Ok(item) => item,
        Err(tokens) => return tokens,
    };
    if let Some(g) = item.generics.params.first() {
        errors.push(error_at(
            g,
            "`#[handlers]` cannot be generic: the bus registers one handler per concrete type",
        ));
    }
    let self_ty = item.self_ty.clone();
    let mut found = Vec::new();
    for impl_item in &mut item.items {
        let syn::ImplItem::Fn(f) = impl_item else {
            continue;
        };
        let mut attr = None;
        f.attrs.retain(|a| match Kind::from_attr(a) {
            Some(kind) if attr.is_none() => {
                attr = Some((kind, a.clone()));
                false
            }
            _ => true,
        });
        let Some((kind, attr)) = attr else { continue };
        let args = match &attr.meta {
            syn::Meta::List(list) => parse_args(kind, list.tokens.clone(), &mut errors),
            _ => Args::default(),
        };
        if let Some(h) = parse_fn(kind, args, &f.sig, Some(&self_ty), &mut errors) {
            found.push(h);
        }
    }
    if found.is_empty() && errors.is_empty() {
        errors.push(error_at(&item.self_ty, "`#[handlers]` found no method marked `#[command_handler]`, `#[query_handler]` or `#[event_handler]`"));
    }
    match errors.finish() {
        Ok(()) => {
            let registrations = found.iter().map(expand);
            quote!(#item #(#registrations)*)
        }
        Err(e) => with_errors(quote!(#item), e),
    }
}

fn expand(h: &HandlerFn) -> TokenStream {
    let krate = h
        .args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::flext));
    let ident = &h.ident;
    let message = h
        .params
        .iter()
        .find_map(|p| match p {
            Param::Message(ty) => Some(ty),
            _ => None,
        })
        // invariant: parse_fn returns no handler without a message parameter
        .expect("parse_fn rejects handlers without a message parameter");
    let name = match &h.receiver {
        Some(ty) => format!("{}::{}", quote!(#ty).to_string().replace(' ', ""), ident),
        None => ident.to_string(),
    };
    let takes_context = h.params.iter().any(|p| matches!(p, Param::Context));

    let mut extract = TokenStream::new();
    let mut deps = Vec::new();
    if let Some(ty) = &h.receiver {
        extract.extend(quote_spanned! {ty.span()=>
            let __flext_self = <#krate::State<#ty> as #krate::FromState>::from_state(__flext_state, #name)?;
        });
        deps.push(format_ident!("__flext_self"));
    }
    let mut args = Vec::new();
    for (i, p) in h.params.iter().enumerate() {
        match p {
            Param::Message(_) => args.push(quote!(__flext_message)),
            Param::Context => args.push(quote!(__flext_ctx)),
            Param::Bus => args.push(quote!(__flext_bus)),
            Param::Injected(ty) => {
                let dep = format_ident!("__flext_dep{}", i);
                let from = quote!(<#ty as #krate::FromState>::from_state(__flext_state, #name));
                let from = respan(from, ty.span());
                extract.extend(quote! { let #dep = #from?; });
                let share = respan(quote!(<#ty as #krate::FromState>::share(&#dep)), ty.span());
                args.push(share);
                deps.push(dep);
            }
        }
    }

    let (ctor, kind_variant) = match (h.kind, h.is_async) {
        (Kind::Command, false) => (quote!(command_sync), quote!(Command)),
        (Kind::Command, true) => (quote!(command_async), quote!(Command)),
        (Kind::Query, false) => (quote!(query_sync), quote!(Query)),
        (Kind::Query, true) => (quote!(query_async), quote!(Query)),
        (Kind::Event, false) => (quote!(event_sync), quote!(Event)),
        (Kind::Event, true) => (quote!(event_async), quote!(Event)),
    };
    let out_span = h.output.span();
    let args = quote!(#(#args),*);
    let callee = match &h.receiver {
        Some(ty) => quote!(<#ty>::#ident(&*__flext_self, #args)),
        None => quote!(#ident(#args)),
    };
    // The call's result is checked against the message's output: a mismatch is reported
    // on the user's return type, while errors in the arguments keep their own spans.
    let callee = respan_shallow(callee, out_span);
    let wrap = |inner: TokenStream| {
        respan_shallow(
            quote!(::core::convert::identity::<#krate::Result<_>>(#inner)),
            out_span,
        )
    };
    let await_ = respan_shallow(quote!(.await), out_span);
    // The call with its result checked against the message's output.
    let call = if h.is_async {
        wrap(quote!(#callee #await_))
    } else {
        wrap(callee)
    };
    let body = if h.is_async {
        let clones = deps.iter().map(|d| quote!(let #d = #d.clone();));
        quote! {
            #(#clones)*
            ::std::boxed::Box::pin(async move { #call })
        }
    } else {
        call.clone()
    };
    let ctor_path = quote!(#krate::__private::#ctor::<#message, _>);
    // Names the message's kind at the message's type, before the handler is wrapped.
    let assert_kind = format_ident!("assert_{}", kind_variant.to_string().to_lowercase());
    let kind_check = respan(
        quote!(#krate::__private::#assert_kind::<#message>),
        message.span(),
    );
    let kind_check = quote! {
        #[allow(dead_code)]
        fn __flext_kind_check() { let _ = #kind_check; }
    };
    let line = quote_spanned!(ident.span()=> ::core::line!());
    // The handler known to the compiler: a direct call for `Bus::send_local`, and the
    // impl whose second copy is the "two handlers" compile error.
    let local_output = respan(
        quote!(<#message as #krate::#kind_variant>::Output),
        message.span(),
    );
    let marker = (h.kind != Kind::Event && !h.args.external).then(|| {
        let local = quote! {
            impl #krate::bus::LocalHandler for #message {
                type Output = #local_output;
                const TAKES_CONTEXT: bool = #takes_context;
                const HANDLER: &'static str = #name;

                #[allow(unused_variables)]
                fn handle<'__flext_a>(
                    __flext_message: Self,
                    __flext_ctx: &'__flext_a #krate::Context,
                    __flext_bus: &'__flext_a #krate::Bus,
                ) -> impl ::core::future::Future<Output = #krate::Result<Self::Output>> + ::core::marker::Send + '__flext_a {
                    async move {
                        let __flext_state = __flext_bus.__state();
                        #extract
                        #call
                    }
                }
            }
        };
        // The impl header on the handler's name, so that E0119 names both handlers; the
        // body keeps its own spans.
        let local = respan_shallow(local, ident.span());
        quote!(#[automatically_derived] #local)
    });
    let unused = deps.is_empty().then(|| quote!(let _ = __flext_state;));
    // With a `LocalHandler` impl its `Output` already names a wrong kind at the type.
    let kind_check = marker.is_none().then_some(kind_check);
    quote! {
        const _: () = {
            #kind_check

            fn __flext_build(
                __flext_state: &#krate::__private::StateMap,
            ) -> #krate::Result<#krate::__private::ErasedHandler> {
                #unused
                #extract
                ::core::result::Result::Ok(#ctor_path(
                    #name,
                    #takes_context,
                    move |__flext_message, __flext_ctx, __flext_bus| {
                        let _ = (&__flext_ctx, &__flext_bus);
                        #body
                    },
                ))
            }

            #krate::__private::inventory::submit! {
                #krate::HandlerRegistration {
                    kind: #krate::MessageKind::#kind_variant,
                    message: <#message as #krate::Message>::NAME,
                    message_type: ::core::any::TypeId::of::<#message>,
                    handler: #name,
                    module: ::core::module_path!(),
                    file: ::core::file!(),
                    line: #line,
                    build: __flext_build,
                }
            }

            #marker
        };
    }
}
