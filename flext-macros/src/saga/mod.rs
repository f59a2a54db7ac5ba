//! `#[saga]` with `#[saga_step(...)]` methods: the step table, the step and compensation
//! dispatch the runner calls, and the registration recovery uses.

mod check;
mod expand;
mod parse;
mod signals;

use proc_macro2::TokenStream;

use crate::common::Ctxt;
use crate::common::driver::Family;
pub use parse::Saga;

impl Family for Saga {
    type Item = syn::ItemImpl;
    type Config = ();

    fn goes_on(_: ()) -> String {
        "`#[saga]` goes on an `impl` block of the saga's input struct: `#[saga] impl FulfilOrder { #[saga_step] fn ...(&self) -> Result<T> { ... } }`".into()
    }

    fn parse(cx: &Ctxt, _: (), args: TokenStream, item: syn::ItemImpl) -> Saga {
        Saga::from_syn(cx, args, item)
    }

    fn check(&mut self, cx: &Ctxt) {
        check::saga(self, cx);
    }

    fn expand(&self) -> TokenStream {
        expand::saga(self)
    }

    fn fallback(&self) -> TokenStream {
        expand::fallback(self)
    }
}

#[cfg(test)]
mod tests;
