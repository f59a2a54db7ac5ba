//! `#[aggregate]` on the struct: the `#[aggregate_id]` field, the type name, snapshots.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};

use crate::common::options::{self, Spec};
use crate::common::symbol::*;
use crate::common::util::take_attrs;
use crate::common::{Ctxt, Krate, error_at, error_at_span};

pub struct Root {
    pub item: syn::ItemStruct,
    pub krate: Krate,
    pub name: String,
    /// The `#[aggregate_id]` field: its name and type.
    pub id: Option<(syn::Ident, syn::Type)>,
    pub snapshot_every: Option<(u64, Span)>,
}

const SPEC: Spec<'static> = Spec {
    attr: AGGREGATE,
    allowed: &[SNAPSHOT_EVERY, NAME, CRATE],
    repeatable: &[],
};

impl Root {
    pub fn from_syn(cx: &Ctxt, args: TokenStream, mut item: syn::ItemStruct) -> Root {
        let mut name = None;
        let mut krate = None;
        let mut snapshot_every = None;
        options::parse(cx, &SPEC, args, |key, meta| {
            match key {
                SNAPSHOT_EVERY => snapshot_every = Some(options::int(meta)?),
                NAME => name = Some(options::string(meta)?.value()),
                _ => krate = Some(options::path(meta)?),
            }
            Ok(())
        });
        if let Some((0, span)) = snapshot_every {
            cx.push(error_at_span(
                span,
                "`snapshot_every` is a number of events, at least 1: write `snapshot_every = 100`, or leave it out for no snapshots",
            ));
        }
        if let Some(g) = item.generics.params.first() {
            cx.push(error_at(
                g,
                "an aggregate cannot be generic: its streams are found by its type's name",
            ));
        }
        let mut id = None;
        match &mut item.fields {
            syn::Fields::Named(fields) => {
                for field in &mut fields.named {
                    let marks = take_attrs(&mut field.attrs, &[AGGREGATE_ID]);
                    let Some((_, mark)) = marks.into_iter().next() else {
                        continue;
                    };
                    match (&id, &field.ident) {
                        (Some((first, _)), _) => cx.push(error_at(
                            &mark,
                            format!("an aggregate has one `#[aggregate_id]` field, and `{first}` is it: remove this one"),
                        )),
                        (None, Some(ident)) => id = Some((ident.clone(), field.ty.clone())),
                        (None, None) => {}
                    }
                }
                if id.is_none() {
                    cx.push(error_at(
                        &item.ident,
                        format!(
                            "an aggregate needs an id: mark the field that holds it `#[aggregate_id]`, such as `#[aggregate_id] id: String` in `struct {}`",
                            item.ident
                        ),
                    ));
                }
            }
            _ => cx.push(error_at(
                &item.ident,
                "an aggregate is a struct with named fields, one of them marked `#[aggregate_id]`",
            )),
        }
        Root {
            name: name.unwrap_or_else(|| item.ident.to_string()),
            krate: Krate::new(krate),
            item,
            id,
            snapshot_every,
        }
    }
}

/// The struct and its `AggregateRoot` impl; in the fallback, an impl whose methods are
/// unreachable, so that the `impl` half and callers add no errors of their own.
pub fn expand(root: &Root, complete: bool) -> TokenStream {
    let p = root.krate.private();
    let item = &root.item;
    let ident = &item.ident;
    let name = &root.name;
    let body = match (&root.id, complete) {
        (Some((field, ty)), true) => {
            let snapshots = root.snapshot_every.map(|(every, span)| {
                quote_spanned! {span=>
                    const SNAPSHOT_EVERY: ::core::option::Option<u64> = ::core::option::Option::Some(#every);
                    fn snapshot(&self) -> ::core::option::Option<#p::Result<#p::serde_json::Value>> {
                        ::core::option::Option::Some(#p::aggregate::snapshot_of(self))
                    }
                    fn restore(snapshot: #p::serde_json::Value) -> ::core::option::Option<#p::Result<Self>> {
                        ::core::option::Option::Some(#p::aggregate::restore_from(snapshot))
                    }
                }
            });
            let ty_span = syn::spanned::Spanned::span(ty);
            let parse = quote_spanned! {ty_span=>
                #p::aggregate::parse_aggregate_id::<#ty>(#name, id)
            };
            let show = quote_spanned! {ty_span=>
                ::std::string::ToString::to_string(&self.#field)
            };
            let initial = quote_spanned! {ident.span()=>
                <Self as ::core::default::Default>::default()
            };
            quote! {
                const TYPE: &'static str = #name;
                fn initial() -> Self { #initial }
                #snapshots
                fn aggregate_id(&self) -> ::std::string::String { #show }
                fn set_aggregate_id(&mut self, id: &str) -> #p::Result<()> {
                    self.#field = #parse?;
                    ::core::result::Result::Ok(())
                }
            }
        }
        _ => quote! {
            const TYPE: &'static str = #name;
            fn initial() -> Self { ::core::unreachable!() }
            fn aggregate_id(&self) -> ::std::string::String { ::core::unreachable!() }
            fn set_aggregate_id(&mut self, _: &str) -> #p::Result<()> { ::core::unreachable!() }
        },
    };
    quote! {
        #item
        #[automatically_derived]
        impl #p::aggregate::AggregateRoot for #ident {
            #body
        }
    }
}
