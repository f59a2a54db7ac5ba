//! `#[projection]` model -> the `SqliteProjection` impl, which decodes each event it applies
//! and passes over the others.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::parse::ProjectionDef;
use crate::common::respan;

pub fn expand(p: &ProjectionDef, complete: bool) -> TokenStream {
    let krate = p.krate.private();
    let item = &p.item;
    let ty = &item.self_ty;
    let name = &p.name;
    let tables = &p.tables;
    let db = quote!(#krate::database);
    // The unit of work the methods take, and the trait the impl is: SQLite's
    // `SqliteProjection`, or the portable one every backend runs.
    let (uow_ty, trait_path) = if p.portable {
        (
            quote!(&mut #db::ProjectionWrites),
            quote!(#db::PortableProjection),
        )
    } else {
        (
            quote!(&#krate::sqlite::SqliteUnitOfWork<'_>),
            quote!(#krate::sqlite::SqliteProjection),
        )
    };
    let setup = p.setup.then(|| {
        quote! {
            fn setup(&self, uow: #uow_ty) -> #krate::Result<()> { <#ty>::setup(self, uow) }
        }
    });
    let arms = p.handlers.iter().filter_map(|h| {
        let event = h.event.as_ref()?;
        let method = &h.method;
        let env = h.envelope.then(|| quote!(, envelope));
        // Both helpers require `E: Event`, spanned at the event type: a type that is
        // not an event is one error there.
        let name_of = respan(quote!(#db::event_name::<#event>), event.span());
        let decode = respan(quote!(#db::decode_event::<#event>), event.span());
        Some(quote! {
            if envelope.name == #name_of() {
                let event: #event = #decode(envelope)?;
                return <#ty>::#method(self, uow, &event #env);
            }
        })
    });
    let body = if complete {
        quote! {
            #(#arms)*
            let _ = (uow, envelope);
            ::core::result::Result::Ok(())
        }
    } else {
        quote!(::core::unreachable!())
    };
    let impl_ = quote_spanned! {ty.span()=>
        #[automatically_derived]
        impl #trait_path for #ty
    };
    quote! {
        #item
        #impl_ {
            fn name(&self) -> &str { #name }
            fn tables(&self) -> &[&str] { &[#(#tables),*] }
            #setup
            #[allow(unused_variables)]
            fn apply(&self, uow: #uow_ty, envelope: &#db::EventEnvelope) -> #krate::Result<()> {
                #body
            }
        }
    }
}
