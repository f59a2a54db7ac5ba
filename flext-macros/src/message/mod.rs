//! `#[command]`, `#[query]` and `#[event]`: implement `Message` (the kind traits follow
//! from it) and register the type for dispatch by name.

mod expand;
mod parse;
mod route;

use proc_macro2::TokenStream;

use crate::common::Ctxt;
use crate::common::driver::Family;
use crate::common::kind::Kind;
pub use parse::MessageDef;

impl Family for MessageDef {
    type Item = syn::DeriveInput;
    type Config = Kind;

    fn goes_on(kind: Kind) -> String {
        format!("`#[{}]` goes on a struct or an enum", kind.message_attr())
    }

    fn parse(cx: &Ctxt, kind: Kind, args: TokenStream, item: syn::DeriveInput) -> MessageDef {
        MessageDef::from_syn(cx, kind, args, item)
    }

    fn check(&mut self, cx: &Ctxt) {
        parse::check(self, cx);
    }

    fn expand(&self) -> TokenStream {
        expand::message(self, true)
    }

    fn fallback(&self) -> TokenStream {
        expand::message(self, false)
    }
}
