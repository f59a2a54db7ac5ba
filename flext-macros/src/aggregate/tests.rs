//! The checks of `#[aggregate]` on parsed models: the id field, the shapes of `#[apply]`,
//! command and rule methods, and one method per event and per command.

use proc_macro2::TokenStream;
use quote::quote;

use super::{Behaviour, Root, behaviour};
use crate::common::Ctxt;

fn errors(cx: Ctxt) -> Vec<String> {
    match cx.check() {
        Ok(()) => Vec::new(),
        Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
    }
}

fn impl_errors(item: TokenStream) -> Vec<String> {
    let cx = Ctxt::new();
    let b = Behaviour::from_syn(&cx, quote!(), syn::parse2(item).unwrap());
    behaviour::check(&b, &cx);
    errors(cx)
}

fn struct_errors(args: TokenStream, item: TokenStream) -> Vec<String> {
    let cx = Ctxt::new();
    let _ = Root::from_syn(&cx, args, syn::parse2(item).unwrap());
    errors(cx)
}

#[test]
fn a_well_formed_aggregate_has_no_errors() {
    assert!(
        struct_errors(
            quote!(snapshot_every = 10),
            quote! {
                struct Account { #[aggregate_id] id: String, balance: u64 }
            }
        )
        .is_empty()
    );
    let e = impl_errors(quote! {
        impl Account {
            #[business_rule(code = "limit")] fn limit(&self, c: &Deposit) -> RuleResult { todo() }
            #[command_handler] fn deposit(&self, c: &Deposit, ctx: &Context) -> Result<Events<Self>> { todo() }
            #[apply] fn deposited(&mut self, e: &Deposited) {}
            fn helper(&self) -> u64 { 0 }
        }
    });
    assert!(e.is_empty(), "{e:?}");
}

#[test]
fn an_aggregate_needs_exactly_one_id_field_and_a_real_snapshot_interval() {
    let none = struct_errors(
        quote!(),
        quote!(
            struct Account {
                id: String,
            }
        ),
    );
    assert!(none[0].contains("an aggregate needs an id"), "{none:?}");
    let two = struct_errors(
        quote!(snapshot_every = 0),
        quote!(
            struct Account {
                #[aggregate_id]
                a: String,
                #[aggregate_id]
                b: String,
            }
        ),
    );
    assert_eq!(two.len(), 2, "{two:?}");
    assert!(two.iter().any(|e| e.contains("at least 1")), "{two:?}");
    assert!(two.iter().any(|e| e.contains("`a` is it")), "{two:?}");
}

#[test]
fn every_mistake_in_method_shapes_is_reported_at_once() {
    let e = impl_errors(quote! {
        impl Account {
            #[command_handler] fn deposit(&mut self, c: &Deposit) -> Result<Events<Self>> { todo() }
            #[command_handler] async fn withdraw(&self, c: Withdraw) -> Result<Events<Self>> { todo() }
            #[apply] fn deposited(&self, e: &Deposited) -> u64 { 0 }
            #[apply] fn twice(&mut self, e: &Deposited) {}
            #[business_rule] fn rule(&self, c: &Close) -> RuleResult { todo() }
        }
    });
    for expected in [
        "decides and does not change the state",
        "cannot be `async`",
        "take the command by reference",
        "take `&mut self`",
        "returns nothing",
        "is already applied by `deposited`",
        "no `#[command_handler]` of this aggregate decides `Close`",
    ] {
        assert!(
            e.iter().any(|m| m.contains(expected)),
            "`{expected}` missing from {e:?}"
        );
    }
}

#[test]
fn a_second_command_method_for_one_command_is_an_error_naming_the_first() {
    let e = impl_errors(quote! {
        impl Account {
            #[command_handler] fn deposit(&self, c: &Deposit) -> Result<Events<Self>> { todo() }
            #[command_handler] fn again(&self, c: &Deposit) -> Result<Events<Self>> { todo() }
        }
    });
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("already decided by `deposit`"), "{e:?}");
}
