//! Procedural macros of [flext](https://docs.rs/flext). Use them through the `flext`
//! crate (`use flext::prelude::*;`), whose documentation describes each attribute with
//! examples; generated code refers to the runtime only as `::flext::__private`.

mod common;
mod domain_service;

use proc_macro::TokenStream;

/// Turns an inherent `impl` block into a domain service. See the `flext` crate's
/// documentation of `domain_service` for the options and an example.
#[proc_macro_attribute]
pub fn domain_service(args: TokenStream, input: TokenStream) -> TokenStream {
    domain_service::domain_service(args.into(), input.into()).into()
}

/// Marks a business rule inside a `#[domain_service]` impl block.
#[proc_macro_attribute]
pub fn business_rule(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_service("business_rule", input)
}

/// Marks a step of the railway inside a `#[domain_service]` impl block.
#[proc_macro_attribute]
pub fn step(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_service("step", input)
}

/// Marks a side effect that sees the previous step's output, inside a `#[domain_service]`
/// impl block.
#[proc_macro_attribute]
pub fn tap(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_service("tap", input)
}

/// Marks a check of the service's result inside a `#[domain_service]` impl block.
#[proc_macro_attribute]
pub fn postcondition(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_service("postcondition", input)
}

/// The method attributes only mean something to the `#[domain_service]` that reads them;
/// reaching one on its own means the enclosing impl lacks that attribute.
fn outside_service(name: &str, input: TokenStream) -> TokenStream {
    let input = proc_macro2::TokenStream::from(input);
    let span = syn::parse2::<syn::ImplItemFn>(input.clone())
        .map(|f| f.sig.ident.span())
        .unwrap_or_else(|_| proc_macro2::Span::call_site());
    let message = format!(
        "`#[{name}]` only works on a method inside a `#[domain_service]` impl block: add `#[domain_service]` to the enclosing `impl`"
    );
    let error = syn::Error::new(span, message).to_compile_error();
    quote::quote!(#input #error).into()
}
