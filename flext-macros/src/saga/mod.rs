//! `#[saga]` with `#[saga_step(...)]` methods: the step table, the step and compensation
//! dispatch the runner calls, and the registration recovery uses.

mod check;
mod expand;
mod parse;

use proc_macro2::TokenStream;

use crate::common::{Errors, error_at, with_errors};

pub fn saga(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: syn::ItemImpl = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            let first = input.clone().into_iter().next();
            let e = error_at(
                &first,
                "`#[saga]` goes on an `impl` block of the saga's input struct: `#[saga] impl FulfilOrder { #[saga_step] fn ...(&self) -> Result<T> { ... } }`",
            );
            return with_errors(input, e);
        }
    };
    let mut errors = Errors::default();
    let saga = parse::Saga::from_tokens(args, item, &mut errors);
    check::saga(&saga, &mut errors);
    match errors.finish() {
        Ok(()) => expand::saga(&saga),
        Err(e) => {
            let item = &saga.item;
            with_errors(quote::quote!(#item), e)
        }
    }
}
