//! The one pipeline every attribute goes through: parse the item, build the family's
//! model (which keeps the user's spans), check it, and expand it; on any error, emit the
//! family's fallback (the user's item and stand-in impls, thiserror's `fallback.rs`) plus
//! every error, so that a mistake costs exactly its own errors and callers still see the
//! traits they use.

use proc_macro2::TokenStream;

use super::Ctxt;
use super::util::error_at;

/// One macro family.
pub trait Family: Sized {
    /// The item the attribute goes on.
    type Item: syn::parse::Parse;
    /// What distinguishes the attributes of one family (the message kind, say).
    type Config: Copy;

    /// What to say when the attribute is on the wrong kind of item.
    fn goes_on(config: Self::Config) -> String;
    /// Item and arguments to model; every problem of a single item goes to `cx`.
    fn parse(cx: &Ctxt, config: Self::Config, args: TokenStream, item: Self::Item) -> Self;
    /// Rules that relate several items; every problem goes to `cx`.
    fn check(&mut self, cx: &Ctxt);
    /// Model to tokens, for a model that passed its checks.
    fn expand(&self) -> TokenStream;
    /// What to emit beside the errors: the item, and stand-ins for what callers use.
    fn fallback(&self) -> TokenStream;
}

/// Runs `F` on one attribute invocation.
pub fn drive<F: Family>(config: F::Config, args: TokenStream, input: TokenStream) -> TokenStream {
    let item: F::Item = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            let first = input.clone().into_iter().next();
            let error = error_at(&first, F::goes_on(config));
            let mut out = input;
            out.extend(error.into_compile_error());
            return out;
        }
    };
    let cx = Ctxt::new();
    let mut model = F::parse(&cx, config, args, item);
    model.check(&cx);
    match cx.check() {
        Ok(()) => model.expand(),
        Err(errors) => {
            let mut out = model.fallback();
            out.extend(errors.into_compile_error());
            out
        }
    }
}
