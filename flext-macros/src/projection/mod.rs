//! `#[projection]` on an impl block: its `#[apply]` methods, one per event type, become a
//! `SqliteProjection` that decodes each stored event it applies and hands it to its method,
//! and passes over the rest.

mod check;
mod expand;
mod parse;

use proc_macro2::TokenStream;

use crate::common::Ctxt;
use crate::common::driver::Family;
pub use parse::ProjectionDef;

impl Family for ProjectionDef {
    type Item = syn::ItemImpl;
    type Config = ();

    fn goes_on(_: ()) -> String {
        "`#[projection]` goes on an `impl` block whose `#[apply]` methods each apply one event type to the projection's tables".into()
    }

    fn parse(cx: &Ctxt, _: (), args: TokenStream, item: syn::ItemImpl) -> Self {
        ProjectionDef::from_syn(cx, args, item)
    }

    fn check(&mut self, cx: &Ctxt) {
        check::check(self, cx);
    }

    fn expand(&self) -> TokenStream {
        expand::expand(self, true)
    }

    fn fallback(&self) -> TokenStream {
        expand::expand(self, false)
    }
}
