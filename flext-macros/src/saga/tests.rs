//! The checks of `#[saga]` on parsed models: pivots, compensations, earlier outputs.

use proc_macro2::TokenStream;
use quote::quote;

use super::check;
use super::parse::Saga;
use crate::common::Ctxt;

fn errors(item: TokenStream) -> Vec<String> {
    let cx = Ctxt::new();
    let saga = Saga::from_syn(&cx, quote!(), syn::parse2(item).unwrap());
    check::saga(&saga, &cx);
    match cx.check() {
        Ok(()) => Vec::new(),
        Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn a_well_formed_saga_has_no_errors() {
    let e = errors(quote! {
        impl Trip {
            #[saga_step(compensate = cancel)] fn book(&self) -> Result<Booking> { todo() }
            fn cancel(&self, b: &Booking) -> Result<()> { todo() }
            #[saga_step(pivot)] fn pay(&self, b: &Booking) -> Result<u64> { todo() }
            #[saga_step] fn mail(&self, paid: &u64) -> Result<String> { todo() }
        }
    });
    assert!(e.is_empty(), "{e:?}");
}

#[test]
fn two_pivots_and_a_compensation_after_the_pivot_are_both_reported() {
    let e = errors(quote! {
        impl Trip {
            #[saga_step(pivot)] fn pay(&self) -> Result<u64> { todo() }
            #[saga_step(compensate = undo)] fn mail(&self) -> Result<u64> { todo() }
            fn undo(&self, x: &u64) -> Result<()> { todo() }
            #[saga_step(pivot)] fn ship(&self) -> Result<u64> { todo() }
        }
    });
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn a_missing_compensation_gets_a_suggestion() {
    let e = errors(quote! {
        impl Trip {
            #[saga_step(compensate = cancle)] fn book(&self) -> Result<u32> { todo() }
            fn cancel(&self, b: &u32) -> Result<()> { todo() }
        }
    });
    assert_eq!(e.len(), 1);
    assert!(e[0].contains("did you mean `cancel`?"), "{}", e[0]);
}

#[test]
fn a_step_option_typo_and_a_repeated_option_are_both_reported() {
    let e = errors(quote! {
        impl Trip {
            #[saga_step(retires = 3, timeout_ms = 1, timeout_ms = 2)] fn book(&self) -> Result<u32> { todo() }
        }
    });
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("did you mean `retries`?"), "{}", e[0]);
    assert!(e[0].contains("`timeout_ms` is given twice"), "{}", e[0]);
}

#[test]
fn a_reference_to_a_later_output_is_an_error() {
    let e = errors(quote! {
        impl Trip {
            #[saga_step] fn pay(&self, b: &Booking) -> Result<u64> { todo() }
            #[saga_step] fn book(&self) -> Result<Booking> { todo() }
        }
    });
    assert_eq!(e.len(), 1);
    assert!(
        e[0].contains("no step before `pay` produces a `Booking`"),
        "{}",
        e[0]
    );
}
