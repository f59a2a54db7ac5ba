//! Model -> tokens: the `Saga` impl (step table, `run_step`, `compensate`), the
//! registration recovery uses, and spanned checks that every logged value is durable.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::spanned::Spanned;

use super::parse::{Method, Param, Saga, produces};
use crate::common::respan;

pub fn saga(saga: &Saga) -> TokenStream {
    let krate = saga
        .args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::flext));
    let item = &saga.item;
    let self_ty = &item.self_ty;
    let name = &saga.name;
    let pivot = saga.steps.iter().position(|s| s.pivot.is_some());

    let specs = saga.steps.iter().enumerate().map(|(i, s)| {
        let step = s.method.ident.to_string();
        let compensation = match &s.compensate {
            Some(c) => {
                let c = c.to_string();
                quote!(::core::option::Option::Some(#c))
            }
            None => quote!(::core::option::Option::None),
        };
        let is_pivot = s.pivot.is_some();
        // Steps after the pivot must finish: retried (five times unless told) on any error.
        let after_pivot = pivot.is_some_and(|p| i > p);
        let retries = s.retries.unwrap_or(if after_pivot { 5 } else { 0 });
        let backoff = s.backoff_ms;
        let timeout = match s.timeout_ms {
            Some(ms) => quote!(::core::option::Option::Some(#ms)),
            None => quote!(::core::option::Option::None),
        };
        quote! {
            #krate::__private::StepSpec {
                name: #step,
                compensation: #compensation,
                pivot: #is_pivot,
                retries: #retries,
                backoff_ms: #backoff,
                timeout_ms: #timeout,
            }
        }
    });

    let outputs: Vec<Option<&syn::Type>> = saga
        .steps
        .iter()
        .map(|s| s.method.ok_type.as_ref())
        .collect();
    let run_arms = saga.steps.iter().enumerate().map(|(i, s)| {
        let (prelude, call) = call(&s.method, &outputs[..i], None);
        let step = s.method.ident.to_string();
        let call = quote!(#krate::__private::step(#step, #call));
        let call = match &s.method.output {
            Some(ret) => respan(call, ret.span()),
            None => call,
        };
        let encode = quote!(__flext_scope.encode(&__flext_output));
        let encode = match &s.method.ok_type {
            Some(t) => respan(encode, t.span()),
            None => encode,
        };
        quote! {
            #i => {
                #prelude
                let __flext_output = #call?;
                #encode
            }
        }
    });
    let compensate_arms = saga.steps.iter().enumerate().filter_map(|(i, s)| {
        let c = s.compensate.as_ref()?;
        let m = saga.others.iter().find(|m| m.ident == *c)?;
        let own = s.method.ok_type.as_ref()?;
        let (prelude, call) = call(m, &outputs[..i], Some((i, own)));
        let step = m.ident.to_string();
        let call = quote!(#krate::__private::step(#step, #call));
        let call = match &m.output {
            Some(ret) => respan(call, ret.span()),
            None => call,
        };
        Some(quote! {
            #i => {
                #prelude
                #call
            }
        })
    });

    let last = outputs.last().copied().flatten();
    let output = last.map_or_else(|| quote!(()), |t| quote!(#t));
    let durable_steps = saga.steps.iter().filter_map(|s| {
        let t = s.method.ok_type.as_ref()?;
        let check = respan(quote!(#krate::__private::assert_durable::<#t>), t.span());
        Some(quote!(#check();))
    });

    let saga_impl = respan(quote!(impl #krate::saga::Saga for #self_ty), self_ty.span());
    let output_span = last.map_or_else(proc_macro2::Span::call_site, Spanned::span);
    let output = respan(output, output_span);
    quote! {
        #item

        const _: () = {
            #[automatically_derived]
            #saga_impl {
                const NAME: &'static str = #name;
                const STEPS: &'static [#krate::__private::StepSpec] = &[#(#specs),*];
                type Output = #output;

                fn run_step<'__flext_a>(
                    &'__flext_a self,
                    __flext_index: usize,
                    __flext_scope: &'__flext_a #krate::__private::StepScope<'__flext_a>,
                ) -> #krate::BoxFuture<'__flext_a, #krate::Result<#krate::__private::serde_json::Value>> {
                    ::std::boxed::Box::pin(async move {
                        match __flext_index {
                            #(#run_arms)*
                            _ => ::core::result::Result::Err(#krate::Error::internal(
                                "flext.saga.no_such_step",
                                ::std::format!("saga `{}` has no step {}", #name, __flext_index),
                            )),
                        }
                    })
                }

                fn compensate<'__flext_a>(
                    &'__flext_a self,
                    __flext_index: usize,
                    __flext_scope: &'__flext_a #krate::__private::StepScope<'__flext_a>,
                ) -> #krate::BoxFuture<'__flext_a, #krate::Result<()>> {
                    ::std::boxed::Box::pin(async move {
                        match __flext_index {
                            #(#compensate_arms)*
                            _ => ::core::result::Result::Ok(()),
                        }
                    })
                }
            }

            #krate::__private::inventory::submit! {
                #krate::__private::SagaRegistration {
                    name: #name,
                    resume: #krate::__private::resume::<#self_ty>,
                }
            }

            #[allow(dead_code)]
            fn __flext_durable() {
                #(#durable_steps)*
            }
        };
    }
}

/// The call of a step or compensation and the bindings it needs: earlier outputs read
/// back from the log, state from the runner, the context. For a compensation, `own` is
/// the index and output type of the step it undoes; its first `&T` parameter receives
/// that output, bound with a `let` spanned at the parameter's type.
fn call(
    m: &Method,
    outputs: &[Option<&syn::Type>],
    own: Option<(usize, &syn::Type)>,
) -> (TokenStream, TokenStream) {
    let mut prelude = TokenStream::new();
    let mut args = Vec::new();
    let mut own = own;
    for (n, p) in m.params.iter().enumerate() {
        match p {
            Param::Context => args.push(quote!(__flext_scope.ctx())),
            Param::Injected(ty) => {
                let get = respan(quote!(__flext_scope.state::<#ty>()), ty.span());
                args.push(quote!(#get?));
            }
            Param::Output(ty, inner) => {
                let value = format_ident!("__flext_value{}", n);
                let bind = format_ident!("__flext_arg{}", n);
                let (index, source) = match own.take() {
                    Some((i, t)) => (i, t),
                    None => {
                        let found =
                            outputs.iter().enumerate().rev().find_map(|(i, t)| {
                                t.filter(|t| produces(t, inner)).map(|t| (i, t))
                            });
                        match found {
                            Some(f) => f,
                            None => continue,
                        }
                    }
                };
                let read = respan(quote!(__flext_scope.output(#index)), source.span());
                prelude.extend(quote! {
                    let #value: #source = #read?;
                });
                prelude.extend(respan(quote!(let #bind: #ty = &#value;), ty.span()));
                args.push(quote!(#bind));
            }
        }
    }
    let ident = &m.ident;
    let await_ = m.is_async.then(|| quote!(.await));
    (prelude, quote!(self.#ident(#(#args),*) #await_))
}
