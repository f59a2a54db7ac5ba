//! Unit tests of the workflow checks on parsed input (the trybuild cases in
//! `tests/ui/workflow/` show the messages as users see them).

use quote::quote;

use super::parse::WorkflowDef;
use crate::common::Ctxt;
use crate::common::driver::Family;

fn check(item: proc_macro2::TokenStream) -> (WorkflowDef, usize) {
    let cx = Ctxt::new();
    let mut wf = WorkflowDef::from_syn(&cx, quote!(), syn::parse2(item).unwrap());
    wf.check(&cx);
    let n = cx.count();
    let _ = cx.check();
    (wf, n)
}

#[test]
fn outputs_are_taken_from_the_nearest_step_that_produces_them() {
    let (wf, errors) = check(quote! {
        impl W {
            #[workflow_step]
            async fn rows(&self) -> Result<Vec<u8>> {}
            #[workflow_step(depends_on = [rows])]
            async fn count(&self, rows: &[u8]) -> Result<usize> {}
            #[workflow_step(depends_on = [count], optional)]
            async fn report(&self, rows: &Vec<u8>, n: &usize, ctx: &Context) -> Result<String> {}
        }
    });
    assert_eq!(errors, 0);
    assert_eq!(wf.steps[1].sources, [Some(0)]);
    assert_eq!(wf.steps[2].deps, [1]);
    assert_eq!(wf.steps[2].sources, [Some(0), Some(1), None]);
}

#[test]
fn every_graph_mistake_is_reported_in_one_pass() {
    let (_, errors) = check(quote! {
        impl W {
            #[workflow_step(depends_on = [nope])]
            async fn a(&self) -> Result<u8> {}
            #[workflow_step(optional)]
            async fn b(&self) -> Result<u16> {}
            #[workflow_step(depends_on = [b])]
            async fn c(&self, x: &u16, y: &u32) -> Result<()> {}
        }
    });
    // unknown `nope`; and one error for `c`'s parameters: it (required) takes optional
    // `b`'s output, and nobody makes a `u32`.
    assert_eq!(errors, 2);
}

#[test]
fn a_cycle_is_one_error() {
    let (_, errors) = check(quote! {
        impl W {
            #[workflow_step(depends_on = [c])]
            async fn a(&self) -> Result<u8> {}
            #[workflow_step(depends_on = [a])]
            async fn b(&self) -> Result<u16> {}
            #[workflow_step(depends_on = [b])]
            async fn c(&self) -> Result<u32> {}
        }
    });
    assert_eq!(errors, 1);
}
