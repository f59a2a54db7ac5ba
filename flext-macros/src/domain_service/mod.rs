//! `#[domain_service]`: ordered business rules, then a railway of steps.

mod check;
mod expand;
mod parse;

use proc_macro2::TokenStream;

use crate::common::{Errors, parse_item, with_errors};

pub fn domain_service(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: syn::ItemImpl = match parse_item(
        &input,
        "`#[domain_service]` goes on an `impl` block: put the inputs in a struct's fields and write `#[domain_service] impl MyService { #[step] fn ...(&self) -> Result<T> { ... } }`",
    ) {
        Ok(item) => item,
        Err(tokens) => return tokens,
    };
    let mut errors = Errors::default();
    let svc = parse::Service::from_tokens(args, item, &mut errors);
    let plan = check::service(&svc, &mut errors);
    match errors.finish() {
        Ok(()) => expand::service(&svc, &plan),
        Err(e) => {
            let item = &svc.item;
            with_errors(quote::quote!(#item), e)
        }
    }
}

/// `#[business_rules]` on an `impl` of a message type: implements `Validate`.
pub fn business_rules(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: syn::ItemImpl = match parse_item(
        &input,
        "`#[business_rules]` goes on an `impl` block of a message type, holding `#[business_rule]` methods",
    ) {
        Ok(item) => item,
        Err(tokens) => return tokens,
    };
    let mut errors = Errors::default();
    let svc = parse::Service::from_tokens(args, item, &mut errors);
    let plan = check::rules_only(&svc, &mut errors);
    match errors.finish() {
        Ok(()) => expand::rules(&svc, &plan),
        Err(e) => {
            // A stub `Validate` keeps a `#[command(validate)]` on the type from adding
            // a second, misleading error.
            let stub = expand::rules(
                &parse::Service {
                    rules: Vec::new(),
                    ..svc
                },
                &check::Plan {
                    rule_order: Vec::new(),
                },
            );
            with_errors(stub, e)
        }
    }
}
