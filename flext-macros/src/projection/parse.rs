//! `#[projection]` input -> a model that keeps the user's spans.

use proc_macro2::TokenStream;
use quote::ToTokens;

use crate::common::options::{self, Spec};
use crate::common::symbol::*;
use crate::common::util::{referent, take_attrs, type_name};
use crate::common::{Ctxt, Krate, error_at};

pub struct Handler {
    pub method: syn::Ident,
    /// The event type (`E` of `&E`), when the signature has one.
    pub event: Option<syn::Type>,
    /// Whether it also takes the envelope (`&EventEnvelope`) last.
    pub envelope: bool,
    /// Whether it writes through `&mut ProjectionWrites` (portable) rather than a
    /// SQLite `&SqliteUnitOfWork`; `None` when the signature has neither.
    pub portable: Option<bool>,
    /// The unit of work's type as written, for errors.
    pub uow_ty: Option<Box<syn::Type>>,
}

pub struct ProjectionDef {
    pub item: syn::ItemImpl,
    pub krate: Krate,
    pub name: String,
    pub tables: Vec<String>,
    pub handlers: Vec<Handler>,
    /// Whether the impl has a `fn setup(&self, uow: &SqliteUnitOfWork)`.
    pub setup: bool,
    /// Whether the methods write through `&mut ProjectionWrites`: the impl is then the
    /// backend-neutral `PortableProjection`.
    pub portable: bool,
}

const SPEC: Spec<'static> = Spec {
    attr: PROJECTION,
    allowed: &[NAME, TABLES, CRATE],
    repeatable: &[],
};

fn last_is(ty: &syn::Type, name: &str) -> bool {
    match ty {
        syn::Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == name),
        _ => false,
    }
}

impl ProjectionDef {
    pub fn from_syn(cx: &Ctxt, args: TokenStream, mut item: syn::ItemImpl) -> ProjectionDef {
        let mut name = None;
        let mut tables = Vec::new();
        let mut krate = None;
        options::parse(cx, &SPEC, args, |key, meta| {
            match key {
                NAME => name = Some(options::string(meta)?.value()),
                TABLES => {
                    let value = meta.value()?;
                    let list: syn::ExprArray = value.parse()?;
                    for e in list.elems {
                        match e {
                            syn::Expr::Lit(syn::ExprLit {
                                lit: syn::Lit::Str(s),
                                ..
                            }) => tables.push(s.value()),
                            other => {
                                return Err(syn::Error::new_spanned(
                                    other,
                                    "write the tables as strings: `tables = [\"balances\"]`",
                                ));
                            }
                        }
                    }
                }
                _ => krate = Some(options::path(meta)?),
            }
            Ok(())
        });
        if let Some((_, path, _)) = &item.trait_ {
            cx.push(error_at(path, format!("`#[projection]` goes on an inherent `impl {} {{ ... }}` block: it writes the `SqliteProjection` impl itself", type_name(&item.self_ty))));
        }
        let mut handlers = Vec::new();
        let mut setup = false;
        let mut setup_portable: Option<(Option<bool>, Box<syn::Type>)> = None;
        for impl_item in &mut item.items {
            let syn::ImplItem::Fn(f) = impl_item else {
                continue;
            };
            let ours = take_attrs(&mut f.attrs, &[APPLY]);
            if f.sig.ident == "setup" && ours.is_empty() {
                setup = true;
                setup_portable = f.sig.inputs.iter().find_map(|a| match a {
                    syn::FnArg::Typed(t) => Some((uow_kind(&t.ty), t.ty.clone())),
                    syn::FnArg::Receiver(_) => None,
                });
                continue;
            }
            if ours.is_empty() {
                continue;
            }
            let signature = Ctxt::new();
            handlers.push(read_handler(&signature, &f.sig));
            cx.push_as_one(signature);
        }
        let portable = handlers.iter().find_map(|h| h.portable).unwrap_or(false);
        for h in &handlers {
            if let (Some(p), Some(ty)) = (h.portable, &h.uow_ty)
                && p != portable
            {
                cx.push(error_at(ty, mixed(portable)));
            }
        }
        if let Some((Some(p), ty)) = &setup_portable
            && *p != portable
            && !handlers.is_empty()
        {
            cx.push(error_at(ty, mixed(portable)));
        }
        if handlers.is_empty() {
            cx.push(error_at(&item.self_ty, format!("a projection applies at least one event: add `#[apply] fn on_event(&self, uow: &SqliteUnitOfWork, event: &E) -> Result<()>` to `impl {}`, with `E` an `#[event]` type", type_name(&item.self_ty))));
        }
        ProjectionDef {
            name: name.unwrap_or_else(|| type_name(&item.self_ty)),
            krate: Krate::new(krate),
            item,
            tables,
            handlers,
            setup,
            portable,
        }
    }
}

