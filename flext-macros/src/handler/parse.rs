//! Handler attribute input -> model: the message type, what each other parameter
//! receives, the output.

use proc_macro2::TokenStream;
use quote::quote;

use crate::common::kind::Kind;
use crate::common::options::{self, Spec};
use crate::common::sig::{Method, Receiver, Role};
use crate::common::symbol::*;
use crate::common::util::take_attrs;
use crate::common::{Ctxt, Krate, error_at};

/// One handler function or method.
pub struct HandlerDef {
    pub kind: Kind,
    pub krate: Krate,
    pub external: bool,
    pub method: Method,
    /// `Some(T)` for a method of `#[handlers] impl T`.
    pub receiver: Option<Box<syn::Type>>,
    /// The message type: the first parameter that is neither the context nor the bus.
    pub message: Option<Box<syn::Type>>,
}

/// `#[command_handler]` and friends on a free function.
pub struct Handler {
    pub item: syn::ItemFn,
    pub def: HandlerDef,
}

/// `#[handlers]` on an impl block.
pub struct HandlerImpl {
    pub item: syn::ItemImpl,
    pub handlers: Vec<HandlerDef>,
}

fn parse_args(cx: &Ctxt, kind: Kind, args: TokenStream) -> (bool, Krate) {
    let spec = Spec {
        attr: kind.handler_attr(),
        allowed: &[EXTERNAL, CRATE],
        repeatable: &[],
    };
    let mut external = false;
    let mut krate = None;
    options::parse(cx, &spec, args, |key, meta| {
        match key {
            EXTERNAL => external = options::flag(meta).map(|_| true)?,
            _ => krate = Some(options::path(meta)?),
        }
        Ok(())
    });
    (external, Krate::new(krate))
}

impl Handler {
    pub fn from_fn(cx: &Ctxt, kind: Kind, args: TokenStream, item: syn::ItemFn) -> Handler {
        let (external, krate) = parse_args(cx, kind, args);
        let def = HandlerDef::new(cx, kind, krate, external, &item.sig, None);
        Handler { item, def }
    }
}

impl HandlerImpl {
    pub fn from_impl(cx: &Ctxt, args: TokenStream, item: syn::ItemImpl) -> HandlerImpl {
        if !args.is_empty() {
            cx.push(error_at(
                &args,
                "`#[handlers]` takes no options; put them on the method attributes",
            ));
        }
        let mut item = item;
        if let Some(g) = item.generics.params.first() {
            cx.push(error_at(
                g,
                "`#[handlers]` cannot be generic: the bus registers one handler per concrete type",
            ));
        }
        let self_ty = item.self_ty.clone();
        let names: Vec<&'static str> = Kind::ALL.iter().map(|k| k.handler_attr()).collect();
        let mut handlers = Vec::new();
        for impl_item in &mut item.items {
            let syn::ImplItem::Fn(f) = impl_item else {
                continue;
            };
            let ours = take_attrs(&mut f.attrs, &names);
            if let Some((_, second)) = ours.get(1) {
                cx.push(error_at(
                    second,
                    "a method handles one message, so it has one handler attribute: remove this one",
                ));
            }
            let Some((_, attr)) = ours.into_iter().next() else {
                continue;
            };
            let Some(kind) = Kind::from_handler_attr(&attr) else {
                continue;
            };
            let args = match &attr.meta {
                syn::Meta::List(list) => list.tokens.clone(),
                _ => TokenStream::new(),
            };
            let (external, krate) = parse_args(cx, kind, args);
            handlers.push(HandlerDef::new(
                cx,
                kind,
                krate,
                external,
                &f.sig,
                Some(&self_ty),
            ));
        }
        if handlers.is_empty() && !cx.has_errors() {
            cx.push(error_at(&item.self_ty, "`#[handlers]` found no method marked `#[command_handler]`, `#[query_handler]` or `#[event_handler]`"));
        }
        HandlerImpl { item, handlers }
    }
}

impl HandlerDef {
    fn new(
        cx: &Ctxt,
        kind: Kind,
        krate: Krate,
        external: bool,
        sig: &syn::Signature,
        receiver: Option<&syn::Type>,
    ) -> HandlerDef {
        let role = format!("`#[{}]`", kind.handler_attr());
        let method = Method::from_sig(sig);
        match (&method.receiver, receiver) {
            (Receiver::Missing, None) | (Receiver::Ref, Some(_)) => {}
            (Receiver::Missing, Some(_)) => cx.push(error_at(
                &method.ident,
                format!("a {role} method takes `&self`: `fn {}(&self, message: M, ...)`", method.ident),
            )),
            (Receiver::Ref | Receiver::RefMut(_) | Receiver::Other(_), None) => {
                let span = sig.inputs.first().map(|a| quote!(#a)).unwrap_or_default();
                cx.push(error_at(&span, format!("a {role} on a method needs `#[handlers]` on the enclosing `impl`, which tells the bus where the handler value comes from")));
            }
            (Receiver::RefMut(r) | Receiver::Other(r), Some(_)) => cx.push(error_at(
                r,
                format!("a {role} method takes `&self`; the bus shares one handler value between concurrent dispatches"),
            )),
        }
        let message = method.params.iter().find_map(|p| match &p.role {
            Role::Value => Some(p.ty.clone()),
            Role::Ref(inner) => {
                cx.push(error_at(
                    &p.ty,
                    format!(
                        "a {role} takes the message by value: write `{}`",
                        quote!(#inner)
                    ),
                ));
                None
            }
            _ => None,
        });
        if message.is_none() && method.refs().next().is_none() {
            cx.push(error_at(
                &method.ident,
                format!(
                    "a {role} takes the message as its first parameter: `fn {}(message: M, ...)`, with `M` the message type",
                    method.ident
                ),
            ));
        }
        method.reject_generics(
            cx,
            role.as_str(),
            "the bus registers one handler per concrete message type",
        );
        if method.output.is_none() {
            let what = if kind == Kind::Event {
                "Result<()>"
            } else {
                "Result<Output>"
            };
            cx.push(error_at(
                &method.ident,
                format!(
                    "a {role} returns `flext::{what}`: add `-> {what}` to `{}`",
                    method.ident
                ),
            ));
        }
        HandlerDef {
            kind,
            krate,
            external,
            method,
            receiver: receiver.map(|t| Box::new(t.clone())),
            message,
        }
    }
}
