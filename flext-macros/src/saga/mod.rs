//! `#[saga]` with `#[saga_step(...)]` methods: the step table, the step and compensation
//! dispatch the runner calls, and the registration recovery uses.

mod check;
mod expand;
mod parse;

use proc_macro2::TokenStream;

use crate::common::{Errors, parse_item, with_errors};

pub fn saga(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: syn::ItemImpl = match parse_item(
        &input,
        "`#[saga]` goes on an `impl` block of the saga's input struct: `#[saga] impl FulfilOrder { #[saga_step] fn ...(&self) -> Result<T> { ... } }`",
    ) {
        Ok(item) => item,
        Err(tokens) => return tokens,
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
