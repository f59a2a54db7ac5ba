//! Model -> tokens. Emits the user's impl block (minus flext's method attributes), a
//! `DomainService` impl and, when nothing is `async`, a `SyncDomainService` impl. The
//! bodies are straight-line calls into `::flext::__private`; nothing is re-validated here.
//!
//! Type checks the compiler does for us are spanned at the user's tokens: a step's input
//! is bound with `let __flext_in: <declared type> = <previous output>;` spanned at the
//! declared type, so a mismatch is reported on that parameter.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::check::Plan;
use super::parse::{Link, Rule, Service};
use crate::common::{Method, Param, respan, result_ok_type};

pub fn service(svc: &Service, plan: &Plan) -> TokenStream {
    let krate = svc
        .args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::flext));
    let item = &svc.item;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let self_ty = &item.self_ty;
    let name = &svc.name;
    let is_async = svc
        .rules
        .iter()
        .map(|r| &r.method)
        .chain(svc.links.iter().map(Link::method))
        .chain(svc.postconditions.iter().map(|r| &r.method))
        .chain(svc.hook.as_ref())
        .any(|m| m.is_async);

    let Some(last_step) = svc.links.iter().rev().find_map(|l| match l {
        Link::Step(m) => Some(m),
        Link::Tap(_) => None,
    }) else {
        return quote!(#item);
    };
    let output = output_type(&krate, last_step);
    let ctx = quote!(__flext_ctx);
    let body = body(svc, plan, &krate, &ctx);
    let hook = match &svc.hook {
        Some(m) => {
            let call = call(m, Some(quote!(__flext_error)), &ctx);
            let span = m.return_type().map_or(Span::call_site(), Spanned::span);
            respan(call, span)
        }
        None => quote!(__flext_error),
    };
    let span = quote! {
        #krate::__private::tracing::info_span!(
            #name,
            correlation_id = %#ctx.correlation_id(),
            failed_at = #krate::__private::tracing::field::Empty,
        )
    };

    let impls = if is_async {
        quote! {
            #[automatically_derived]
            impl #impl_generics #krate::DomainService for #self_ty #where_clause {
                type Output = #output;
                const NAME: &'static str = #name;
                fn execute(&self, #ctx: &#krate::Context)
                    -> impl ::core::future::Future<Output = #krate::Result<Self::Output>>
                {
                    #krate::__private::Instrument::instrument(
                        async move {
                            let __flext_result: #krate::Result<Self::Output> = async { #body }.await;
                            match __flext_result {
                                ::core::result::Result::Ok(__flext_value) => ::core::result::Result::Ok(__flext_value),
                                ::core::result::Result::Err(__flext_error) => ::core::result::Result::Err(#hook),
                            }
                        },
                        #span,
                    )
                }
            }
        }
    } else {
        quote! {
            #[automatically_derived]
            impl #impl_generics #krate::DomainService for #self_ty #where_clause {
                type Output = #output;
                const NAME: &'static str = #name;
                fn execute(&self, #ctx: &#krate::Context)
                    -> impl ::core::future::Future<Output = #krate::Result<Self::Output>>
                {
                    async move { <Self as #krate::SyncDomainService>::execute_sync(self, #ctx) }
                }
            }

            #[automatically_derived]
            impl #impl_generics #krate::SyncDomainService for #self_ty #where_clause {
                fn execute_sync(&self, #ctx: &#krate::Context) -> #krate::Result<Self::Output> {
                    let __flext_span = #span;
                    let __flext_guard = __flext_span.enter();
                    let __flext_result: #krate::Result<Self::Output> = (|| -> #krate::Result<Self::Output> { #body })();
                    match __flext_result {
                        ::core::result::Result::Ok(__flext_value) => ::core::result::Result::Ok(__flext_value),
                        ::core::result::Result::Err(__flext_error) => ::core::result::Result::Err(#hook),
                    }
                }
            }
        }
    };

    quote! {
        #item
        #impls
    }
}

