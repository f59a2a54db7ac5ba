//! What a saga's signal steps generate beside the `Saga` impl: one `WaitsFor<T>` per
//! signal type (with its durable check), the saga's `KeyedSaga` and each routed signal's
//! `SignalKey<T>`. The fallback (the definition has errors) generates them too, with
//! bodies that never run, so that a user's `runner.signal` or `route_signal` adds no
//! error of its own to the one that names the mistake.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;

use super::parse::Saga;
use crate::common::respan;
use crate::common::util::type_key;

/// The impls; with `stand_in`, for the fallback: no checks, key bodies unreachable.
pub fn impls(saga: &Saga, stand_in: bool) -> TokenStream {
    let p = saga.krate.private();
    let self_ty = &saga.item.self_ty;
    let mut seen = HashSet::new();
    let waits = saga
        .steps
        .iter()
        .filter_map(|s| Some((&s.signal_param.as_ref()?.1, s.signal_name()?)))
        .filter(|(t, _)| seen.insert(type_key(t)))
        .map(|(t, name)| {
            let check = respan(quote!(#p::assert_durable::<#t>), t.span());
            let check = (!stand_in).then(|| quote!(const _: fn() = #check;));
            let header = respan(quote!(impl #p::WaitsFor<#t> for #self_ty), t.span());
            quote! {
                #check
                #[automatically_derived]
                #header {
                    const SIGNAL: &'static str = #name;
                }
            }
        });
    // Field reads spanned at the user's field names, so a missing field is reported
    // there.
    let key_of = |read: TokenStream| {
        if stand_in {
            quote!(::core::unreachable!())
        } else {
            quote!(::std::string::ToString::to_string(&#read))
        }
    };
    let routed = saga.steps.iter().any(|s| s.key.is_some());
    let keyed = match &saga.key {
        Some(field) => Some(key_of(respan(quote!(self.#field), field.span()))),
        // A step routes by key and the saga has none: an error, reported by the check.
        None if stand_in && routed => Some(quote!(::core::unreachable!())),
        None => None,
    }
    .map(|body| {
        quote! {
            #[automatically_derived]
            impl #p::KeyedSaga for #self_ty {
                fn key(&self) -> ::std::string::String {
                    #body
                }
            }
        }
    });
    let mut seen = HashSet::new();
    let routes = saga
        .steps
        .iter()
        .filter(|_| keyed.is_some())
        .filter_map(|s| Some((&s.signal_param.as_ref()?.1, s.key.as_ref()?)))
        .filter(|(t, _)| seen.insert(type_key(t)))
        .map(|(t, field)| {
            let body = key_of(respan(quote!(__flext_signal.#field), field.span()));
            quote! {
                #[automatically_derived]
                impl #p::SignalKey<#t> for #self_ty {
                    fn key_of(__flext_signal: &#t) -> ::std::string::String {
                        #body
                    }
                }
            }
        });
    quote! {
        #(#waits)*
        #keyed
        #(#routes)*
    }
}
