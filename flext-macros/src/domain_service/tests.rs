//! The checks of `#[domain_service]` on parsed models: rule order, cycles, the step
//! chain, undo lookup, option parsing. Each test counts or reads the errors the
//! context collected, in the manner of darling's `tests/accrue_errors.rs`.

use proc_macro2::TokenStream;
use quote::quote;

use super::check;
use super::parse::{Arg, Mode, Service};
use crate::common::Ctxt;

fn model(args: TokenStream, item: TokenStream) -> (Service, Vec<String>) {
    let cx = Ctxt::new();
    let mut svc = Service::from_syn(&cx, Mode::Service, args, syn::parse2(item).unwrap());
    check::service(&mut svc, &cx);
    let errors = match cx.check() {
        Ok(()) => Vec::new(),
        Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
    };
    (svc, errors)
}

fn names(svc: &Service) -> Vec<String> {
    svc.rule_order
        .iter()
        .map(|&i| svc.rules[i].method.ident.to_string())
        .collect()
}

#[test]
fn rules_run_by_order_then_declaration_then_after() {
    let (svc, errors) = model(
        quote!(),
        quote! {
            impl S {
                #[business_rule] fn c(&self) -> RuleResult { Ok(()) }
                #[business_rule(after = d)] fn a(&self) -> RuleResult { Ok(()) }
                #[business_rule(order = 1)] fn b(&self) -> RuleResult { Ok(()) }
                #[business_rule] fn d(&self) -> RuleResult { Ok(()) }
                #[step] fn s(&self) -> Result<()> { Ok(()) }
            }
        },
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(names(&svc), ["b", "c", "d", "a"]);
}

#[test]
fn a_cycle_is_reported_once_with_its_path() {
    let (_, errors) = model(
        quote!(),
        quote! {
            impl S {
                #[business_rule(after = b)] fn a(&self) -> RuleResult { Ok(()) }
                #[business_rule(after = a)] fn b(&self) -> RuleResult { Ok(()) }
                #[step] fn s(&self) -> Result<()> { Ok(()) }
            }
        },
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("cycle"), "{}", errors[0]);
}

#[test]
fn a_duplicate_order_and_an_unknown_after_are_both_reported() {
    let (svc, errors) = model(
        quote!(),
        quote! {
            impl S {
                #[business_rule(order = 3)] fn a(&self) -> RuleResult { Ok(()) }
                #[business_rule(order = 3, after = zz)] fn b(&self) -> RuleResult { Ok(()) }
                #[step] fn s(&self) -> Result<()> { Ok(()) }
            }
        },
    );
    // One rule, one error naming both mistakes.
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("`order = 3` is already used"),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains("`after = zz` names no business rule"),
        "{}",
        errors[0]
    );
    assert_eq!(svc.rule_order.len(), 2, "expansion still sees every rule");
}

#[test]
fn a_step_takes_the_previous_output_by_value_and_earlier_ones_by_reference() {
    let (svc, errors) = model(
        quote!(),
        quote! {
            impl S {
                #[step] fn a(&self) -> Result<String> { todo() }
                #[step] fn b(&self, ctx: &Context) -> Result<u32> { todo() }
                #[step] fn c(&self, n: u32, name: &str) -> Result<u64> { todo() }
            }
        },
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(svc.args[1], [Arg::Context]);
    assert_eq!(svc.args[2], [Arg::Moved(1), Arg::Borrowed(0)]);
}

#[test]
fn an_output_that_no_earlier_step_produces_is_an_error() {
    let (_, errors) = model(
        quote!(),
        quote! {
            impl S {
                #[step] fn a(&self) -> Result<u32> { todo() }
                #[step] fn b(&self, order: &Order) -> Result<u64> { todo() }
            }
        },
    );
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("no step before `b` produces a `Order`"),
        "{}",
        errors[0]
    );
}

#[test]
fn an_output_moved_into_a_step_cannot_be_borrowed_later() {
    let (_, errors) = model(
        quote!(),
        quote! {
            impl S {
                #[step] fn a(&self) -> Result<String> { todo() }
                #[step] fn b(&self, s: String) -> Result<u64> { todo() }
                #[step] fn c(&self, s: &String) -> Result<u64> { todo() }
            }
        },
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("was moved into `b`"), "{}", errors[0]);
}

#[test]
fn an_undo_binds_the_step_output_and_the_context() {
    let (svc, errors) = model(
        quote!(),
        quote! {
            impl S {
                #[step(undo = release)] fn reserve(&self) -> Result<u32> { todo() }
                async fn release(&self, r: &u32, ctx: &Context) -> Result<()> { todo() }
                #[step] fn charge(&self, r: &u32) -> Result<u64> { todo() }
            }
        },
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(svc.undos.len(), 1);
    assert_eq!(svc.undos[0].2, [Arg::Borrowed(0), Arg::Context]);
    assert_eq!(svc.first_async().unwrap().ident, "release");
}

#[test]
fn an_undo_typo_gets_a_suggestion() {
    let (_, errors) = model(
        quote!(),
        quote! {
            impl S {
                #[step(undo = relase)] fn reserve(&self) -> Result<u32> { todo() }
                fn release(&self, r: &u32) -> Result<()> { todo() }
            }
        },
    );
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("did you mean `release`?"),
        "{}",
        errors[0]
    );
}

#[test]
fn an_undone_output_may_not_be_moved_into_the_next_step() {
    let (_, errors) = model(
        quote!(),
        quote! {
            impl S {
                #[step(undo = release)] fn reserve(&self) -> Result<u32> { todo() }
                fn release(&self, r: &u32) -> Result<()> { todo() }
                #[step] fn charge(&self, r: u32) -> Result<u64> { todo() }
            }
        },
    );
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("take it by reference here"),
        "{}",
        errors[0]
    );
}

#[test]
fn an_undo_without_the_output_parameter_is_an_error() {
    let (_, errors) = model(
        quote!(),
        quote! {
            impl S {
                #[step(undo = release)] fn reserve(&self) -> Result<u32> { todo() }
                fn release(&self) -> Result<()> { todo() }
            }
        },
    );
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("add a parameter `output: &u32`"),
        "{}",
        errors[0]
    );
}

#[test]
fn service_options_and_a_missing_hook_are_all_reported() {
    let (_, errors) = model(
        quote!(fail_fsat, on_error = rollback, name = "a", name = "b"),
        quote! {
            impl S {
                #[step] fn s(&self) -> Result<()> { Ok(()) }
                fn roll_back(&self, e: Error) -> Error { e }
            }
        },
    );
    // The attribute's two mistakes are one error; the missing hook is another.
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("did you mean `fail_fast`?"))
    );
    assert!(errors.iter().any(|e| e.contains("given twice")));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("did you mean `roll_back`?"))
    );
}
