//! `#[workflow]` with `#[workflow_step(...)]` methods: the step graph, the step and
//! compensation dispatch the runtime's driver calls, and the per-step statistics.

mod check;
mod expand;
mod parse;

use proc_macro2::TokenStream;

use crate::common::Ctxt;
use crate::common::driver::Family;
pub use parse::WorkflowDef;

impl Family for WorkflowDef {
    type Item = syn::ItemImpl;
    type Config = ();

    fn goes_on(_: ()) -> String {
        "`#[workflow]` goes on an `impl` block of the workflow's input struct: `#[workflow] impl Import { #[workflow_step] async fn ...(&self) -> Result<T> { ... } }`".into()
    }

    fn parse(cx: &Ctxt, _: (), args: TokenStream, item: syn::ItemImpl) -> WorkflowDef {
        WorkflowDef::from_syn(cx, args, item)
    }

    fn check(&mut self, cx: &Ctxt) {
        check::workflow(self, cx);
    }

    fn expand(&self) -> TokenStream {
        expand::workflow(self)
    }

    fn fallback(&self) -> TokenStream {
        expand::fallback(self)
    }
}

#[cfg(test)]
mod tests;
