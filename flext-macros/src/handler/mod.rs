//! `#[command_handler]`, `#[query_handler]`, `#[event_handler]` on free functions, and
//! `#[handlers]` on an `impl` whose methods carry those attributes: register the handler
//! at link time with a `build` function that extracts its injected state once, when the
//! bus is built, and (for commands and queries in the message's crate) the compiler-known
//! handler `Bus::send_local` calls, whose second copy is the "one handler" error.

mod expand;
mod parse;

use proc_macro2::TokenStream;
use quote::quote;

use crate::common::Ctxt;
use crate::common::driver::Family;
use crate::common::kind::Kind;
pub use parse::{Handler, HandlerImpl};

impl Family for Handler {
    type Item = syn::ItemFn;
    type Config = Kind;

    fn goes_on(kind: Kind) -> String {
        format!(
            "`#[{}]` goes on a function (or on a method inside `#[handlers] impl`)",
            kind.handler_attr()
        )
    }

    fn parse(cx: &Ctxt, kind: Kind, args: TokenStream, item: syn::ItemFn) -> Handler {
        Handler::from_fn(cx, kind, args, item)
    }

    fn check(&mut self, _: &Ctxt) {}

    fn expand(&self) -> TokenStream {
        let item = &self.item;
        let registration = expand::handler(&self.def, true);
        quote!(#item #registration)
    }

    fn fallback(&self) -> TokenStream {
        let item = &self.item;
        // A method outside `#[handlers]` sits in an impl block, where no item may follow.
        if !matches!(
            self.def.method.receiver,
            crate::common::sig::Receiver::Missing
        ) {
            return quote!(#item);
        }
        let stand_in = expand::handler(&self.def, false);
        quote!(#item #stand_in)
    }
}

impl Family for HandlerImpl {
    type Item = syn::ItemImpl;
    type Config = ();

    fn goes_on(_: ()) -> String {
        use crate::common::symbol::*;
        format!(
            "`#[{HANDLERS}]` goes on an `impl` block whose methods carry `#[{COMMAND_HANDLER}]`, `#[{QUERY_HANDLER}]` or `#[{EVENT_HANDLER}]`"
        )
    }

    fn parse(cx: &Ctxt, _: (), args: TokenStream, item: syn::ItemImpl) -> HandlerImpl {
        HandlerImpl::from_impl(cx, args, item)
    }

    fn check(&mut self, _: &Ctxt) {}

    fn expand(&self) -> TokenStream {
        let item = &self.item;
        let registrations = self.handlers.iter().map(|h| expand::handler(h, true));
        quote!(#item #(#registrations)*)
    }

    fn fallback(&self) -> TokenStream {
        let item = &self.item;
        let stand_ins = self.handlers.iter().map(|h| expand::handler(h, false));
        quote!(#item #(#stand_ins)*)
    }
}
