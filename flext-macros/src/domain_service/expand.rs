//! Model -> tokens. Emits the user's impl block (minus flext's method attributes), a
//! `DomainService` impl and, when nothing is `async`, a `SyncDomainService` impl; an
//! async service gets an inherent `execute_sync` whose only purpose is a compile error
//! at the caller that names the async item. The bodies are straight-line calls into the
//! runtime; nothing is re-validated here.
//!
//! Type checks the compiler does for us are spanned at the user's tokens: every value a
//! method receives is bound with `let __flext_x: <declared type> = <value>;` spanned at
//! the declared type, so a mismatch is reported on that parameter.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::body::Body;
use super::parse::Service;
use crate::common::sig::Method;

pub fn service(svc: &Service) -> TokenStream {
    let item = &svc.item;
    let p = svc.krate.private();
    let name = &svc.name;
    let output = output_type(svc);
    let body = Body::new(svc).tokens();
    let impls = match svc.first_async() {
        Some(first_async) => {
            let service = service_impl(
                svc,
                &output,
                quote!(#p::run_async(#name, __flext_ctx, async move { #body })),
            );
            let no_sync = no_execute_sync(svc, first_async, &output);
            quote!(#service #no_sync)
        }
        None => {
            let service = service_impl(
                svc,
                &output,
                quote!(async move { <Self as #p::SyncDomainService>::execute_sync(self, __flext_ctx) }),
            );
            let sync = sync_impl(svc, quote!(#p::run_sync(#name, __flext_ctx, || { #body })));
            quote!(#service #sync)
        }
    };
    quote! {
        #item
        #impls
    }
}

/// What is emitted beside errors: the impl block and stand-in impls with the best known
/// output type, so that callers' `execute`/`execute_sync` add no errors of their own.
pub fn fallback(svc: &Service) -> TokenStream {
    let item = &svc.item;
    let output = svc
        .steps()
        .last()
        .and_then(|(_, m, _)| m.ok_type.as_ref())
        .map_or_else(|| quote!(()), |t| quote!(#t));
    let service = service_impl(svc, &output, quote!(async { ::core::unreachable!() }));
    let sync = match svc.first_async() {
        Some(first_async) => no_execute_sync(svc, first_async, &output),
        None => sync_impl(svc, quote!(::core::unreachable!())),
    };
    quote! {
        #item
        #service
        #sync
    }
}

/// `impl DomainService` with `execute`'s body (a future, `__flext_ctx` in scope).
fn service_impl(svc: &Service, output: &TokenStream, execute: TokenStream) -> TokenStream {
    let item = &svc.item;
    let p = svc.krate.private();
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let self_ty = &item.self_ty;
    let name = &svc.name;
    quote! {
        #[automatically_derived]
        impl #impl_generics #p::DomainService for #self_ty #where_clause {
            type Output = #output;
            const NAME: &'static str = #name;
            #[allow(unused_variables)]
            fn execute(&self, __flext_ctx: &#p::Context)
                -> impl ::core::future::Future<Output = #p::Result<Self::Output>>
            {
                #execute
            }
        }
    }
}

/// `impl SyncDomainService` with `execute_sync`'s body (`__flext_ctx` in scope).
fn sync_impl(svc: &Service, execute_sync: TokenStream) -> TokenStream {
    let item = &svc.item;
    let p = svc.krate.private();
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let self_ty = &item.self_ty;
    quote! {
        #[automatically_derived]
        impl #impl_generics #p::SyncDomainService for #self_ty #where_clause {
            #[allow(unused_variables)]
            fn execute_sync(&self, __flext_ctx: &#p::Context) -> #p::Result<Self::Output> {
                #execute_sync
            }
        }
    }
}

/// An inherent `execute_sync` that cannot be called: its bound names the first async
/// item (and points at its `async`), so that calling it explains itself instead of
/// rustc's "no method named `execute_sync`".
fn no_execute_sync(svc: &Service, first_async: &Method, output: &TokenStream) -> TokenStream {
    let item = &svc.item;
    let p = svc.krate.private();
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let self_ty = &item.self_ty;
    let message = format!(
        "`{}` is async because `{}` is `async`, so it has no `execute_sync`",
        svc.name, first_async.ident
    );
    let bound = quote_spanned!(first_async.async_span()=> __FlextIsAsync);
    let predicates = where_clause.map(|w| &w.predicates);
    quote! {
        const _: () = {
            #[diagnostic::on_unimplemented(
                message = #message,
                label = "call `.execute(&ctx).await` in an async context instead",
                note = "a service runs synchronously only when none of its rules, steps, taps, postconditions, undos or hook is `async`"
            )]
            #[doc(hidden)]
            pub trait __FlextIsAsync {}

            #[automatically_derived]
            impl #impl_generics #self_ty {
                #[doc(hidden)]
                #[allow(private_bounds, dead_code)]
                pub fn execute_sync<'__flext>(&'__flext self, _: &#p::Context) -> #p::Result<#output>
                where
                    &'__flext Self: #bound,
                    #predicates
                {
                    ::core::unreachable!()
                }
            }
        };
    }
}

/// `T` when the last step is written `-> Result<T>`; otherwise the projection through
/// `StepOutcome`, spanned at the return type so a wrong one is reported there.
fn output_type(svc: &Service) -> TokenStream {
    let p = svc.krate.private();
    let Some((_, last, _)) = svc.steps().last() else {
        return quote!(());
    };
    match (&last.ok_type, &last.output) {
        (Some(ok), _) => quote!(#ok),
        (None, Some(ret)) => quote_spanned! {ret.span()=> <#ret as #p::StepOutcome>::Output },
        (None, None) => quote!(()),
    }
}

/// `impl Validate` for a message's `#[business_rules]`.
pub fn rules(svc: &Service) -> TokenStream {
    let item = &svc.item;
    let p = svc.krate.private();
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let self_ty = &item.self_ty;
    let body = Body {
        svc,
        p: p.clone(),
        labeled: false,
        last: 0,
    };
    let checks = svc
        .rule_order
        .iter()
        .map(|&i| body.rule_check(&svc.rules[i], quote!(__flext_rules), None));
    quote! {
        #item

        #[automatically_derived]
        impl #impl_generics #p::Validate for #self_ty #where_clause {
            fn validate(&self) -> #p::Result<()> {
                let mut __flext_rules = #p::Rules::new(#p::RuleMode::CollectAll);
                #(#checks)*
                __flext_rules.finish()
            }
        }
    }
}

/// A stand-in `Validate`, so that `#[command(validate)]` on the type adds no error.
pub fn rules_fallback(svc: &Service) -> TokenStream {
    let item = &svc.item;
    let p = svc.krate.private();
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let self_ty = &item.self_ty;
    quote! {
        #item
        #[automatically_derived]
        impl #impl_generics #p::Validate for #self_ty #where_clause {
            fn validate(&self) -> #p::Result<()> {
                ::core::unreachable!()
            }
        }
    }
}

/// `#[business_rules]` on a processor's trait impl: the impl without the rule methods,
/// plus (when the checks passed, `with_rules`) a `rules` method that runs them in order
/// on the request; the rule methods go to an inherent impl of the processor.
pub fn processor_rules(svc: &Service, with_rules: bool) -> TokenStream {
    let p = svc.krate.private();
    let mut item = svc.item.clone();
    let (impl_generics, _, where_clause) = svc.item.generics.split_for_impl();
    let self_ty = &svc.item.self_ty;
    let rule_names: Vec<String> = svc
        .rules
        .iter()
        .chain(&svc.postconditions)
        .map(|r| r.method.ident.to_string())
        .collect();
    let (rule_items, kept): (Vec<syn::ImplItem>, Vec<syn::ImplItem>) =
        std::mem::take(&mut item.items).into_iter().partition(
            |i| matches!(i, syn::ImplItem::Fn(f) if rule_names.contains(&f.sig.ident.to_string())),
        );
    item.items = kept;
    if with_rules {
        let body = Body {
            svc,
            p: p.clone(),
            labeled: false,
            last: 0,
        };
        let checks = svc.rule_order.iter().map(|&i| {
            body.rule_check(
                &svc.rules[i],
                quote!(__flext_rules),
                Some(quote!(__flext_request)),
            )
        });
        item.items.push(syn::parse_quote! {
            fn rules(
                &self,
                __flext_request: &Self::Request,
                __flext_ctx: &#p::Context,
            ) -> #p::Result<()> {
                let mut __flext_rules = #p::Rules::new(#p::RuleMode::CollectAll);
                #(#checks)*
                __flext_rules.finish()
            }
        });
    }
    quote! {
        #item

        impl #impl_generics #self_ty #where_clause {
            #(#rule_items)*
        }
    }
}
