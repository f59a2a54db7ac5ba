//! What sagas and workflows generate alike: "run step `index`" and "compensate step
//! `index`" dispatched by index into a boxed future, their stand-ins for the fallback,
//! and the call of a step or compensation method with its arguments bound.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::spanned::Spanned;

use super::respan;
use super::sig::{Method, Param, Role};

/// `run_step` (to `Result<#output>`) and `compensate` (to `Result<()>`), each a match on
/// the step index; `no_such` answers `run_step` for an index no step has.
pub fn step_methods(
    p: &TokenStream,
    scope: &TokenStream,
    output: &TokenStream,
    run_arms: impl IntoIterator<Item = TokenStream>,
    compensate_arms: impl IntoIterator<Item = TokenStream>,
    no_such: TokenStream,
) -> TokenStream {
    let run = by_index(p, "run_step", scope, output, run_arms, no_such);
    let compensate = by_index(
        p,
        "compensate",
        scope,
        &quote!(()),
        compensate_arms,
        quote!(::core::result::Result::Ok(())),
    );
    quote!(#run #compensate)
}

/// The fallback's `run_step` and `compensate`: never called, since the crate does not
/// compile, but there so that the trait is implemented and callers add no error.
pub fn stand_ins(p: &TokenStream, scope: &TokenStream, output: &TokenStream) -> TokenStream {
    let unreachable = |name: &str, out: &TokenStream| {
        let name = format_ident!("{}", name);
        quote! {
            fn #name<'__flext_a>(
                &'__flext_a self,
                _: usize,
                _: &'__flext_a #scope<'__flext_a>,
            ) -> #p::BoxFuture<'__flext_a, #p::Result<#out>> {
                ::core::unreachable!()
            }
        }
    };
    let run = unreachable("run_step", output);
    let compensate = unreachable("compensate", &quote!(()));
    quote!(#run #compensate)
}

fn by_index(
    p: &TokenStream,
    name: &str,
    scope: &TokenStream,
    output: &TokenStream,
    arms: impl IntoIterator<Item = TokenStream>,
    otherwise: TokenStream,
) -> TokenStream {
    let name = format_ident!("{}", name);
    let arms = arms.into_iter();
    quote! {
        fn #name<'__flext_a>(
            &'__flext_a self,
            __flext_index: usize,
            __flext_scope: &'__flext_a #scope<'__flext_a>,
        ) -> #p::BoxFuture<'__flext_a, #p::Result<#output>> {
            ::std::boxed::Box::pin(async move {
                match __flext_index {
                    #(#arms)*
                    _ => #otherwise,
                }
            })
        }
    }
}

/// The call of step or compensation `m` and the `let`s it needs: the context, state from
/// the runner (spanned at the parameter's type, so that missing state is reported
/// there), and each `&T` parameter bound by `bind(n, param, name)`, which returns the
/// `let` that binds `name` (or `None` to leave the argument out: an error is reported
/// elsewhere). A parameter taken by value is asked of `bind` too, and is state when it
/// answers `None`.
pub fn call(
    m: &Method,
    mut bind: impl FnMut(usize, &Param, &syn::Ident) -> Option<TokenStream>,
) -> (TokenStream, TokenStream) {
    let mut prelude = TokenStream::new();
    let mut args = Vec::new();
    for (n, param) in m.params.iter().enumerate() {
        let ty = &param.ty;
        match &param.role {
            Role::Context => args.push(quote!(__flext_scope.ctx())),
            Role::Value | Role::Bus => {
                // A value the family binds itself (a saga's `Signal<T>`), else state.
                let name = format_ident!("__flext_arg{}", n);
                if let Some(binding) = bind(n, param, &name) {
                    prelude.extend(binding);
                    args.push(quote!(#name));
                } else {
                    let get = respan(quote!(__flext_scope.state::<#ty>()), ty.span());
                    args.push(quote!(#get?));
                }
            }
            Role::Ref(_) => {
                let name = format_ident!("__flext_arg{}", n);
                if let Some(binding) = bind(n, param, &name) {
                    prelude.extend(binding);
                    args.push(quote!(#name));
                }
            }
        }
    }
    let ident = &m.ident;
    let await_ = m.asyncness.map(|_| quote!(.await));
    (prelude, quote!(self.#ident(#(#args),*) #await_))
}
