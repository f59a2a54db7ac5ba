//! Model -> tokens: the `Saga` impl (step table, `run_step`, `compensate`), the
//! registration recovery uses, and one spanned check per logged type that it is durable.
//!
//! Logged values are encoded and decoded through autoref specialisation (`LogSlot`):
//! for a durable type the serde path is taken; for a type that is not, a path that
//! compiles, so that the one `assert_durable` per type is the only error, not one per use.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::spanned::Spanned;

use super::parse::Saga;
use crate::common::dispatch;
use crate::common::respan;
use crate::common::sig::{Method, Role};
use crate::common::util::{produces, type_key};

pub fn saga(saga: &Saga) -> TokenStream {
    let p = saga.krate.private();
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
        // A child step before the pivot (or in a saga without one) is compensated.
        let is_compensated = !after_pivot && pivot != Some(i);
        let retries = s.retries.unwrap_or(if after_pivot { 5 } else { 0 });
        let backoff = s.backoff_ms;
        let timeout = match s.timeout_ms {
            Some(ms) => quote!(::core::option::Option::Some(#ms)),
            None => quote!(::core::option::Option::None),
        };
        let some = |v: Option<TokenStream>| match v {
            Some(v) => quote!(::core::option::Option::Some(#v)),
            None => quote!(::core::option::Option::None),
        };
        let retry_on = some(s.retry_any.map(|any| {
            if any {
                quote!(#p::RetryOn::Any)
            } else {
                quote!(#p::RetryOn::Transient)
            }
        }));
        let compensate_retries = some(s.compensate_retries.map(|(n, _)| quote!(#n)));
        let compensate_backoff_ms = some(s.compensate_backoff_ms.map(|(n, _)| quote!(#n)));
        let is_sleep = s.sleep.is_some();
        let signal = some(s.signal_name().map(|name| {
            let wait = some(s.wait_ms.map(|(ms, _)| quote!(#ms)));
            quote!(#p::SignalSpec { name: #name, wait_ms: #wait })
        }));
        let child = some(s.child_param.as_ref().and_then(|(_, child)| {
            let input = child_input(saga, i, child)?;
            let name = respan(quote!(<#child as #p::Saga>::NAME), child.span());
            let queue = some(s.queue.as_ref().map(|q| quote!(#q)));
            let registration = respan(quote!(&#p::SagaRegistration::of::<#child>()), child.span());
            Some(quote!(#p::ChildSpec {
                name: #name,
                input: #input,
                compensated: #is_compensated,
                queue: #queue,
                registration: #registration,
            }))
        }));
        quote! {
            #p::StepSpec {
                name: #step,
                compensation: #compensation,
                pivot: #is_pivot,
                retries: #retries,
                backoff_ms: #backoff,
                timeout_ms: #timeout,
                retry_on: #retry_on,
                compensate_retries: #compensate_retries,
                compensate_backoff_ms: #compensate_backoff_ms,
                sleep: #is_sleep,
                signal: #signal,
                child: #child,
            }
        }
    });

    let outputs: Vec<Option<&syn::Type>> = saga
        .steps
        .iter()
        .map(|s| s.method.ok_type.as_ref())
        .collect();
    let run_arms = saga.steps.iter().enumerate().map(|(i, s)| {
        let (prelude, call) = call(
            &p,
            &s.method,
            &outputs[..i],
            None,
            s.signal_param.as_ref().or(s.child_param.as_ref()),
        );
        let step = s.method.ident.to_string();
        let call = quote!(#p::step(#step, #call));
        let call = match &s.method.output {
            Some(ret) => respan(call, ret.span()),
            None => call,
        };
        let ty = s
            .method
            .ok_type
            .as_ref()
            .map_or_else(|| quote!(_), |t| quote!(#t));
        quote! {
            #i => {
                #prelude
                let __flext_output = #call?;
                (&&#p::LogSlot::<#ty>::new()).encode(__flext_scope, &__flext_output)
            }
        }
    });
    let compensate_arms = saga.steps.iter().enumerate().filter_map(|(i, s)| {
        let c = s.compensate.as_ref()?;
        let m = saga.others.iter().find(|m| m.ident == *c)?;
        let own = s.method.ok_type.as_ref()?;
        let (prelude, call) = call(&p, m, &outputs[..i], Some((i, own)), None);
        let step = m.ident.to_string();
        let call = quote!(#p::step(#step, #call));
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
    // One check per distinct logged type; the last output is checked by `Saga::Output`'s
    // bound and the input by `Saga`'s.
    let mut seen = HashSet::new();
    if let Some(t) = last {
        seen.insert(type_key(t));
    }
    let durable = outputs
        .iter()
        .flatten()
        .filter(|t| seen.insert(type_key(t)))
        .map(|t| {
            let check = respan(quote!(#p::assert_durable::<#t>), t.span());
            quote!(#check();)
        });

    let sleeps = saga
        .steps
        .iter()
        .filter(|s| s.sleep.is_some())
        .filter_map(|s| {
            let t = s.method.ok_type.as_ref()?;
            let check = respan(quote!(#p::assert_sleep_output::<#t>), t.span());
            Some(quote!(#check();))
        });
    let signals = super::signals::impls(saga, false);
    let checks = saga.steps.iter().enumerate().filter_map(|(i, s)| {
        let ty = s.method.ok_type.as_ref()?;
        let step = s.method.ident.to_string();
        Some(quote! {
            if let ::core::option::Option::Some(__flext_v) =
                __flext_outputs.get(#i).and_then(::core::option::Option::as_ref)
            {
                (&&#p::LogSlot::<#ty>::new()).check(#step, __flext_v)?;
            }
        })
    });
    let definition = definition(saga);
    let accepts = &saga.accepts;
    let steps = dispatch::step_methods(
        &p,
        &quote!(#p::StepScope),
        &quote!(#p::serde_json::Value),
        run_arms,
        compensate_arms,
        quote!(::core::result::Result::Err(#p::no_such_step(#name, __flext_index))),
    );
    let header = respan(quote!(impl #p::Saga for #self_ty), self_ty.span());
    let output = match last {
        Some(t) => respan(quote!(#t), t.span()),
        None => quote!(()),
    };
    quote! {
        #item

        const _: () = {
            use #p::{EncodeDurable as _, EncodeNotDurable as _};

            #[automatically_derived]
            #header {
                const NAME: &'static str = #name;
                const STEPS: &'static [#p::StepSpec] = &[#(#specs),*];
                const DEFINITION: &'static str = #definition;
                const ACCEPTS: &'static [&'static str] = &[#(#accepts),*];
                type Output = #output;

                fn check_outputs(
                    __flext_outputs: &[::core::option::Option<#p::serde_json::Value>],
                ) -> #p::Result<()> {
                    #(#checks)*
                    ::core::result::Result::Ok(())
                }

                #steps
            }

            #p::inventory::submit! {
                #p::SagaRegistration::of::<#self_ty>()
            }

            #signals

            #[allow(dead_code)]
            fn __flext_durable() {
                #(#durable)*
                #(#sleeps)*
            }
        };
    }
}

/// What the log records of the definition (see the runtime's `saga::definition`): one
/// line per step, `name`, output type, compensation or `-`, `pivot` or nothing, by tabs.
fn definition(saga: &Saga) -> String {
    saga.steps
        .iter()
        .map(|s| {
            let output = s
                .method
                .ok_type
                .as_ref()
                .map_or_else(|| "()".to_owned(), type_key);
            let compensation = s
                .compensate
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string);
            let pivot = if s.pivot.is_some() { "pivot" } else { "" };
            let sleep = match s.signal_name() {
                Some(signal) => format!("\tsignal:{signal}"),
                None if s.child_param.is_some() => s
                    .child_param
                    .as_ref()
                    .map(|(_, child)| format!("\tchild:{}", type_key(child)))
                    .unwrap_or_default(),
                None if s.sleep.is_some() => "\tsleep".to_owned(),
                None => String::new(),
            };
            format!(
                "{}\t{output}\t{compensation}\t{pivot}{sleep}",
                s.method.ident
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The impl block and a stand-in `Saga` impl, so that `runner.run(..)` adds no error.
pub fn fallback(saga: &Saga) -> TokenStream {
    let p = saga.krate.private();
    let item = &saga.item;
    let self_ty = &item.self_ty;
    let name = &saga.name;
    let output = saga
        .steps
        .last()
        .and_then(|s| s.method.ok_type.as_ref())
        .map_or_else(|| quote!(()), |t| quote!(#t));
    let stand_ins = dispatch::stand_ins(&p, &quote!(#p::StepScope), &quote!(#p::serde_json::Value));
    let signals = super::signals::impls(saga, true);
    quote! {
        #item
        const _: () = {
            #[automatically_derived]
            impl #p::Saga for #self_ty {
                const NAME: &'static str = #name;
                const STEPS: &'static [#p::StepSpec] = &[];
                type Output = #output;
                #stand_ins
            }
            #signals
        };
    }
}

/// The call of a step or compensation: earlier outputs read back from the log. For a
/// compensation, `own` is the index and output type of the step it undoes; its first
/// `&T` parameter receives that output, bound with a `let` spanned at the parameter's
/// type.
fn call(
    p: &TokenStream,
    m: &Method,
    outputs: &[Option<&syn::Type>],
    own: Option<(usize, &syn::Type)>,
    signal: Option<&(usize, syn::Type)>,
) -> (TokenStream, TokenStream) {
    let mut own = own;
    dispatch::call(m, |n, param, bind| {
        if let Some((at, inner)) = signal
            && *at == n
        {
            let ty = &param.ty;
            let get = if is_child(&param.ty) {
                respan(quote!(__flext_scope.child::<#inner>()), inner.span())
            } else {
                respan(
                    quote!((&&#p::LogSlot::<#inner>::new()).signal(__flext_scope)),
                    inner.span(),
                )
            };
            return Some(respan(quote!(let #bind: #ty = #get?;), ty.span()));
        }
        let Role::Ref(inner) = &param.role else {
            return None;
        };
        let (index, source) = own.take().or_else(|| {
            outputs
                .iter()
                .enumerate()
                .rev()
                .find_map(|(i, t)| t.filter(|t| produces(t, inner)).map(|t| (i, t)))
        })?;
        let ty = &param.ty;
        let value = format_ident!("__flext_value{}", n);
        let mut binding = quote! {
            let #value: #source = (&&#p::LogSlot::<#source>::new()).decode(__flext_scope, #index)?;
        };
        binding.extend(respan(quote!(let #bind: #ty = &#value;), ty.span()));
        Some(binding)
    })
}

/// Whether `ty` is written `Child<S>`: a child step's parameter.
fn is_child(ty: &syn::Type) -> bool {
    matches!(ty, syn::Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Child"))
}

/// The position of the step before step `at` that returns the child saga `child`: the
/// latest one (the check reports a child no earlier step returns).
pub fn child_input(saga: &Saga, at: usize, child: &syn::Type) -> Option<usize> {
    saga.steps[..at].iter().rposition(|s| {
        s.method
            .ok_type
            .as_ref()
            .is_some_and(|t| type_key(t) == type_key(child))
    })
}