/// `T` when the last step is written `-> Result<T>`; otherwise the projection through
/// `StepOutcome`, spanned at the return type so a wrong one is reported there.
fn output_type(krate: &syn::Path, last: &Method) -> TokenStream {
    let Some(ret) = last.return_type() else {
        return quote!(());
    };
    match result_ok_type(ret) {
        Some(ok) => quote!(#ok),
        None => quote_spanned! {ret.span()=>
            <#ret as #krate::StepOutcome>::Output
        },
    }
}

fn body(svc: &Service, plan: &Plan, krate: &syn::Path, ctx: &TokenStream) -> TokenStream {
    let mut out = TokenStream::new();
    if !svc.rules.is_empty() {
        let mode = if svc.args.fail_fast.is_present() {
            quote!(FailFast)
        } else {
            quote!(CollectAll)
        };
        out.extend(quote! {
            let mut __flext_rules = #krate::__private::Rules::new(#krate::RuleMode::#mode);
        });
        for &i in &plan.rule_order {
            out.extend(rule_check(&svc.rules[i], quote!(__flext_rules), None, ctx));
        }
        out.extend(quote! { __flext_rules.finish()?; });
    }

    let mut first = true;
    for (n, link) in svc.links.iter().enumerate() {
        match link {
            Link::Step(m) => {
                let input = match (first, m.input()) {
                    (true, _) => None,
                    (false, Some(ty)) => {
                        let bind = format_ident!("__flext_in{}", n);
                        out.extend(quote_spanned! {ty.span()=>
                            let #bind: #ty = __flext_value;
                        });
                        Some(quote!(#bind))
                    }
                    (false, None) => {
                        let ident = &m.ident;
                        out.extend(quote_spanned! {ident.span()=>
                            let () = __flext_value;
                        });
                        None
                    }
                };
                let call = call(m, input, ctx);
                let name = m.ident.to_string();
                let call = quote!(#krate::__private::step(#name, #call));
                let call = match m.return_type() {
                    Some(ret) => respan(call, ret.span()),
                    None => call,
                };
                out.extend(quote! {
                    let __flext_value = #call?;
                });
                first = false;
            }
            Link::Tap(m) => {
                let Some(ty) = m.input() else { continue };
                let bind = format_ident!("__flext_tap{}", n);
                out.extend(quote_spanned! {ty.span()=>
                    let #bind: #ty = &__flext_value;
                });
                let call = call(m, Some(quote!(#bind)), ctx);
                out.extend(quote! { #call; });
            }
        }
    }

    if !svc.postconditions.is_empty() {
        out.extend(quote! {
            let mut __flext_post = #krate::__private::Rules::new(#krate::RuleMode::CollectAll);
        });
        for rule in &svc.postconditions {
            out.extend(rule_check(
                rule,
                quote!(__flext_post),
                Some(quote!(&__flext_value)),
                ctx,
            ));
        }
        out.extend(quote! { __flext_post.finish()?; });
    }
    out.extend(quote! { ::core::result::Result::<Self::Output, #krate::Error>::Ok(__flext_value) });
    out
}

fn rule_check(
    rule: &Rule,
    rules: TokenStream,
    value: Option<TokenStream>,
    ctx: &TokenStream,
) -> TokenStream {
    let m = &rule.method;
    let name = m.ident.to_string();
    let code = &rule.code;
    let mut prelude = TokenStream::new();
    let input = match (value, m.input()) {
        (Some(value), Some(ty)) => {
            prelude.extend(quote_spanned! {ty.span()=>
                let __flext_checked: #ty = #value;
            });
            Some(quote!(__flext_checked))
        }
        _ => None,
    };
    let call = call(m, input, ctx);
    let check = quote!(#rules.check(#name, #code, #call));
    let check = match m.return_type() {
        Some(ret) => respan(check, ret.span()),
        None => check,
    };
    quote! {
        {
            #prelude
            #check?;
        }
    }
}

/// `self.method(args)` (with `.await` when async): `&Context` parameters get the
/// context, the value parameter gets `value`. The checks guarantee that a method with a
/// value parameter is always given one, so nothing is skipped in practice.
fn call(m: &Method, value: Option<TokenStream>, ctx: &TokenStream) -> TokenStream {
    let ident = &m.ident;
    let mut value = value;
    let args = m.params.iter().filter_map(|p| match p {
        Param::Context => Some(quote!(#ctx)),
        Param::Value(_) => value.take(),
    });
    let await_ = m.is_async.then(|| quote!(.await));
    quote!(self.#ident(#(#args),*) #await_)
}

/// `impl Validate` for a message's `#[business_rules]`.
pub fn rules(svc: &Service, plan: &Plan) -> TokenStream {
    let krate = svc
        .args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::flext));
    let item = &svc.item;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let self_ty = &item.self_ty;
    let ctx = quote!(__flext_ctx);
    let checks = plan
        .rule_order
        .iter()
        .map(|&i| rule_check(&svc.rules[i], quote!(__flext_rules), None, &ctx));
    quote! {
        #item

        #[automatically_derived]
        impl #impl_generics #krate::Validate for #self_ty #where_clause {
            fn validate(&self) -> #krate::Result<()> {
                let mut __flext_rules = #krate::__private::Rules::new(#krate::RuleMode::CollectAll);
                #(#checks)*
                __flext_rules.finish()
            }
        }
    }
}
