//! Model -> tokens: the `Workflow` impl (step table, `run_step`, `compensate`, the
//! statistics resolved once), and one spanned check per output type that concurrent
//! steps can share it.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;

use super::parse::{Step, WorkflowDef};
use crate::common::dispatch;
use crate::common::respan;
use crate::common::sig::{Method, Role};
use crate::common::util::type_key;

pub fn workflow(wf: &WorkflowDef) -> TokenStream {
    let p = wf.krate.private();
    let item = &wf.item;
    let self_ty = &item.self_ty;
    let name = &wf.name;

    let specs = wf.steps.iter().map(|s| {
        let step = s.method.ident.to_string();
        let deps = &s.deps;
        let mut needs: Vec<usize> = s.sources.iter().flatten().copied().collect();
        needs.sort_unstable();
        needs.dedup();
        let optional = s.optional.is_some();
        let timeout = match s.timeout_ms {
            Some(ms) => quote!(::core::option::Option::Some(#ms)),
            None => quote!(::core::option::Option::None),
        };
        let compensation = match &s.compensate {
            Some(c) => {
                let c = c.to_string();
                quote!(::core::option::Option::Some(#c))
            }
            None => quote!(::core::option::Option::None),
        };
        quote! {
            #p::WorkflowStepSpec {
                name: #step,
                depends_on: &[#(#deps),*],
                needs: &[#(#needs),*],
                optional: #optional,
                timeout_ms: #timeout,
                compensation: #compensation,
            }
        }
    });

    let run_arms = wf.steps.iter().enumerate().map(|(i, s)| {
        let ty = s
            .method
            .ok_type
            .as_ref()
            .map_or_else(|| quote!(_), |t| quote!(#t));
        let (prelude, call) = call(&s.method, |n| {
            let j = s.sources.get(n).copied().flatten()?;
            Some((j, wf.steps[j].method.ok_type.as_ref()?))
        });
        let step = s.method.ident.to_string();
        let call = quote!(#p::step(#step, #call));
        let call = match &s.breaker {
            Some(b) => quote!(self.#b.call(async { #call }).await),
            None => call,
        };
        let call = match &s.method.output {
            Some(ret) => respan(call, ret.span()),
            None => call,
        };
        quote! {
            #i => {
                #prelude
                let __flext_output = #call?;
                (&&#p::OutputSlot::<#ty>::new()).boxed(__flext_output)
            }
        }
    });

    let compensate_arms = wf.steps.iter().enumerate().filter_map(|(i, s)| {
        let c = s.compensate.as_ref()?;
        let m = wf.others.iter().find(|m| m.ident == *c)?;
        let own = s.method.ok_type.as_ref()?;
        let first_ref = m.params.iter().position(|p| matches!(p.role, Role::Ref(_)));
        let (prelude, call) = call(m, |n| (Some(n) == first_ref).then_some((i, own)));
        let comp = m.ident.to_string();
        let call = quote!(#p::step(#comp, #call));
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

    let mut seen = HashSet::new();
    let shareable = wf
        .steps
        .iter()
        .filter_map(|s: &Step| s.method.ok_type.as_ref())
        .filter(|t| seen.insert(type_key(t)))
        .map(|t| {
            let check = respan(
                quote! {
                    #p::assert_step_output::<#t>();
                    {
                        #[allow(unused_imports)]
                        use #p::{SendOfNotSync as _, SendOfSync as _};
                        #p::assert_step_output_send((&&#p::SendCheck::<#t>::new()).of());
                    }
                },
                t.span(),
            );
            quote!(#check)
        });

    let steps = dispatch::step_methods(
        &p,
        &quote!(#p::WorkflowScope),
        &quote!(#p::StepOutput),
        run_arms,
        compensate_arms,
        quote!(::core::result::Result::Err(#p::no_such_workflow_step(#name, __flext_index))),
    );
    let header = respan(quote!(impl #p::Workflow for #self_ty), self_ty.span());
    let durable = wf.durable.map(|_| durable(wf)).unwrap_or_default();
    quote! {
        #item

        const _: () = {
            use #p::{BoxNotShareable as _, BoxShareable as _};

            #[automatically_derived]
            #header {
                const NAME: &'static str = #name;
                const STEPS: &'static [#p::WorkflowStepSpec] = &[#(#specs),*];

                #steps

                fn step_stats() -> &'static [::std::sync::Arc<#p::ServiceStats>] {
                    static STATS: ::std::sync::OnceLock<::std::vec::Vec<::std::sync::Arc<#p::ServiceStats>>> =
                        ::std::sync::OnceLock::new();
                    STATS.get_or_init(#p::step_stats::<Self>)
                }
            }

            #[allow(dead_code)]
            fn __flext_shareable() {
                #(#shareable)*
            }

            #durable
        };
    }
}

/// `#[workflow(durable)]`'s part: the `DurableWorkflow` impl (the definition, each
/// node's output encoded and decoded through `LogSlot`), the registration recovery finds
/// it by, and one spanned `Durable` check per output type (the input is checked by the
/// trait's bound, at the impl's type).
fn durable(wf: &WorkflowDef) -> TokenStream {
    let p = wf.krate.private();
    let self_ty = &wf.item.self_ty;
    let name = &wf.name;
    let mut seen = HashSet::new();
    let checks = wf
        .steps
        .iter()
        .filter_map(|s: &Step| s.method.ok_type.as_ref())
        .filter(|t| seen.insert(type_key(t)))
        .map(|t| {
            let check = respan(quote!(#p::assert_durable::<#t>), t.span());
            quote!(#check();)
        });
    let encode_arms = wf.steps.iter().enumerate().filter_map(|(i, s)| {
        let ty = s.method.ok_type.as_ref()?;
        let step = s.method.ident.to_string();
        Some(quote!(#i => (&&#p::LogSlot::<#ty>::new()).encode_node(#step, __flext_output),))
    });
    let decode_arms = wf.steps.iter().enumerate().filter_map(|(i, s)| {
        let ty = s.method.ok_type.as_ref()?;
        let step = s.method.ident.to_string();
        Some(quote!(#i => (&&#p::LogSlot::<#ty>::new()).decode_node(#step, __flext_value),))
    });
    let definition = definition(wf);
    let accepts = &wf.accepts;
    let header = respan(
        quote!(impl #p::DurableWorkflow for #self_ty),
        self_ty.span(),
    );
    quote! {
        #[automatically_derived]
        #header {
            const DEFINITION: &'static str = #definition;
            const ACCEPTS: &'static [&'static str] = &[#(#accepts),*];

            fn encode_output(
                __flext_index: usize,
                __flext_output: &#p::StepOutput,
            ) -> #p::Result<#p::serde_json::Value> {
                use #p::{NodeDurable as _, NodeNotDurable as _};
                match __flext_index {
                    #(#encode_arms)*
                    _ => ::core::result::Result::Err(#p::no_such_workflow_step(#name, __flext_index)),
                }
            }

            fn decode_output(
                __flext_index: usize,
                __flext_value: #p::serde_json::Value,
            ) -> #p::Result<#p::StepOutput> {
                use #p::{NodeDurable as _, NodeNotDurable as _};
                match __flext_index {
                    #(#decode_arms)*
                    _ => ::core::result::Result::Err(#p::no_such_workflow_step(#name, __flext_index)),
                }
            }
        }

        #p::inventory::submit! {
            #p::SagaRegistration::workflow::<#self_ty>()
        }

        #[allow(dead_code)]
        fn __flext_durable() {
            #(#checks)*
        }
    }
}

/// What the log records of a durable workflow's graph (see the runtime's
/// `saga::definition`): one line per node, `name`, output type, compensation or `-`,
/// `optional` or nothing, and the nodes it depends on, comma separated, by tabs.
fn definition(wf: &WorkflowDef) -> String {
    wf.steps
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
            let optional = if s.optional.is_some() { "optional" } else { "" };
            let after = s
                .depends_on
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",");
            format!(
                "{}\t{output}\t{compensation}\t{optional}\t{after}",
                s.method.ident
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The impl block and a stand-in `Workflow` impl, so that `workflow.run(..)` adds no
/// error.
pub fn fallback(wf: &WorkflowDef) -> TokenStream {
    let p = wf.krate.private();
    let item = &wf.item;
    let self_ty = &item.self_ty;
    let name = &wf.name;
    let stand_ins = dispatch::stand_ins(&p, &quote!(#p::WorkflowScope), &quote!(#p::StepOutput));
    quote! {
        #item
        const _: () = {
            #[automatically_derived]
            impl #p::Workflow for #self_ty {
                const NAME: &'static str = #name;
                const STEPS: &'static [#p::WorkflowStepSpec] = &[];
                #stand_ins
            }
        };
    }
}

/// The call of a step or compensation: `source(n)` gives parameter `n`'s step index and
/// output type, read from the run's outputs.
fn call<'t>(
    m: &Method,
    source: impl Fn(usize) -> Option<(usize, &'t syn::Type)>,
) -> (TokenStream, TokenStream) {
    dispatch::call(m, |n, param, bind| {
        // By value: state (`dispatch::call` binds it).
        if !matches!(param.role, Role::Ref(_)) {
            return None;
        }
        let (index, output) = source(n)?;
        let ty = &param.ty;
        let get = quote!(__flext_scope.output::<#output>(#index)?);
        Some(respan(quote!(let #bind: #ty = #get;), ty.span()))
    })
}
