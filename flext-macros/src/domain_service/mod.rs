//! `#[domain_service]`: ordered business rules, then a railway of steps with undos; and
//! `#[business_rules]`, the same rules as a message's `Validate`.

mod body;
mod check;
mod expand;
mod parse;

use proc_macro2::TokenStream;

use crate::common::Ctxt;
use crate::common::driver::Family;
pub use parse::Mode;
pub use parse::Service;

impl Family for Service {
    type Item = syn::ItemImpl;
    type Config = Mode;

    fn goes_on(mode: Mode) -> String {
        match mode {
            Mode::Service => "`#[domain_service]` goes on an `impl` block: put the inputs in a struct's fields and write `#[domain_service] impl Service { #[step] fn ...(&self) -> Result<T> { ... } }` for your `struct Service`".into(),
            Mode::MessageRules | Mode::ProcessorRules => "`#[business_rules]` goes on an `impl` block of a message type, or on `impl ServiceProcessor for X`, holding `#[business_rule]` methods".into(),
        }
    }

    fn parse(cx: &Ctxt, mode: Mode, args: TokenStream, item: syn::ItemImpl) -> Service {
        Service::from_syn(cx, mode, args, item)
    }

    fn check(&mut self, cx: &Ctxt) {
        check::service(self, cx);
    }

    fn expand(&self) -> TokenStream {
        match self.mode {
            Mode::Service => expand::service(self),
            Mode::MessageRules => expand::rules(self),
            Mode::ProcessorRules => expand::processor_rules(self, true),
        }
    }

    fn fallback(&self) -> TokenStream {
        match self.mode {
            Mode::Service => expand::fallback(self),
            Mode::MessageRules => expand::rules_fallback(self),
            Mode::ProcessorRules => expand::processor_rules(self, false),
        }
    }
}

#[cfg(test)]
mod tests;
