//! `#[aggregate]`: on the struct, the [`Root`] (type name, id field, snapshots); on its
//! impl, the [`Behaviour`] (`#[apply]` methods that evolve the state from events,
//! `#[command_handler]` methods that decide commands, and their bus registration).

mod behaviour;
mod root;

use proc_macro2::TokenStream;

use crate::common::Ctxt;
use crate::common::driver::Family;
pub use behaviour::Behaviour;
pub use root::Root;

impl Family for Root {
    type Item = syn::ItemStruct;
    type Config = ();

    fn goes_on(_: ()) -> String {
        "`#[aggregate]` goes on the aggregate's struct (with `#[aggregate_id]` on its id field) and on its `impl` block".into()
    }

    fn parse(cx: &Ctxt, _: (), args: TokenStream, item: syn::ItemStruct) -> Root {
        Root::from_syn(cx, args, item)
    }

    fn check(&mut self, _: &Ctxt) {}

    fn expand(&self) -> TokenStream {
        root::expand(self, true)
    }

    fn fallback(&self) -> TokenStream {
        root::expand(self, false)
    }
}

impl Family for Behaviour {
    type Item = syn::ItemImpl;
    type Config = ();

    fn goes_on(_: ()) -> String {
        "`#[aggregate]` goes on the aggregate's struct and on its `impl` block".into()
    }

    fn parse(cx: &Ctxt, _: (), args: TokenStream, item: syn::ItemImpl) -> Behaviour {
        Behaviour::from_syn(cx, args, item)
    }

    fn check(&mut self, cx: &Ctxt) {
        behaviour::check(self, cx);
    }

    fn expand(&self) -> TokenStream {
        behaviour::expand(self, true)
    }

    fn fallback(&self) -> TokenStream {
        behaviour::expand(self, false)
    }
}

#[cfg(test)]
mod tests;
