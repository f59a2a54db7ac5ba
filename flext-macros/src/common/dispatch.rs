//! The one shape of a generated method that runs "step `index`": sagas and workflows
//! both dispatch their steps and compensations by index into a boxed future.

use proc_macro2::TokenStream;
use quote::quote;

/// `fn #name<'a>(&'a self, __flext_index: usize, __flext_scope: &'a #scope<'a>)
/// -> BoxFuture<'a, Result<#output>>` matching `arms` on the index, `otherwise` for any
/// other index.
pub fn by_index(
    p: &TokenStream,
    name: &str,
    scope: TokenStream,
    output: TokenStream,
    arms: impl IntoIterator<Item = TokenStream>,
    otherwise: TokenStream,
) -> TokenStream {
    let name = syn::Ident::new(name, proc_macro2::Span::call_site());
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