fn mixed(portable: bool) -> &'static str {
    if portable {
        "this projection's `#[apply]` methods write through `&mut ProjectionWrites` (on every backend): take `writes: &mut ProjectionWrites` here too"
    } else {
        "this projection's `#[apply]` methods write through the SQLite `&SqliteUnitOfWork`: take `uow: &SqliteUnitOfWork` here too, or move them all to `&mut ProjectionWrites` to run on every backend"
    }
}

/// `Some(false)` for `&SqliteUnitOfWork`, `Some(true)` for `&mut ProjectionWrites`.
fn uow_kind(ty: &syn::Type) -> Option<bool> {
    match ty {
        syn::Type::Reference(r)
            if r.mutability.is_some() && last_is(&r.elem, "ProjectionWrites") =>
        {
            Some(true)
        }
        syn::Type::Reference(r)
            if r.mutability.is_none() && last_is(&r.elem, "SqliteUnitOfWork") =>
        {
            Some(false)
        }
        syn::Type::Group(g) => uow_kind(&g.elem),
        syn::Type::Paren(p) => uow_kind(&p.elem),
        _ => None,
    }
}

fn read_handler(cx: &Ctxt, sig: &syn::Signature) -> Handler {
    let ident = &sig.ident;
    // The signature that works, with the user's own unit of work and event types where
    // the method names them.
    let mut uow_name = "&SqliteUnitOfWork".to_owned();
    let mut event_name = None;
    for arg in &sig.inputs {
        let syn::FnArg::Typed(t) = arg else { continue };
        if uow_kind(&t.ty).is_some() {
            uow_name = t.ty.to_token_stream().to_string().replace("& ", "&");
        } else if event_name.is_none() {
            let ty = referent(&t.ty).unwrap_or(&t.ty);
            if !last_is(ty, "EventEnvelope") {
                event_name = Some(type_name(ty));
            }
        }
    }
    let usage = match &event_name {
        Some(e) => format!("`fn {ident}(&self, uow: {uow_name}, event: &{e}) -> Result<()>`"),
        None => format!(
            "`fn {ident}(&self, uow: {uow_name}, event: &E) -> Result<()>`, with `E` the `#[event]` type it applies"
        ),
    };
    match sig.receiver() {
        Some(r) if r.reference.is_some() && r.mutability.is_none() && r.colon_token.is_none() => {}
        Some(r) => cx.push(error_at(r, format!("a projection's `#[apply]` method takes `&self` (its state is in its tables, written through the unit of work): {usage}"))),
        None => cx.push(error_at(ident, format!("a projection's `#[apply]` method takes `&self`: {usage}"))),
    }
    if let Some(a) = &sig.asyncness {
        cx.push(error_at(a, "a projection's `#[apply]` method cannot be `async`: it runs inside the database transaction that moves the checkpoint"));
    }
    if matches!(sig.output, syn::ReturnType::Default) {
        cx.push(error_at(ident, format!("a projection's `#[apply]` method returns `Result<()>`: an error stops the projection at that event. {usage}")));
    }
    let typed: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            syn::FnArg::Typed(t) => Some(t),
            syn::FnArg::Receiver(_) => None,
        })
        .collect();
    let mut event = None;
    let mut envelope = false;
    let mut portable = None;
    let mut uow_ty = None;
    match typed.as_slice() {
        [uow, rest @ ..] if uow_kind(&uow.ty).is_some() => {
            portable = uow_kind(&uow.ty);
            uow_ty = Some(uow.ty.clone());
            match rest {
                [e] | [e, _] => match referent(&e.ty) {
                    Some(t) => event = Some(t.clone()),
                    None => cx.push(error_at(&e.ty, format!("take the event by reference: `event: &{}`", e.ty.to_token_stream()))),
                },
                _ => cx.push(error_at(ident, format!("a projection's `#[apply]` method takes the unit of work and one event: {usage}"))),
            }
            if let [_, env] = rest {
                if referent(&env.ty).is_some_and(|t| last_is(t, "EventEnvelope")) {
                    envelope = true;
                } else {
                    cx.push(error_at(&env.ty, "after the event, a projection's `#[apply]` method may take only `&EventEnvelope` (the event's id, stream, position, time)"));
                }
            }
        }
        [first, ..] => cx.push(error_at(
            &first.ty,
            format!("a projection's `#[apply]` method takes the unit of work first: {usage}"),
        )),
        [] => cx.push(error_at(
            ident,
            format!(
                "a projection's `#[apply]` method takes the unit of work and the event: {usage}"
            ),
        )),
    }
    Handler {
        method: ident.clone(),
        event,
        envelope,
        portable,
        uow_ty,
    }
}
